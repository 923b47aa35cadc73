"""The step every target takes once its artefact is written: run it against the source, time both.

A target reloads its artefact as a user would (its runner), then hands it here: the source's own
runner is chosen from the source handle (a torch module, the ONNX file itself in onnxruntime, or the
Keras model on the Keras → torch road), parity runs over the seeds, latency is timed on the same
inputs, and the porting-tax record gets the drift. Kept in one place so every target proves its
output the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from porttax.progress import Progress
from porttax.tax import PortingTax, time_call


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

        return OnnxRunner(src.path, name=f"{src.name}.onnx")
    return TorchRunner(src.runnable(), [s.name for s in src.specs], name=src.name)


def keras_runner(model: Any, layer_map: Any) -> Any:
    """A Keras model still in memory (no output path), compiled as a user's `predict` would run it."""
    from porttax.parity import KerasRunner

    return KerasRunner(model, compiled=True, name=model.name, layer_map=layer_map)


def artifact_runner(target: str, path: Path, src: Any) -> Any:
    """The written `.keras` or SavedModel, loaded back from disk."""
    from porttax.parity import KerasRunner, SavedModelRunner

    if target == "keras":
        return KerasRunner(path, compiled=True, name=f"{src.name}.keras")
    return SavedModelRunner(path, name=f"{src.name} (SavedModel)")


def run_parity(src: Any, runner: Any, seeds: Sequence[int], profile: str, progress: Progress) -> Any:
    """Parity of `runner` against the source over `seeds`. On the Keras → torch road the layer map sits
    on the converted (torch) side; the Keras source reads its half of each tap from it."""
    from porttax.parity import check_parity

    progress.stage(f"checking parity over {len(seeds)} seed(s), profile {profile}")
    from porttax.sources.keras_source import KerasSource

    source = source_runner(src)
    if isinstance(src, KerasSource):
        source.layer_map = getattr(runner, "layer_map", None)
    return check_parity(source, runner, src.specs, seeds=seeds, profile=profile)


def time_both(src: Any, runner: Any, tax: PortingTax, progress: Progress) -> None:
    """Median CPU latency of the source and of the converted model on the same seeded inputs."""
    from porttax.parity import make_inputs

    progress.stage("timing source and converted model on CPU")
    inputs = make_inputs(src.specs, 0)
    source = source_runner(src)
    tax.latency_source_ms = time_call(lambda: source.run(inputs))
    tax.latency_converted_ms = time_call(lambda: runner.run(inputs))


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
