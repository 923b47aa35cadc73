"""The onnx2tf road: PyTorch (or ONNX) → ONNX → TensorFlow SavedModel by onnx2tf, under porttax's
rules: the SavedModel is written to a temporary sibling, checked against the source, and renamed
into place; parity and the porting tax are reported as on every other road.

onnx2tf 1.28.8 is the last release that installs beside TensorFlow 2.21 (1.29 pins 2.19); it imports
ai-edge-litert without declaring it, so porttax's `onnx2tf` extra lists both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from porttax.errors import InputError, UnsupportedError
from porttax.progress import QUIET, Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk

_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
TIMEOUT_S = 1800


def onnx2tf_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx2tf", "ai_edge_litert", "onnx_graphsurgeon"))


def run_onnx2tf(onnx_path: Path, out_dir: Path, *, name: str = "model") -> None:
    """Write the SavedModel onnx2tf makes of `onnx_path` into `out_dir` (tflite side files removed)."""
    if not onnx2tf_available():
        raise InputError("the onnx2tf road needs onnx2tf 1.28.8 and ai-edge-litert",
                         hint="pip install 'porttax[onnx2tf]'")
    with tempfile.TemporaryDirectory(prefix="porttax-onnx2tf-") as scratch:
        np.save(Path(scratch) / _SAMPLE, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run([sys.executable, "-m", "porttax.targets.onnx2tf_worker", str(onnx_path), str(out_dir)],
                                cwd=scratch, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    if result.returncode != 0 or not (out_dir / "saved_model.pb").is_file():
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        detail = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else "")
        raise UnsupportedError(f"{name}: onnx2tf could not convert the ONNX model: {detail.strip()[:300]}",
                               hint="try --route direct or --route onnx")
    for extra in out_dir.glob("*.tflite"):
        extra.unlink()


def convert_via_onnx2tf(src: Any, *, output: str | Path, parity: bool = True, seeds: Sequence[int] = (0, 1, 2),
                        profile: str = "fp32", reference: str = "auto", measure_latency: bool = True, force: bool = False,
                        progress: Progress | None = None, t0: float | None = None) -> Any:
    from porttax.targets import _check
    from porttax.types import ConversionResult
    from porttax.converters.mapping_log import MappingLog
    from porttax.parity import SavedModelRunner
    from porttax.parity.runners import OnnxRunner
    from porttax.types import Road
    from porttax.saving import atomic_output
    from porttax.targets.onnx import export_onnx

    progress = progress or QUIET
    t0 = time.perf_counter() if t0 is None else t0
    aten = [n for n in src.program.graph.nodes if n.op == "call_function"]
    tax = PortingTax(layers_total=len(aten), layers_mapped=len(aten), ops_total=len(aten), ops_folded=0)
    report = None
    hops: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="porttax-onnx2tf-road-") as folder:
        onnx_path = Path(src.path) if src.origin == "onnx" else Path(folder) / f"{src.name}.onnx"
        onnx_runner = OnnxRunner(onnx_path, name=f"{src.name}.onnx",
                                 rename=getattr(src, "onnx_input_names", None)) if src.origin == "onnx" else None
        if src.origin != "onnx":
            progress.stage("exporting to ONNX (onnx2tf road)")
            export_onnx(src.program, src.example, onnx_path, name=src.name)
            onnx_runner = OnnxRunner(onnx_path, name=f"{src.name}.onnx")
            if parity:
                hops.append(_hop("torch → ONNX", _check.source_runner(src), onnx_runner, src, seeds, profile, reference))
        with atomic_output(output, force=force) as tmp:
            progress.stage(f"converting ONNX with onnx2tf to {output}")
            staging = Path(folder) / "saved_model"
            run_onnx2tf(onnx_path, staging, name=src.name)
            shutil.move(str(staging), str(tmp))
            tax.conversion_seconds = time.perf_counter() - t0
            tax.peak_rss_mb = peak_rss_mb()
            tax.output_bytes = size_on_disk(tmp)
            runner = SavedModelRunner(tmp, name=f"{src.name} (onnx2tf SavedModel)")
            if parity and src.origin != "onnx":
                hops.append(_hop("ONNX → SavedModel", onnx_runner, runner, src, seeds, profile, reference))
            report = _check.run_parity(src, runner, seeds, profile, progress, reference) if parity else None
            if measure_latency:
                _check.time_both(src, runner, tax, progress)
    road = Road("onnx2tf", status="passed" if report is None or report.passed else "failed parity",
                coverage=f"{len(aten)}/{len(aten)}", chosen=True, hops=hops)
    if report is not None:
        _check.fill_drift(tax, report)
        road.drift_rel_l2 = tax.drift_rel_l2
    road.built = True
    return ConversionResult("savedmodel", Path(output), None, MappingLog(), report, tax, src,
                                       roads=[road.to_dict()], roads_text=[road.line()])


def _hop(label: str, before: Any, converted: Any, src: Any, seeds: Sequence[int], profile: str,
         reference: str = "auto") -> dict[str, Any]:
    """Drift of one step of the road, so a report shows which step lost precision."""
    from porttax.parity import check_parity
    report = check_parity(before, converted, src.specs, seeds=seeds, profile=profile, reference=reference)
    return {"hop": label, "rel_l2": report.worst_rel_l2, "passed": bool(report.passed)}
