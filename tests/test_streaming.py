"""Streamed checkpoints (porttax.lazy_weights): the architecture is captured on placeholder parameters
and every weight is read from its safetensors file only when the converter needs it. Checked against
the same conversion with the checkpoint loaded whole. (Memory figures: bench/llm_memory.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bad_inputs import hf_llama_folder
from porttax import convert
from porttax._frameworks import import_torch
from porttax.sources.torch_source import load_torch_source

torch = import_torch()


def _keras_weights(result) -> dict[str, np.ndarray]:
    return {w.path: np.asarray(w.numpy()) for w in result.keras_model.weights}


def test_a_streamed_folder_holds_no_weights_until_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = hf_llama_folder(tmp_path, "100KB")
    monkeypatch.setenv("PORTTAX_STREAM", "1")
    src = load_torch_source(folder)
    assert src.streamed and src.streamed_from_file
    params = list(src.module.parameters())
    assert params and all(p.untyped_storage().nbytes() <= p.element_size() for p in params)
    src.runnable()  # the reference model reads everything, in place
    assert not src.streamed and all(p.untyped_storage().nbytes() == p.numel() * p.element_size()
                                    for p in src.module.parameters())


def test_streamed_and_whole_conversions_give_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = hf_llama_folder(tmp_path, "100KB")
    monkeypatch.setenv("PORTTAX_STREAM", "1")
    streamed = convert(folder, to="savedmodel", output=tmp_path / "streamed_sm", measure_latency=False)
    assert streamed.to_dict()["source_streamed"] and streamed.passed and streamed.tax.drift_rel_l2 <= 1e-5
    monkeypatch.setenv("PORTTAX_STREAM", "0")
    whole = convert(folder, to="keras", parity=False, measure_latency=False)
    assert not whole.to_dict()["source_streamed"]
    a, b = _keras_weights(streamed), _keras_weights(whole)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_bfloat16_checkpoint_keeps_its_bits_streamed_or_whole(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras variables in the checkpoint's bf16 (porttax.dtype_policy), the same streamed or loaded whole;
    `dtype="float32"` widens them exactly."""
    import ml_dtypes
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    folder = tmp_path / "bf16"
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    results = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("PORTTAX_STREAM", mode)
        results[mode] = convert(folder, to="keras", parity=False, measure_latency=False)
    a, b = _keras_weights(results["1"]), _keras_weights(results["0"])
    assert all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
    embed = next(v for k, v in a.items() if "embed" in k)
    assert embed.dtype == ml_dtypes.bfloat16 and np.any(embed != 0)
    wide = _keras_weights(convert(folder, to="keras", parity=False, measure_latency=False, dtype="float32"))
    assert all(wide[k].dtype == np.float32 and np.array_equal(wide[k], a[k].astype(np.float32)) for k in a)

    # on disk, .keras and weights-only alike hold bf16; plain Keras loads the .keras as a float32 model
    import keras

    convert(folder, to="keras", output=tmp_path / "m.keras", measure_latency=False)
    convert(folder, output=tmp_path / "m.weights.h5", measure_latency=False)
    model = keras.saving.load_model(tmp_path / "m.keras")
    assert {str(w.dtype) for w in model.weights} == {"float32"}
    assert all(np.array_equal(w.numpy(), wide[w.path]) for w in model.weights)
    for w in model.weights:
        w.assign(np.zeros(w.shape, dtype=w.dtype))
    model.load_weights(tmp_path / "m.weights.h5")
    assert all(np.array_equal(w.numpy(), wide[w.path]) for w in model.weights)
    import h5py

    with h5py.File(tmp_path / "m.weights.h5") as f:
        stored = []
        f.visititems(lambda _, o: stored.append((o.dtype.itemsize, o.attrs.get("dtype")))
                     if isinstance(o, h5py.Dataset) else None)
    assert set(stored) == {(2, "bfloat16")}


def test_targets_that_need_every_weight_read_them_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = hf_llama_folder(tmp_path, "100KB")
    monkeypatch.setenv("PORTTAX_STREAM", "1")
    onnx = convert(folder, to="onnx", output=tmp_path / "llama.onnx", measure_latency=False)
    assert onnx.passed and onnx.tax.drift_rel_l2 <= 1e-5
    auto = convert(folder, to="keras", route="auto", prefer="first", measure_latency=False)
    roads = {r["road"]: r for r in auto.roads}
    assert roads["direct"]["chosen"] and roads["onnx"]["status"] == "not converted"
    assert "streamed" in roads["onnx"]["reason"]


def test_weights_only_output_loads_into_the_converted_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--to keras-weights writes Keras' weights file tensor by tensor from a skeleton's layout: it must
    load into the full converted model and equal that model's own weights."""
    from porttax._frameworks import import_keras

    keras = import_keras()
    folder = hf_llama_folder(tmp_path, "100KB")
    out = tmp_path / "llama.weights.h5"
    result = convert(folder, output=out, measure_latency=False)  # the target follows from the suffix
    assert result.target == "keras-weights" and result.parity is None and out.is_file()
    assert result.to_dict()["source_streamed"]
    monkeypatch.setenv("PORTTAX_STREAM", "0")
    full = convert(folder, to="keras", output=tmp_path / "llama.keras", parity=False, measure_latency=False)
    expected = _keras_weights(full)
    model = keras.saving.load_model(tmp_path / "llama.keras")
    for w in model.weights:
        w.assign(np.zeros(w.shape, dtype=w.dtype))
    model.load_weights(out)
    got = {w.path: np.asarray(w.numpy()) for w in model.weights}
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)
    from porttax.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        convert(folder, output=out, measure_latency=False)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_torch_save_state_dict_streams_too(dtype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `torch.save`d state_dict (zip) is mapped, not read: each tensor becomes a pointer into the file,
    so its weights stream like a safetensors checkpoint's, with the same Keras weights as a whole load."""
    from porttax import models

    model = models.build_model("llama-tiny")
    path = tmp_path / "weights.pt"
    torch.save({k: v.to(getattr(torch, dtype)) for k, v in model.state_dict().items()}, path)
    results = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("PORTTAX_STREAM", mode)
        src = load_torch_source(path, arch="llama-tiny")
        assert src.streamed_from_file == (mode == "1")
        if mode == "1":
            assert all(p.untyped_storage().nbytes() <= p.element_size() for p in src.module.parameters())
        results[mode] = convert(path, arch="llama-tiny", to="keras", parity=mode == "1", measure_latency=False)
    assert results["1"].passed and results["1"].to_dict()["source_streamed"]
    a, b = _keras_weights(results["1"]), _keras_weights(results["0"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
