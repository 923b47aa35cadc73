"""PyTorch → ONNX: every preset exports, passes onnx.checker and matches the source in onnxruntime;
symbolic dims of a .pt2 stay symbolic in the ONNX graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from porttax import cli, models
from porttax._frameworks import import_torch

torch = import_torch()


@pytest.mark.parametrize("preset", ["mlp-tiny", "resnet-tiny", "encoder-tiny", "llama-tiny", "llama-tiny-tied"])
def test_preset_exports_to_onnx_with_parity(preset: str, tmp_path: Path) -> None:
    import onnx

    import porttax

    module = models.build_model(preset)
    example = models.example_inputs(preset, batch=2, seq=16)
    out = tmp_path / f"{preset}.onnx"
    result = porttax.convert(module, example_inputs=example, to="onnx", output=out, measure_latency=False)
    assert result.passed, result.parity.summary_line()
    assert result.tax.drift_rel_l2 <= 1e-5
    onnx.checker.check_model(str(out))
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # one self-contained file, no temp left


def test_symbolic_dims_of_a_pt2_stay_symbolic(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    model = models.build_model("llama-tiny")
    ids = models.example_inputs("llama-tiny", batch=2, seq=16)
    seq = torch.export.Dim("seq", min=2, max=64)
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(model, ids, dynamic_shapes=({0: batch, 1: seq},))
    pt2 = tmp_path / "llama.pt2"
    torch.export.save(program, str(pt2))
    out = tmp_path / "llama.onnx"
    assert cli.main(["convert", str(pt2), "-o", str(out), "-q", "--no-latency"]) == 0
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param and not d.dim_value for d in dims), dims
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in [(1, 5), (3, 40)]:
        x = torch.randint(0, 256, shape)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-5


def test_keras_to_onnx(tmp_path: Path) -> None:
    """Keras → ONNX through porttax's torch module: exact GELU included (tf2onnx writes an invalid graph
    for it), the open batch dim stays symbolic, parity against the Keras model."""
    import onnx

    from porttax._frameworks import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="features")
    x = keras.layers.Dense(16, activation=keras.activations.gelu, name="hidden")(inp)
    x = keras.layers.LayerNormalization(name="norm")(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="head")(x))
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "m.onnx"
    assert cli.main(["convert", str(path), "-o", str(out), "-q", "--no-latency"]) == 0
    onnx.checker.check_model(str(out))
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == 6


@pytest.mark.slow
def test_model_past_2gb_round_trips_through_onnx_with_external_data(tmp_path: Path) -> None:
    """2.1 GB of weights: the ONNX file keeps them in `<model>.onnx.data`, onnx.checker and onnxruntime
    accept it, and the ONNX converts back to a .pt2 within 1e-5."""
    import onnx

    import porttax

    class Wide(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wide = torch.nn.Linear(23200, 23200)  # 538M parameters
            self.head = torch.nn.Linear(23200, 4)

        def forward(self, x):
            return self.head(torch.relu(self.wide(x)))

    free = shutil.disk_usage(tmp_path).free
    assert free > 5 * 1024**3, f"this test writes 4.3 GB (wide.onnx.data, wide.pt2) under {tmp_path}; " \
        f"{free / 1024**3:.1f} GB free"
    torch.manual_seed(0)
    with torch.no_grad():
        model = Wide().eval()
    out = tmp_path / "wide.onnx"
    result = porttax.convert(model, example_inputs=(torch.randn(2, 23200),), to="onnx", output=out, seeds=(0,),
                             measure_latency=False)
    assert result.passed, result.parity.summary_line()
    data = tmp_path / "wide.onnx.data"
    assert data.stat().st_size > 2 * 1024**3 and out.stat().st_size < 10 * 1024**2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.onnx", "wide.onnx.data"]
    onnx.checker.check_model(str(out))
    del model, result
    back = tmp_path / "wide.pt2"
    try:
        assert cli.main(["convert", str(out), "-o", str(back), "-q", "--no-latency", "--seeds", "1"]) == 0
    finally:  # the rest of the suite needs the disk more than a passing test's 4 GB of artefacts
        for big in (data, back):
            big.unlink(missing_ok=True)
