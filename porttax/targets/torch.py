"""The Keras → PyTorch road of `porttax.convert`: load a Keras source, map its layers to torch modules,
write `.pt2` / safetensors / state_dict atomically, prove it with the parity suite, price it.

The `.pt2` is what `torch.export.load` reads with no porttax installed. It also carries, as extra
files, the readable `forward` of the converted module (`porttax/forward.py`) and the conversion's
mapping (`porttax/mapping.json`: which Keras variable became which state_dict key, with which
layout transform), so a reviewer can audit a port from the artefact alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError
from porttax.layer_map import PT2_ENTRY
from porttax.progress import QUIET, Progress
from porttax.saving import torch_archive_file
from porttax.targets import Target, Way, register_target
from porttax.targets._from_keras import TorchFormat, convert_keras, export_example, mapping_json, torch_runner
from porttax.types import ConversionResult, ConvertJob
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk


def _write_pt2(module: Any, result: Any, src: Any, path: Path) -> Any:
    example, dynamic = export_example(result, src)
    return write_pt2(module, path, example, dynamic,
                     extra_files={"porttax/forward.py": module.code, "porttax/mapping.json": mapping_json(result, src),
                                  PT2_ENTRY: result.layer_map.to_json()})


def _reload_pt2(path: Path, module: Any, src: Any, result: Any) -> Any:
    """Parity runs what was written: the `.pt2` reloaded with torch.export.load."""
    from porttax._frameworks import import_torch

    return torch_runner(import_torch().export.load(str(path)), src, result, name=f"{src.name}.pt2")


def _weights_format(fmt: str, suffix: str) -> TorchFormat:
    """A weights file of the converted module, reloaded into a fresh copy of it."""

    def write(module: Any, result: Any, src: Any, path: Path) -> None:
        write_torch_weights(module.state_dict(), path, fmt,
                            metadata={"porttax.source": src.name, "porttax.keras_model": src.model.name})

    def reload(path: Path, module: Any, src: Any, result: Any) -> Any:
        import copy

        from porttax._frameworks import import_torch

        runnable = copy.deepcopy(module)
        if fmt == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = import_torch().load(str(path), weights_only=True)
        runnable.load_state_dict(state, strict=True)
        return torch_runner(runnable, src, result, name=path.name)

    return TorchFormat(suffix, write, reload)


PT2 = TorchFormat(".pt2", _write_pt2, _reload_pt2)
SAFETENSORS = _weights_format("safetensors", ".safetensors")
STATE_DICT = _weights_format("state_dict", ".pt")


def write_pt2(module: object, path: Path, example: tuple, dynamic_shapes: object | None = None,
              extra_files: dict[str, str] | None = None) -> object:
    """`torch.export` the module and save it as `.pt2`; returns the ExportedProgram.

    `extra_files` travel inside the archive (porttax stores the readable forward and the layer map);
    `torch.export.load(path)` needs none of porttax to run the result.
    """
    from porttax._frameworks import import_torch

    torch = import_torch()
    program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)  # type: ignore[arg-type]
    with torch_archive_file(path) as sink:
        torch.export.save(program, sink, extra_files=extra_files or {})
    return program


def write_torch_weights(state_dict: dict, path: Path, fmt: str, metadata: dict[str, str] | None = None) -> None:
    """A state_dict as `.safetensors` (no pickle) or `.pt` (loads with `torch.load(weights_only=True)`)."""
    from porttax._frameworks import import_torch

    torch = import_torch()
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    if fmt == "safetensors":
        from porttax.sources.safetensors_file import write_safetensors

        write_safetensors(tensors, path, metadata)
    else:
        with torch_archive_file(path) as sink:
            torch.save(tensors, sink)


def convert_onnx_to_torch(src: Any, log: Any, *, output: str | Path, parity: bool = True,
                          seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32", reference: str = "auto", measure_latency: bool = True,
                          force: bool = False, progress: Progress | None = None, t0: float | None = None) -> Any:
    """Write the converted module as `.pt2`, with parity of the reloaded archive against onnxruntime."""
    from porttax.targets import _check
    from porttax.types import ConversionResult
    from porttax._frameworks import import_torch
    from porttax.parity import TorchRunner
    from porttax.saving import atomic_output

    progress = progress or QUIET
    t0 = time.perf_counter() if t0 is None else t0
    if Path(output).suffix.lower() != ".pt2":
        raise InputError("an ONNX model converts --to torch as a .pt2 file", path=str(output),
                         hint="use -o model.pt2")
    torch = import_torch()
    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                     ops_folded=log.ops_folded)
    report = None
    with atomic_output(output, force=force) as tmp:
        progress.stage(f"writing torch.export archive to {output}")
        with torch_archive_file(tmp) as sink:
            torch.export.save(src.program, sink)
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
        runner = TorchRunner(torch.export.load(str(tmp)), [s.name for s in src.specs], name=f"{src.name}.pt2")
        report = _check.run_parity(src, runner, seeds, profile, progress, reference) if parity else None
        if measure_latency:
            _check.time_both(src, runner, tax, progress)
    if report is not None:
        _check.fill_drift(tax, report)
    return ConversionResult("torch", Path(output), None, log, report, tax, src)


def _pt2_from_keras(job: ConvertJob) -> ConversionResult:
    return convert_keras(job, PT2)


def _state_dict_from_keras(job: ConvertJob) -> ConversionResult:
    return convert_keras(job, STATE_DICT)


def _from_onnx(job: ConvertJob) -> ConversionResult:
    return convert_onnx_to_torch(job.src, job.log, output=job.output, t0=job.t0, **job.checks())


def _safetensors_from_keras(job: ConvertJob) -> ConversionResult:
    """A `.safetensors` of the converted module, or (-o DIR/) the checkpoint folder the `.keras` came from."""
    from porttax.targets.checkpoint import (DEFAULT_SHARD_BYTES, convert_keras_to_checkpoint, is_folder_output,
                                            parse_shard_size)

    if is_folder_output(job.output):
        size = job.max_shard_size
        shard = (DEFAULT_SHARD_BYTES if size is None else parse_shard_size(size) if isinstance(size, str)
                 else int(size))
        return convert_keras_to_checkpoint(job.source, output=job.output, dtype=job.dtype, max_shard_bytes=shard,
                                           weight_map_from=job.weight_map_from, trust_code=job.load.trust_code,
                                           **job.checks())
    if job.dtype is not None or job.max_shard_size is not None or job.weight_map_from is not None:
        raise InputError("--dtype, --max-shard-size and --weight-map apply to a checkpoint folder "
                         "(--to safetensors -o DIR/)", path=str(job.output))
    return convert_keras(job, SAFETENSORS)


_FROM_PYTORCH = "a PyTorch model is already a PyTorch model; convert it --to keras or savedmodel"
register_target(Target(
    "torch", "a torch.export archive (.pt2) of the converted module", aliases=("pytorch", "pt2"),
    suffixes=(".pt2",), output="required", output_hint="pass -o model.pt2", refusal_hint=_FROM_PYTORCH,
    ways={"keras": Way(_pt2_from_keras, needs="source", options=("channels_first",), in_memory=True),
          "onnx": Way(_from_onnx, needs="loaded")}))
register_target(Target(
    "safetensors", "the converted module's weights (.safetensors), or a checkpoint folder in the source's own "
    "layout", suffixes=(".safetensors",), output="required", refusal_hint=_FROM_PYTORCH,
    output_hint="pass -o weights.safetensors, or -o DIR/ for a checkpoint folder",
    ways={"keras": Way(_safetensors_from_keras, needs="source",
                       options=("channels_first", "dtype", "max_shard_size", "weight_map_from"), in_memory=True)}))
register_target(Target(
    "state_dict", "the converted module's state_dict (.pt, loads with weights_only=True)", suffixes=(".pt", ".pth"),
    output="required", output_hint="pass -o weights.pt", refusal_hint=_FROM_PYTORCH,
    ways={"keras": Way(_state_dict_from_keras, needs="source", options=("channels_first",), in_memory=True)}))
