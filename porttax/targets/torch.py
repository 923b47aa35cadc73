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
from porttax.progress import QUIET, Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk, time_call

TORCH_TARGETS = ("torch", "safetensors", "state_dict", "onnx", "executorch")
PT2_LAYER_MAP = "porttax/layer_map.json"  # in a .pt2 from this road: torch module outputs ↔ Keras layer outputs
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
    from porttax.conversion import ConversionResult
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
        report = _parity(src, converted, seeds, profile, progress) if parity else None
        if measure_latency:
            _latency(src, converted, tax, progress)
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
            report = _parity(src, converted, seeds, profile, progress) if parity else None
            if measure_latency:
                _latency(src, converted, tax, progress)
        final = Path(output)
    conv = ConversionResult(target, final, src.model, log, report, tax, src)
    conv.torch_module = module
    conv.layer_map = result.layer_map
    if report is not None:
        from porttax.conversion import _fill_drift

        _fill_drift(tax, report)
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
    from porttax.saving import write_pt2, write_torch_weights

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
                                      PT2_LAYER_MAP: result.layer_map.to_json()})
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


def _source_runner(src: Any) -> Any:
    from porttax.parity import KerasRunner, SavedModelRunner

    if src.origin == "savedmodel" and src.path and (Path(src.path) / "keras_metadata.pb").is_file():
        # a TF-Keras 2 SavedModel was rebuilt in Keras 3; the reference is the graph TF-Keras itself wrote,
        # so a config that Keras 3 reads differently shows up as drift instead of hiding in both sides
        return SavedModelRunner(src.path, name=f"{src.name} (TF-Keras SavedModel)")
    return KerasRunner(src.model, [s.name for s in src.specs], compiled=True, name=f"{src.name} (Keras)")


def _parity(src: Any, runner: Any, seeds: Sequence[int], profile: str, progress: Progress) -> Any:
    from porttax.parity import check_parity

    progress.stage(f"checking parity over {len(seeds)} seed(s), profile {profile}")
    source = _source_runner(src)
    source.layer_map = getattr(runner, "layer_map", None)  # the Keras side of each tap
    return check_parity(source, runner, src.specs, seeds=seeds, profile=profile)


def _latency(src: Any, runner: Any, tax: PortingTax, progress: Progress) -> None:
    from porttax.parity import make_inputs

    progress.stage("timing source (Keras on TensorFlow) and converted (torch) model on CPU")
    inputs = make_inputs(src.specs, 0)
    source = _source_runner(src)
    tax.latency_source_ms = time_call(lambda: source.run(inputs))
    tax.latency_converted_ms = time_call(lambda: runner.run(inputs))
