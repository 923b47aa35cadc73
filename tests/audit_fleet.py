"""A small fleet for audit tests: real models in mixed formats, both directions, one model with an op no
road converts, one corrupt file and one file that is not a model. Every model is built from a fixed
seed, so every audit of it measures the same thing."""

from __future__ import annotations

from pathlib import Path

# name -> what the audit must say about it
EXPECTED = {
    "mlp.pt2": "converted",
    "resnet.safetensors": "converted",
    "llama.pt": "converted",
    "topk.pt2": "unsupported",
    "broken.pt2": "error",
    "cnn.keras": "converted",
    "mlp_savedmodel": "converted",
    "encoder.onnx": "converted",
}
SKIPPED = ["notes.md"]


def build_fleet(folder: Path) -> Path:
    """Write the fleet into `folder` (created) and return it."""
    from porttax import models
    from porttax._frameworks import import_keras, import_torch
    from porttax.conversion import convert

    torch = import_torch()
    folder.mkdir(parents=True, exist_ok=True)

    def export(module: torch.nn.Module, example: tuple, path: Path) -> None:
        torch.export.save(torch.export.export(module.eval(), example), str(path))

    export(models.build_model("mlp-tiny", seed=1), models.example_inputs("mlp-tiny", batch=1), folder / "mlp.pt2")
    models.build_checkpoint("resnet-tiny", folder / "resnet.safetensors", seed=2)
    models.build_checkpoint("llama-tiny", folder / "llama.pt", seed=3)

    class TopK(torch.nn.Module):  # aten.bernoulli: random, so neither road converts it (ONNX Bernoulli)
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.bernoulli(torch.sigmoid(self.proj(x)))

    torch.manual_seed(4)
    export(TopK(), (torch.randn(1, 16),), folder / "topk.pt2")
    (folder / "broken.pt2").write_bytes(b"PK\x03\x04 this archive was cut short" + bytes(range(64)))
    (folder / "notes.md").write_text("not a model\n")

    keras = import_keras()
    keras.utils.set_random_seed(5)
    inp = keras.Input(shape=(16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(5, name="head")(x)
    keras.Model(inp, out, name="cnn").save(folder / "cnn.keras")

    convert(folder / "mlp.pt2", to="savedmodel", output=folder / "mlp_savedmodel", parity=False, measure_latency=False)
    encoder = folder / "encoder.pt2.tmp.pt2"
    export(models.build_model("encoder-tiny", seed=6), models.example_inputs("encoder-tiny", batch=1, seq=8), encoder)
    convert(encoder, to="onnx", output=folder / "encoder.onnx", parity=False, measure_latency=False)
    encoder.unlink()
    return folder
