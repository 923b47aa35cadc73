"""Run a saved Keras model on another Keras backend, in a process of its own.

Keras fixes its backend when it is first imported, so comparing the TensorFlow, JAX and torch backends
(or devices) needs one process each. The worker loads the model once and then answers requests, one
JSON line on stdin each: inputs from an `.npz` keyed by input name, outputs to an `.npz` as output_0,
output_1, ..., and one JSON line on stdout saying what ran where and with which precision modes (TF32
and friends change results, so a report must state them). EOF ends it.

    python -m porttax.parity.worker --model m.keras --backend jax
    {"inputs": "in.npz", "outputs": "out.npz", "capture": null}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from porttax.errors import InputError, PorttaxError
from porttax.parity.inputs import load_npz_cases
from porttax.parity.runners import Runner
from porttax.types import Framework, TensorSpec

BACKENDS = ("tensorflow", "torch", "jax")
_INFO_KEY = "porttax_worker"  # marks our JSON line among anything else a framework prints to stdout


class WorkerError(RuntimeError):
    """The worker process failed; the message carries the tail of its stderr."""


def precision_modes(backend: str) -> dict[str, Any]:
    """The precision switches in force for `backend` (call after the framework is imported)."""
    if backend == "jax":
        import jax

        return {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
    if backend == "torch":
        from porttax._frameworks import import_torch

        torch = import_torch()
        return {"cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                "float32_matmul_precision": torch.get_float32_matmul_precision()}
    from porttax._frameworks import import_tf

    return {"tensor_float_32_execution": bool(import_tf().config.experimental.tensor_float_32_execution_enabled())}


def device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    if backend == "torch":
        from porttax._frameworks import import_torch

        torch = import_torch()
        return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    from porttax._frameworks import import_tf

    gpus = import_tf().config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write to a temporary sibling and rename, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m porttax.parity.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help=".keras file, or SavedModel dir with --backend tensorflow")
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="require this device (default: whatever the backend picks)")
    args = parser.parse_args(argv)

    # Must precede the first keras import anywhere in this process.
    os.environ["KERAS_BACKEND"] = args.backend
    return _serve(Path(args.model), args.backend, args.device)


def _load_runner(model_path: Path, backend: str, device: str | None) -> Runner:
    if not model_path.exists():  # before the framework imports: a typo should fail in a second, not ten
        raise InputError("no such model file or directory", path=str(model_path))
    from porttax._frameworks import import_keras
    from porttax.parity.runners import KerasRunner, SavedModelRunner

    keras = import_keras()
    if keras.config.backend() != backend:
        raise InputError(f"keras was already imported with backend {keras.config.backend()!r}, not {backend!r}")
    # Frameworks may print (progress bars, export notes); keep stdout for our JSON lines.
    with contextlib.redirect_stdout(sys.stderr):
        runner: Runner
        if model_path.is_dir():
            if backend != "tensorflow":
                raise InputError("a SavedModel runs only with --backend tensorflow", path=str(model_path))
            runner = SavedModelRunner(model_path)
        else:
            runner = KerasRunner(model_path)
        if device == "cuda" and device_name(backend) == "cpu":
            raise InputError(f"--device cuda, but Keras on {backend} sees no GPU",
                             hint="run on a machine with an NVIDIA GPU, or use --device cpu")
    return runner


def _run_case(runner: Runner, inputs_path: Path, backend: str,
              capture: bool) -> tuple[dict[str, Any], list[np.ndarray], dict[str, np.ndarray] | None]:
    cases = load_npz_cases(inputs_path)
    if len(cases) != 1:
        raise InputError(f"the worker runs one case, got {len(cases)}", path=str(inputs_path))
    from porttax._frameworks import import_keras

    with contextlib.redirect_stdout(sys.stderr):
        outputs = runner.run(cases[0])
        taps = runner.capture(cases[0]) if capture else None
        info = {
            _INFO_KEY: 1,
            "backend": backend,
            "keras_version": import_keras().__version__,
            "device": device_name(backend),
            "precision": precision_modes(backend),
            "output_names": runner.output_names,
            "captured": taps is not None,
        }
    return info, outputs, taps


def _serve(model_path: Path, backend: str, device: str | None) -> int:
    """Load once, then answer requests: each stdin line is JSON {"inputs", "outputs", "capture"} (paths);
    each answer is one JSON line on stdout, the info line or {"error": ...} for bad inputs. EOF ends the
    worker. A generation check calls the model once per step: one process for all of them, not one each."""
    try:
        runner = _load_runner(model_path, backend, device)
    except PorttaxError as exc:  # bad model: say so plainly (the caller shows stderr's tail), no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({_INFO_KEY: 1, "ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        request = json.loads(line)
        try:
            info, outputs, taps = _run_case(runner, Path(request["inputs"]), backend, bool(request.get("capture")))
        except PorttaxError as exc:
            print(json.dumps({_INFO_KEY: 1, "error": str(exc)}), flush=True)
            continue
        _write_npz(Path(request["outputs"]), {f"output_{i}": o for i, o in enumerate(outputs)})
        if request.get("capture") and taps is not None:
            _write_npz(Path(request["capture"]), {k.replace("/", "|"): v for k, v in taps.items()})
        print(json.dumps(info), flush=True)
    return 0


def worker_env(backend: str, device: str | None) -> dict[str, str]:
    """The worker's environment: its Keras backend, and no GPU at all when it must run on the CPU."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ log lines out of the stderr tail we report
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_in_worker(
    model_path: str | Path, inputs: Mapping[str, np.ndarray], backend: str, timeout: float = 600,
    *, device: str | None = None, capture: bool = False,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Run the model once in a fresh worker process on `backend`; return its outputs and its info line.

    With `capture`, the info gains "taps": every tapped layer output (see porttax.parity.taps).
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown Keras backend {backend!r}; valid: {', '.join(BACKENDS)}")
    worker = _ServedWorker(Path(model_path), backend, device, timeout)
    try:
        return worker.request(inputs, capture=capture)
    finally:
        worker.close()


def _info_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and _INFO_KEY in obj:
            return obj
    return None


def _tail(stderr: str | bytes | None, lines: int = 25) -> str:
    if not stderr:
        return " (no stderr)"
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    return "; stderr tail:\n" + "\n".join(stderr.rstrip().splitlines()[-lines:])


class WorkerRunner(Runner):
    """A saved Keras model run on another backend, in a worker process: a Runner for check_parity.

    The worker loads the model once and serves every later call (`_ServedWorker`), so a generation
    check of N steps costs one framework start, not N. `close()` ends it (so does garbage collection).
    """

    framework: Framework = "keras"

    def __init__(self, model_path: str | Path, input_names: Sequence[str], backend: str, *,
                 specs: Sequence[TensorSpec] | None = None, timeout: float = 600, device: str | None = None) -> None:
        if backend not in BACKENDS:
            raise InputError(f"unknown Keras backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.model_path, self.backend, self.timeout, self.device = Path(model_path), backend, timeout, device
        self.name = f"{self.model_path.name}@{backend}" + (f"/{device}" if device else "")
        self.layer_map: Any = None
        self.input_names = list(input_names)
        self.specs = list(specs) if specs is not None else None
        self.info: dict[str, Any] = {}
        self._worker: _ServedWorker | None = None

    def _served(self) -> "_ServedWorker":
        if self._worker is None or not self._worker.alive:
            self._worker = _ServedWorker(self.model_path, self.backend, self.device, self.timeout)
        return self._worker

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs, self.info = self._served().request(inputs)
        self.output_names = self.info.get("output_names")
        return outputs

    def capture(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        _, info = self._served().request(dict(inputs), capture=True)
        return info.get("taps")

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    @property
    def device_label(self) -> str:
        return str(self.info.get("device", "cpu"))


class _ServedWorker:
    """One `python -m porttax.parity.worker` process: requests by stdin line, files in a temp dir."""

    def __init__(self, model_path: Path, backend: str, device: str | None, timeout: float) -> None:
        self.model_path, self.backend, self.timeout = model_path, backend, timeout
        self._dir = tempfile.TemporaryDirectory(prefix="porttax-worker-")
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty framework cannot block it
        self._pending = b""
        cmd = [sys.executable, "-m", "porttax.parity.worker", "--model", str(model_path), "--backend", backend]
        if device:
            cmd += ["--device", device]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=worker_env(backend, device))
        try:
            self._answer()  # "ready"; a model that does not load ends the process (WorkerError, stderr's tail)
        except WorkerError:
            self.close()
            raise
        self._count = 0

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, inputs: Mapping[str, np.ndarray], capture: bool = False) -> tuple[list[np.ndarray], dict]:
        self._count += 1
        base = Path(self._dir.name) / f"r{self._count}"
        in_path, out_path, taps_path = (base.with_suffix(s) for s in (".in.npz", ".out.npz", ".taps.npz"))
        _write_npz(in_path, inputs)
        line = json.dumps({"inputs": str(in_path), "outputs": str(out_path),
                           "capture": str(taps_path) if capture else None}) + "\n"
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError(f"{self._what()} exited with {self.proc.poll()}{self._tail()}") from None
        info = self._answer()
        if "error" in info:
            raise InputError(info["error"], path=str(self.model_path))
        try:
            with np.load(out_path, allow_pickle=False) as data:
                outputs = [data[f"output_{i}"] for i in range(len(data.files))]
            if capture and taps_path.is_file():
                with np.load(taps_path, allow_pickle=False) as data:
                    info["taps"] = {k.replace("|", "/"): data[k] for k in data.files}
        finally:
            for p in (in_path, out_path, taps_path):
                p.unlink(missing_ok=True)
        info.pop(_INFO_KEY, None)
        return outputs, info

    def _answer(self) -> dict[str, Any]:
        """The worker's next JSON line of ours (other stdout lines are a framework's), within the timeout."""
        import selectors
        import time

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._pending:
                    raw, self._pending = self._pending.split(b"\n", 1)
                    info = _info_line(raw.decode(errors="replace"))
                    if info is not None:
                        return info
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    raise WorkerError(f"{self._what()} timed out after {self.timeout:g} s{self._tail()}")
                if sel.select(timeout=left):
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        code = self.proc.wait()
                        raise WorkerError(f"{self._what()} exited with {code}{self._tail()}")
                    self._pending += chunk

    def _what(self) -> str:
        return f"{self.backend} worker on {self.model_path}"

    def _tail(self) -> str:
        self._stderr.seek(0)
        return _tail(self._stderr.read()[-20000:])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            self.proc.stdout.close()  # type: ignore[union-attr]
        self._stderr.close()
        self._dir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
