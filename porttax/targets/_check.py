"""The step every target takes once its artefact is written: run it against the source, time both.

A target reloads its artefact as a user would (its runner), then hands it here: the source's own
runner is chosen from the source handle (a torch module, the ONNX file itself in onnxruntime, or the
Keras model on the Keras → torch road), parity runs over the seeds, latency is timed on the same
inputs, and the porting-tax record gets the drift. Kept in one place so every target proves its
output the same way.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from porttax.progress import Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk, time_call
from porttax.types import ConversionResult, ConvertJob


def source_runner(src: Any) -> Any:
    """The runner of the model a conversion started from: what every converted artefact is held to."""
    from porttax.parity import KerasRunner, SavedModelRunner, TorchRunner
    from porttax.sources.keras_source import KerasSource

    if isinstance(src, KerasSource):
        if src.origin == "savedmodel" and src.path and (Path(src.path) / "keras_metadata.pb").is_file():
            # a TF-Keras 2 SavedModel was rebuilt in Keras 3; the reference is the graph TF-Keras itself
            # wrote, so a config that Keras 3 reads differently shows up as drift instead of hiding in both
            return SavedModelRunner(src.path, name=f"{src.name} (TF-Keras SavedModel)")
        return KerasRunner(src.model, [s.name for s in src.specs], compiled=True, name=f"{src.name} (Keras)")
    if src.origin == "onnx":  # the reference is the ONNX file itself, as onnxruntime runs it
        from porttax.parity.runners import OnnxRunner

        return OnnxRunner(src.path, name=f"{src.name}.onnx", rename=getattr(src, "onnx_input_names", None))
    return TorchRunner(src.runnable(), [s.name for s in src.specs], name=src.name)


def keras_runner(model: Any, layer_map: Any) -> Any:
    """A Keras model still in memory (no output path), compiled as a user's `predict` would run it."""
    from porttax.parity import KerasRunner

    return KerasRunner(model, compiled=True, name=model.name, layer_map=layer_map)


def check_artifact(job: ConvertJob, tmp: Path, tax: PortingTax, runner: Callable[[], Any]) -> tuple[Any, Any]:
    """Price the artefact just written to `tmp` and, unless the job turned both off, load it back
    (`runner()`: loading costs a second copy of the model) and run parity and timing against the
    source. Returns (parity report or None, the runner or None)."""
    tax.conversion_seconds = time.perf_counter() - job.t0
    tax.peak_rss_mb = peak_rss_mb()
    tax.output_bytes = size_on_disk(tmp)
    if not (job.parity or job.measure_latency):
        return None, None
    loaded = runner()
    report = run_parity(job.src, loaded, job.seeds, job.profile, job.progress, job.reference) if job.parity else None
    if job.measure_latency:
        time_both(job.src, loaded, tax, job.progress)
    return report, loaded


def check_in_memory(job: ConvertJob, tax: PortingTax, runner: Any) -> Any:
    """`check_artifact` for a model that stays in memory (no output path): the parity report or None."""
    tax.conversion_seconds = time.perf_counter() - job.t0
    tax.peak_rss_mb = peak_rss_mb()
    report = run_parity(job.src, runner, job.seeds, job.profile, job.progress, job.reference) if job.parity else None
    if job.measure_latency:
        time_both(job.src, runner, tax, job.progress)
    return report


def built_tax(job: ConvertJob) -> PortingTax:
    """The porting-tax record of a Keras model the pipeline built from a PyTorch or ONNX source."""
    log = job.log
    dtypes = sorted({str(w.dtype) for w in job.model.weights if "float" in str(w.dtype)})
    return PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                      ops_folded=log.ops_folded, transposes_inserted=log.transposes_inserted,
                      source_transposes=log.source_transposes, weights_dtype="+".join(dtypes) or "float32",
                      compute_dtype=getattr(job.src, "float_dtype", "float32"))


