"""`porttax.convert`: load a PyTorch source, convert it, write it atomically, prove it, price it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from porttax.dtype_policy import checkpoint_weight_dtype, keras_dtype
from porttax.errors import InputError
from porttax.progress import QUIET, Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk
from porttax.types import ConversionResult

def infer_target(to: str | None, output: str | Path | None, keras_source: bool = False) -> str:
    """The target `--to` names (any spelling porttax.targets registers), else the one `output`'s ending
    picks; with neither, a Keras source goes to torch and a PyTorch source to a SavedModel (to a Keras
    model in memory when there is no output at all)."""
    from porttax import targets

    if to is not None:
        return targets.resolve(to).name
    picked = targets.for_output(output) if output is not None else None
    if picked is not None:
        return picked.name
    if keras_source:
        return "torch"
    return "savedmodel" if output is not None else "keras"


def convert(
    source: Any,
    *,
    to: str | None = None,
    output: str | Path | None = None,
    example_inputs: Sequence[Any] | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    input_dtypes: Sequence[str] | None = None,
    arch: str | None = None,
    config: dict[str, Any] | str | Path | None = None,
    trust_pickle: bool = False,
    parity: bool = True,
    seeds: Sequence[int] = (0, 1, 2),
    profile: str = "fp32",
    measure_latency: bool = True,
    force: bool = False,
    jit: bool = False,
    trust_code: bool = False,
    channels_first: bool = False,
    dtype: str | None = None,
    max_shard_size: str | int | None = None,
    weight_map_from: str | Path | None = None,
    max_cache_len: int | None = None,
    route: str = "direct",
    prefer: str = "fastest",
    quantize: str | None = None,
    calibration: str | Path | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Convert a model between PyTorch and Keras 3 / TensorFlow, write it atomically, prove it, price it.

    PyTorch sources (live module, `.pt2`, checkpoint + architecture, trusted pickle) go to Keras.
    Keras sources (a live model, `.keras`, `.h5`, a SavedModel porttax wrote) go to torch:
    `to="torch"` writes a `.pt2`, `to="safetensors"` / `to="state_dict"` the weights of the converted
    module; `trust_code` allows Lambda layers to load, `channels_first` gives image inputs and outputs
    torch's NCHW layout (see porttax.targets.torch).

    `to="keras"` gives a Keras 3 model (written as `.keras` when `output` is set); `to="savedmodel"`
    writes a TF SavedModel with a `serving_default` signature taking the source's inputs by name;
    `to="tflite"` a LiteRT flatbuffer from that SavedModel (builtin ops only; see porttax.targets.tflite),
    `quantize` "dynamic" or "int8" (calibrated on `calibration`, an .npz, or 32 seeded inputs).
    `to="tfjs"` a TensorFlow.js graph-model folder, from that SavedModel (or a Keras source's own) by the
    official converter in its own environment, checked in Node.js (see porttax.targets.tfjs).
    `route` picks the road to Keras: "direct", "onnx" (through torch.onnx.export and porttax's ONNX
    registry) or "auto" (both, checked, the best kept; see porttax.routes); `prefer` breaks ties
    between roads of equal drift: "fastest" or "first" (deterministic, for audits).
    `jit=True` compiles a SavedModel's serving function with XLA (see porttax.targets.savedmodel.write_savedmodel).
    A `.keras` porttax converted from a checkpoint goes back to the checkpoint's own layout with
    `to="safetensors"` and an `output` folder (not a `.safetensors` file): Hugging Face's config.json
    and safetensors shards of at most `max_shard_size`, in the stored dtype or `dtype` (see
    porttax.targets.checkpoint). A SavedModel of a Llama-family checkpoint also gets `logits` (input_ids,
    attention_mask) and `decode` (one step with a KV cache of `max_cache_len` slots) signatures, and
    parity then includes greedy generation through `decode` (porttax.targets.llm_signatures).
    `weight_map_from` names the .keras porttax wrote when `source` is a copy
    Keras saved again (fine-tuned), which keeps the layers but not porttax's map.
    Parity runs on the written artefact, reloaded the way a user would load it, before it is moved
    into place. The result says whether parity passed; it does not raise on drift, so a caller can
    still inspect the report (the CLI turns a failure into exit code 1).
    """
    from porttax._frameworks import import_keras, import_torch
    from porttax.saving import atomic_output, check_output
    from porttax import targets
    from porttax.targets import _check
    from porttax.targets.keras import add_weight_map, write_keras
    from porttax.targets.savedmodel import write_savedmodel

    from porttax.sources.keras_source import is_keras_source

    from porttax.sources.onnx_source import is_onnx_source

    progress = progress or QUIET
    keras_source = is_keras_source(source)
    onnx_source = is_onnx_source(source)
    target = infer_target(to, output, keras_source)
    if target == "keras-weights":  # weights only, streamed: no model is built, so nothing runs
        if parity and output is not None:
            progress.stage("weights only: no model is built, so no parity check runs (convert --to keras for one)")
        from porttax.targets.keras_weights import convert_to_keras_weights

        return convert_to_keras_weights(source, output=output, arch=arch, config=config, force=force,
                                        progress=progress)
    if target == "executorch":
        from porttax.targets.executorch import check_pte_path, require_executorch

        check_pte_path(output)
        require_executorch()
    if target == "tfjs":  # a folder; Node and the converter's own environment (created now if missing) first
        from porttax.tfjs.env import require_tfjs
        from porttax.targets.tfjs import check_tfjs_output

        check_output(check_tfjs_output(output), force)
        require_tfjs(progress)
    if onnx_source and target in ("torch", "safetensors", "state_dict", "onnx"):
        if target != "torch" or output is None:
            raise InputError(f"an ONNX model converts to keras, savedmodel or torch (.pt2); got {target!r}",
                             path=str(source), hint="use --to torch -o model.pt2")
        check_output(output, force)
        from porttax.sources.onnx_source import load_onnx_source
        from porttax.targets.torch import convert_onnx_to_torch

        t0 = time.perf_counter()
        progress.stage(f"converting ONNX {source} to a torch module")
        src, log = load_onnx_source(source, input_shapes)
        return convert_onnx_to_torch(src, log, output=output, parity=parity, seeds=seeds, profile=profile,
                                     measure_latency=measure_latency, force=force, progress=progress, t0=t0)
    if keras_source and target == "tflite":  # the SavedModel road needs no porttax mapping: TF's own export
        from porttax.targets.tflite import convert_keras_source_to_tflite

        return convert_keras_source_to_tflite(source, output=output, trust_code=trust_code, parity=parity,
                                              seeds=seeds, profile=profile, measure_latency=measure_latency,
                                              force=force, progress=progress, quantize=quantize,
                                              calibration=calibration)
    if keras_source and target == "tfjs":  # straight to the TF.js converter: a SavedModel is what it reads
        if jit or quantize is not None or calibration is not None:
            raise InputError("--jit, --quantize and --calibration do not apply to --to tfjs")
        from porttax.targets.tfjs import convert_keras_source_to_tfjs

        return convert_keras_source_to_tfjs(source, output=output, trust_code=trust_code, parity=parity,
                                            seeds=seeds, profile=profile, measure_latency=measure_latency,
                                            force=force, progress=progress)
    if keras_source or target in ("torch", "safetensors", "state_dict"):  # executorch: from Keras, via torch
        if not keras_source:
            raise InputError(f"--to {target} takes a Keras source (.keras, .h5 or a SavedModel directory)",
                             hint="a PyTorch model is already a PyTorch model; convert it --to keras or savedmodel")
        if jit:
            raise InputError("--jit applies to SavedModel outputs only")
        from porttax.targets.checkpoint import is_folder_output

        if target == "safetensors" and is_folder_output(output):
            from porttax.targets.checkpoint import DEFAULT_SHARD_BYTES, convert_keras_to_checkpoint, parse_shard_size

            shard = (DEFAULT_SHARD_BYTES if max_shard_size is None else
                     parse_shard_size(max_shard_size) if isinstance(max_shard_size, str) else int(max_shard_size))
            return convert_keras_to_checkpoint(source, output=output, dtype=dtype, max_shard_bytes=shard,
                                               weight_map_from=weight_map_from,
                                               trust_code=trust_code, parity=parity, seeds=seeds, profile=profile,
                                               measure_latency=measure_latency, force=force, progress=progress)
        if dtype is not None or max_shard_size is not None or weight_map_from is not None:
            raise InputError("--dtype, --max-shard-size and --weight-map apply to a checkpoint folder "
                             "(--to safetensors -o DIR/)")
        from porttax.targets.torch import convert_keras

        return convert_keras(source, target=target, output=output, trust_code=trust_code,
                             channels_first=channels_first, parity=parity, seeds=seeds, profile=profile,
                             measure_latency=measure_latency, force=force, progress=progress)
    if max_shard_size is not None or weight_map_from is not None:
        raise InputError("--max-shard-size and --weight-map apply to a checkpoint folder written from a .keras "
                         "(--to safetensors -o DIR/)")
    if dtype not in (None, "float32", "bfloat16", "float16"):
        raise InputError(f"--dtype {dtype!r}: choose float32, bfloat16 or float16")
    if dtype not in (None, "float32") and target not in ("keras", "savedmodel"):
        raise InputError(f"--dtype {dtype} applies to --to keras and savedmodel", hint="other targets are float32")
    if channels_first:
        raise InputError("--channels-first applies to Keras sources",
                         hint="a PyTorch source already takes and returns its own layout")
    targets.resolve(target).check_output(output)
    if (quantize is not None or calibration is not None) and target != "tflite":
        raise InputError("--quantize and --calibration apply to --to tflite")
    if jit and target != "savedmodel":
        raise InputError("jit applies to SavedModel outputs only", hint="use --to savedmodel with --jit")
    if output is not None:
        check_output(output, force)  # fail before the slow part, not after it

    import_torch()
    from porttax.sources.torch_source import load_torch_source

    t0 = time.perf_counter()
    progress.stage(f"loading {source if isinstance(source, (str, Path)) else type(source).__name__}")
    if onnx_source:
        from porttax.sources.onnx_source import load_onnx_source

        src = load_onnx_source(source, input_shapes)[0]
    else:
        src = load_torch_source(source, example_inputs=example_inputs, input_shapes=input_shapes,
                                input_dtypes=input_dtypes, arch=arch, config=config, trust_pickle=trust_pickle,
                                trust_code=trust_code)
    if getattr(src, "streamed", False) and (target in ("onnx", "executorch") or route == "onnx2tf"):
        from porttax.sources.torch_program import export_module

        progress.stage(f"reading every weight: --to {target} needs the whole model in memory")
        src.program = export_module(src.runnable(), src.example, src.path)
    sig = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in src.specs)
    how = "through the ONNX road" if src.capture == "onnx" else "with torch.export"
    progress.stage(f"captured {src.origin} {how}: {sig}")
    if route == "onnx2tf":
        if target != "savedmodel" or output is None:
            raise InputError("the onnx2tf road writes a SavedModel", hint="use --to savedmodel -o DIR with --route onnx2tf")
        from porttax.targets.onnx2tf import convert_via_onnx2tf

        return convert_via_onnx2tf(src, output=output, parity=parity, seeds=seeds, profile=profile,
                                   measure_latency=measure_latency, force=force, progress=progress, t0=t0)
    if target == "executorch":
        from porttax.targets.executorch import convert_torch_to_executorch

        return convert_torch_to_executorch(src, output=output, parity=parity, seeds=seeds, profile=profile,
                                           measure_latency=measure_latency, force=force, progress=progress, t0=t0)
    if target == "onnx":
        from porttax.targets.onnx import convert_torch_to_onnx

        return convert_torch_to_onnx(src, output=output, parity=parity, seeds=seeds, profile=profile,
                                     measure_latency=measure_latency, force=force, progress=progress, t0=t0)
    import_keras()
    from porttax.routes import build_keras

    if target in ("keras", "savedmodel") and not onnx_source:
        src.float_dtype = dtype or "float32"
        src.weight_dtype = dtype or checkpoint_weight_dtype(getattr(src, "checkpoint_dtypes", None)) or "float32"
        if src.float_dtype != "float32":
            progress.stage(f"building the Keras model in {dtype} (variables and compute)")
            if profile == "fp32":
                profile = {"bfloat16": "bf16", "float16": "fp16"}[src.float_dtype]
                progress.stage(f"parity against the source in {src.float_dtype}, profile {profile}")
        elif src.weight_dtype != "float32":
            progress.stage(f"weights stay {src.weight_dtype}, as the checkpoint stores them, and are computed in "
                           f"float32 (--dtype {src.weight_dtype} computes in it too; --dtype float32 widens them)")
    # an ONNX source (or TorchScript captured through ONNX) already is the ONNX road's midpoint: its only
    # road is the direct mapping from there
    onnx_midpoint = onnx_source or src.capture == "onnx"
    compute_dtype = getattr(src, "float_dtype", "float32")

    def build() -> Any:
        with keras_dtype(compute_dtype, getattr(src, "weight_dtype", None)):
            return build_keras(src, "direct" if onnx_midpoint else route, seeds=seeds, profile=profile,
                               progress=progress, prefer=prefer)

    (model, log, layer_map), roads = build()
    if getattr(log, "rounded_weights", None):
        progress.stage(f"{len(log.rounded_weights)} weight(s) the converter derived are not exact in "
                       f"{src.weight_dtype} ({', '.join(log.rounded_weights[:3])}): converting again with float32 weights")
        src.weight_dtype = "float32"
        (model, log, layer_map), roads = build()

    if target == "tflite":
        from porttax.targets.tflite import convert_keras_to_tflite

        result = convert_keras_to_tflite(model, layer_map, src, log, output=output, parity=parity, seeds=seeds,
                                         profile=profile, measure_latency=measure_latency, force=force,
                                         progress=progress, t0=t0, quantize=quantize, calibration=calibration)
        result.roads, result.roads_text = [r.to_dict() for r in roads], [r.line() for r in roads]
        return result
    if target == "tfjs":
        from porttax.targets.tfjs import convert_keras_to_tfjs

        result = convert_keras_to_tfjs(model, layer_map, src, log, output=output, parity=parity, seeds=seeds,
                                       profile=profile, measure_latency=measure_latency, force=force,
                                       progress=progress, t0=t0)
        result.roads, result.roads_text = [r.to_dict() for r in roads], [r.line() for r in roads]
        return result
    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                     ops_folded=log.ops_folded, transposes_inserted=log.transposes_inserted,
                     source_transposes=log.source_transposes,
                     weights_dtype=_weights_dtype(model), compute_dtype=compute_dtype)
    report = None
    generation = None
    final: Path | None = None
    if output is None:
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        runner = _check.keras_runner(model, layer_map)
        report = _check.run_parity(src, runner, seeds, profile, progress) if parity else None
        if measure_latency:
            _check.time_both(src, runner, tax, progress)
    else:
        with atomic_output(output, force=force) as tmp:
            progress.stage(f"writing {target} to {output}")
            endpoints = {}
            if target == "keras":
                write_keras(model, tmp, layer_map)
                add_weight_map(tmp, log, src)
            else:
                from porttax.targets.llm_signatures import build_endpoints

                with keras_dtype(src.float_dtype, src.weight_dtype):
                    endpoints = build_endpoints(src, model, max_cache_len=max_cache_len, progress=progress)
                write_savedmodel(model, tmp, layer_map, jit=jit, endpoints=endpoints)
            tax.conversion_seconds = time.perf_counter() - t0
            tax.peak_rss_mb = peak_rss_mb()
            tax.output_bytes = size_on_disk(tmp)
            if parity or measure_latency:  # loading the artefact back costs a second copy of the model
                runner = _check.artifact_runner(target, tmp, src)
                report = _check.run_parity(src, runner, seeds, profile, progress) if parity else None
                if measure_latency:
                    _check.time_both(src, runner, tax, progress)
            if parity and endpoints:
                from porttax.targets.llm_signatures import check_generation, step_tolerance

                progress.stage("checking greedy generation through the 'decode' signature (KV cache) "
                               "against the source without a cache")
                generation = check_generation(runner.loaded, src.runnable(), tolerance=step_tolerance(profile))
        final = Path(output)
    if report is not None:
        _check.fill_drift(tax, report)
    return ConversionResult(target, final, model, log, report, tax, src, layer_map=layer_map,
                            roads=[r.to_dict() for r in roads], roads_text=[r.line() for r in roads],
                            generation=generation)


def _weights_dtype(model: Any) -> str:
    """The float dtype(s) of a Keras model's weights, for the report ("bfloat16", "float32", or both)."""
    dtypes = sorted({str(w.dtype) for w in model.weights if "float" in str(w.dtype)})
    return "+".join(dtypes) or "float32"
