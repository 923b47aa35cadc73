"""→ TensorFlow.js graph model: a SavedModel, the official `tensorflowjs_converter`, and a check in Node.js.

PyTorch and ONNX sources take the SavedModel road (the Keras model porttax builds, written as a
SavedModel to a scratch folder); a Keras source (`.keras`, `.h5`) is written as a SavedModel by Keras
itself, and a SavedModel directory goes to the converter as it is. The converter
(`--input_format=tf_saved_model --output_format=tfjs_graph_model --signature_name=serving_default`)
runs in a child process of its own virtual environment (porttax.tfjs.env says why), writing the
folder — `model.json` plus weight shards — to a temporary sibling of the output. Einsum equations
with an ellipsis are then spelled out and output keys the converter lost are put back
(porttax.tfjs.fixes), and parity runs the folder in Node.js on TF.js's CPU backend, as a JavaScript
user would, before it is renamed into place.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError, UnsupportedError
from porttax.progress import QUIET, Progress
from porttax.targets import Target, Way, register_target
from porttax.types import ConversionResult, ConvertJob
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk, weight_bytes

# the converter's command-line entry point, called with a real argv (its console script re-splits the
# arguments on spaces, which breaks paths that contain one)


_CONVERT = "import sys; from tensorflowjs.converters.converter import convert; convert(sys.argv[1:])"


def check_tfjs_output(output: str | Path | None) -> Path:
    """A graph model is a folder: refuse a missing -o or one that names a file type."""
    if output is None:
        raise InputError("a TensorFlow.js graph model is a folder on disk; give an output path",
                         hint="pass -o DIR (model.json and weight shards go inside it)")
    out = Path(output)
    if out.suffix.lower() in (".json", ".keras", ".tflite", ".onnx", ".pte", ".pt2", ".h5", ".bin"):
        raise InputError("a TensorFlow.js graph model is written as a folder (model.json + weight shards)",
                         path=str(output), hint="use -o web_model/ (a folder name)")
    return out


def savedmodel_to_tfjs(savedmodel: Path, out_dir: Path, name: str = "model", progress: Progress = QUIET) -> list[str]:
    """Convert a SavedModel's serving signature into a graph-model folder, corrected where TF.js needs it
    (porttax.tfjs.fixes); returns notes on those corrections. Ops TF.js has no kernel for are named in
    an UnsupportedError."""
    from porttax.tfjs.env import converter_python
    from porttax.tfjs.fixes import fix_model_json, graph_facts

    python = converter_python(progress)
    facts = graph_facts(savedmodel)
    cmd = [str(python), "-c", _CONVERT, "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
           "--signature_name=serving_default", "--saved_model_tags=serve", str(savedmodel), str(out_dir)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)  # nothing of porttax's own environment may leak into the converter's
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env, timeout=3600)
    except OSError as exc:
        raise InputError(f"cannot run the TensorFlow.js converter: {exc.strerror or exc}", path=str(python),
                         hint="delete that environment folder to have porttax create it again") from None
    if done.returncode != 0 or not (out_dir / "model.json").is_file():
        raise _converter_failure(name, done.stdout + "\n" + done.stderr, python)
    return fix_model_json(out_dir / "model.json", facts, name)


def _converter_failure(name: str, text: str, python: Path) -> Exception:
    unsupported = re.search(r"Unsupported Ops in the model (?:before|after) optimization\s*\n\s*(.+)", text)
    if unsupported:
        ops = ", ".join(sorted({op.strip() for op in unsupported.group(1).split(",") if op.strip()}))
        return UnsupportedError(f"{name}: TensorFlow.js has no kernels for op(s) {ops}",
                                hint="rewrite those ops in the model (see the TF.js supported-ops list), "
                                "or use another target (--to tflite, onnx, savedmodel)")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if any("No module named" in ln for ln in lines):
        return InputError(f"the TensorFlow.js converter environment is broken: {lines[-1][:300]}", path=str(python),
                          hint="delete that environment folder (porttax creates it again), or fix PORTTAX_TFJS_PYTHON")
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)]
    reason = (errors or lines or ["no output"])[-1][:400]
    return UnsupportedError(f"{name}: the TensorFlow.js converter failed: {reason}")


def _tfjs_runner(path: Path, name: str, progress: Progress, final: Path) -> Any:
    from porttax.parity.runners import TfjsRunner

    try:
        return TfjsRunner(path, name=name, progress=progress)
    except InputError as exc:  # name the output the user asked for, not its temporary sibling
        raise UnsupportedError(exc.message.replace(str(path), str(final)), path=str(final), hint=exc.hint) from None


def _finish(tax: PortingTax, runner: Any, report_fn: Any, latency_fn: Any, measure_latency: bool,
            tmp: Path, final: Path) -> Any:
    """Parity and latency on the written folder in Node, the runtime noted in the tax. A graph TF.js
    cannot run (an op its kernels lack, found only at run time) is refused, naming the output."""
    tax.load_ms = runner.load_ms
    tax.runtime_note = runner.runtime_note
    try:
        report = report_fn(runner)
        if measure_latency:
            latency_fn(runner)
    except InputError as exc:
        if exc.path != str(tmp):
            raise
        raise UnsupportedError(exc.message, path=str(final), hint=exc.hint or "use another target "
                               "(--to tflite, onnx, savedmodel), or rewrite the op TF.js lacks") from None
    finally:
        runner.close()
    return report


def convert_keras_to_tfjs(model: Any, layer_map: Any, src: Any, log: Any, *, output: str | Path,
                          parity: bool = True, seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32", reference: str = "auto",
                          measure_latency: bool = True, force: bool = False, progress: Progress | None = None,
                          t0: float | None = None) -> Any:
    """PyTorch / ONNX road: the Keras model porttax built → SavedModel → TF.js graph model, checked
    against the source (torch, or the ONNX file in onnxruntime) in Node.js."""
    from porttax.targets import _check
    from porttax.types import ConversionResult
    from porttax.saving import atomic_output
    from porttax.targets.savedmodel import write_savedmodel

    progress = progress or QUIET
    t0 = time.perf_counter() if t0 is None else t0
    final = check_tfjs_output(output)
    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                     ops_folded=log.ops_folded, transposes_inserted=log.transposes_inserted,
                     source_transposes=log.source_transposes)
    with atomic_output(final, force=force) as tmp:
        with tempfile.TemporaryDirectory(prefix="porttax-tfjs-") as scratch:
            progress.stage("writing a SavedModel for the TensorFlow.js converter")
            savedmodel = Path(scratch) / "savedmodel"
            write_savedmodel(model, savedmodel, None)
            _convert_stage(savedmodel, tmp, final, src.name, progress)
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
        runner = _tfjs_runner(tmp, f"{src.name} (TF.js)", progress, final)
        report = _finish(tax, runner,
                         lambda r: _check.run_parity(src, r, seeds, profile, progress, reference) if parity else None,
                         lambda r: _check.time_both(src, r, tax, progress), measure_latency, tmp, final)
    if report is not None:
        _check.fill_drift(tax, report)
    if getattr(src, "program", None) is not None:
        tax.source_weight_bytes = weight_bytes(src.program)
    return ConversionResult("tfjs", final, model, log, report, tax, src, layer_map=layer_map)


def _convert_stage(savedmodel: Path, tmp: Path, final: Path, name: str, progress: Progress) -> None:
    from porttax.tfjs import TFJS_VERSION

    progress.stage(f"converting to a TensorFlow.js graph model {final} (tensorflowjs_converter {TFJS_VERSION}, "
                   "in its own environment)")
    for note in savedmodel_to_tfjs(savedmodel, tmp, name, progress):
        progress.stage(note)


def convert_keras_source_to_tfjs(source: Any, *, output: str | Path, trust_code: bool = False, parity: bool = True,
                                 seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32", reference: str = "auto",
                                 measure_latency: bool = True, force: bool = False,
                                 progress: Progress | None = None) -> Any:
    """Keras road: a `.keras`/`.h5` model written as a SavedModel by Keras, or a SavedModel directory as
    it is, → TF.js graph model, checked against the Keras model (or the SavedModel's own serving graph)."""
    from porttax.targets import _check
    from porttax.types import ConversionResult
    from porttax._frameworks import import_keras, import_torch
    from porttax.converters.keras_to_torch.driver import functional_view
    from porttax.saving import atomic_output
    from porttax.targets.savedmodel import write_savedmodel

    progress = progress or QUIET
    final = check_tfjs_output(output)  # porttax.convert has checked it, and Node and the converter, already
    import_torch()  # before Keras/TensorFlow: see porttax._frameworks
    import_keras()
    t0 = time.perf_counter()
    progress.stage(f"loading {source if isinstance(source, (str, Path)) else type(source).__name__}")
    src, source_side = _keras_reference(source, trust_code)
    sig = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in src.specs)
    what = "Keras model" if src.model is not None else "SavedModel (a bare graph)"
    progress.stage(f"read {what} {src.name!r}: {sig}")
    log = _converter_log(src.model)
    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total)
    with atomic_output(final, force=force) as tmp:
        if src.origin == "savedmodel":
            _convert_stage(Path(src.path), tmp, final, src.name, progress)
        else:
            with tempfile.TemporaryDirectory(prefix="porttax-tfjs-") as scratch:
                progress.stage("writing the Keras model as a SavedModel for the TensorFlow.js converter")
                savedmodel = Path(scratch) / "savedmodel"
                write_savedmodel(functional_view(src.model), savedmodel, None)  # a loaded Sequential's graph
                _convert_stage(savedmodel, tmp, final, src.name, progress)
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
        runner = _tfjs_runner(tmp, f"{src.name} (TF.js)", progress, final)

        def check(r: Any) -> Any:
            from porttax.parity import check_parity

            if not parity:
                return None
            progress.stage(f"checking parity over {len(seeds)} seed(s), profile {profile}")
            return check_parity(source_side, r, src.specs, seeds=seeds, profile=profile, reference=reference)

        def latency(r: Any) -> None:
            from porttax.parity import make_inputs
            from porttax.tax import time_call

            progress.stage("timing source (TensorFlow) and converted (TF.js in Node) model on CPU")
            inputs = make_inputs(src.specs, 0)
            tax.latency_source_ms = time_call(lambda: source_side.run(inputs))
            tax.latency_converted_ms = time_call(lambda: r.run(inputs))

        report = _finish(tax, runner, check, latency, measure_latency, tmp, final)
    if report is not None:
        _check.fill_drift(tax, report)
    if src.model is not None:
        tax.source_weight_bytes = sum(int(w.numpy().nbytes) for w in src.model.weights) or None
    return ConversionResult("tfjs", final, src.model, log, report, tax, src)


