"""`porttax.convert`: a short pipeline over the registries — choose the target and its way for the
source's kind (porttax.targets), load the source, build a Keras model by the chosen road where the
way needs one (porttax.routes), and hand the job to the target, which writes, checks and prices."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from porttax.dtype_policy import checkpoint_weight_dtype, keras_dtype
from porttax.errors import InputError
from porttax.progress import QUIET, Progress
from porttax.types import ConversionResult, ConvertJob, LoadOptions


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
    reference: str = "auto",
    measure_latency: bool = True,
    force: bool = False,
    jit: bool = False,
    trust_code: bool = False,
    channels_first: bool = False,
    dtype: str | None = None,
    max_shard_size: str | int | None = None,
    weight_map_from: str | Path | None = None,
    max_cache_len: int | None = None,
    route: str = "fallback",
    prefer: str = "fastest",
    quantize: str | None = None,
    calibration: str | Path | None = None,
    progress: Progress | None = None,
    static: bool = False,
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
    `route` picks the road to Keras: "fallback" (the default: direct, and the ONNX road only where the
    direct one has no converter for an op), "direct", "onnx" (through torch.onnx.export and porttax's
    ONNX registry) or "auto" (both, checked, the best kept; see porttax.routes); `prefer` breaks ties
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
    `reference` ("auto", "float64", "none") is parity's float64 reference: by default each output is
    judged against the error the source itself makes in float32 (porttax.parity.reference); "none"
    keeps the profile's fixed threshold.
    A source porttax captures itself (a checkpoint with an architecture, a trusted pickle or TorchScript
    archive with named dims in `input_shapes` such as ("batch", 3, 224, 224)) is captured with an open
    batch (and sequence) dim, which every target keeps; `static=True` fixes every dim to the example's
    size instead. Parity then runs at several sizes of each open dim.
    Parity runs on the written artefact, reloaded the way a user would load it, before it is moved
    into place. The result says whether parity passed; it does not raise on drift, so a caller can
    still inspect the report (the CLI turns a failure into exit code 1).
    """
    from porttax import targets
    from porttax.parity.reference import check_reference_mode
    from porttax.saving import check_output
    from porttax.sources import kind_of

    load = LoadOptions(example_inputs=example_inputs, input_shapes=input_shapes, input_dtypes=input_dtypes,
                       arch=arch, config=config, trust_pickle=trust_pickle, trust_code=trust_code, static=static)
    job = ConvertJob(source, output=output, load=load, parity=parity, seeds=tuple(seeds), profile=profile,
                     reference=check_reference_mode(reference),
                     measure_latency=measure_latency, force=force, jit=jit, channels_first=channels_first,
                     dtype=dtype, max_shard_size=max_shard_size, weight_map_from=weight_map_from,
                     max_cache_len=max_cache_len, route=route, prefer=prefer, quantize=quantize,
                     calibration=calibration, progress=progress or QUIET)
    job.kind = kind_of(source)  # torch, onnx or keras: which of the target's ways it takes
    target = targets.resolve(infer_target(to, output, job.kind == "keras"))
    job.target = target.name
    way = target.admit(job)  # a source, option or output the target cannot take: refused before anything slow
    if job.route == "onnx2tf" and target.name != "savedmodel":
        raise InputError("the onnx2tf road writes a SavedModel", hint="use --to savedmodel -o DIR with --route onnx2tf")
    if output is not None:
        check_output(output, force)  # fail before the slow part, not after it
    if way.needs == "source":  # the target reads the source itself
        return way.write(job)
    _load(job, whole_program=way.needs == "program" or job.route == "onnx2tf")
    if job.route == "onnx2tf":  # a road that writes the SavedModel itself (onnx2tf's own mapping)
        from porttax.targets.onnx2tf import convert_via_onnx2tf

        return convert_via_onnx2tf(job.src, output=job.output, t0=job.t0, **job.checks())
    if way.needs == "keras":
        _build(job)
    return way.write(job)


