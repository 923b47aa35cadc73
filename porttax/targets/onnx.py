"""PyTorch → ONNX: `torch.onnx.export` (the dynamo exporter) on the captured program, checked with
`onnx.checker`, proved against the source with onnxruntime.

The exporter works from the same `torch.export` program the Keras road converts, so symbolic batch
and sequence dimensions the source was captured with stay symbolic in the ONNX graph. Models whose
weights pass ONNX's 2 GB protobuf limit keep them in one external-data file, `<model>.onnx.data`,
published before the model file so the model is never in place without its weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError, UnsupportedError, brief
from porttax.progress import QUIET, Progress
from porttax.targets import Target, Way, register_target
from porttax.targets._from_keras import TorchFormat, convert_keras, export_example
from porttax.types import ConversionResult, ConvertJob
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk




PROTOBUF_LIMIT = 2 * 1024**3 - 64 * 1024**2  # leave room for the graph itself beside the weights


def external_files(model: Any) -> list[str]:
    """The external-data file names a (data-free) ModelProto refers to."""
    names = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    return sorted(names)


def publish_external_data(tmp_model: Path, final_model: Path, force: bool) -> Path | None:
    """Give the external-data file of the model at `tmp_model` its final name (`<final>.data`) and point
    the model at it, without replacing an existing file unless `force`. Returns the data file placed.

    The model file itself is published by `atomic_output`; the data file goes first so the model is
    never in place without its weights.
    """
    import onnx

    from porttax.errors import OutputExistsError

    model = onnx.load(str(tmp_model), load_external_data=False)
    names = external_files(model)
    if not names:
        return None
    if len(names) != 1:
        raise UnsupportedError(f"the exporter wrote {len(names)} external-data files; porttax publishes one")
    target = final_model.with_name(f"{final_model.name}.data")
    if target.exists() and not force:
        raise OutputExistsError("the external-data file already exists", path=str(target),
                                hint="pass --force to replace it, or choose another -o path")
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = target.name
    onnx.save(model, str(tmp_model))  # only the protobuf: the tensors stay in the data file
    (tmp_model.parent / names[0]).replace(target)
    return target
_PERMUTES = ("aten.permute", "aten.transpose", "aten.t.")


def export_onnx(program: Any, example: Sequence[Any], path: Path, *, name: str = "model") -> Any:
    """Write `program` as ONNX at `path` and check it; returns the loaded (data-free) ModelProto."""
    import onnx

    from porttax._frameworks import import_torch

    torch = import_torch()
    weight_bytes = sum(t.numel() * t.element_size() for t in program.state_dict.values())
    weight_bytes += sum(t.numel() * t.element_size() for t in program.constants.values()
                        if isinstance(t, torch.Tensor))
    try:
        exported = torch.onnx.export(program, tuple(example), dynamo=True, verbose=False)
    except Exception as exc:  # the exporter raises its own error types; its first line names the op
        raise UnsupportedError(f"{name}: torch.onnx.export failed: {brief(exc)}",
                               hint="the model uses an op the ONNX exporter cannot translate; try --to keras") from exc
    # past the protobuf limit, weights go to one external-data file beside the model
    exported.save(str(path), external_data=weight_bytes > PROTOBUF_LIMIT)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise UnsupportedError(f"{name}: the exported ONNX graph is invalid: {brief(exc)}",
                               hint="report it with the model; --to keras takes the direct road") from exc
    return onnx.load(str(path), load_external_data=False)


def external_files_of_tmp(final: Path) -> list[Path]:
    """External-data files an interrupted export left beside the hidden temporary model."""
    return list(final.parent.glob(f".{final.stem}.porttax-tmp-*{final.suffix}.data"))


def convert_torch_to_onnx(src: Any, *, output: str | Path, parity: bool = True, seeds: Sequence[int] = (0, 1, 2),
                          profile: str = "fp32", reference: str = "auto", measure_latency: bool = True, force: bool = False,
                          progress: Progress | None = None, t0: float | None = None) -> Any:
    """Export a loaded TorchSource to `output` (.onnx), with parity against onnxruntime on the written file."""
    from porttax.targets import _check
    from porttax.types import ConversionResult
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
    placed: Path | None = None
    try:
        with atomic_output(output, force=force) as tmp:
            progress.stage(f"exporting ONNX with torch.onnx.export to {output}")
            model = export_onnx(src.program, src.example, tmp, name=src.name)
            transposes = sum(1 for n in model.graph.node if n.op_type == "Transpose")
            tax.transposes_inserted = max(0, transposes - tax.source_transposes)
            tax.conversion_seconds = time.perf_counter() - t0
            tax.peak_rss_mb = peak_rss_mb()
            tax.output_bytes = size_on_disk(tmp) + sum(size_on_disk(tmp.parent / n) for n in external_files(model))
            runner = OnnxRunner(tmp, name=f"{src.name}.onnx")
            report = _check.run_parity(src, runner, seeds, profile, progress, reference) if parity else None
            if measure_latency:
                _check.time_both(src, runner, tax, progress)
            del runner  # onnxruntime maps the data file; let go of it before it moves
            placed = publish_external_data(tmp, Path(output), force)
    except BaseException:
        if placed is not None:
            placed.unlink(missing_ok=True)
        for name in external_files_of_tmp(Path(output)):
            name.unlink(missing_ok=True)
        raise
    if report is not None:
        _check.fill_drift(tax, report)
    return ConversionResult("onnx", Path(output), None, MappingLog(), report, tax, src)


def _from_torch(job: ConvertJob) -> ConversionResult:
    return convert_torch_to_onnx(job.src, output=job.output, t0=job.t0, **job.checks())


def _write_from_keras(module: Any, result: Any, src: Any, path: Path) -> None:
    """Keras → torch module → torch.export (open dims kept) → torch.onnx.export."""
    from porttax._frameworks import import_torch

    example, dynamic = export_example(result, src)
    program = import_torch().export.export(module, example, dynamic_shapes=dynamic)
    export_onnx(program, example, path, name=src.name)


def _reload(path: Path, module: Any, src: Any, result: Any) -> Any:
    from porttax.parity.runners import OnnxRunner

    return OnnxRunner(path, name=f"{src.name}.onnx")


def _from_keras(job: ConvertJob) -> ConversionResult:
    return convert_keras(job, TorchFormat(".onnx", _write_from_keras, _reload))


register_target(Target(
    "onnx", "an ONNX model file", suffixes=(".onnx",), output="required", output_hint="pass -o model.onnx",
    ways={"torch": Way(_from_torch, needs="program"),
          "keras": Way(_from_keras, needs="source", options=("channels_first",), in_memory=True)},
    refusal_hint="it is an ONNX file already; convert it --to torch, keras or savedmodel"))