def finish(job: ConvertJob, output: Path | None, tax: PortingTax, report: Any, **extra: Any) -> ConversionResult:
    """The result of a job whose Keras model the pipeline built: drift into the tax, the roads tried."""
    if report is not None:
        fill_drift(tax, report)
    return job.with_roads(ConversionResult(job.target, output, job.model, job.log, report, tax, job.src,
                                           layer_map=job.layer_map, **extra))


def run_parity(src: Any, runner: Any, seeds: Sequence[int], profile: str, progress: Progress,
               reference: str = "auto") -> Any:
    """Parity of `runner` against the source over `seeds`. On the Keras → torch road the layer map sits
    on the converted (torch) side; the Keras source reads its half of each tap from it."""
    from porttax.parity import check_parity

    # a fixed-shape format (a .pte) is checked at the sizes it was lowered at; every other artefact must
    # take each open dim at several sizes
    sweep = [{}] if getattr(runner, "fixed_shapes", False) else sweep_of(src)
    sizes = "" if sweep == [{}] else " at " + "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in sweep)
    progress.stage(f"checking parity over {len(seeds)} seed(s){sizes}, profile {profile}")
    from porttax.sources.keras_source import KerasSource

    source = source_runner(src)
    if isinstance(src, KerasSource):
        source.layer_map = getattr(runner, "layer_map", None)
    return check_parity(source, runner, src.specs, seeds=seeds, profile=profile, reference=reference,
                        sizes=sweep, paired=True)


def sweep_of(src: Any) -> list[dict[str, int]]:
    """The sizes a conversion's parity runs the open dims at (see porttax.parity.check.sweep_sizes)."""
    from porttax.parity import sweep_sizes

    return sweep_sizes(src.specs, bounds_of(src))


def bounds_of(src: Any) -> dict[str, tuple[int, int]] | None:
    """The size ranges a torch source's program was captured for, by dim name."""
    program = getattr(src, "program", None)
    if program is None or not hasattr(program, "range_constraints"):
        return None
    from porttax.sources.torch_program import dim_bounds

    return dim_bounds(program)


def time_both(src: Any, runner: Any, tax: PortingTax, progress: Progress) -> None:
    """Median CPU latency of the source and of the converted model on the same seeded inputs."""
    from porttax.parity import make_inputs

    progress.stage("timing source and converted model on CPU")
    inputs = make_inputs(src.specs, 0)
    source = source_runner(src)
    tax.latency_source_ms = time_call(lambda: source.run(inputs))
    tax.latency_converted_ms = time_call(lambda: runner.run(inputs))
    tax.latency_shapes = ", ".join(f"{name} {tuple(int(d) for d in x.shape)}" for name, x in inputs.items())


def fill_drift(tax: PortingTax, report: Any) -> None:
    """Copy a parity report's worst drift and top-1 agreement into the porting-tax record."""
    tax.parity_passed = bool(report.passed)
    worst, max_abs, agreements = 0.0, 0.0, []
    for case in report.cases:
        for out in case.outputs:
            m = out.metrics
            worst = max(worst, float("inf") if m.rel_l2 is None else float(m.rel_l2))
            max_abs = max(max_abs, float("inf") if m.max_abs is None else float(m.max_abs))
            agree = (m.topk_agreement or {}).get(1)
            if agree is not None:
                agreements.append(float(agree))
    # top-1 agreement over every case and output: the share of decisions the port keeps
    top1 = sum(agreements) / len(agreements) if agreements else None
    tax.drift_rel_l2, tax.drift_max_abs, tax.top1_agreement = worst, max_abs, top1
    noise = report.worst_noise
    if noise is not None:
        ratio = noise.ratio
        tax.drift_vs_reference, tax.source_error = noise.converted_error, noise.source_error
        tax.source_error_dtype = noise.source_dtype
        tax.drift_ratio = ratio if math.isfinite(ratio) else None
    if report.reference is not None and report.reference.used is None:
        tax.reference_note = report.reference.note
