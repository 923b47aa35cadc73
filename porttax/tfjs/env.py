"""The two environments the TensorFlow.js target needs, created on demand and cached.

**The converter runs in a virtual environment of its own.** `tensorflowjs` 4.22.0 on PyPI imports
TensorFlow Decision Forests unconditionally, and TF-DF pins one TensorFlow release (2.19.0 for TF-DF
1.12); porttax runs on TensorFlow 2.21. One environment cannot hold both, and two TensorFlows cannot
share a process, so porttax writes a SavedModel with its own TensorFlow and hands it to
`tensorflowjs_converter` in a child process of a separate virtual environment: `tfjs-env-<version>`
under porttax's cache folder (`$XDG_CACHE_HOME/porttax`, default `~/.cache/porttax`), with the pins in
`requirements.txt` beside this file. `PORTTAX_TFJS_PYTHON` names an interpreter that already has
`tensorflowjs` instead. Installing it downloads TensorFlow 2.19 once (about 600 MB); pip's progress is
shown while it runs.

**Graph models run in Node.js** on TF.js's pure-JavaScript CPU backend (`@tensorflow/tfjs-core`,
`-converter`, `-backend-cpu` from npm, the packages `@tensorflow/tfjs` bundles, pinned by the
`package-lock.json` beside this file and installed with `npm ci` into `tfjs-node-<version>` in the
same cache folder, because an installed porttax's own folder may not be writable). `@tensorflow/tfjs-node`
is not used: its install downloads libtensorflow from Google's storage rather than from a package
registry. `PORTTAX_TFJS_NODE` names the `node` binary (default: `node` on PATH; Node.js ≥ 18).

Each environment is built under a file lock and marked ready only when complete (with a hash of its
pins), so an interrupted install is redone on next use rather than half-used. `scripts/setup.sh`
prepares both (`python -m porttax.tfjs.env`); a run that finds them missing creates them itself.
Failures are `InputError`s (exit 2) that say what to install or which variable to set.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Iterator

from porttax.errors import InputError
from porttax.progress import Progress
from porttax.tfjs import HERE, TFJS_VERSION

PYTHON_ENV = "PORTTAX_TFJS_PYTHON"
NODE_ENV = "PORTTAX_TFJS_NODE"
MIN_NODE = 18
READY = "porttax-ready.json"
_NODE_FILES = ("package.json", "package-lock.json")


@dataclass(frozen=True)
class NodeRuntime:
    """What it takes to run `run_graph_model.mjs`: a node binary and the folder holding node_modules."""

    node: str
    modules: Path
    version: str = ""  # `node --version`, for reports
    script: Path = HERE / "run_graph_model.mjs"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "porttax"


def converter_env_dir() -> Path:
    return cache_root() / f"tfjs-env-{TFJS_VERSION}"


def node_modules_dir() -> Path:
    return cache_root() / f"tfjs-node-{TFJS_VERSION}"


def _default_progress(progress: Progress | None) -> Progress:
    """Installing takes minutes and uses the network: say so even where the caller passed no progress."""
    return progress if progress is not None else Progress(enabled=True)


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _ready(folder: Path, digest: str) -> bool:
    try:
        return json.loads((folder / READY).read_text()).get("sha256") == digest
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(folder: Path, progress: Progress) -> Iterator[None]:
    """One creator at a time: a second porttax process waits for the first, then finds the env ready."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        handle = open(folder.with_name(folder.name + ".lock"), "w")
    except OSError as exc:
        raise InputError(f"cannot create porttax's cache folder: {exc.strerror or exc}", path=str(folder.parent),
                         hint="set XDG_CACHE_HOME to a writable folder") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.stage(f"waiting for another porttax process to finish preparing {folder}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_logged(cmd: list[str], log: Path, progress: Progress, cwd: Path | None = None) -> str | None:
    """Run an installer, its output shown on stderr (when progress is on) and kept in `log`; the
    reason it failed (its last lines), or None when it succeeded."""
    with open(log, "w") as out:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", env=dict(os.environ, PYTHONUNBUFFERED="1"))
        except OSError as exc:
            return f"cannot run {cmd[0]}: {exc.strerror or exc}"
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                if progress.enabled:
                    print(f"  {line.rstrip()}", file=progress.stream, flush=True)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
    if code == 0:
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "npm error", "npm ERR"))]
    return " | ".join((errors or lines)[-3:])[:600] or f"exit {code}"


