"""The Keras → PyTorch road of `porttax.convert`: load a Keras source, map its layers to torch modules,
write `.pt2` / safetensors / state_dict atomically, prove it with the parity suite, price it.

The `.pt2` is what `torch.export.load` reads with no porttax installed. It also carries, as extra
files, the readable `forward` of the converted module (`porttax/forward.py`) and the conversion's
mapping (`porttax/mapping.json`: which Keras variable became which state_dict key, with which
layout transform), so a reviewer can audit a port from the artefact alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from porttax.errors import InputError
from porttax.layer_map import PT2_ENTRY
from porttax.progress import QUIET, Progress
from porttax.saving import torch_archive_file
from porttax.targets import Target, register_target
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk


register_target(Target("torch", "a torch.export archive (.pt2) of the converted module", aliases=("pytorch", "pt2"),
                       suffixes=(".pt2",), output="required", output_hint="pass -o model.pt2"))
register_target(Target("safetensors", "the converted module's weights (.safetensors), or a checkpoint folder in the source's "
                       "own layout", suffixes=(".safetensors",), output="required",
                       output_hint="pass -o weights.safetensors, or -o DIR/ for a checkpoint folder"))
register_target(Target("state_dict", "the converted module's state_dict (.pt, loads with weights_only=True)",
                       suffixes=(".pt", ".pth"), output="required", output_hint="pass -o weights.pt"))


TORCH_TARGETS = ("torch", "safetensors", "state_dict", "onnx", "executorch")
_SUFFIX = {"torch": ".pt2", "safetensors": ".safetensors", "state_dict": ".pt", "onnx": ".onnx", "executorch": ".pte"}


def convert_keras(
    source: Any,
    *,
    target: str,
    output: str | Path | None,
    trust_code: bool = False,
    channels_first: bool = False,
    parity: bool = True,
    seeds: Sequence[int] = (0, 1, 2),
    profile: str = "fp32",
    measure_latency: bool = True,
    force: bool = False,
    progress: Progress | None = None,
) -> Any:
    from porttax._frameworks import import_keras, import_torch
    from porttax.targets._check import run_parity, time_both
    from porttax.types import ConversionResult
    from porttax.saving import atomic_output, check_output

    progress = progress or QUIET
    if target not in TORCH_TARGETS:
        raise InputError(f"a Keras model converts to {', '.join(TORCH_TARGETS)}; got {target!r}",
                         path=str(source) if isinstance(source, (str, Path)) else None,
                         hint="Keras → Keras/SavedModel is not a port; save it with Keras itself")
    if output is not None:
        want = _SUFFIX[target]
        if Path(output).suffix != want:
            raise InputError(f"--to {target} writes a {want} file", path=str(output), hint=f"use -o NAME{want}")
        check_output(output, force)

    import_torch()  # before Keras/TensorFlow: see porttax._frameworks
    import_keras()
    from porttax.converters.keras_to_torch.driver import convert_keras_model
    from porttax.sources.keras_source import load_keras_source

    t0 = time.perf_counter()
    progress.stage(f"loading {source if isinstance(source, (str, Path)) else type(source).__name__}")
    src = load_keras_source(source, trust_code=trust_code)
    sig = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in src.specs)
    progress.stage(f"read Keras model {src.model.name!r}: {sig}")
    progress.stage("converting Keras layers to torch modules")
    result = convert_keras_model(src.model, channels_first_io=channels_first, progress=progress.step)
    module, log = result.module, result.log

    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                     transposes_inserted=log.transposes_inserted)
    final: Path | None = None
    report = None
    if output is None:
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        converted = _runner(module, src, result)
        report = run_parity(src, converted, seeds, profile, progress) if parity else None
        if measure_latency:
            time_both(src, converted, tax, progress)
    else:
        with atomic_output(output, force=force) as tmp:
            progress.stage(f"writing {target} to {output}")
            program = _write(module, result, src, tmp, target)
            tax.conversion_seconds = time.perf_counter() - t0
            tax.peak_rss_mb = peak_rss_mb()
            tax.output_bytes = size_on_disk(tmp)
            converted = _artifact_runner(target, tmp, module, src, result, program)
            if target == "executorch":
                tax.load_ms, tax.runtime_note = getattr(converted, "load_ms", None), program.note()
            report = run_parity(src, converted, seeds, profile, progress) if parity else None
            if measure_latency:
                time_both(src, converted, tax, progress)
        final = Path(output)
    conv = ConversionResult(target, final, src.model, log, report, tax, src)
    conv.torch_module = module
    conv.layer_map = result.layer_map
    if report is not None:
        from porttax.targets._check import fill_drift

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


def _write(module: Any, result: Any, src: Any, path: Path, target: str) -> Any:
    mapping = json.dumps(_mapping(result, src), indent=1)
    if target == "onnx":  # Keras → torch module → torch.export → torch.onnx.export
        from porttax._frameworks import import_torch
        from porttax.targets.onnx import export_onnx

        example, dynamic = export_example(result, src)
        program = import_torch().export.export(module, example, dynamic_shapes=dynamic)
        export_onnx(program, example, path, name=src.name)
        return None
    if target == "executorch":  # Keras → torch module → torch.export (static shapes) → ExecuTorch
        from porttax._frameworks import import_torch
        from porttax.parity import make_inputs
        from porttax.targets.executorch import program_to_pte

        inputs = make_inputs(result.inputs, 0)  # the sizes parity feeds: a .pte is static-shaped
        example = tuple(import_torch().from_numpy(np.ascontiguousarray(inputs[s.name])) for s in result.inputs)
        program = import_torch().export.export(module, example)
        lowered = program_to_pte(program, input_names=_torch_names(src), output_names=result.output_names,
                                 name=src.name)
        path.write_bytes(lowered.buffer)
        return lowered
    if target == "torch":
        example, dynamic = export_example(result, src)
        return write_pt2(module, path, example, dynamic,
                         extra_files={"porttax/forward.py": module.code, "porttax/mapping.json": mapping,
                                      PT2_ENTRY: result.layer_map.to_json()})
    write_torch_weights(module.state_dict(), path, target,
                        metadata={"porttax.source": src.name, "porttax.keras_model": src.model.name})
    return None


def _mapping(result: Any, src: Any) -> dict[str, Any]:
    return {
        "source": src.path or src.name,
        "inputs": [s.to_dict() for s in result.inputs],
        "outputs": result.output_names,
        "channels_first": result.channels_first,
        "mapping": result.log.to_dict(),
    }


def _torch_names(src: Any) -> list[str]:
    """Torch inputs fed under the Keras input names, so both sides of parity read the same cases."""
    return [s.name for s in src.specs]


def _runner(module: Any, src: Any, result: Any) -> Any:
    from porttax.parity import TorchRunner

    runner = TorchRunner(module, _torch_names(src), name=f"{src.name} (torch)")
    runner.layer_map = result.layer_map
    return _maybe_channels_first(runner, result)


def _artifact_runner(target: str, path: Path, module: Any, src: Any, result: Any, program: Any) -> Any:
    """Parity runs what was written: the `.pt2` reloaded with torch.export.load, or the weights file
    loaded into a fresh copy of the converted module."""
    from porttax._frameworks import import_torch
    from porttax.parity import TorchRunner

    torch = import_torch()
    if target == "onnx":
        from porttax.parity.runners import OnnxRunner

        return _maybe_channels_first(OnnxRunner(path, name=f"{src.name}.onnx"), result)
    if target == "executorch":
        from porttax.parity.runners import ExecuTorchRunner

        return _maybe_channels_first(ExecuTorchRunner(path, name=f"{src.name}.pte"), result)
    if target == "torch":
        runnable = torch.export.load(str(path))
        name = f"{src.name}.pt2"
    else:
        import copy

        runnable = copy.deepcopy(module)
        if target == "safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), weights_only=True)
        runnable.load_state_dict(state, strict=True)
        name = path.name
    runner = TorchRunner(runnable, _torch_names(src), name=name)
    runner.layer_map = result.layer_map
    return _maybe_channels_first(runner, result)


def _maybe_channels_first(runner: Any, result: Any) -> Any:
    if not result.channels_first:
        return runner
    from porttax.parity.runners import ChannelsFirstAdapter

    return ChannelsFirstAdapter(runner)


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
                          seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32", measure_latency: bool = True,
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
        report = _check.run_parity(src, runner, seeds, profile, progress) if parity else None
        if measure_latency:
            _check.time_both(src, runner, tax, progress)
    if report is not None:
        _check.fill_drift(tax, report)
    return ConversionResult("torch", Path(output), None, log, report, tax, src)
