"""`porttax.audit`: many models in, one porting-tax report out.

Per model: inspect → convert by every road that applies → parity → benchmark, each model in a worker
process of its own (see executors). Results are cached by the model's content hash, porttax's version
and the options that change them, so re-running after adding three models costs three models.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from porttax import __version__
from porttax.audit.discover import ModelEntry, content_hash, discover
from porttax.audit.effort import load_effort
from porttax.audit.executors import failed_row, make_executor
from porttax.audit.rows import AuditReport, AuditRow
from porttax.errors import InputError
from porttax.tax import size_on_disk

TARGETS = ("keras", "savedmodel", "onnx", "tflite", "executorch", "tfjs")
ROADS = ("direct", "onnx")
NOT_CACHED = ("timeout", "crashed")  # depend on the machine and the limit, not on the model


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "porttax" / "audit"


def audit(
    models: str | Path,
    *,
    to: str = "keras",
    roads: Sequence[str] = ROADS,
    seeds: int = 3,
    profile: str = "fp32",
    bench: bool = True,
    timeout_s: float = 900.0,
    jobs: int = 1,
    threads: int | None = None,
    executor: str = "local",
    address: str | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    effort: str | Path | None = None,
    trust_pickle: bool = False,
    trust_code: bool = False,
    keep_dir: str | Path | None = None,
    devices: Sequence[str] = ("cpu",),
    gpu_profile: str = "tf32",
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit a folder, glob or list file of models (any format porttax reads, either direction).

    PyTorch and ONNX sources go `to` Keras (or SavedModel, ONNX); Keras and SavedModel sources go to
    torch. One model failing never stops the audit: it becomes a row with its status and reason.
    `devices` adds parity checks of the kept road on CUDA (source and converted model both there,
    under `gpu_profile`), reported per row; CPU parity always runs.
    """
    if to not in TARGETS:
        raise InputError(f"unknown audit target {to!r}", hint=f"use one of: {', '.join(TARGETS)} "
                         "(Keras and SavedModel sources go to torch, or to tflite, executorch or tfjs)")
    unknown = [r for r in roads if r not in ROADS]
    if unknown or not roads:
        raise InputError(f"unknown road(s) {', '.join(unknown) or '(none given)'}", hint=f"use: {', '.join(ROADS)}")
    if bad := [d for d in devices if d not in ("cpu", "cuda")]:
        raise InputError(f"unknown device(s) {', '.join(bad)}", hint="use cpu, cuda or cpu,cuda")
    if seeds < 1 or timeout_s <= 0 or jobs < 1:
        raise InputError("--seeds and --jobs must be at least 1, --timeout positive")
    say = progress or (lambda message: None)
    effort_model = load_effort(effort)
    executor_impl = make_executor(executor, jobs=jobs, address=address)
    entries, skipped = discover(models)
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    options = {"to": to, "roads": list(roads), "seeds": seeds, "profile": profile, "bench": bench}
    if any(d != "cpu" for d in devices):  # only then part of the cache key: CPU-only results stay cached
        options |= {"devices": sorted(set(devices) | {"cpu"}), "gpu_profile": gpu_profile}
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if keep_dir is not None:
        Path(keep_dir).mkdir(parents=True, exist_ok=True)

    rows: dict[int, AuditRow] = {}
    specs: list[dict[str, Any]] = []
    say(f"auditing {len(entries)} model(s) from {models}" + (f", {len(skipped)} file(s) skipped" if skipped else ""))
    for index, entry in enumerate(entries):
        spec = _job_spec(entry, index, options, threads=threads, timeout_s=timeout_s, trust_pickle=trust_pickle,
                         trust_code=trust_code, keep_dir=keep_dir)
        if not entry.path.exists():  # no worker needed to say so
            rows[index] = AuditRow.from_dict(failed_row(spec, "error", f"no such file or directory: {entry.path}"))
            say(f"[{len(rows)}/{len(entries)}] {entry.name}: error (no such file)")
            continue
        cached = _read_cache(cache, spec["cache_key"]) if use_cache else None
        if cached is not None:
            cached.model, cached.cached = entry.name, True
            rows[index] = cached
            say(f"[{len(rows)}/{len(entries)}] {entry.name}: {cached.status} (cached)")
        else:
            specs.append(spec)

    def done(spec: dict[str, Any], row_dict: dict[str, Any]) -> None:
        row = AuditRow.from_dict(row_dict)
        rows[spec["index"]] = row
        if use_cache and row.status not in NOT_CACHED:
            _write_cache(cache, spec["cache_key"], row)
        say(f"[{len(rows)}/{len(entries)}] {row.model}: {_verdict(row)}")

    if specs:
        say(f"measuring {len(specs)} model(s) with the {executor} executor, {jobs if executor == 'local' else 'cluster'} "
            f"at a time, {threads} thread(s) each, {timeout_s:g} s limit per model")
        executor_impl.run(specs, done)
    ordered = [rows[i] for i in range(len(entries))]
    for row in ordered:
        row.effort_hours, row.effort_terms = effort_model.estimate(row)
    run_options = options | {"timeout_s": timeout_s, "executor": executor, "jobs": jobs, "threads": threads,
                             "models": str(models)}
    return AuditReport(rows=ordered, options=run_options, effort_formula=effort_model.formula,
                       effort_coefficients=effort_model.coefficients, effort_source=effort_model.source,
                       skipped=skipped, porttax_version=__version__,
                       created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                       jobs_run=len(specs))


def _job_spec(entry: ModelEntry, index: int, options: dict[str, Any], *, threads: int, timeout_s: float,
              trust_pickle: bool, trust_code: bool, keep_dir: str | Path | None) -> dict[str, Any]:
    digest = content_hash(entry.path)
    per_model = dict(entry.options)
    to = per_model.pop("to", options["to"])
    job_options = options | {"to": to} | per_model
    job_options["trust_pickle"] = bool(per_model.get("trust_pickle") or trust_pickle)
    job_options["trust_code"] = bool(per_model.get("trust_code") or trust_code)
    key_material = json.dumps({"content": digest, "porttax": __version__, "options": job_options}, sort_keys=True)
    source_bytes = size_on_disk(entry.path) if entry.path.exists() else 0
    return {
        "index": index, "path": str(entry.path), "name": entry.name, "content_hash": digest,
        "cache_key": hashlib.sha256(key_material.encode()).hexdigest(), "source_bytes": source_bytes,
        "options": job_options | {"threads": threads, "timeout_s": timeout_s,
                                  "keep_dir": str(keep_dir) if keep_dir is not None else None},
    }


def _read_cache(cache: Path, key: str) -> AuditRow | None:
    file = cache / key[:2] / f"{key}.json"
    try:
        return AuditRow.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or unreadable: measure again


def _write_cache(cache: Path, key: str, row: AuditRow) -> None:
    folder = cache / key[:2]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(row.to_dict()), encoding="utf-8")
        os.replace(tmp, folder / f"{key}.json")
    except OSError as exc:  # a cache that cannot be written costs time later, not this audit
        print(f"porttax: warning: cannot write the audit cache in {folder}: {exc}", file=sys.stderr)


def _verdict(row: AuditRow) -> str:
    if row.status in ("converted", "drifted"):
        drift = f"‖a−b‖/‖b‖ {row.drift_rel_l2:.1e}" if row.drift_rel_l2 is not None else "drift not measured"
        return f"{row.status} by the {row.road} road, {drift}"
    return f"{row.status}: {row.reason}"