# --- the converter's Python ---------------------------------------------------------------------------


def converter_python(progress: Progress | None = None) -> Path:
    """A Python interpreter that has `tensorflowjs` (TFJS_VERSION): `PORTTAX_TFJS_PYTHON`, or porttax's
    cached virtual environment, created now if missing."""
    override = os.environ.get(PYTHON_ENV)
    if override:
        return _checked_override(override)
    folder = converter_env_dir()
    requirements = HERE / "requirements.txt"
    digest = _digest(requirements)
    python = folder / "bin" / "python"
    if _ready(folder, digest) and python.exists():
        return python
    progress = _default_progress(progress)
    with _locked(folder, progress):
        if not (_ready(folder, digest) and python.exists()):
            _create_converter_env(folder, requirements, digest, progress)
    return python


@cache
def _checked_override(override: str) -> Path:
    python = Path(override)
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise InputError(f"{PYTHON_ENV} names no executable Python", path=override,
                         hint=f"point {PYTHON_ENV} at a Python with tensorflowjs=={TFJS_VERSION} installed, or "
                         "unset it to let porttax create its own environment")
    probe = ("import importlib.metadata as m, importlib.util as u; "
             "print(m.version('tensorflowjs') if u.find_spec('tensorflowjs') else '')")
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{PYTHON_ENV} cannot be run: {exc}", path=override) from None
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        raise InputError(f"the Python in {PYTHON_ENV} has no tensorflowjs package", path=override,
                         hint=f"pip install tensorflowjs=={TFJS_VERSION} there, or unset {PYTHON_ENV}")
    return python


def _create_converter_env(folder: Path, requirements: Path, digest: str, progress: Progress) -> None:
    t0 = time.perf_counter()
    if folder.exists():  # left half-made by an interrupted install, or made from older pins
        shutil.rmtree(folder)
    log = folder.with_name(folder.name + ".log")
    progress.stage(f"creating the TensorFlow.js converter environment in {folder} (tensorflowjs {TFJS_VERSION} "
                   "with TensorFlow 2.19, separate from porttax's own TensorFlow; the first time downloads ~600 MB)")
    failure = _run_logged([sys.executable, "-m", "venv", str(folder)], log, progress)
    if failure is None:
        progress.stage(f"installing {requirements.name} into it with pip (log: {log})")
        failure = _run_logged([str(folder / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                               "-r", str(requirements)], log, progress)
    if failure is not None:
        shutil.rmtree(folder, ignore_errors=True)
        too_new = " (TensorFlow 2.19 has wheels for Python 3.9-3.12 only)" if sys.version_info >= (3, 13) else ""
        raise InputError(f"could not create the TensorFlow.js converter environment: {failure}", path=str(folder),
                         hint=f"check network access to PyPI and the full log in {log}; or install "
                         f"tensorflowjs=={TFJS_VERSION} in a Python of your own{too_new} and set {PYTHON_ENV} to it")
    seconds = time.perf_counter() - t0
    (folder / READY).write_text(json.dumps({"sha256": digest, "seconds": round(seconds, 1),
                                            "python": sys.version.split()[0]}))
    progress.stage(f"TensorFlow.js converter environment ready in {seconds:.0f} s")


# --- Node.js ---------------------------------------------------------------------------------------------


def node_binary() -> tuple[str, str]:
    """The `node` to run graph models with (`PORTTAX_TFJS_NODE`, else PATH), checked to be Node.js ≥ 18,
    and its version."""
    override = os.environ.get(NODE_ENV)
    node = override or shutil.which("node")
    if not node:
        raise InputError("running TensorFlow.js models needs Node.js, and no `node` is on PATH",
                         hint=f"install Node.js {MIN_NODE} or newer (e.g. apt-get install nodejs), or set {NODE_ENV}")
    return _checked_node(node, bool(override))


@cache
def _checked_node(node: str, override: bool) -> tuple[str, str]:
    where = f" (from {NODE_ENV})" if override else ""
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"cannot run Node.js{where}: {exc.strerror if isinstance(exc, OSError) else exc}", path=node,
                         hint=f"install Node.js {MIN_NODE} or newer, or point {NODE_ENV} at a working node") from None
    match = re.match(r"v(\d+)\.", done.stdout.strip())
    if done.returncode != 0 or not match:
        raise InputError(f"`{node} --version` did not report a Node.js version{where}", path=node,
                         hint=f"point {NODE_ENV} at a Node.js {MIN_NODE}+ binary")
    if int(match.group(1)) < MIN_NODE:
        raise InputError(f"Node.js {done.stdout.strip()} is too old for TF.js {TFJS_VERSION}{where}", path=node,
                         hint=f"install Node.js {MIN_NODE} or newer")
    return node, done.stdout.strip()


