"""Roads from a PyTorch program to a Keras model, and `--route auto`, which tries them all.

`direct`: porttax's torch → Keras op mapping. `onnx`: `torch.onnx.export`, then porttax's ONNX → torch
registry, then the same torch → Keras mapping: the exporter decomposes ops the direct mapping lacks
into ONNX primitives, so a model the direct road refuses can still arrive. Each hop of the ONNX road
is checked on its own (torch → ONNX in onnxruntime, ONNX → Keras), so a report shows which step lost
precision. `auto` builds every road, checks each against the source, and keeps the one that passes
with the least drift and, among equals (within 2× of each other), the fastest converted model.
`fallback`, the default, takes the direct road and turns to the ONNX road only where the direct one
has no converter for an op, so a user never needs to know which road a model wants.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError, PorttaxError, UnsupportedError
from porttax.progress import Progress
from porttax.types import Road

# "fallback" (the default): the direct road, and the ONNX road only where the direct one lacks an op
ROUTES = ("fallback", "direct", "onnx", "auto")


def build_keras(src: Any, route: str, *, seeds: Sequence[int], profile: str, progress: Progress,
                prefer: str = "fastest", reference: str = "auto") -> tuple[Any, list[Road]]:
    """(model, log, layer_map) of the chosen road, and every road tried.

    `prefer` settles `auto` between roads of equal drift: "fastest" (by measured latency) or "first"
    (the first in road order, direct before onnx), which a clock cannot change: audits use it so two
    runs over the same fleet keep the same road.
    """
    if route not in ROUTES:
        raise InputError(f"unknown route {route!r}", hint=f"use one of: {', '.join(ROUTES)}")
    if route == "fallback":
        return _fallback(src, seeds=seeds, profile=profile, progress=progress, reference=reference)
    if route != "auto":
        road = _direct(src, progress) if route == "direct" else _via_onnx(src, seeds, profile, progress, reference)
        if road.built is None:
            raise road.error  # type: ignore[attr-defined]
        _take(road, src, progress)
        return road.built, [road]
    roads = []
    for name in ("direct", "onnx"):
        try:
            road = _direct(src, progress) if name == "direct" else _via_onnx(src, seeds, profile, progress, reference)
        except PorttaxError as exc:  # a road that cannot even start is a road not converted
            road = Road(name, reason=_reason(exc))
        if road.built is not None:
            _measure(road, src, seeds, profile, progress, reference)
        roads.append(road)
    winner = _choose(roads, prefer)
    if winner is None:
        first = roads[0]
        error = getattr(first, "error", None) or PorttaxError(
            "no road converted the model: " + "; ".join(f"{r.road}: {r.reason}" for r in roads))
        error.roads = [r.to_dict() for r in roads]  # type: ignore[attr-defined]  (audits report each road)
        raise error
    _take(winner, src, progress)
    progress.stage(f"route auto: kept the {winner.road} road")
    return winner.built, roads


def _fallback(src: Any, *, seeds: Sequence[int], profile: str, progress: Progress,
              reference: str) -> tuple[Any, list[Road]]:
    """The direct road; where it refuses the model for ops it has no converter for, the ONNX road,
    said in one line. Both attempts are returned, so the report shows what was tried and why. Any
    other refusal (a bad file, a data-dependent graph) is the direct road's own error, as with
    `--route direct`; so is a failure of both roads, with the ONNX road's reason added."""
    direct = _direct(src, progress)
    if direct.built is not None:
        direct.chosen = True
        return direct.built, [direct]
    error = direct.error  # type: ignore[attr-defined]
    if not isinstance(error, UnsupportedError) or getattr(src, "streamed_from_file", False):
        raise error
    progress.stage(f"the direct road has no converter for {_missing(direct.reason)}: trying the ONNX road "
                   "(--route direct keeps to the direct road)")
    onnx = _via_onnx(src, seeds, profile, progress, reference)
    if onnx.built is None:
        error.roads = [direct.to_dict(), onnx.to_dict()]  # type: ignore[attr-defined]
        error.args = (f"{error.args[0]}\n(the ONNX road was tried too and did not convert it either: "
                      f"{onnx.reason})", *error.args[1:])
        raise error
    onnx.status = "converted"  # the target checks the written artefact next
    _take(onnx, src, progress)
    return onnx.built, [direct, onnx]


