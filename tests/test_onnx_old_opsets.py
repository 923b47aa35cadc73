"""ONNX files as other tools wrote them years ago: opsets 9-12 from torch's legacy (TorchScript) exporter.

They are upgraded to the registry's opset with onnx.version_converter, converted, and checked against
the original file in onnxruntime; the report says which opset the file had and what it became.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from porttax._frameworks import import_torch

torch = import_torch()


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8 * 9 * 9, 5)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        y = torch.nn.functional.max_pool2d(y, 2)
        y = torch.nn.functional.pad(y, (1, 1, 1, 1))  # Pad takes its pads as an attribute before opset 11
        y = torch.nn.functional.avg_pool2d(y, 2, stride=1)
        return self.fc(torch.flatten(torch.clamp(y, -1.0, 1.0), 1))  # Clip: min/max attributes before 11


def _legacy_export(path: Path, opset: int) -> Path:
    torch.manual_seed(0)
    net = _Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(net.eval(), (torch.randn(1, 3, 16, 16),), str(path), dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["logits"])
    return path


@pytest.mark.parametrize("opset", [9, 11, 12])
def test_an_old_opset_is_upgraded_converted_and_checked(tmp_path: Path, opset: int) -> None:
    import onnx

    src = _legacy_export(tmp_path / f"net{opset}.onnx", opset)
    assert onnx.load(str(src)).opset_import[0].version == opset
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "porttax.cli", "convert", str(src), "--to", "keras", "-o",
                           str(tmp_path / "net.keras"), "--no-latency", "--report", str(report)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"ONNX opset {opset} upgraded to 13 by onnx.version_converter" in done.stderr
    data = json.loads(report.read_text())
    assert data["source_opset"]["file_opset"] == opset and data["source_opset"]["converted_at"] == 13
    assert data["parity"]["passed"] and data["parity"]["source"].endswith(f"net{opset}.onnx")


def test_inspect_reads_an_old_opset_as_porttax_will_convert_it(tmp_path: Path) -> None:
    src = _legacy_export(tmp_path / "net9.onnx", 9)
    done = subprocess.run([sys.executable, "-m", "porttax.cli", "inspect", str(src), "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    road = next(r for r in data["roads"] if r["road"] == "direct")
    assert road["unsupported"] == [], road  # Pad-2 and Clip-6 arrive as Pad-13 and Clip-13


def test_legacy_exporter_names_convert_and_map_back(tmp_path: Path) -> None:
    """The legacy exporter names the input `input.1` and outputs by number: the converted model takes
    an identifier (`input_1`), the report maps it back, and `porttax parity` pairs the two."""
    torch.manual_seed(0)
    src = tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Net().eval(), (torch.randn(1, 3, 16, 16),), str(src), dynamo=False, opset_version=11)
    import onnx

    assert [i.name for i in onnx.load(str(src)).graph.input] == ["input.1"]
    out, report = tmp_path / "legacy_sm", tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "porttax.cli", "convert", str(src), "--to", "savedmodel", "-o", str(out),
                           "--no-latency", "--report", str(report)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["source_input_names"] == {"input_1": "input.1"} and data["parity"]["passed"]
    assert [i["name"] for i in data["inputs"]] == ["input_1"]
    done = subprocess.run([sys.executable, "-m", "porttax.cli", "parity", str(src), str(out), "-q", "--seeds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