def node_runtime(progress: Progress | None = None) -> NodeRuntime:
    """Node.js and the pinned `@tensorflow/tfjs-*` packages, installed with `npm ci` if missing."""
    node, version = node_binary()
    folder = node_modules_dir()
    digest = _digest(*(HERE / f for f in _NODE_FILES))
    if not _ready(folder, digest):
        progress = _default_progress(progress)
        with _locked(folder, progress):
            if not _ready(folder, digest):
                _install_node_modules(folder, node, digest, progress)
    return NodeRuntime(node, folder, version)


def _install_node_modules(folder: Path, node: str, digest: str, progress: Progress) -> None:
    t0 = time.perf_counter()
    npm = shutil.which("npm", path=str(Path(node).parent)) or shutil.which("npm")
    if npm is None:
        raise InputError("installing the TF.js runtime needs npm, and none is on PATH",
                         hint="install npm (it ships with Node.js)")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in _NODE_FILES:
        shutil.copyfile(HERE / name, folder / name)
    log = folder.with_name(folder.name + ".log")
    progress.stage(f"installing @tensorflow/tfjs-core, -converter and -backend-cpu {TFJS_VERSION} with npm ci "
                   f"into {folder}")
    failure = _run_logged([npm, "ci", "--no-audit", "--no-fund", "--loglevel=http"], log, progress, cwd=folder)
    if failure is not None:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"could not install the TF.js runtime with npm: {failure}", path=str(folder),
                         hint=f"check network access to the npm registry and the full log in {log}")
    (folder / READY).write_text(json.dumps({"sha256": digest, "seconds": round(time.perf_counter() - t0, 1)}))
    progress.stage(f"TF.js runtime ready in {time.perf_counter() - t0:.0f} s")


def require_tfjs(progress: Progress | None = None) -> tuple[Path, NodeRuntime]:
    """Everything `--to tfjs` needs, checked (and created where missing) before any slow work:
    Node.js first (a quick check), then the converter environment, then the npm packages."""
    node_binary()
    return converter_python(progress), node_runtime(progress)


def main() -> int:
    """`python -m porttax.tfjs.env`: prepare both environments now (scripts/setup.sh runs this)."""
    from porttax.errors import PorttaxError

    progress = Progress(enabled=True)
    t0 = time.perf_counter()
    try:
        python, runtime = require_tfjs(progress)
    except PorttaxError as exc:
        print(f"porttax: {exc}", file=sys.stderr)
        return 2
    print(f"porttax: TensorFlow.js ready in {time.perf_counter() - t0:.0f} s: converter {python}, "
          f"node {runtime.node}, packages in {runtime.modules}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
