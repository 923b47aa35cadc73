"""Where audit jobs run: worker processes on this machine (default), or tasks on a Ray cluster.

Both run a model the same way, in a fresh `python -m porttax.audit.worker` process with a pinned
thread count and a time limit, so the executor changes where the work happens, never the numbers
(apart from the clock readings in `measurements`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from porttax.errors import InputError
from porttax.tax import available_memory_mb

Done = Callable[[dict[str, Any], dict[str, Any]], None]  # (spec, row dict)
BASE_MEMORY_MB = 1500.0  # torch + TensorFlow + Keras imported, nothing loaded
MEMORY_PER_MODEL_BYTE = 6.0  # source, converted model, written copy, parity buffers


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env[var] = str(threads)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def memory_need_mb(spec: dict[str, Any]) -> float:
    return BASE_MEMORY_MB + MEMORY_PER_MODEL_BYTE * float(spec.get("source_bytes") or 0) / 2**20


def failed_row(spec: dict[str, Any], status: str, reason: str) -> dict[str, Any]:
    from porttax.audit.rows import AuditRow
    from porttax.inspection import sniff_format

    path = Path(spec["path"])
    fmt = sniff_format(path) if path.exists() else "unknown"
    return AuditRow(model=spec["name"], format=fmt, direction="", status=status, reason=reason,
                    content_hash=spec["content_hash"]).to_dict()


_ACTIVE: set[int] = set()  # process groups of running workers, killed if the audit is interrupted
_ACTIVE_LOCK = threading.Lock()


def run_job_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Audit one model in its own worker process; a time-out or a crash becomes the row's status."""
    timeout = float(spec["options"]["timeout_s"])
    threads = int(spec["options"]["threads"])
    with tempfile.TemporaryDirectory(prefix="porttax-audit-job-") as tmp:
        spec_file, out_file, log_file = Path(tmp) / "spec.json", Path(tmp) / "row.json", Path(tmp) / "worker.log"
        spec_file.write_text(json.dumps(spec))
        with open(log_file, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "porttax.audit.worker", "job", str(spec_file), str(out_file)],
                                    stdout=log, stderr=subprocess.STDOUT, env=worker_env(threads),
                                    start_new_session=True)  # its own group: a time-out kills its children too
            with _ACTIVE_LOCK:
                _ACTIVE.add(proc.pid)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                return failed_row(spec, "timeout", f"ran past the {timeout:g} s limit per model (--timeout)")
            finally:
                with _ACTIVE_LOCK:
                    _ACTIVE.discard(proc.pid)
                _kill_group(proc.pid)  # stray grandchildren (memory probes) die with it
        if rc == 0 and out_file.exists():
            return json.loads(out_file.read_text())
        tail = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()][-3:]
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        return failed_row(spec, "crashed", f"the worker died ({how}): {' | '.join(tail)[-300:]}")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_active() -> None:
    with _ACTIVE_LOCK:
        for pid in list(_ACTIVE):
            _kill_group(pid)


class LocalExecutor:
    """`jobs` worker processes at a time, and no new one while free memory is below its estimate
    (one always runs, so a model larger than the estimate still gets its turn)."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)
        self._cond = threading.Condition()
        self._running = 0

    def _enter(self, need_mb: float) -> None:
        with self._cond:
            while self._running > 0 and available_memory_mb() < need_mb:
                self._cond.wait(timeout=1.0)
            self._running += 1

    def _leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def _one(self, spec: dict[str, Any]) -> dict[str, Any]:
        self._enter(memory_need_mb(spec))
        try:
            return run_job_process(spec)
        finally:
            self._leave()

    def run(self, specs: list[dict[str, Any]], done: Done) -> None:
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="porttax-audit")
        futures = {pool.submit(self._one, s): s for s in specs}
        try:
            for future in as_completed(futures):
                done(futures[future], future.result())
        except BaseException:
            for f in futures:
                f.cancel()
            kill_active()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Each model as a Ray task (needing `threads` CPUs and its memory estimate) that runs the same
    worker process on whichever node Ray picks. Model paths must be readable there (a shared file
    system): porttax sends paths, not bytes."""

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError("the Ray executor needs Ray", hint="pip install 'porttax[ray]'") from None
        self.address = address

    def run(self, specs: list[dict[str, Any]], done: Done) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, logging_level="ERROR", log_to_driver=False,
                         include_dashboard=False)
            except ConnectionError as exc:
                raise InputError(f"cannot reach a Ray cluster at {self.address!r}: {exc}",
                                 hint="start one with `ray start --head`, or pass --address HOST:PORT") from None
        try:
            task = ray.remote(run_job_process)
            # ask for the memory estimate, but never more than a task could get, or it would wait forever
            cap = 0.5 * float(ray.cluster_resources().get("memory", 0) or 0)
            refs = {}
            for spec in specs:
                threads = int(spec["options"]["threads"])
                need = min(memory_need_mb(spec) * 2**20, cap) if cap else 0
                opts = task.options(num_cpus=threads, memory=int(need), max_retries=0)
                refs[opts.remote(spec)] = spec
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    spec = refs.pop(ref)
                    try:
                        row = ray.get(ref)
                    except Exception as exc:  # the task itself failed (node lost, worker killed)
                        row = failed_row(spec, "crashed", f"the Ray task failed: {type(exc).__name__}: {exc}"[:400])
                    done(spec, row)
        finally:
            if started_here:
                ray.shutdown()


def make_executor(name: str, *, jobs: int = 1, address: str | None = None) -> Any:
    if name == "local":
        if address:
            raise InputError("--address applies to --executor ray")
        return LocalExecutor(jobs)
    if name == "ray":
        return RayExecutor(address)
    raise InputError(f"unknown executor {name!r}", hint="use local (default) or ray")