def _keras_reference(source: Any, trust_code: bool) -> tuple[Any, Any]:
    """The Keras source and the runner parity compares against: the Keras model itself, or for a
    SavedModel directory its own serving graph (what the converter reads), inputs named as it names them."""
    from dataclasses import replace

    from porttax.sources.keras_source import KerasSource, load_keras_source
    from porttax.parity import KerasRunner, SavedModelRunner

    if isinstance(source, (str, Path)) and Path(source).is_dir():
        path = Path(source)
        reference = SavedModelRunner(path, name=f"{path.name} (SavedModel)")
        try:
            keras_src = load_keras_source(path, trust_code=trust_code)
        except InputError:  # a bare graph: no layers, but a signature the converter reads all the same
            keras_src = None
        specs = list(reference.specs or [])
        if keras_src is not None and len(keras_src.specs) == len(specs):
            # token-id ranges come from the Keras model's Embeddings; names from the serving signature
            by_name = {s.name: s for s in keras_src.specs}
            specs = [replace(s, value_range=(by_name.get(s.name) or k).value_range)
                     for s, k in zip(specs, keras_src.specs)]
        model = keras_src.model if keras_src is not None else None
        return KerasSource(model, specs, "savedmodel", str(path)), reference
    src = load_keras_source(source, trust_code=trust_code)
    return src, KerasRunner(src.model, [s.name for s in src.specs], compiled=True, name=f"{src.name} (Keras)")


