"""One model's audit, run inside its own worker process: inspect → convert (every road that applies)
→ parity → benchmark. Whatever goes wrong becomes the row's status and reason; nothing here raises
for a bad model, so one model can never stop an audit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from porttax.audit.rows import AuditRow, Measurements, RoadResult, WorkItem
from porttax.errors import PorttaxError, UnsupportedError
from porttax.tax import size_on_disk

# --to for PyTorch and ONNX sources; a Keras / SavedModel source always goes to torch (.pt2)
TARGET_SUFFIX = {"keras": ".keras", "savedmodel": "", "onnx": ".onnx", "tflite": ".tflite", "executorch": ".pte",
                 "tfjs": "", "torch": ".pt2"}


def target_for(framework: str, to: str) -> str:
    if framework == "keras":  # Keras models port to torch, or ship to a runtime of their own
        return to if to in ("tflite", "executorch", "tfjs") else "torch"
    if framework == "onnx" and to == "onnx":
        return "torch"
    return to


def run_job(spec: dict[str, Any]) -> AuditRow:
    """The row for one model. `spec`: path, name, content_hash, options (see audit.run.job_spec)."""
    t0 = time.perf_counter()
    path = Path(spec["path"])
    opts = spec["options"]
    row = AuditRow(model=spec["name"], format="unknown", direction="", status="error", content_hash=spec["content_hash"])
    try:
        _run(row, path, opts)
    except PorttaxError as exc:
        row.status, row.reason = "error", _one_line(exc)
    row.measurements.audit_seconds = time.perf_counter() - t0
    return row


def _run(row: AuditRow, path: Path, opts: dict[str, Any]) -> None:
    from porttax.inspection import inspect_model, sniff_format

    row.format = sniff_format(path) if path.exists() else "unknown"
    row.source_bytes = size_on_disk(path) if path.exists() else None
    load = {k: opts.get(k) for k in ("arch", "config", "trust_pickle", "input_shapes", "input_dtypes")}
    load["trust_pickle"] = bool(load["trust_pickle"])
    insp = inspect_model(path, trust_code=bool(opts.get("trust_code")), **load)
    row.format, row.dtypes = insp.format, insp.dtypes
    _fill_coverage(row, insp, converted=False)  # what a row that stops here still knows
    target = target_for(insp.framework, opts["to"])
    row.direction = f"{insp.framework}→{target}"

    with tempfile.TemporaryDirectory(prefix="porttax-audit-") as scratch:
        output = Path(opts["keep_dir"]) / _output_name(row.model, target) if opts.get("keep_dir") else \
            Path(scratch) / f"converted{TARGET_SUFFIX[target]}"
        if output.suffix == "" and target in ("savedmodel", "tfjs"):
            output = output.with_name(f"{output.name}_{target}")
        result = _convert(row, path, target, output, insp, opts, load)
        if result is None:
            return
        for device in opts.get("devices", ["cpu"]):
            if device != "cpu":
                row.devices[device] = _device_parity(device, path, result.output, insp, opts, load)
        if opts.get("bench", True):
            _bench_memory(row, path, result.output, insp, opts, load)


def _convert(row: AuditRow, path: Path, target: str, output: Path, insp: Any, opts: dict[str, Any],
             load: dict[str, Any]) -> Any:
    from porttax import targets
    from porttax.conversion import convert

    roads = [r for r in opts["roads"] if r in ("direct", "onnx")]
    route = "auto" if len(roads) > 1 else (roads[0] if roads else "direct")
    way = targets.resolve(target).ways.get("torch")
    takes_route = insp.framework == "torch" and way is not None and "route" in way.options
    if not takes_route:
        route = "direct"  # the only road from a Keras or ONNX source, or to a torch-family file
    try:
        result = convert(str(path), to=target, output=output, prefer="first",
                         **({"route": route} if takes_route else {}),
                         seeds=tuple(range(opts["seeds"])), profile=opts["profile"],
                         measure_latency=bool(opts.get("bench", True)), force=True,
                         trust_code=bool(opts.get("trust_code")), **({} if insp.framework == "keras" else load))
    except UnsupportedError as exc:
        row.roads = [_road(r) for r in getattr(exc, "roads", None) or [{"road": route, "status": "not converted",
                                                                         "reason": _one_line(exc)}]]
        row.status = "unsupported"
        row.reason = "no road converts it: " + "; ".join(f"{r.road}: {r.reason}" for r in row.roads) \
            if len(row.roads) > 1 else _one_line(exc)
        _fill_coverage(row, insp, converted=False)
        row.manual_work = _work_items(insp, exc)
        return None
    row.road = next((r["road"] for r in result.roads or [] if r.get("chosen")), route)
    row.roads = [_road(r) for r in result.roads] if result.roads else [
        RoadResult(route, "passed" if result.passed else "failed parity", chosen=True)]
    _fill_coverage(row, insp, converted=True)
    tax = result.tax
    row.status = "converted" if result.passed else "drifted"
    if not result.passed:
        row.reason = result.parity.summary_line() if result.parity is not None else "parity failed"
    row.drift_rel_l2, row.drift_max_abs, row.top1_agreement = tax.drift_rel_l2, tax.drift_max_abs, tax.top1_agreement
    row.drift_ratio = tax.drift_ratio
    row.first_diverging_layer = result.parity.first_divergent if result.parity is not None else None
    row.transposes_inserted = tax.transposes_inserted if insp.framework != "keras" else None
    row.converted_bytes = tax.output_bytes if tax.output_bytes is not None else (
        size_on_disk(result.output) if result.output else None)
    m = row.measurements
    m.conversion_seconds, m.conversion_peak_rss_mb = tax.conversion_seconds, tax.peak_rss_mb
    m.source_latency_ms, m.converted_latency_ms = tax.latency_source_ms, tax.latency_converted_ms
    for road, record in zip(row.roads, result.roads or []):
        road.latency_ms = record.get("latency_ms")
    return result


def _device_parity(device: str, source: Path, converted: Path, insp: Any, opts: dict[str, Any],
                   load: dict[str, Any]) -> dict[str, Any]:
    """Parity of source and converted model both on `device`, under the GPU profile (TF32 by default:
    cuDNN convolutions use it unless told otherwise), with the precision modes the report found."""
    from porttax.parity import check_parity
    from porttax.parity.open import OpenOptions, cuda_available, open_pair
    entry: dict[str, Any] = {"profile": opts.get("gpu_profile", "tf32")}
    if device == "cuda" and not cuda_available():
        return entry | {"status": "not available", "reason": "torch sees no CUDA device on this worker"}
    keras_backend = "torch"  # Keras runs on CUDA through its torch backend (TensorFlow here is CPU-only)
    src_opts = OpenOptions(**({} if insp.framework == "keras" else load), device=device,
                           backend=keras_backend if insp.framework == "keras" else None)
    conv_opts = OpenOptions(device=device, backend=keras_backend if converted.suffix == ".keras" else None)
    try:
        src, conv = open_pair(str(source), str(converted), src_opts, conv_opts)
        report = check_parity(src, conv, seeds=tuple(range(opts["seeds"])), profile=entry["profile"])
    except PorttaxError as exc:
        return entry | {"status": "error", "reason": _one_line(exc)}
    env = report.environment if isinstance(getattr(report, "environment", None), dict) else {}
    return entry | {"status": "passed" if report.passed else "failed parity", "drift_rel_l2": report.worst_rel_l2,
                    "precision": {k: env[k] for k in ("torch", "keras", "jax") if k in env},
                    "warnings": list(report.warnings)}


def _fill_coverage(row: AuditRow, insp: Any, *, converted: bool) -> None:
    """Converted by some road: everything was converted automatically. Not converted: what the
    direct road's registry covers, the layers around the missing ops."""
    direct = insp.road("direct")
    if direct is None:
        return
    row.layers_total, row.params_total = direct.layers_total, direct.params_total
    row.layers_covered = direct.layers_total if converted else direct.layers_covered
    row.params_covered = direct.params_total if converted else direct.params_covered


