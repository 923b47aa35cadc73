"""PyTorch and Keras → ExecuTorch `.pte` (edge dialect, XNNPACK delegate), checked in ExecuTorch's own
runtime; `.pte` as a parity operand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from porttax import models
from porttax._frameworks import import_torch

torch = import_torch()


def _pt2(module: torch.nn.Module, example: tuple, path: Path) -> Path:
    torch.export.save(torch.export.export(module.eval(), example), str(path))
    return path


def _converted_and_checked(source: Path, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / f"{source.stem}.pte"
    done = run_cli("convert", str(source), "--to", "executorch", "-o", str(out), "--json", "--no-latency", *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.is_file() and out.read_bytes()[4:8] == b"ET12"  # an ExecuTorch flatbuffer
    report = json.loads(done.stdout)
    assert report["target"] == "executorch" and report["passed"]
    tax = report["porting_tax"]
    assert tax["drift_rel_l2"] <= 1e-5 and tax["output_bytes"] > 0 and tax["load_ms"] > 0
    assert tax["runtime_note"].startswith("XNNPACK runs ")
    # the written file as the parity suite's operand, in its own process, three seeds
    check = run_cli("parity", str(source), str(out), "--seeds", "3", "--json", str(tmp_path / "parity.json"), "-q",
                    *extra)
    assert check.returncode == 0, check.stderr[-3000:]
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] and parity["worst_rel_l2"] <= 1e-5 and len(parity["cases"]) == 3
    assert parity["converted"].startswith("executorch:")
    return report


def test_bundled_llama_preset_runs_in_executorch_within_fp32_tolerance(tmp_path: Path) -> None:
    source = _pt2(models.build_model("llama-tiny", seed=0), models.example_inputs("llama-tiny", batch=1, seq=16),
                  tmp_path / "llama-tiny.pt2")
    report = _converted_and_checked(source, tmp_path)
    # the token-id input keeps its name and integer type, read back from the program itself
    assert [i["name"] for i in report["inputs"]] == ["input_ids"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_models_run_in_executorch_within_fp32_tolerance(name: str, tmp_path: Path) -> None:
    from porttax._frameworks import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    model = getattr(tv.models, name)(weights=None)
    source = _pt2(model, (torch.randn(1, 3, 224, 224),), tmp_path / f"{name}.pt2")
    report = _converted_and_checked(source, tmp_path)
    # convolutions, batch norms and linear layers are XNNPACK's: nearly the whole graph is delegated
    delegated, total = (int(w) for w in report["porting_tax"]["runtime_note"].split()[2:5:2])
    assert delegated / total > 0.9, report["porting_tax"]["runtime_note"]


def test_a_keras_model_reaches_executorch_through_the_torch_road(tmp_path: Path) -> None:
    from porttax._frameworks import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((24, 24, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(5, activation="softmax", name="head")(x)
    model = keras.Model(inp, out, name="small_cnn")
    model.layers[2].moving_mean.assign(keras.random.normal((8,), seed=1) * 0.1)  # not the identity norm
    source = tmp_path / "small_cnn.keras"
    model.save(source)
    report = _converted_and_checked(source, tmp_path)
    assert [i["name"] for i in report["inputs"]] == ["image"]


def test_executorch_needs_a_pte_path(tmp_path: Path) -> None:
    source = _pt2(torch.nn.Linear(4, 2), (torch.randn(1, 4),), tmp_path / "lin.pt2")
    done = run_cli("convert", str(source), "--to", "executorch", "-o", str(tmp_path / "lin.bin"))
    assert done.returncode == 2 and "-o model.pte" in done.stderr and not (tmp_path / "lin.bin").exists()


def test_a_pte_from_elsewhere_runs_with_positional_input_names(tmp_path: Path) -> None:
    """A .pte porttax did not write has no name table: its inputs are input_0, input_1, ..."""
    from executorch.exir import to_edge

    from porttax.parity import make_inputs
    from porttax.parity.runners import ExecuTorchRunner

    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).eval()
    program = torch.export.export(module, (torch.randn(2, 4),))
    path = tmp_path / "plain.pte"
    path.write_bytes(to_edge(program).to_executorch().buffer)
    runner = ExecuTorchRunner(path)
    assert runner.input_names == ["input_0"] and runner.specs[0].shape == (2, 4)
    inputs = make_inputs(runner.specs, 0)
    got = runner.run(inputs)[0]
    want = module(torch.from_numpy(inputs["input_0"])).detach().numpy()
    assert abs(got - want).max() < 1e-6


def test_an_audit_prices_the_executorch_target(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    _pt2(models.build_model("mlp-tiny", seed=0), models.example_inputs("mlp-tiny", batch=1, seq=16), fleet / "mlp.pt2")
    out = tmp_path / "audit.json"
    done = run_cli("audit", str(fleet), "--to", "executorch", "--no-cache", "--seeds", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(out.read_text())["models"]
    assert row["status"] == "converted" and row["direction"] == "torch→executorch", row
    assert row["drift_rel_l2"] <= 1e-5 and row["converted_bytes"] > 0
    assert row["measurements"]["converted_load_seconds"] is not None