def _converter_log(model: Any) -> Any:
    """One record per Keras layer, all converted by the TF.js converter (it converts the whole graph or fails)."""
    from porttax.converters.mapping_log import MappingLog

    log = MappingLog()
    for layer in getattr(model, "layers", None) or []:
        record = log.layer(layer.name, type(layer).__name__)
        record.converters.append("tensorflowjs_converter")
    return log


def _prepare(job: ConvertJob) -> None:
    """A folder name, then Node and the converter's own environment (created now if missing): both
    before the slow part, so a missing tool is found in seconds, not after the conversion."""
    from porttax.saving import check_output
    from porttax.tfjs.env import require_tfjs

    check_output(check_tfjs_output(job.output), job.force)
    require_tfjs(job.progress)


def _from_built(job: ConvertJob) -> ConversionResult:
    return job.with_roads(convert_keras_to_tfjs(job.model, job.layer_map, job.src, job.log, output=job.output,
                                                t0=job.t0, **job.checks()))


def _from_keras(job: ConvertJob) -> ConversionResult:
    return convert_keras_source_to_tfjs(job.source, output=job.output, trust_code=job.load.trust_code, **job.checks())


register_target(Target(
    "tfjs", "a TensorFlow.js graph-model directory", aliases=("tensorflowjs",), output="required",
    output_hint="pass -o DIR (a folder that does not exist yet, or --force)", prepare=_prepare,
    ways={"torch": Way(_from_built, needs="keras", options=("route",)),
          "onnx": Way(_from_built, needs="keras", options=("route",)),
          # straight to the TF.js converter: a SavedModel is what it reads
          "keras": Way(_from_keras, needs="source")}))
