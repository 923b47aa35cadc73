"""The command line as a user and a CI gate see it: outputs, messages and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from porttax import models
from porttax._frameworks import import_torch
from tests.conftest import run_cli

torch = import_torch()


def test_convert_state_dict_with_sidecar_config_to_savedmodel(tmp_path: Path) -> None:
    ckpt = models.build_checkpoint("llama-tiny", tmp_path / "llama.pt")
    out = tmp_path / "llama_sm"
    report = tmp_path / "report.json"
    proc = run_cli("convert", str(ckpt), "--to", "savedmodel", "-o", str(out), "--report", str(report),
                   "--no-latency")
    assert proc.returncode == 0, proc.stderr
    assert (out / "saved_model.pb").is_file()
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert data["porting_tax"]["drift_rel_l2"] <= 1e-5
    assert data["porting_tax"]["layers_mapped"] == data["porting_tax"]["layers_total"]
    assert len(data["parity"]["cases"]) == 3
    assert "porting tax" in proc.stdout and "PASS" in proc.stdout


def test_safetensors_with_arch_flag_to_keras(tmp_path: Path) -> None:
    ckpt = models.build_checkpoint("resnet-tiny", tmp_path / "weights.safetensors")
    models.sidecar_path(ckpt).unlink()  # no sidecar: the user must say what it is
    out = tmp_path / "m.keras"
    proc = run_cli("convert", str(ckpt), "-o", str(out), "--no-latency")
    assert proc.returncode == 2
    assert "--arch" in proc.stderr and not out.exists()
    proc = run_cli("convert", str(ckpt), "--arch", "resnet-tiny", "-o", str(out), "--no-latency")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(models.build_model("mlp-tiny"), path)
    out = tmp_path / "model.keras"
    proc = run_cli("convert", str(path), "--to", "keras", "-o", str(out), "--input-shape", "2,16")
    assert proc.returncode == 2
    assert "--trust-pickle" in proc.stderr
    assert "would run code" in proc.stderr
    assert not out.exists()
    proc = run_cli("convert", str(path), "--trust-pickle", "--to", "keras", "-o", str(out), "--no-latency")
    assert proc.returncode == 2 and "--input-shape" in proc.stderr
    spec = models.input_specs("mlp-tiny")[0]
    shape = ",".join(str(d) for d in spec.concrete_shape({"batch": 2}))
    proc = run_cli("convert", str(path), "--trust-pickle", "--to", "keras", "-o", str(out),
                   "--input-shape", shape, "--no-latency")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


def test_pt2_and_refusing_to_overwrite(tmp_path: Path) -> None:
    pt2 = tmp_path / "resnet.pt2"
    proc = run_cli("models", "build", "resnet-tiny", "-o", str(pt2))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "resnet_sm"
    assert run_cli("convert", str(pt2), "--to", "savedmodel", "-o", str(out), "--no-latency").returncode == 0
    stamp = (out / "saved_model.pb").stat().st_mtime_ns
    proc = run_cli("convert", str(pt2), "--to", "savedmodel", "-o", str(out), "--no-latency")
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (out / "saved_model.pb").stat().st_mtime_ns == stamp
    proc = run_cli("convert", str(pt2), "--to", "savedmodel", "-o", str(out), "--force", "--no-latency")
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in tmp_path.iterdir() if "porttax-tmp" in p.name or "porttax-old" in p.name]


def test_unsupported_op_names_it_and_writes_nothing(tmp_path: Path) -> None:
    class Spectral(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.special.bessel_j0(self.proj(x))  # a special function no converter has

    program = torch.export.export(Spectral().eval(), (torch.randn(2, 8),))
    pt2 = tmp_path / "spectral.pt2"
    torch.export.save(program, str(pt2))
    out = tmp_path / "spectral.keras"
    proc = run_cli("convert", str(pt2), "-o", str(out))
    assert proc.returncode == 2
    assert "aten.special_bessel_j0" in proc.stderr and "What to do" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [pt2]


@pytest.mark.parametrize("argv, needle", [
    (["convert", "missing.pt2", "-o", "x.keras"], "no such file"),
    (["convert", "{bad}", "-o", "x.keras"], "unknown model file type"),
])
def test_bad_input_exit_code_2(tmp_path: Path, argv: list[str], needle: str) -> None:
    if "{bad}" in argv:
        bad = tmp_path / "model.xyz"
        bad.write_text("nope")
        argv = [str(bad) if a == "{bad}" else a for a in argv]
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0 and "convert" in proc.stdout


def test_jit_savedmodel_is_xla_compiled_and_holds_parity(tmp_path: Path) -> None:
    ckpt = tmp_path / "llama.pt"
    models.build_checkpoint("llama-tiny", ckpt, seed=0)
    out = tmp_path / "llama_sm"
    proc = run_cli("convert", str(ckpt), "--to", "savedmodel", "--jit", "-o", str(out), "--seeds", "2", "--no-latency")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "PASS" in proc.stdout
    assert b"_XlaMustCompile" in (out / "saved_model.pb").read_bytes()  # the serving function is XLA-compiled
    refused = run_cli("convert", str(ckpt), "--to", "keras", "--jit", "-o", str(tmp_path / "m.keras"))
    assert refused.returncode == 2 and "SavedModel" in refused.stderr
