"""The way a Keras source reaches every torch-family target: `.pt2`, safetensors, state_dict, ONNX, `.pte`.

Load the Keras source, map its layers to a torch module (porttax.converters.keras_to_torch), then let
the target write its format (`TorchFormat.write`) to a temporary sibling, load that file back as a
user would (`TorchFormat.reload`), prove it against the Keras model and price it. The target modules
own their formats; this module owns the steps they share, and imports none of them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from porttax.errors import InputError
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk
from porttax.types import ConversionResult, ConvertJob


@dataclass(frozen=True)
class TorchFormat:
    """How one target writes the torch module converted from a Keras model, and loads it back."""

    suffix: str  # what -o must end in
    write: Callable[[Any, Any, Any, Path], Any]  # (module, conversion, source, path) → what was written
    reload: Callable[[Path, Any, Any, Any], Any]  # (path, module, source, conversion) → runner of the file


def convert_keras(job: ConvertJob, fmt: TorchFormat) -> ConversionResult:
    """Keras source → torch module → `fmt`, written atomically and checked against the Keras model
    (in memory when the job has no output)."""
    from porttax._frameworks import import_keras, import_torch
    from porttax.saving import atomic_output
    from porttax.targets._check import fill_drift, run_parity, time_both

    source, output, progress = job.source, job.output, job.progress
    if output is not None and Path(output).suffix != fmt.suffix:
        raise InputError(f"--to {job.target} writes a {fmt.suffix} file", path=str(output),
                         hint=f"use -o NAME{fmt.suffix}")
    import_torch()  # before Keras/TensorFlow: see porttax._frameworks
    import_keras()
    from porttax.converters.keras_to_torch.driver import convert_keras_model
    from porttax.sources.keras_source import load_keras_source

    t0 = time.perf_counter()
    progress.stage(f"loading {source if isinstance(source, (str, Path)) else type(source).__name__}")
    src = load_keras_source(source, trust_code=job.load.trust_code)
    sig = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in src.specs)
    progress.stage(f"read Keras model {src.model.name!r}: {sig}")
    progress.stage("converting Keras layers to torch modules")
    result = convert_keras_model(src.model, channels_first_io=job.channels_first, progress=progress.step)
    module, log = result.module, result.log

    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                     transposes_inserted=log.transposes_inserted)
    final: Path | None = None
    if output is None:
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        converted = with_layout(torch_runner(module, src, result), result)
        report = run_parity(src, converted, job.seeds, job.profile, progress, job.reference) if job.parity else None
        if job.measure_latency:
            time_both(src, converted, tax, progress)
    else:
        with atomic_output(output, force=job.force) as tmp:
            progress.stage(f"writing {job.target} to {output}")
            written = fmt.write(module, result, src, tmp)
            tax.conversion_seconds = time.perf_counter() - t0
            tax.peak_rss_mb = peak_rss_mb()
            tax.output_bytes = size_on_disk(tmp)
            reloaded = fmt.reload(tmp, module, src, result)
            tax.load_ms = getattr(reloaded, "load_ms", None)
            converted = with_layout(reloaded, result)
            if hasattr(written, "note"):  # a lowered program says which runtime runs it
                tax.runtime_note = written.note()
            report = run_parity(src, converted, job.seeds, job.profile, progress, job.reference) if job.parity else None
            if job.measure_latency:
                time_both(src, converted, tax, progress)
        final = Path(output)
    conv = ConversionResult(job.target, final, src.model, log, report, tax, src)
    conv.torch_module = module
    conv.layer_map = result.layer_map
    if report is not None:
        fill_drift(tax, report)
    return conv


def export_example(result: Any, src: Any) -> tuple[tuple[Any, ...], Any]:
    """Example inputs and `dynamic_shapes` for torch.export: every dim Keras leaves open stays open
    (Dim.AUTO), so a model built for any batch or sequence length keeps that in the `.pt2`."""
    from porttax._frameworks import import_torch
    from porttax.parity import make_inputs

    torch = import_torch()
    inputs = make_inputs(result.inputs, 0, sizes={"batch": 2})
    example = tuple(torch.from_numpy(np.ascontiguousarray(inputs[s.name])) for s in result.inputs)
    dynamic = []
    for spec in result.inputs:
        dims = {i: torch.export.Dim.AUTO for i, d in enumerate(spec.shape) if not isinstance(d, int)}
        dynamic.append(dims or None)
    return example, tuple(dynamic)


def static_example(result: Any) -> tuple[Any, ...]:
    """Example inputs at the sizes parity feeds, for formats that are static-shaped (a `.pte`)."""
    from porttax._frameworks import import_torch
    from porttax.parity import make_inputs

    inputs = make_inputs(result.inputs, 0)
    return tuple(import_torch().from_numpy(np.ascontiguousarray(inputs[s.name])) for s in result.inputs)


def mapping_json(result: Any, src: Any) -> str:
    """Which Keras variable became which state_dict key, with which layout transform: for the archive."""
    return json.dumps({
        "source": src.path or src.name,
        "inputs": [s.to_dict() for s in result.inputs],
        "outputs": result.output_names,
        "channels_first": result.channels_first,
        "mapping": result.log.to_dict(),
    }, indent=1)


def input_names(src: Any) -> list[str]:
    """Torch inputs fed under the Keras input names, so both sides of parity read the same cases."""
    return [s.name for s in src.specs]


def torch_runner(runnable: Any, src: Any, result: Any, name: str | None = None) -> Any:
    """A runner of a torch module (or reloaded program) fed under the Keras names, with the layer map."""
    from porttax.parity import TorchRunner

    runner = TorchRunner(runnable, input_names(src), name=name or f"{src.name} (torch)")
    runner.layer_map = result.layer_map
    return runner


def with_layout(runner: Any, result: Any) -> Any:
    """A runner taking and returning the layout the converted module does (NCHW with --channels-first)."""
    if not result.channels_first:
        return runner
    from porttax.parity.runners import ChannelsFirstAdapter

    return ChannelsFirstAdapter(runner)