def _missing(reason: str | None) -> str:
    """The op names a direct-road refusal lists, short: "aten.roll.default, aten.sort.default"."""
    names = re.findall(r"aten\.[\w.]+|[\w]+\.[\w.]+\.default", reason or "")
    return ", ".join(dict.fromkeys(names)) or "some ops"


def _direct(src: Any, progress: Progress) -> Road:
    from porttax.converters.torch_to_keras.driver import convert_exported_program
    from porttax.converters.torch_to_keras.symbolic import is_open_size_refusal

    road = Road("direct")
    progress.stage("converting ops to Keras layers (direct road)")
    try:
        try:
            result = convert_exported_program(src.program, name=src.name, progress=progress.step)
        except UnsupportedError as exc:
            if not is_open_size_refusal(exc) or not _fix_sizes(src, exc, progress):
                raise
            result = convert_exported_program(src.program, name=src.name, progress=progress.step)
    except PorttaxError as exc:
        road.reason, road.error = _reason(exc), exc  # type: ignore[attr-defined]
        return road
    _built(road, result)
    return road


def _fix_sizes(src: Any, exc: UnsupportedError, progress: Progress) -> bool:
    """Capture `src` again with every dim fixed to its example's size, after the direct road refused an
    open size; the note (and the report's capture notes) say which op and why. False when there is
    nothing to capture again from."""
    from porttax._frameworks import import_torch
    from porttax.sources.torch_program import export_module, specs_from_program

    torch_module = getattr(src, "module", None)
    if src.example is None or torch_module is None:
        return False
    runnable = torch_module if isinstance(torch_module, import_torch().nn.Module) else src.program.module()
    src.program = export_module(runnable, src.example, src.path)
    src.specs = specs_from_program(src.program)
    note = (f"the direct road cannot keep every size open ({str(exc.args[0]).splitlines()[0][:200]}); "
            "converted at the example's fixed sizes")
    src.capture_notes.append(note)
    progress.stage(note)
    return True


def _reason(exc: Exception) -> str:
    """One line: what failed, and the ops the converters list one per "- " line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("What to do")]
    listed = [line[2:].split(" ")[0] for line in lines[1:] if line.startswith("- ")]  # one op per "- " line
    text = f"{lines[0]} {', '.join(listed)}" if listed else " ".join(lines[:2])
    return text[:400]


def _via_onnx(src: Any, seeds: Sequence[int], profile: str, progress: Progress, reference: str = "auto") -> Road:
    from porttax.converters.torch_to_keras.driver import convert_exported_program
    from porttax.sources.onnx_source import load_onnx_source
    from porttax.parity import KerasRunner, check_parity
    from porttax.parity.runners import OnnxRunner
    from porttax.targets.onnx import export_onnx

    road = Road("onnx")
    if getattr(src, "streamed_from_file", False):  # its program holds placeholders, not weights
        road.reason = "a streamed checkpoint takes the direct road only (the ONNX exporter needs every weight in memory)"
        road.error = InputError(road.reason, hint="use --route direct, or PORTTAX_STREAM=0 to load the checkpoint whole")  # type: ignore[attr-defined]
        return road
    with tempfile.TemporaryDirectory(prefix="porttax-onnx-road-") as folder:
        path = Path(folder) / f"{src.name}.onnx"
        try:
            progress.stage("exporting to ONNX (onnx road)")
            if src.origin == "torchscript":  # its own exporter reads the script, not the captured program
                from porttax.sources.torchscript import export_script_onnx

                try:
                    export_script_onnx(src.module, src.example, path, [s.name for s in src.specs])
                except PorttaxError as exc:
                    raise exc.at(src.path or src.name) from None
            else:
                export_onnx(src.program, src.example, path, name=src.name)
            hop = check_parity(_torch_runner(src), OnnxRunner(path, name=f"{src.name}.onnx"), src.specs,
                               seeds=seeds, profile=profile, reference=reference)
            road.hops.append({"hop": "torch → ONNX", "rel_l2": hop.worst_rel_l2, "passed": bool(hop.passed)})
            progress.stage("converting ONNX to torch, then to Keras layers (onnx road)")
            onnx_src, _ = load_onnx_source(path)
            result = convert_exported_program(onnx_src.program, name=src.name, progress=progress.step)
            hop = check_parity(OnnxRunner(path, name=f"{src.name}.onnx"), KerasRunner(result.model, compiled=True),
                               onnx_src.specs, seeds=seeds, profile=profile, reference=reference)
            road.hops.append({"hop": "ONNX → Keras", "rel_l2": hop.worst_rel_l2, "passed": bool(hop.passed)})
        except PorttaxError as exc:  # the reason names the file, not the scratch folder it sat in
            road.reason, road.error = _reason(exc).replace(str(path), path.name), exc  # type: ignore[attr-defined]
            return road
    _built(road, result)
    road.specs = _fixed_by(result.model, src.specs)  # type: ignore[attr-defined]
    return road


def _fixed_by(model: Any, specs: Sequence[Any]) -> list[Any]:
    """`specs` with each open dim that `model`'s inputs fix replaced by that size: the ONNX road reads
    the file porttax exported at fixed sizes where the ONNX → torch step cannot keep a size open."""
    from dataclasses import replace

    out = []
    for spec, kin in zip(specs, model.inputs):
        held = tuple(kin.shape)
        shape = tuple(held[i] if isinstance(d, str) and i < len(held) and held[i] is not None else d
                      for i, d in enumerate(spec.shape))
        out.append(replace(spec, shape=shape))
    return out


def _take(road: Road, src: Any, progress: Progress) -> None:
    """Mark `road` chosen; a road that fixed open sizes fixes them in the source's signature too, said."""
    road.chosen = True
    specs = getattr(road, "specs", None)
    if specs is None or [s.shape for s in specs] == [s.shape for s in src.specs]:
        return
    fixed = sorted({d for old, new in zip(src.specs, specs) for d, n in zip(old.shape, new.shape)
                    if isinstance(d, str) and not isinstance(n, str)})
    note = f"the {road.road} road fixes {', '.join(fixed)} to the sizes it was exported at"
    src.specs = list(specs)
    src.capture_notes.append(note)
    progress.stage(note)


