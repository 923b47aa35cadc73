"""Shapes people serve with: sources porttax captures itself keep an open batch (and sequence) dim,
every target keeps it, parity runs at several sizes, and what cannot stay open is fixed and said."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import hf_llama_folder
from porttax import cli, models
from porttax._frameworks import import_keras, import_tf, import_torch

torch = import_torch()


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _convert(*args: str, report: Path | None = None) -> int:
    extra = ["--report", str(report)] if report is not None else []
    return cli.main(["convert", *args, "-q", "--no-latency", *extra])


@pytest.mark.slow
def test_a_hugging_face_llama_savedmodel_serves_any_batch_and_prompt_length(tmp_path: Path) -> None:
    """Default options: serving_default, logits and decode all take other batches and lengths, and agree
    with transformers at (1, 6), (1, 16) and (3, 33) with a padded row; greedy decoding through
    serving_default on a growing prompt picks transformers' tokens."""
    from transformers import LlamaForCausalLM

    folder = hf_llama_folder(tmp_path, "10MB")
    out = tmp_path / "sm"
    report = tmp_path / "r.json"
    assert _convert(str(folder), "--to", "savedmodel", "-o", str(out), report=report) == 0
    written = json.loads(report.read_text())
    assert len({json.dumps(c["sizes"], sort_keys=True) for c in written["parity"]["cases"]}) == 3  # several sizes
    assert written["generation"]["batched"]["passed"], written["generation"]["batched"]
    tf = import_tf()
    saved = tf.saved_model.load(str(out))
    for name in ("serving_default", "logits", "prefill"):
        ids_spec = saved.signatures[name].structured_input_signature[1]["input_ids"]
        assert ids_spec.shape.as_list() == [None, None], (name, ids_spec)
    assert saved.signatures["decode"].structured_input_signature[1]["input_ids"].shape.as_list() == [None, 1]

    hf = LlamaForCausalLM.from_pretrained(folder).eval()
    rng = np.random.default_rng(0)
    for batch, seq in [(1, 6), (1, 16), (3, 33)]:
        ids = rng.integers(0, 256, size=(batch, seq)).astype(np.int64)
        mask = np.ones_like(ids)
        if batch > 1:
            mask[1, seq // 2:] = 0  # a shorter prompt, right-padded
        with torch.no_grad():
            want = hf(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
        got = saved.signatures["logits"](input_ids=tf.constant(ids), attention_mask=tf.constant(mask))["logits"]
        keep = mask.astype(bool)
        assert _rel(got.numpy()[keep], want[keep]) <= 1e-5, (batch, seq)
        plain = list(saved.signatures["serving_default"](input_ids=tf.constant(ids)).values())[0].numpy()
        with torch.no_grad():
            assert _rel(plain, hf(torch.from_numpy(ids)).logits.numpy()) <= 1e-5, (batch, seq)

    # prompts of 5, 9 and 17 tokens prefilled together, then decoded side by side at their own positions,
    # against transformers' own greedy generation of each prompt alone
    from porttax.targets.llm_signatures import check_batched_generation

    class Transformers:
        config = hf.config

        def __call__(self, ids: "torch.Tensor") -> "torch.Tensor":
            return hf(ids).logits

    batched = check_batched_generation(saved, Transformers(), lengths=(5, 9, 17), steps=8)
    assert batched["passed"], batched

    prompt = torch.from_numpy(rng.integers(0, 256, size=(1, 5)))
    with torch.no_grad():
        expected = hf.generate(prompt, max_new_tokens=8, do_sample=False)[0, 5:].tolist()
    tokens = prompt.numpy()
    for _ in range(8):
        logits = list(saved.signatures["serving_default"](input_ids=tf.constant(tokens)).values())[0].numpy()
        tokens = np.concatenate([tokens, logits[:, -1].argmax(-1)[:, None]], axis=1)
    assert tokens[0, 5:].tolist() == expected


@pytest.mark.parametrize("target", ["keras", "savedmodel"])
def test_a_checkpoint_with_an_architecture_keeps_an_open_batch(target: str, tmp_path: Path) -> None:
    model = models.build_model("resnet-tiny")
    ckpt = tmp_path / "resnet.pt"
    torch.save(model.state_dict(), ckpt)
    out = tmp_path / ("r.keras" if target == "keras" else "sm")
    assert _convert(str(ckpt), "--arch", "resnet-tiny", "--to", target, "-o", str(out)) == 0
    run = _runner(out)
    for batch in (1, 8):
        (x,) = models.example_inputs("resnet-tiny", batch=batch, seed=batch)
        with torch.no_grad():
            want = model(x).numpy()
        assert _rel(run(x.numpy()), want) <= 1e-5, batch


def _runner(out: Path):  # noqa: ANN202  (a closure over the loaded model)
    if out.suffix == ".keras":
        model = import_keras().saving.load_model(str(out))
        return lambda x: np.asarray(model(x))
    tf = import_tf()
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    return lambda x: list(fn(tf.constant(x)).values())[0].numpy()


@pytest.mark.slow
def test_a_torchvision_program_with_a_dynamic_batch_runs_at_any_batch(tmp_path: Path) -> None:
    import torch._dynamo  # noqa: F401  (before torchvision: see porttax._frameworks)
    import torchvision

    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", max=64)},))
    pt2 = tmp_path / "r18.pt2"
    torch.export.save(program, str(pt2))
    out = tmp_path / "r18.keras"
    assert _convert(str(pt2), "-o", str(out)) == 0
    run = _runner(out)
    for batch in (1, 8):
        xb = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            assert _rel(run(xb.numpy()), model(xb).numpy()) <= 1e-5, batch


def test_static_keeps_the_examples_fixed_shapes(tmp_path: Path) -> None:
    ckpt = tmp_path / "mlp.pt"
    torch.save(models.build_model("mlp-tiny").state_dict(), ckpt)
    out = tmp_path / "m.keras"
    assert _convert(str(ckpt), "--arch", "mlp-tiny", "--static", "-o", str(out)) == 0
    assert tuple(import_keras().saving.load_model(str(out)).inputs[0].shape) == (1, 16)


def test_a_named_dim_in_input_shape_is_captured_open(tmp_path: Path) -> None:
    model = models.build_model("mlp-tiny").eval()
    pickled = tmp_path / "mlp.pt"
    torch.save(model, pickled, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    out = tmp_path / "m.keras"
    assert _convert(str(pickled), "--trust-pickle", "--input-shape", "batch,16", "-o", str(out)) == 0
    loaded = import_keras().saving.load_model(str(out))
    assert tuple(loaded.inputs[0].shape) == (None, 16)
    x = torch.randn(5, 16)
    with torch.no_grad():
        assert _rel(np.asarray(loaded(x.numpy())), model(x).numpy()) <= 1e-5


class _ThreeOpenSizes(torch.nn.Module):
    """Flattens three open dims into one and back: a Keras graph can compute at most two at once."""

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        b, s, t, c = x.shape
        return (x.reshape(b * s * t, c) * 2).reshape(b, s, t, c)


def test_what_cannot_stay_open_is_converted_fixed_and_said(tmp_path: Path) -> None:
    auto = torch.export.Dim.AUTO
    program = torch.export.export(_ThreeOpenSizes(), (torch.randn(2, 5, 3, 4),),
                                  dynamic_shapes=({0: auto, 1: auto, 2: auto},))
    pt2 = tmp_path / "three.pt2"
    torch.export.save(program, str(pt2))
    out, report = tmp_path / "t.keras", tmp_path / "r.json"
    assert _convert(str(pt2), "-o", str(out), report=report) == 0
    notes = json.loads(report.read_text())["shape_notes"]
    assert notes and "aten.view" in notes[0] and "fixed sizes" in notes[0], notes
    assert tuple(import_keras().saving.load_model(str(out)).inputs[0].shape) == (2, 5, 3, 4)


def test_an_op_that_computes_with_an_open_size_is_refused_by_name() -> None:
    """A size used as a number (here a scale by the sequence length) has no Keras form: refused, naming
    the op, never converted with the example's length baked in."""
    from porttax.converters.torch_to_keras.driver import convert_exported_program
    from porttax.converters.torch_to_keras.symbolic import is_open_size_refusal
    from porttax.errors import UnsupportedError

    class ScaleByLength(torch.nn.Module):
        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return x * x.shape[1]

    program = torch.export.export(ScaleByLength(), (torch.randn(2, 5),),
                                  dynamic_shapes=({1: torch.export.Dim.AUTO},))
    with pytest.raises(UnsupportedError) as err:
        convert_exported_program(program)
    assert is_open_size_refusal(err.value) and "aten.mul" in str(err.value)


def test_an_onnx_file_with_a_symbolic_batch_gives_a_savedmodel_of_any_batch(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = models.build_model("resnet-tiny").eval()
    (x,) = models.example_inputs("resnet-tiny", batch=2)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", max=64)},))
    pt2, onnx_file, out = tmp_path / "r.pt2", tmp_path / "r.onnx", tmp_path / "sm"
    torch.export.save(program, str(pt2))
    assert _convert(str(pt2), "-o", str(onnx_file)) == 0
    assert _convert(str(onnx_file), "--to", "savedmodel", "-o", str(out)) == 0
    run = _runner(out)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        (xb,) = models.example_inputs("resnet-tiny", batch=batch, seed=batch)
        want = session.run(None, {session.get_inputs()[0].name: xb.numpy()})[0]
        assert _rel(run(xb.numpy()), want) <= 1e-5, batch
