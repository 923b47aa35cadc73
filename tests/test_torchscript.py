"""TorchScript archives (`torch.jit.save`) as a source: refused without a trust flag, captured with
torch.export's TorchScript converter, or through the ONNX road where that converter cannot go, and
proved against the TorchScript module itself."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from conftest import run_cli

from porttax._frameworks import import_torch

torch = import_torch()


class _Warns(torch.nn.Module):
    """Calls warnings.warn in forward: torch.export's TorchScript converter refuses `aten::warn`, the
    TorchScript ONNX exporter drops it."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(6, 8)
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        warnings.warn("this block is deprecated")
        return torch.nn.functional.gelu(self.norm(self.proj(features)))


class _TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokens(input_ids) * scale)


class _DictOfTensors(torch.nn.Module):
    """Builds a dict of tensors in a loop: neither torch.export's converter nor the ONNX exporter take it."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.keys = ["a", "b"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: dict[str, torch.Tensor] = {}
        for i, key in enumerate(self.keys):
            outs[key] = self.proj(x) * float(i + 1)
        return outs["a"] + outs["b"]


def _save_script(module: torch.nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    return path


def test_a_torchscript_archive_is_refused_without_a_trust_flag(tmp_path: Path) -> None:
    source = _save_script(torch.nn.Linear(4, 2), tmp_path / "scripted.pt")
    done = run_cli("convert", str(source), "--input-shape", "1,4", "-o", str(tmp_path / "out.keras"))
    assert done.returncode == 2
    assert "TorchScript" in done.stderr and "--trust-code" in done.stderr and str(source) in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out.keras").exists()


def test_a_torchscript_archive_needs_input_shapes(tmp_path: Path) -> None:
    source = _save_script(torch.nn.Linear(4, 2), tmp_path / "scripted.pt")
    done = run_cli("convert", str(source), "--trust-code", "-o", str(tmp_path / "out.keras"))
    assert done.returncode == 2 and "--input-shape" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_resnet18_converts_to_keras_within_fp32_tolerance(how: str, tmp_path: Path) -> None:
    from porttax._frameworks import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    scripted = torch.jit.script(model) if how == "script" else torch.jit.trace(model, (x,))
    source = tmp_path / f"resnet18_{how}.pt"
    torch.jit.save(scripted, str(source))
    out = tmp_path / "resnet18.keras"
    done = run_cli("convert", str(source), "--trust-code", "--input-shape", "1,3,224,224", "-o", str(out),
                   "--json", "--no-latency")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["source_format"] == "torchscript" and report["source_capture"] == "torch.export"
    assert report["porting_tax"]["drift_rel_l2"] <= 1e-5
    assert report["mapping"]["layers_mapped"] == report["mapping"]["layers_total"]
    # every conv and batch norm keeps its module's name
    import keras

    names = {layer.name for layer in keras.saving.load_model(out).layers}
    assert {"conv1", "bn1", "layer1-0-conv1", "layer4-1-bn2", "fc"} <= names, sorted(names)[:20]
    # the TorchScript file as a parity operand, three seeds, in its own process
    check = run_cli("parity", str(source), str(out), "--trust-code", "--input-shape", "1,3,224,224",
                    "--seeds", "3", "--json", str(tmp_path / "parity.json"), "-q")
    assert check.returncode == 0, check.stderr[-3000:]
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["passed"] and parity["worst_rel_l2"] <= 1e-5 and len(parity["cases"]) == 3


def test_a_script_torch_export_refuses_arrives_through_the_onnx_road(tmp_path: Path) -> None:
    source = _save_script(_Warns(), tmp_path / "warns.pt")
    out = tmp_path / "warns.keras"
    done = run_cli("convert", str(source), "--trust-code", "--input-shape", "2,6", "-o", str(out), "--json",
                   "--no-latency")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["source_capture"] == "onnx" and report["porting_tax"]["drift_rel_l2"] <= 1e-5
    assert [i["name"] for i in report["inputs"]] == ["features"]


def test_savedmodel_signature_takes_the_scripts_argument_names(tmp_path: Path) -> None:
    from porttax import convert
    from porttax._frameworks import import_tf

    source = _save_script(_TwoInputs(), tmp_path / "two.pt")
    out = tmp_path / "two_sm"
    example = (torch.randint(0, 50, (2, 5)), torch.rand(2, 5, 1))
    result = convert(source, to="savedmodel", output=out, example_inputs=example, trust_code=True,
                     measure_latency=False)
    assert result.passed and result.tax.drift_rel_l2 <= 1e-5
    assert [s.name for s in result.source.specs] == ["input_ids", "scale"]
    assert result.source.specs[0].value_range == (0, 50)  # token ids stay inside the embedding table
    tf = import_tf()
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert sorted(signature.structured_input_signature[1]) == ["input_ids", "scale"]


def test_torchscript_route_onnx_uses_the_torchscript_exporter(tmp_path: Path) -> None:
    from porttax import convert

    source = _save_script(_TwoInputs(), tmp_path / "two.pt")
    example = (torch.randint(0, 50, (2, 5)), torch.rand(2, 5, 1))
    result = convert(source, to="keras", example_inputs=example, trust_code=True, route="auto", prefer="first",
                     measure_latency=False)
    roads = {r["road"]: r for r in result.roads}
    assert roads["direct"]["status"] == "passed" and roads["onnx"]["status"] == "passed", result.roads_text
    assert roads["onnx"]["hops"][0]["hop"] == "torch → ONNX" and roads["onnx"]["hops"][0]["rel_l2"] <= 1e-5


def test_a_script_neither_road_takes_names_both_reasons(tmp_path: Path) -> None:
    source = _save_script(_DictOfTensors(), tmp_path / "dicts.pt")
    done = run_cli("convert", str(source), "--trust-code", "--input-shape", "2,4", "-o", str(tmp_path / "o.keras"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "torch.export's TorchScript converter" in done.stderr and "the ONNX road" in done.stderr
    assert str(source) in done.stderr and "Traceback" not in done.stderr


def test_inspect_reads_a_trusted_torchscript_archive(tmp_path: Path) -> None:
    source = _save_script(_Warns(), tmp_path / "warns.pt")
    done = run_cli("inspect", str(source), "--trust-code", "--input-shape", "2,6", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["format"] == "torchscript"
    refused = run_cli("inspect", str(source), "--input-shape", "2,6")
    assert refused.returncode == 2 and "--trust-code" in refused.stderr
