"""Run a saved Keras model on another Keras backend, in a fresh process.

Keras fixes its backend when it is first imported, so comparing the TensorFlow, JAX and torch backends
(or devices) needs one process each. The worker speaks files: inputs from an `.npz` keyed by input
name, outputs to an `.npz` as output_0, output_1, ..., and one JSON line on stdout saying what ran
where and with which precision modes (TF32 and friends change results, so a report must state them).

    python -m porttax.parity.worker --model m.keras --inputs in.npz --outputs out.npz --backend jax
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
    parser.add_argument("--inputs", required=True, help=".npz keyed by input name")
    parser.add_argument("--outputs", required=True, help=".npz to write (output_0, output_1, ...)")
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="require this device (default: whatever the backend picks)")
    parser.add_argument("--capture", metavar="NPZ", help="also write every tapped layer output here")
    args = parser.parse_args(argv)

    # Must precede the first keras import anywhere in this process.
    os.environ["KERAS_BACKEND"] = args.backend
    try:
        info, outputs, taps = _run_model(Path(args.model), Path(args.inputs), args.backend, args.device,
                                         capture=bool(args.capture))
    except PorttaxError as exc:  # bad model or inputs: say so plainly, no framework traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _write_npz(Path(args.outputs), {f"output_{i}": o for i, o in enumerate(outputs)})
    if args.capture and taps is not None:
        _write_npz(Path(args.capture), {k.replace("/", "|"): v for k, v in taps.items()})
    print(json.dumps(info), flush=True)
    return 0


def _run_model(
    model_path: Path, inputs_path: Path, backend: str, device: str | None = None, capture: bool = False
) -> tuple[dict[str, Any], list[np.ndarray], dict[str, np.ndarray] | None]:
    if not model_path.exists():  # before the framework imports: a typo should fail in a second, not ten
        raise InputError("no such model file or directory", path=str(model_path))
    cases = load_npz_cases(inputs_path)
    if len(cases) != 1:
        raise InputError(f"the worker runs one case, got {len(cases)}", path=str(inputs_path))
    from porttax._frameworks import import_keras
    from porttax.parity.runners import KerasRunner, SavedModelRunner

    keras = import_keras()
    if keras.config.backend() != backend:
        raise InputError(f"keras was already imported with backend {keras.config.backend()!r}, not {backend!r}")
    # Frameworks may print (progress bars, export notes); keep stdout for our one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        runner: Runner
        if model_path.is_dir():
            if backend != "tensorflow":
                raise InputError("a SavedModel runs only with --backend tensorflow", path=str(model_path))
            runner = SavedModelRunner(model_path)
        else:
            runner = KerasRunner(model_path)
        where = device_name(backend)
        if device == "cuda" and where == "cpu":
            raise InputError(f"--device cuda, but Keras on {backend} sees no GPU",
                             hint="run on a machine with an NVIDIA GPU, or use --device cpu")
        outputs = runner.run(cases[0])
        taps = runner.capture(cases[0]) if capture else None
        info = {
            _INFO_KEY: 1,
            "backend": backend,
            "keras_version": keras.__version__,
            "device": where,
            "precision": precision_modes(backend),
            "output_names": runner.output_names,
            "captured": taps is not None,
        }
    return info, outputs, taps


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
    """Run the model in a fresh worker process on `backend`; return its outputs and its info line.

    With `capture`, the info gains "taps": every tapped layer output (see porttax.parity.taps).
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown Keras backend {backend!r}; valid: {', '.join(BACKENDS)}")
    env = worker_env(backend, device)
    with tempfile.TemporaryDirectory(prefix="porttax-worker-") as tmp:
        in_path, out_path = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        taps_path = Path(tmp) / "taps.npz"
        _write_npz(in_path, inputs)
        cmd = [sys.executable, "-m", "porttax.parity.worker", "--model", str(model_path),
               "--inputs", str(in_path), "--outputs", str(out_path), "--backend", backend]
        if device:
            cmd += ["--device", device]
        if capture:
            cmd += ["--capture", str(taps_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            raise WorkerError(f"{backend} worker on {model_path} timed out after {timeout:g} s"
                              f"{_tail(exc.stderr)}") from None
        if proc.returncode != 0:
            raise WorkerError(f"{backend} worker on {model_path} exited with {proc.returncode}{_tail(proc.stderr)}")
        info = _info_line(proc.stdout)
        if info is None or not out_path.is_file():
            raise WorkerError(f"{backend} worker on {model_path} wrote no result{_tail(proc.stderr)}")
        with np.load(out_path, allow_pickle=False) as data:
            outputs = [data[f"output_{i}"] for i in range(len(data.files))]
        if capture and taps_path.is_file():
            with np.load(taps_path, allow_pickle=False) as data:
                info["taps"] = {k.replace("|", "/"): data[k] for k in data.files}
    info.pop(_INFO_KEY, None)
    return outputs, info


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
    """A saved Keras model run on another backend through `run_in_worker`: a Runner for check_parity.

    Each `run()` starts a fresh process, so this suits a few parity cases, not benchmarking.
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

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs, self.info = run_in_worker(self.model_path, inputs, self.backend, self.timeout, device=self.device)
        self.output_names = self.info.get("output_names")
        return outputs

    def capture(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        _, info = run_in_worker(self.model_path, dict(inputs), self.backend, self.timeout, device=self.device,
                                capture=True)
        return info.get("taps")

    @property
    def device_label(self) -> str:
        return str(self.info.get("device", "cpu"))


if __name__ == "__main__":
    sys.exit(main())