def _work_items(insp: Any, exc: Exception) -> list[WorkItem]:
    direct = insp.road("direct")
    items = [WorkItem(o.op, o.count, list(o.where), "direct") for o in (direct.unsupported if direct else [])]
    if not items:  # the registries cover every op, but a converter refused this use of one
        items = [WorkItem("conversion refused", 1, [_one_line(exc)[:200]], "direct")]
    return items


def _road(d: dict[str, Any]) -> RoadResult:
    return RoadResult(road=d.get("road", "?"), status=d.get("status", "not converted"),
                      drift_rel_l2=d.get("drift_rel_l2"), transposes=d.get("transposes"),
                      latency_ms=d.get("latency_ms"), reason=d.get("reason"), chosen=bool(d.get("chosen")))


def _one_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, PorttaxError) else str(exc)
    first = " ".join(line.strip() for line in text.strip().splitlines()[:3] if line.strip())
    return first[:400]


def _output_name(model: str, target: str) -> str:
    stem = model.replace(os.sep, "__").replace("/", "__")
    return f"{stem}{TARGET_SUFFIX[target]}"


# ---------------------------------------------------------------- memory, each side in its own process


def _bench_memory(row: AuditRow, source: Path, converted: Path, insp: Any, opts: dict[str, Any],
                  load: dict[str, Any]) -> None:
    m: Measurements = row.measurements
    common = {"specs": insp.inputs, "threads": opts.get("threads", 1), "load": load}
    for side, path in (("source", source), ("converted", converted)):
        reading = measure_in_child({"path": str(path), "side": side, **common})
        if reading is not None:
            setattr(m, f"{side}_memory_mb", reading["memory_mb"])
            setattr(m, f"{side}_load_seconds", reading["load_seconds"])


def measure_in_child(spec: dict[str, Any], timeout: float = 600) -> dict[str, Any] | None:
    """Load and run one model in a fresh process; its peak RSS growth over the framework baseline."""
    with tempfile.TemporaryDirectory(prefix="porttax-bench-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec))
        done = subprocess.run([sys.executable, "-m", "porttax.audit.worker", "memory", str(spec_file), str(out_file)],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not out_file.exists():
            return None
        return json.loads(out_file.read_text())


def measure_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child: import the frameworks, reset the peak-RSS mark, load, run three times, read it."""
    from porttax._frameworks import import_keras, import_torch
    from porttax.parity import make_inputs
    from porttax.parity.open import OpenOptions, open_runner
    from porttax.tax import current_rss_mb, peak_rss_mb, reset_peak_rss
    from porttax.types import as_specs

    import_torch()
    import_keras()
    baseline = current_rss_mb()
    reset_peak_rss()
    t0 = time.perf_counter()
    load = {k: v for k, v in spec["load"].items() if v is not None} if spec["side"] == "source" else {}
    runner = open_runner(spec["path"], OpenOptions(**load))
    load_seconds = time.perf_counter() - t0
    specs = as_specs([dict(s, shape=[d if isinstance(d, int) else 1 for d in s["shape"]]) for s in spec["specs"]])
    inputs = make_inputs(specs, 0)
    for _ in range(3):
        runner.run(inputs)
    return {"memory_mb": max(0.0, peak_rss_mb() - baseline), "load_seconds": load_seconds}
