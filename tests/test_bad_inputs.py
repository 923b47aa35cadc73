"""Every case of the bad-input catalog (tests/bad_inputs.py), checked for all a user could observe.

Exit code 2; one short paragraph that names the file (and the tensor, member or layer where there is
one) and says what to do; no Python traceback; nothing at the output path; no temporary files left
behind; the canary a hostile payload would create does not exist; done within a time bound. Then the
trust flags: a payload runs only when the user says they trust the file. And numerical poison: NaN
or Inf in weights or inputs never yields "parity passed".
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from porttax import cli, models
from porttax._frameworks import import_torch
from bad_inputs import CANARY, CASES, Case, Payload, lambda_keras

TIME_BOUND_S = 60
MAX_MESSAGE_LINES = 6


def _temp_leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if "porttax" in p.name}


def _error_paragraph(stderr: str) -> str:
    assert "porttax: error:" in stderr, stderr[-2000:]
    return stderr[stderr.index("porttax: error:"):].strip()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.family}-{c.name}" for c in CASES])
def test_bad_input_is_refused_cleanly(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "case"
    folder.mkdir()
    argv, culprit = case.build(folder)
    before_files = {p for p in folder.rglob("*")}
    before_temp = _temp_leftovers()
    capsys.readouterr()
    start = time.monotonic()
    code = cli.main(argv)
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err

    assert code == case.code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    message = _error_paragraph(err)
    assert str(culprit) in message, message
    for word in case.says:
        assert word in message, f"{word!r} not named in: {message}"
    assert "What to do:" in message, message
    lines = message.splitlines()
    assert len(lines) <= MAX_MESSAGE_LINES and "" not in lines, message
    assert not (folder / CANARY).exists(), "a payload from the file ran"
    assert not (folder / "out.keras").exists() and not (folder / "out.pt2").exists()
    assert {p for p in folder.rglob("*")} == before_files, "files were added or removed"
    assert _temp_leftovers() <= before_temp
    assert elapsed < TIME_BOUND_S


def test_catalog_covers_every_family_with_forty_cases() -> None:
    counts = Counter(c.family for c in CASES)
    assert sum(counts.values()) >= 40
    assert set(counts) == {"safetensors", "pickle", "keras", "onnx", "hf", "cli"}
    assert len({c.name for c in CASES}) == len(CASES)


# --- trust flags: a payload runs only when the user says so ---------------------------------------------

def test_pickle_payload_runs_only_with_trust_pickle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch = import_torch()
    canary = tmp_path / CANARY
    payload = tmp_path / "payload.pt"
    torch.save(Payload(canary), payload)
    assert cli.main(["convert", str(payload), "-o", str(tmp_path / "a.keras"), "-q"]) == 2
    assert not canary.exists()
    assert "--trust-pickle" in capsys.readouterr().err
    # with the flag, torch.load runs the pickle: the payload creates the canary; porttax then finds
    # the object is no model and still refuses it with exit 2
    assert cli.main(["convert", str(payload), "-o", str(tmp_path / "b.keras"), "-q", "--trust-pickle"]) == 2
    assert canary.exists()
    assert not (tmp_path / "b.keras").exists()


def test_keras_lambda_runs_only_with_trust_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    canary = tmp_path / CANARY
    archive = lambda_keras(tmp_path, canary)
    assert cli.main(["convert", str(archive), "-o", str(tmp_path / "a.pt2"), "-q"]) == 2
    assert not canary.exists()
    assert "--trust-code" in capsys.readouterr().err
    cli.main(["convert", str(archive), "-o", str(tmp_path / "b.pt2"), "-q", "--trust-code"])
    assert canary.exists()


# --- numerical poison: NaN / Inf never pass ---------------------------------------------------------------

@pytest.mark.parametrize("poison", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_poisoned_weights_never_pass_parity(poison: float, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch = import_torch()
    ckpt = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k, v in state.items() if v.dtype.is_floating_point and v.dim() == 2)
    state[key][0, 0] = poison
    torch.save(state, ckpt)
    code = cli.main(["convert", str(ckpt), "-o", str(tmp_path / "mlp.keras"), "-q", "--no-latency"])
    out = capsys.readouterr().out
    assert code == 1
    assert "PASS" not in out and "FAIL" in out


def test_poisoned_inputs_never_pass_parity(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    example = models.example_inputs("mlp-tiny", batch=2)[0].numpy()
    example[0, 0] = np.nan
    cases = tmp_path / "cases.npz"
    np.savez(cases, x=example)
    code = cli.main(["parity", str(ckpt), str(ckpt), "--inputs", str(cases), "-q", "--json", str(tmp_path / "r.json")])
    assert code == 1
    assert '"passed": false' in (tmp_path / "r.json").read_text()


@pytest.mark.parametrize("name", ["st_overlapping_spans", "pickle_module_payload_untrusted", "keras_zip_bomb",
                                  "onnx_external_data_symlink_escape"])
def test_catalog_cases_in_a_real_process(name: str, tmp_path: Path) -> None:
    """The same observables from `python -m porttax.cli`, where framework logging and the real exit path apply."""
    from conftest import run_cli

    case = next(c for c in CASES if c.name == name)
    folder = tmp_path / "case"
    folder.mkdir()
    argv, culprit = case.build(folder)
    result = run_cli(*argv, timeout=TIME_BOUND_S * 3)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert str(culprit) in _error_paragraph(result.stderr)
    assert not (folder / CANARY).exists() and not (folder / "out.keras").exists()
