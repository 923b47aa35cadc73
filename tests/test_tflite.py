"""PyTorch → LiteRT `.tflite` (the SavedModel road, TensorFlow's TFLite converter), checked in the LiteRT
interpreter itself; `.tflite` as a parity operand; TF Select (Flex) ops refused by name."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

from porttax import models
from porttax._frameworks import import_tf, import_torch
from porttax.errors import UnsupportedError

torch = import_torch()


def _pt2(module: torch.nn.Module, example: tuple, path: Path) -> Path:
    torch.export.save(torch.export.export(module.eval(), example), str(path))
    return path


def _converted_and_checked(source: Path, tmp_path: Path) -> dict:
    out = tmp_path / f"{source.stem}.tflite"
    done = run_cli("convert", str(source), "--to", "tflite", "-o", str(out), "--json", "--no-latency")
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.is_file() and out.read_bytes()[4:8] == b"TFL3"  # a LiteRT flatbuffer
    report = json.loads(done.stdout)
    assert report["target"] == "tflite" and report["passed"]
    # the written file as the parity suite's operand, in its own process, three seeds
    check = run_cli("parity", str(source), str(out), "--seeds", "3", "--json", str(tmp_path / "parity.json"), "-q")
    assert check.returncode == 0, check.stderr[-3000:]
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] and parity["worst_rel_l2"] <= 1e-5 and len(parity["cases"]) == 3
    return report


@pytest.mark.parametrize("preset", ["resnet-tiny", "llama-tiny"])
def test_bundled_presets_reach_tflite_within_fp32_tolerance(preset: str, tmp_path: Path) -> None:
    source = _pt2(models.build_model(preset, seed=0), models.example_inputs(preset, batch=1, seq=16),
                  tmp_path / f"{preset}.pt2")
    report = _converted_and_checked(source, tmp_path)
    assert report["porting_tax"]["drift_rel_l2"] <= 1e-5 and report["porting_tax"]["output_bytes"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_models_reach_tflite_within_fp32_tolerance(name: str, tmp_path: Path) -> None:
    from porttax._frameworks import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    model = getattr(tv.models, name)(weights=None)
    source = _pt2(model, (torch.randn(1, 3, 224, 224),), tmp_path / f"{name}.pt2")
    _converted_and_checked(source, tmp_path)


def test_tflite_needs_a_tflite_path(tmp_path: Path) -> None:
    source = _pt2(models.build_model("mlp-tiny", seed=0), models.example_inputs("mlp-tiny", batch=1), tmp_path / "m.pt2")
    done = run_cli("convert", str(source), "--to", "tflite", "-o", str(tmp_path / "m.bin"))
    assert done.returncode == 2 and ".tflite" in done.stderr and not (tmp_path / "m.bin").exists()


def test_flex_ops_are_named_not_crashed_on(tmp_path: Path) -> None:
    """A SavedModel whose function needs an op LiteRT's builtins lack (MatrixDeterminant)."""
    from porttax.targets.tflite import savedmodel_to_tflite

    tf = import_tf()

    class Determinant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 3, 3], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict:
            return {"output_0": tf.linalg.det(x)}

    module = Determinant()
    tf.saved_model.save(module, str(tmp_path / "det"), signatures={"serving_default": module.serve})
    with pytest.raises(UnsupportedError, match=r"TF Select \(Flex\) ops for MatrixDeterminant"):
        savedmodel_to_tflite(tmp_path / "det", "det")


def _quantized(source: Path, tmp_path: Path, mode: str) -> subprocess.CompletedProcess:
    out = tmp_path / f"{source.stem}_{mode}.tflite"
    return run_cli("convert", str(source), "--to", "tflite", "--quantize", mode, "-o", str(out), "--json", "--no-latency")


def test_quantisation_reports_size_ratio_and_top1_over_32_inputs(tmp_path: Path) -> None:
    resnet = _pt2(models.build_model("resnet-tiny", seed=0), models.example_inputs("resnet-tiny", batch=1),
                  tmp_path / "resnet.pt2")
    mlp = _pt2(models.build_model("mlp-tiny", seed=0), models.example_inputs("mlp-tiny", batch=1), tmp_path / "mlp.pt2")
    ratios = {}
    for source, mode in ((resnet, "dynamic"), (mlp, "int8"), (resnet, "int8")):
        done = _quantized(source, tmp_path, mode)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout)
        tax = report["porting_tax"]
        assert tax["quantize"] == mode and tax["size_ratio"] > 0 and tax["output_bytes"] > 0
        assert 0.9 <= tax["top1_agreement"] <= 1.0  # the int8 profile's gate, measured
        assert report["parity"]["profile"]["name"] == "int8" and len(report["parity"]["cases"]) >= 32
        assert report["parity"]["profile"]["stat"] == "top1_disagreement"
        ratios[(source.stem, mode)] = tax["size_ratio"]
    assert ratios[("resnet", "dynamic")] < 0.5 and ratios[("resnet", "int8")] < 0.5  # int8 weights: a quarter of the float bytes, plus the flatbuffer's own


def test_a_quantised_model_the_runtime_cannot_run_is_refused_not_crashed_on(tmp_path: Path) -> None:
    """LiteRT 2.3's int8 kernels abort the process on llama-tiny (XNNPACK and the builtin kernels both);
    porttax tries the model in a child process first, so the user gets exit 2 and a reason."""
    llama = _pt2(models.build_model("llama-tiny", seed=0), models.example_inputs("llama-tiny", batch=1, seq=16),
                 tmp_path / "llama.pt2")
    done = _quantized(llama, tmp_path, "int8")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "the LiteRT runtime cannot run this model" in done.stderr and "llama_int8.tflite" in done.stderr
    assert not (tmp_path / "llama_int8.tflite").exists() and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
def test_int8_resnet18_runs_and_reports_size_and_top1(tmp_path: Path) -> None:
    from porttax._frameworks import import_torchvision

    torch.manual_seed(0)
    source = _pt2(import_torchvision().models.resnet18(weights=None), (torch.randn(1, 3, 224, 224),),
                  tmp_path / "resnet18.pt2")
    done = _quantized(source, tmp_path, "int8")
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: ran, but top-1 fell below the int8 profile
    report = json.loads(done.stdout)
    tax = report["porting_tax"]
    assert tax["quantize"] == "int8" and 0.2 < tax["size_ratio"] < 0.35  # int8 weights: ~a quarter
    assert tax["top1_agreement"] is not None and len(report["parity"]["cases"]) >= 32


def test_quantize_is_for_tflite_only(tmp_path: Path) -> None:
    mlp = _pt2(models.build_model("mlp-tiny", seed=0), models.example_inputs("mlp-tiny", batch=1), tmp_path / "mlp.pt2")
    done = run_cli("convert", str(mlp), "--to", "keras", "--quantize", "int8", "-o", str(tmp_path / "m.keras"))
    assert done.returncode == 2 and "--quantize" in done.stderr


def test_a_keras_model_reaches_tflite_and_is_checked_against_keras(tmp_path: Path) -> None:
    """A Keras source goes straight to the SavedModel road (TF's own export), no porttax mapping."""
    from porttax._frameworks import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((20, 20, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(4, name="head")(x)
    source = tmp_path / "small_cnn.keras"
    keras.Model(inp, out, name="small_cnn").save(source)
    report = _converted_and_checked(source, tmp_path)
    assert [i["name"] for i in report["inputs"]] == ["image"]
    assert report["porting_tax"]["layers_mapped"] == report["porting_tax"]["layers_total"] == 5