def _load(job: ConvertJob, *, whole_program: bool) -> None:
    """Load a PyTorch or ONNX source into `job.src` (an ONNX file arrives as a torch module, with the
    log of that conversion in `job.log`), capturing its program with torch.export."""
    from porttax._frameworks import import_torch

    import_torch()
    progress, source = job.progress, job.source
    job.t0 = time.perf_counter()
    progress.stage(f"loading {source if isinstance(source, (str, Path)) else type(source).__name__}")
    from porttax.sources.torch_source import load_torch_source

    # a live module or any torch-kind file, or an ONNX file: registered formats, found by sniffing
    opts = job.load
    job.src = load_torch_source(source, example_inputs=opts.example_inputs, input_shapes=opts.input_shapes,
                                input_dtypes=opts.input_dtypes, arch=opts.arch, config=opts.config,
                                trust_pickle=opts.trust_pickle, trust_code=opts.trust_code, stream=opts.stream,
                                static=opts.static)
    job.log = job.src.import_log  # the ONNX → torch mapping of an ONNX source; None otherwise
    src = job.src
    if whole_program and getattr(src, "streamed", False):
        from porttax.sources.torch_program import capture_module
        from porttax.sources.torch_source import open_axes_of

        progress.stage(f"reading every weight: --to {job.target} needs the whole model in memory")
        src.program, _ = capture_module(src.runnable(), src.example, src.path, open_axes_of([s.shape for s in src.specs]))
    sig = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in src.specs)
    how = "through the ONNX road" if src.capture == "onnx" else "with torch.export"
    progress.stage(f"captured {src.origin} {how}: {sig}")
    for note in getattr(src, "capture_notes", None) or []:
        progress.stage(note)
    upgrade = getattr(src, "onnx_opset", None) or {}
    if "converted_at" in upgrade:
        progress.stage(f"ONNX opset {upgrade['file_opset']} upgraded to {upgrade['converted_at']} by "
                       f"{upgrade['upgraded_by']}; parity runs the original file")


def _build(job: ConvertJob) -> None:
    """The Keras model of a loaded source, by the road `job.route` picks (porttax.routes), in the
    dtype the job asks for: `job.model`, `job.log`, `job.layer_map` and every road tried."""
    from porttax._frameworks import import_keras
    from porttax.routes import build_keras

    import_keras()
    src, progress = job.src, job.progress
    if job.dtype not in (None, "float32", "bfloat16", "float16"):
        raise InputError(f"--dtype {job.dtype!r}: choose float32, bfloat16 or float16")
    if job.kind == "torch":
        src.float_dtype = job.dtype or "float32"
        src.weight_dtype = job.dtype or checkpoint_weight_dtype(getattr(src, "checkpoint_dtypes", None)) or "float32"
        if src.float_dtype != "float32":
            progress.stage(f"building the Keras model in {job.dtype} (variables and compute)")
            if job.profile == "fp32":
                job.profile = {"bfloat16": "bf16", "float16": "fp16"}[src.float_dtype]
                progress.stage(f"parity against the source in {src.float_dtype}, profile {job.profile}")
        elif src.weight_dtype != "float32":
            progress.stage(f"weights stay {src.weight_dtype}, as the checkpoint stores them, and are computed in "
                           f"float32 (--dtype {src.weight_dtype} computes in it too; --dtype float32 widens them)")
    # an ONNX source (or TorchScript captured through ONNX) already is the ONNX road's midpoint: its only
    # road is the direct mapping from there
    route = job.route
    if job.kind == "onnx" or src.capture == "onnx":
        if route not in ("direct", "fallback"):
            progress.stage(f"--route {route}: {src.origin} arrived through ONNX already, so the direct mapping "
                           "from there is its one road")
        route = "direct"

    def build() -> None:
        with keras_dtype(src.float_dtype, src.weight_dtype):
            (job.model, job.log, job.layer_map), job.roads = build_keras(
                src, route, seeds=job.seeds, profile=job.profile, progress=progress, prefer=job.prefer,
                reference=job.reference)

    build()
    if getattr(job.log, "rounded_weights", None):
        progress.stage(f"{len(job.log.rounded_weights)} weight(s) the converter derived are not exact in "
                       f"{src.weight_dtype} ({', '.join(job.log.rounded_weights[:3])}): converting again with float32 "
                       "weights")
        src.weight_dtype = "float32"
        build()