def _built(road: Road, result: Any) -> None:
    log = result.log
    result.model._porttax_layer_map = result.layer_map
    road.built = (result.model, log, result.layer_map)
    road.coverage = f"{log.layers_mapped}/{log.layers_total}"
    road.transposes = log.transposes_inserted


def _measure(road: Road, src: Any, seeds: Sequence[int], profile: str, progress: Progress,
             reference: str = "auto") -> None:
    from porttax.parity import KerasRunner, check_parity, make_inputs
    from porttax.parity import sweep_sizes
    from porttax.targets._check import bounds_of as _bounds
    from porttax.tax import time_call

    model = road.built[0]
    runner = KerasRunner(model, compiled=True, name=f"{model.name} ({road.road} road)")
    progress.stage(f"checking the {road.road} road against the source")
    specs = getattr(road, "specs", None) or src.specs  # the sizes the road keeps open
    report = check_parity(_torch_runner(src), runner, specs, seeds=seeds, profile=profile, reference=reference,
                          sizes=sweep_sizes(specs, _bounds(src)), paired=True)
    road.drift_rel_l2 = report.worst_rel_l2
    if (noise := report.worst_noise) is not None:
        road.drift_vs_reference = max(o.noise.converted_error for c in report.cases for o in c.outputs if o.noise)
        road.drift_ratio = noise.ratio if math.isfinite(noise.ratio) else None
    road.status = "passed" if report.passed else "failed parity"
    inputs = make_inputs(specs, 0)  # at sizes this road takes
    road.latency_ms = time_call(lambda: runner.run(inputs), budget_s=0.5)


def _choose(roads: list[Road], prefer: str = "fastest") -> Road | None:
    """Among passing roads (or, when none passes, all that converted): least drift, and within 2× of
    the least, the fastest or the first. Drift is each road's error against the float64 reference where
    every road has one (the road nearer the exact result is the more faithful), else against the source."""
    built = [r for r in roads if r.built is not None]
    passing = [r for r in built if r.status == "passed"] or built
    if not passing:
        return None
    exact = all(r.drift_vs_reference is not None for r in passing)
    drift = {id(r): (r.drift_vs_reference if exact else r.drift_rel_l2) for r in passing}
    drift = {k: v if v is not None else math.inf for k, v in drift.items()}
    best = min(drift.values())
    equals = [r for r in passing if drift[id(r)] <= 2 * best] or passing
    if prefer == "first":
        return equals[0]
    return min(equals, key=lambda r: r.latency_ms if r.latency_ms is not None else math.inf)


def _torch_runner(src: Any) -> Any:
    from porttax.parity import TorchRunner

    return TorchRunner(src.runnable(), [s.name for s in src.specs], name=src.name)
