"""The `.keras` target: Keras' own zip, with porttax's layer map (and the way back to a checkpoint) inside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from porttax.targets import Target, Way, register_target
from porttax.types import ConversionResult, ConvertJob


def write_keras_target(job: ConvertJob) -> ConversionResult:
    """The Keras model the pipeline built, as a `.keras` reloaded and checked, or in memory without -o."""
    from porttax.saving import atomic_output
    from porttax.targets import _check

    tax = _check.built_tax(job)
    if job.output is None:
        report = _check.check_in_memory(job, tax, _check.keras_runner(job.model, job.layer_map))
        return _check.finish(job, None, tax, report)
    from porttax.parity import KerasRunner

    with atomic_output(job.output, force=job.force) as tmp:
        job.progress.stage(f"writing keras to {job.output}")
        write_keras(job.model, tmp, job.layer_map)
        add_weight_map(tmp, job.log, job.src)
        report, _ = _check.check_artifact(job, tmp, tax, lambda: KerasRunner(tmp, compiled=True,
                                                                            name=f"{job.src.name}.keras"))
    return _check.finish(job, Path(job.output), tax, report)


register_target(Target(
    "keras", "a Keras 3 model file (.keras; in memory without -o)", suffixes=(".keras",),
    output_hint="use -o model.keras, or --to savedmodel for a directory",
    ways={"torch": Way(write_keras_target, needs="keras", options=("dtype", "route")),
          "onnx": Way(write_keras_target, needs="keras", options=("route",))},
    refusal_hint="Keras → Keras is not a port; save it with Keras itself, or convert it --to torch"))


def write_keras(model: object, path: Path, layer_map: object | None = None) -> None:
    """`model.save` plus porttax's layer map inside the same zip, so localisation needs no sidecar file."""
    from porttax.dtype_policy import plain_policies

    with plain_policies(model):  # a file any Keras loads: see porttax.dtype_policy
        model.save(path)  # type: ignore[attr-defined]
    if layer_map is not None:
        from porttax.layer_map import add_to_keras_file

        add_to_keras_file(path, layer_map)  # type: ignore[arg-type]


def add_weight_map(path: Path, log: Any, src: Any) -> None:
    """The way back to the source checkpoint's layout, inside the .keras (see porttax.targets.weight_map)."""
    from porttax.targets.weight_map import add_to_keras_file, from_conversion

    weight_map = from_conversion(log, src) if getattr(src, "program", None) is not None else None
    if weight_map is not None:
        add_to_keras_file(path, weight_map)
