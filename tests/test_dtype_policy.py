"""Half-precision checkpoints keep their dtype (porttax.dtype_policy): weights stored as the checkpoint
stores them, computation in float32, so parity holds at the fp32 profile; a weight the converter
derives that the narrow dtype cannot hold exactly keeps its layer in float32 instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from porttax._frameworks import import_torch

torch = import_torch()


def test_checkpoint_weight_dtype_is_the_one_half_dtype_of_every_float_tensor() -> None:
    from porttax.dtype_policy import checkpoint_weight_dtype

    assert checkpoint_weight_dtype({"a": "bfloat16", "b": "bfloat16", "ids": "int64"}) == "bfloat16"
    assert checkpoint_weight_dtype({"a": "float16"}) == "float16"
    assert checkpoint_weight_dtype({"a": "bfloat16", "norm": "float32"}) is None  # mixed: no rounding
    assert checkpoint_weight_dtype({"a": "float32"}) is None and checkpoint_weight_dtype(None) is None


def test_a_derived_weight_that_would_round_keeps_its_layer_in_float32() -> None:
    import keras

    from porttax.converters.mapping_log import MappingLog
    from porttax.converters.torch_to_keras.context import Context, Val
    from porttax.dtype_policy import keras_dtype

    exact = torch.randn(3, 4).to(torch.bfloat16).float()  # a checkpoint tensor moved as is
    derived = exact + torch.full((3, 4), 1e-3)  # e.g. two biases summed: not a bf16 value
    ctx = Context(MappingLog())
    x = keras.Input((4,))
    with keras_dtype("float32", "bfloat16"):
        kept = keras.layers.Dense(3, use_bias=False, name="kept")
        widened = keras.layers.Dense(3, use_bias=False, name="widened")
        assigned = keras.layers.Dense(3, use_bias=False, name="assigned")
    ctx.apply_layer(kept, x, {"kernel": (Val(const=exact.T.contiguous()), None)})
    ctx.apply_layer(widened, x, {"kernel": (Val(const=derived.T.contiguous()), None)})
    assert str(kept.kernel.dtype) == "bfloat16" and kept.compute_dtype == "float32"
    assert np.array_equal(np.asarray(kept.kernel.numpy(), dtype=np.float32), exact.T.numpy())
    assert str(widened.kernel.dtype) == "float32" and ctx.log.widened_layers == ["widened"]
    assert np.array_equal(widened.kernel.numpy(), derived.T.numpy())
    assigned.build((None, 4))  # a variable assigned after its build cannot change dtype: reported
    ctx.set_weight(assigned, "kernel", Val(const=derived.T.contiguous()))
    assert ctx.log.rounded_weights == ["assigned/kernel"]


def test_bf16_checkpoint_gives_a_bf16_savedmodel_that_computes_in_float32(tmp_path: Path) -> None:
    """The 4x-widened Qwen2 test model, whose bf16 computation drifts past the bf16 profile from torch's
    own bf16: kept in bf16 but computed in float32 it holds the fp32 profile, generation included, and
    every variable is the checkpoint's bf16, transposed where Keras wants it."""
    import tensorflow as tf
    from safetensors.torch import load_file

    from porttax import cli
    from test_hf_folder import _hf_family_folder

    _, reference = _hf_family_folder(tmp_path, "qwen2")
    bf16 = tmp_path / "bf16"
    reference.to(torch.bfloat16).save_pretrained(bf16, safe_serialization=True)
    out, report_file = tmp_path / "sm", tmp_path / "r.json"
    assert cli.main(["convert", str(bf16), "--input-shape", "1,16", "-o", str(out), "--max-cache-len", "32",
                     "-q", "--no-latency", "--report", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["parity"]["profile"]["name"] == "fp32" and report["porting_tax"]["drift_rel_l2"] <= 1e-5
    assert report["porting_tax"]["weights_dtype"] == "bfloat16"
    assert report["porting_tax"]["compute_dtype"] == "float32"
    assert report["generation"]["passed"] and report["generation"]["worst_step_rel_l2"] <= 1e-5
    variables = {v.name.split(":")[0]: v for v in tf.saved_model.load(str(out)).variables}
    assert {v.dtype for v in variables.values()} == {tf.bfloat16}
    stored = load_file(bf16 / "model.safetensors")
    kernel = variables["model-layers-0-mlp-down_proj/kernel"].numpy().view(np.uint16)
    assert np.array_equal(kernel.T, stored["model.layers.0.mlp.down_proj.weight"].view(torch.uint16).numpy())


def test_a_bf16_keras_file_loads_as_float32_on_the_jax_backend(tmp_path: Path) -> None:
    """The .keras of a bf16 checkpoint holds bf16 weights yet declares plain float32 layers: Keras on JAX
    (a worker process, no porttax policy in it) loads it and holds fp32 parity with the checkpoint."""
    import zipfile

    from porttax import cli, models

    model = models.build_model("llama-tiny")
    folder = tmp_path / "bf16"
    folder.mkdir()
    from safetensors.torch import save_file

    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
              folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **model.config.to_dict()}))
    out, report_file = tmp_path / "m.keras", tmp_path / "r.json"
    assert cli.main(["convert", str(folder), "--input-shape", "1,16", "-o", str(out), "-q", "--no-latency"]) == 0
    with zipfile.ZipFile(out) as z:
        config = z.read("config.json").decode()
    assert "StoredWeightsPolicy" not in config and "bfloat16" not in config
    assert cli.main(["parity", str(folder), str(out), "--input-shape", "1,16", "--backend", "jax", "--seeds", "1",
                     "-q", "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["environment"]["runtimes"]["converted"]["backend"] == "jax" and report["worst_rel_l2"] <= 1e-5
