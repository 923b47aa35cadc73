"""Interruption and resource faults, in real processes: afterwards the output path holds nothing or a
complete artefact, never a torn one, and the exit code says what happened.

Each test runs `porttax convert` as a child process and does to it what a CI runner or a full disk
would: SIGINT and SIGTERM mid-write, a file-size limit (the kernel's EFBIG stands in for a full
disk), a directory it may not write, a second conversion racing for the same path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from porttax import models

TIMEOUT_S = 300


def _convert_cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "porttax.cli", "convert", str(src), "-o", str(out), "-q", "--no-latency",
            *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if "porttax-tmp" in p.name or "porttax-old" in p.name)


def _assert_clean_error(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "porttax:" in stderr, stderr


def _interrupt_while_writing(tmp_path: Path, sig: int) -> tuple[subprocess.CompletedProcess, Path]:
    """Start a conversion, wait until its temporary output exists, then send `sig`."""
    src = models.build_checkpoint("resnet-tiny", tmp_path / "resnet.pt")
    out = tmp_path / "out" / "resnet_sm"
    # with latency timing on, the temporary SavedModel sits checked-but-unpublished for two seconds or
    # more (parity, then about a second of timing per side), a window a signal cannot miss
    cmd = [a for a in _convert_cmd(src, out, "--to", "savedmodel", "--seeds", "5") if a != "--no-latency"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + TIMEOUT_S
    seen_tmp = False
    while time.monotonic() < deadline and proc.poll() is None:
        if out.parent.exists() and any("porttax-tmp" in p.name for p in out.parent.iterdir()):
            seen_tmp = True
            break
        time.sleep(0.02)
    assert seen_tmp, f"the conversion never started writing: {proc.communicate()[1][-2000:]}"
    time.sleep(0.2)  # inside the write, the parity check or the timing of the written artefact
    assert proc.poll() is None, "the conversion finished before it could be interrupted"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_conversion_leaves_nothing(tmp_path: Path, sig: int, code: int) -> None:
    result, out = _interrupt_while_writing(tmp_path, sig)
    assert result.returncode == code, result.stderr[-3000:]
    _assert_clean_error(result.stderr)
    assert "no output was written" in result.stderr
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_a_stop_whose_exception_was_swallowed_still_publishes_nothing(tmp_path: Path) -> None:
    """A signal handler's exception can land inside a finalizer or a library's blanket `except` and be
    lost (seen once in the SIGTERM test above: exit 0, output written). The handler also records the
    stop, and atomic_output refuses to publish after one."""
    from porttax.cli import Terminated
    from porttax.saving import atomic_output, request_stop

    out = tmp_path / "model.keras"
    request_stop(Terminated())
    try:
        with pytest.raises(Terminated):
            with atomic_output(out) as tmp:
                tmp.write_bytes(b"written after the signal")
    finally:
        request_stop(None)
    assert list(tmp_path.iterdir()) == []
    with atomic_output(out) as tmp:  # forgotten once the command is over
        tmp.write_bytes(b"next run")
    assert out.read_bytes() == b"next run"


def _env_without_bytecode_writes() -> dict[str, str]:
    """Under a file-size limit a child writes .pyc caches cut at the limit (CPython ignores the short
    write) and later imports fail with "marshal data too short": the limited child writes none."""
    return dict(_env(), PYTHONDONTWRITEBYTECODE="1")


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("target", ["keras", "savedmodel"])
def test_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path: Path, target: str) -> None:
    src = models.build_checkpoint("resnet-tiny", tmp_path / "resnet.pt")
    out = tmp_path / ("resnet.keras" if target == "keras" else "resnet_sm")
    # resnet-tiny's weights alone are larger than 40 kB, so the write of the artefact must fail
    result = subprocess.run(_convert_cmd(src, out, "--to", target, "--no-parity"), capture_output=True, text=True,
                            env=_env_without_bytecode_writes(), timeout=TIMEOUT_S,
                            preexec_fn=_limit_file_size(40_000))
    assert result.returncode == 2, result.stderr[-3000:]
    _assert_clean_error(result.stderr)
    assert "could not write the output" in result.stderr and str(out) in result.stderr
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def _convert_under_a_file_size_limit(tmp_path: Path, source: str, target: str, name: str
                                     ) -> tuple[subprocess.CompletedProcess, Path]:
    """resnet-tiny saved as `source`, converted `--to target` by a child whose files may not pass 40 kB."""
    import porttax

    checkpoint = models.build_checkpoint("resnet-tiny", tmp_path / "resnet.pt")
    src = tmp_path / f"resnet_src.{source}"
    porttax.convert(checkpoint, to=source, output=src, parity=False, measure_latency=False)
    out = tmp_path / name
    result = subprocess.run(_convert_cmd(src, out, "--to", target, "--no-parity"), capture_output=True, text=True,
                            env=_env_without_bytecode_writes(), timeout=TIMEOUT_S,
                            preexec_fn=_limit_file_size(40_000))
    return result, out


@pytest.mark.parametrize("source, target, name", [("onnx", "torch", "resnet.pt2"),
                                                  ("savedmodel", "state_dict", "resnet_weights.pt")])
def test_full_disk_under_torchs_zip_writer_is_a_clear_error_not_an_abort(tmp_path: Path, source: str,
                                                                          target: str, name: str) -> None:
    """torch.save / torch.export.save given a path finish their zip in a C++ destructor, which after a
    failed write throws and aborts the process (seen: SIGABRT in CI when the disk filled under a 2 GB
    .pt2). porttax hands them a file that holds the error, so the run ends with exit 2 instead."""
    result, out = _convert_under_a_file_size_limit(tmp_path, source, target, name)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    _assert_clean_error(result.stderr)
    assert "could not write the output" in result.stderr and str(out) in result.stderr
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_no_room_to_unpack_a_keras_file_is_named_as_such(tmp_path: Path) -> None:
    """Keras unpacks a .keras file's weights into the temporary folder before it reads them; without room
    there the error says so, not "custom layers need registering"."""
    result, out = _convert_under_a_file_size_limit(tmp_path, "keras", "state_dict", "resnet_weights.pt")
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    _assert_clean_error(result.stderr)
    assert "could not write its temporary files" in result.stderr and "TMPDIR" in result.stderr
    assert not out.exists()


def _without_dac_override() -> None:
    """As root, drop the capability to ignore file permissions, so a 0o555 directory really is read-only."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unwritable_output_directory(tmp_path: Path) -> None:
    src = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = subprocess.run(_convert_cmd(src, locked / "mlp.keras"), capture_output=True, text=True,
                                env=_env(), timeout=TIMEOUT_S, preexec_fn=_without_dac_override)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2, result.stderr[-3000:]
    _assert_clean_error(result.stderr)
    assert "not writable" in result.stderr and str(locked) in result.stderr
    assert list(locked.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("target", ["keras", "savedmodel"])
def test_two_conversions_racing_for_one_path(tmp_path: Path, target: str) -> None:
    src = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    out = tmp_path / ("mlp.keras" if target == "keras" else "mlp_sm")
    procs = [subprocess.Popen(_convert_cmd(src, out, "--to", target), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(2)]
    results = [(p.wait(timeout=TIMEOUT_S), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    _assert_clean_error(loser)
    assert "already exists" in loser or "appeared while converting" in loser
    assert _leftovers(tmp_path) == []
    # what is there is whole: it loads and passes parity against the source
    check = subprocess.run([sys.executable, "-m", "porttax.cli", "parity", str(src), str(out), "-q"],
                           capture_output=True, text=True, env=_env(), timeout=TIMEOUT_S)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted([path] if path.is_file() else path.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(path.parent).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def test_existing_output_is_untouched_without_force(tmp_path: Path) -> None:
    src = models.build_checkpoint("mlp-tiny", tmp_path / "mlp.pt")
    out = tmp_path / "mlp.keras"
    out.write_bytes(b"someone else's model")
    before = _tree_digest(out)
    result = subprocess.run(_convert_cmd(src, out), capture_output=True, text=True, env=_env(), timeout=TIMEOUT_S)
    assert result.returncode == 2
    _assert_clean_error(result.stderr)
    assert "--force" in result.stderr
    assert _tree_digest(out) == before
    forced = subprocess.run(_convert_cmd(src, out, "--force"), capture_output=True, text=True, env=_env(),
                            timeout=TIMEOUT_S)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert _tree_digest(out) != before and _leftovers(tmp_path) == []


# --- reproducibility: the same input converts to the same weights -----------------------------------

def _keras_weight_digest(path: Path) -> str:
    from porttax.sources.keras_source import load_keras_file

    model = load_keras_file(path)
    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.path.encode())
        h.update(np.ascontiguousarray(np.asarray(w.numpy())).tobytes())
    return h.hexdigest()


def _safetensors_digest(path: Path) -> str:
    from safetensors.numpy import load_file

    h = hashlib.sha256()
    for name, array in sorted(load_file(str(path)).items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def test_converting_twice_gives_identical_weights(tmp_path: Path) -> None:
    from porttax.cli import main

    src = models.build_checkpoint("llama-tiny", tmp_path / "llama.pt")
    keras_digests, torch_digests = [], []
    for run in range(2):
        k = tmp_path / f"run{run}.keras"
        assert main(["convert", str(src), "-o", str(k), "-q", "--no-latency", "--no-parity"]) == 0
        keras_digests.append(_keras_weight_digest(k))
        st = tmp_path / f"run{run}.safetensors"
        assert main(["convert", str(tmp_path / "run0.keras"), "-o", str(st), "-q", "--no-latency",
                     "--no-parity"]) == 0
        torch_digests.append(_safetensors_digest(st))
    assert keras_digests[0] == keras_digests[1]
    assert torch_digests[0] == torch_digests[1]
    # the weights file itself is byte-identical too, so CI can cache artefacts by file hash
    files = [(tmp_path / f"run{run}.safetensors").read_bytes() for run in range(2)]
    headers = [f[8:8 + int.from_bytes(f[:8], "little")].decode() for f in files]
    assert headers[0] == headers[1]
    assert files[0] == files[1]
