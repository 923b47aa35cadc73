"""PyTorch → ONNX: `torch.onnx.export` (the dynamo exporter) on the captured program, checked with
`onnx.checker`, proved against the source with onnxruntime.

The exporter works from the same `torch.export` program the Keras road converts, so symbolic batch
and sequence dimensions the source was captured with stay symbolic in the ONNX graph. Models whose
weights pass ONNX's 2 GB protobuf limit need external data; that is refused with a clear error until
porttax writes (and atomically publishes) the data file beside the model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError, UnsupportedError, brief
from porttax.progress import QUIET, Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk

PROTOBUF_LIMIT = 2 * 1024**3 - 64 * 1024**2  # leave room for the graph itself beside the weights
_PERMUTES = ("aten.permute", "aten.transpose", "aten.t.")


def export_onnx(program: Any, example: Sequence[Any], path: Path, *, name: str = "model") -> Any:
    """Write `program` as ONNX at `path` and check it; returns the loaded (data-free) ModelProto."""
    import onnx

    from porttax._frameworks import import_torch

    torch = import_torch()
    weight_bytes = sum(t.numel() * t.element_size() for t in program.state_dict.values())
    weight_bytes += sum(t.numel() * t.element_size() for t in program.constants.values()
                        if isinstance(t, torch.Tensor))
    if weight_bytes > PROTOBUF_LIMIT:
        raise UnsupportedError(f"{name}: {weight_bytes / 1e9:.1f} GB of weights pass ONNX's 2 GB protobuf "
                               "limit, and writing ONNX external data is not built yet",
                               hint="convert --to keras or --to savedmodel for now")
    try:
        exported = torch.onnx.export(program, tuple(example), dynamo=True, verbose=False)
    except Exception as exc:  # the exporter raises its own error types; its first line names the op
        raise UnsupportedError(f"{name}: torch.onnx.export failed: {brief(exc)}",
                               hint="the model uses an op the ONNX exporter cannot translate; try --to keras") from exc
    exported.save(str(path))
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise UnsupportedError(f"{name}: the exported ONNX graph is invalid: {brief(exc)}",
                               hint="report it with the model; --to keras takes the direct road") from exc
    return onnx.load(str(path), load_external_data=False)


def convert_torch_to_onnx(src: Any, *, output: str | Path, parity: bool = True, seeds: Sequence[int] = (0, 1, 2),
                          profile: str = "fp32", measure_latency: bool = True, force: bool = False,
                          progress: Progress | None = None, t0: float | None = None) -> Any:
    """Export a loaded TorchSource to `output` (.onnx), with parity against onnxruntime on the written file."""
    from porttax import conversion
    from porttax.converters.mapping_log import MappingLog
    from porttax.parity.runners import OnnxRunner
    from porttax.saving import atomic_output

    progress = progress or QUIET
    t0 = time.perf_counter() if t0 is None else t0
    if Path(output).suffix.lower() != ".onnx":
        raise InputError("an ONNX model file must end in .onnx", path=str(output), hint="use -o model.onnx")
    aten = [str(n.target) for n in src.program.graph.nodes if n.op == "call_function"]
    tax = PortingTax(layers_total=len(aten), layers_mapped=len(aten), ops_total=len(aten), ops_folded=0,
                     source_transposes=sum(1 for t in aten if t.startswith(_PERMUTES)))
    report = None
    with atomic_output(output, force=force) as tmp:
        progress.stage(f"exporting ONNX with torch.onnx.export to {output}")
        model = export_onnx(src.program, src.example, tmp, name=src.name)
        transposes = sum(1 for n in model.graph.node if n.op_type == "Transpose")
        tax.transposes_inserted = max(0, transposes - tax.source_transposes)
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
        runner = OnnxRunner(tmp, name=f"{src.name}.onnx")
        report = conversion._parity(src, runner, seeds, profile, progress) if parity else None
        if measure_latency:
            conversion._latency(src, runner, tax, progress)
    if report is not None:
        conversion._fill_drift(tax, report)
    return conversion.ConversionResult("onnx", Path(output), None, MappingLog(), report, tax, src)
