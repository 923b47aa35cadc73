"""Roads to Keras: direct, through ONNX, and `--route auto`, which checks every road and keeps the best."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import porttax
from porttax import cli, models
from porttax._frameworks import import_torch

torch = import_torch()


class NormRoll(torch.nn.Module):
    """Uses aten.linalg_vector_norm, which the direct torch → Keras mapping lacks; the ONNX exporter turns
    it into ReduceL2 (and the roll into Slice/Concat), which the ONNX road maps."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        y = self.fc(x)
        return torch.roll(y / torch.linalg.vector_norm(y, dim=-1, keepdim=True), shifts=2, dims=1)


def test_auto_takes_the_onnx_road_when_the_direct_one_fails(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module, x = NormRoll().eval(), torch.randn(2, 5, 8)
    with pytest.raises(porttax.errors.UnsupportedError, match="aten.linalg_vector_norm"):
        porttax.convert(module, example_inputs=(x,), to="keras", route="direct")
    out = tmp_path / "normroll_sm"
    result = porttax.convert(module, example_inputs=(x,), to="savedmodel", output=out, route="auto",
                             measure_latency=False)
    assert result.passed and out.is_dir()
    roads = {r["road"]: r for r in result.roads}
    assert roads["direct"]["status"] == "not converted" and "aten.linalg_vector_norm" in roads["direct"]["reason"]
    assert roads["onnx"]["chosen"] and roads["onnx"]["status"] == "passed"
    assert [h["hop"] for h in roads["onnx"]["hops"]] == ["torch → ONNX", "ONNX → Keras"]
    assert all(h["passed"] and h["rel_l2"] <= 1e-5 for h in roads["onnx"]["hops"])


def test_the_default_road_falls_back_to_onnx_where_the_direct_one_lacks_an_op(tmp_path: Path) -> None:
    """Without --route, a model the direct road refuses for an op it lacks (aten.linalg_vector_norm) converts
    through ONNX; the CLI says so in one line and the report keeps both attempts."""
    torch.manual_seed(0)
    pt2 = tmp_path / "normroll.pt2"
    torch.export.save(torch.export.export(NormRoll().eval(), (torch.randn(2, 5, 8),)), str(pt2))
    out, report = tmp_path / "normroll.keras", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "porttax.cli", "convert", str(pt2), "-o", str(out), "--no-latency",
                           "--report", str(report)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stderr.splitlines() if "the direct road has no converter for" in ln)
    assert "aten.linalg_vector_norm" in line and "trying the ONNX road" in line
    assert "roads tried (* kept):" in proc.stdout
    data = json.loads(report.read_text())
    roads = {r["road"]: r for r in data["roads"]}
    assert roads["direct"]["status"] == "not converted" and not roads["direct"]["chosen"]
    assert roads["onnx"]["chosen"] and data["parity"]["passed"]


def test_auto_checks_both_roads_and_keeps_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = models.build_checkpoint("resnet-tiny", tmp_path / "resnet.pt")
    report = tmp_path / "r.json"
    assert cli.main(["convert", str(ckpt), "-o", str(tmp_path / "r.keras"), "--route", "auto", "--no-latency",
                     "--report", str(report)]) == 0
    roads = json.loads(report.read_text())["roads"]
    assert sorted(r["road"] for r in roads) == ["direct", "onnx"]
    assert all(r["status"] == "passed" and r["drift_rel_l2"] <= 1e-5 for r in roads)
    assert sum(r["chosen"] for r in roads) == 1
    chosen = next(r for r in roads if r["chosen"])
    best = min(r["drift_rel_l2"] for r in roads)
    assert chosen["drift_rel_l2"] <= 2 * best  # least drift, or within 2x of it and faster
    assert "roads tried (* kept):" in capsys.readouterr().out


def test_onnx_route_alone(tmp_path: Path) -> None:
    module = models.build_model("encoder-tiny")
    result = porttax.convert(module, example_inputs=models.example_inputs("encoder-tiny", batch=2, seq=16),
                             to="keras", output=tmp_path / "e.keras", route="onnx", measure_latency=False)
    assert result.passed and [r["road"] for r in result.roads] == ["onnx"] and result.roads[0]["chosen"]


@pytest.mark.parametrize("source", ["checkpoint", "onnx"])
def test_onnx2tf_road_writes_a_checked_savedmodel(source: str, tmp_path: Path) -> None:
    ckpt = models.build_checkpoint("resnet-tiny", tmp_path / "resnet.pt")
    src = ckpt
    if source == "onnx":
        src = tmp_path / "resnet.onnx"
        assert cli.main(["convert", str(ckpt), "-o", str(src), "-q", "--no-latency"]) == 0
    out = tmp_path / "resnet_sm"
    report = tmp_path / "r.json"
    assert cli.main(["convert", str(src), "--to", "savedmodel", "--route", "onnx2tf", "-o", str(out), "-q",
                     "--no-latency", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["roads"][0]["road"] == "onnx2tf" and data["porting_tax"]["drift_rel_l2"] <= 1e-5
    hops = [h["hop"] for h in data["roads"][0]["hops"]]
    assert hops == ([] if source == "onnx" else ["torch → ONNX", "ONNX → SavedModel"])
    assert (out / "saved_model.pb").is_file() and not list(out.glob("*.tflite"))
    assert sorted(p.name for p in tmp_path.iterdir() if "porttax" in p.name) == []
    # the input keeps the source's NCHW layout: plain TensorFlow takes the same array torch takes
    from porttax._frameworks import import_tf

    tf = import_tf()
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.shape.as_list()[1] == 3  # channels first


def test_onnx2tf_road_refuses_other_targets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    assert cli.main(["convert", str(ckpt), "--route", "onnx2tf", "-o", str(tmp_path / "m.keras"), "-q"]) == 2
    assert "onnx2tf road writes a SavedModel" in capsys.readouterr().err
