"""PyTorch (or ONNX) → LiteRT `.tflite`: the SavedModel road, then TensorFlow's own TFLite converter.

The model is built by the same road as a SavedModel and written to a scratch folder, which
`tf.lite.TFLiteConverter` turns into flatbuffer bytes with builtin ops only: a model that would need
TF Select ("Flex") ops, which a stock LiteRT runtime lacks, is refused with those ops named rather than
shipped half-runnable. Parity runs the written file in the LiteRT interpreter, as a phone would.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from porttax.errors import InputError, UnsupportedError, brief
from porttax.progress import QUIET, Progress
from porttax.targets import Target, Way, register_target
from porttax.types import ConversionResult, ConvertJob
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk, weight_bytes




QUANTIZE = ("dynamic", "int8")
CALIBRATION_CASES = 32  # seeded inputs for int8 calibration when the user gives none


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The converter's C++ prints calibration notes on file descriptor 1, which `--json` keeps for the
    report; send them to stderr for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def savedmodel_to_tflite(savedmodel: Path, name: str = "model", *, quantize: str | None = None,
                         calibration: Sequence[dict[str, Any]] | None = None,
                         input_names: Sequence[str] = ()) -> bytes:
    """TFLite flatbuffer bytes of a SavedModel's serving signature, builtin ops only.

    `quantize="dynamic"`: int8 weights, float activations (no data needed). `"int8"`: weights and
    activations int8, activation ranges calibrated on `calibration` (input dicts); the model keeps
    float32 inputs and outputs, so it stays a drop-in replacement, and an op without an int8 kernel
    stays float rather than failing the conversion.
    """
    from porttax._frameworks import import_tf

    tf = import_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is not None:
        if quantize not in QUANTIZE:
            raise InputError(f"unknown quantisation {quantize!r}", hint=f"use one of: {', '.join(QUANTIZE)}")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        if not calibration:
            raise InputError("int8 quantisation needs calibration inputs", hint="pass --calibration cases.npz")
        cases = list(calibration)
        converter.representative_dataset = lambda: ([case[n] for n in input_names] for case in cases)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with _stdout_to_stderr():
            return bytes(converter.convert())
    except Exception as exc:  # ConverterError carries the MLIR diagnostics as text
        text = str(exc)
        ops = sorted(set(re.findall(r"'tf\.([A-Za-z0-9_]+)'", text)))
        if ops or "Select TF" in text or "Flex" in text:
            raise UnsupportedError(
                f"{name}: TensorFlow's TFLite converter needs TF Select (Flex) ops for "
                f"{', '.join(ops) if ops else 'some ops'}; a stock LiteRT runtime does not have them",
                hint="rewrite those ops, or link the Flex delegate in your app and convert with TF's converter "
                "directly (porttax ships builtin-only models)") from None
        raise UnsupportedError(f"{name}: TensorFlow's TFLite converter failed: {brief(exc)}") from None


def calibration_cases(specs: Sequence[Any], path: str | Path | None, count: int = CALIBRATION_CASES) -> list[dict[str, Any]]:
    """The user's `.npz` cases, or `count` seeded inputs (seeds 1000…, apart from parity's 0, 1, 2…)."""
    from porttax.parity import load_npz_cases, make_inputs

    if path is not None:
        cases = load_npz_cases(path)
        missing = sorted({s.name for s in specs} - set(cases[0])) if cases else [s.name for s in specs]
        if missing:
            raise InputError(f"calibration cases lack input(s) {', '.join(missing)}", path=str(path))
        return cases
    return [make_inputs(specs, 1000 + i) for i in range(count)]


def convert_keras_to_tflite(model: Any, layer_map: Any, src: Any, log: Any, *, output: str | Path,
                            parity: bool = True, seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32", reference: str = "auto",
                            measure_latency: bool = True, force: bool = False, progress: Progress | None = None,
                            t0: float | None = None, quantize: str | None = None,
                            calibration: str | Path | None = None) -> Any:
    """Write the converted Keras model as `.tflite` and check it in the LiteRT interpreter.

    A quantised model is judged under the `int8` profile (top-1 agreement) unless the caller names
    another, over at least 32 seeded inputs, and its size is reported against the float weights."""
    from porttax.targets import _check
    from porttax.types import ConversionResult
    from porttax.parity.runners import TfLiteRunner
    from porttax.saving import atomic_output
    from porttax.targets.savedmodel import write_savedmodel

    progress = progress or QUIET
    t0 = time.perf_counter() if t0 is None else t0
    if Path(output).suffix.lower() != ".tflite":
        raise InputError("a LiteRT model file must end in .tflite", path=str(output), hint="use -o model.tflite")
    if quantize is not None:
        if profile == "fp32":
            profile = "int8"
        if len(seeds) < CALIBRATION_CASES:
            seeds = tuple(range(CALIBRATION_CASES))
    elif calibration is not None:
        raise InputError("--calibration goes with --quantize int8")
    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                     ops_folded=log.ops_folded, transposes_inserted=log.transposes_inserted,
                     source_transposes=log.source_transposes, quantize=quantize)
    cases = calibration_cases(src.specs, calibration) if quantize == "int8" else None
    report = None
    with atomic_output(output, force=force) as tmp:
        with tempfile.TemporaryDirectory(prefix="porttax-tflite-") as scratch:
            progress.stage("writing a SavedModel for TensorFlow's TFLite converter")
            savedmodel = Path(scratch) / "savedmodel"
            write_savedmodel(model, savedmodel, None)
            what = f" ({quantize} quantisation" + (f", {len(cases)} calibration inputs)" if cases else ")") \
                if quantize else ""
            progress.stage(f"converting to LiteRT flatbuffer {output}{what}")
            tmp.write_bytes(savedmodel_to_tflite(savedmodel, src.name, quantize=quantize, calibration=cases,
                                                 input_names=[s.name for s in src.specs]))
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
        try:
            runner = TfLiteRunner(tmp, name=f"{src.name}.tflite")
        except InputError as exc:  # name the output the user asked for, not its temporary sibling
            raise UnsupportedError(exc.message, path=str(output), hint=exc.hint) from None
        tax.load_ms = runner.load_ms
        tax.runtime_note = f"LiteRT runs it with {'the XNNPACK delegate' if runner.delegate == 'xnnpack' else 'its builtin kernels'}"
        report = _check.run_parity(src, runner, seeds, profile, progress, reference) if parity else None
        if measure_latency:
            _check.time_both(src, runner, tax, progress)
    if report is not None:
        _check.fill_drift(tax, report)
    tax.source_weight_bytes = weight_bytes(src.program) if hasattr(src, "program") else _keras_weight_bytes(model)
    return ConversionResult("tflite", Path(output), model, log, report, tax, src, layer_map=layer_map)


def convert_keras_source_to_tflite(source: Any, *, output: str | Path | None, trust_code: bool = False,
                                   progress: Progress | None = None, **options: Any) -> Any:
    """A Keras model (`.keras`, `.h5`, SavedModel) → `.tflite`, checked against the Keras model itself.

    Keras models are TensorFlow graphs already: no porttax mapping is involved, so the mapping log
    lists each Keras layer as carried over as is."""
    from porttax._frameworks import import_keras, import_torch
    from porttax.converters.mapping_log import MappingLog
    from porttax.sources.keras_source import load_keras_source
    from porttax.saving import check_output

    progress = progress or QUIET
    if output is None or not str(output).endswith(".tflite"):
        raise InputError("a LiteRT model is written to a .tflite file", path=str(output) if output else None,
                         hint="pass -o model.tflite")
    check_output(output, options.get("force", False))
    t0 = time.perf_counter()
    import_torch()  # before Keras/TensorFlow: see porttax._frameworks
    import_keras()
    progress.stage(f"loading {source if isinstance(source, (str, Path)) else type(source).__name__}")
    src = load_keras_source(source, trust_code=trust_code)
    log = MappingLog()
    for layer in src.model.layers:
        log.layer(layer.name, type(layer).__name__).targets.append(layer.name)
    return convert_keras_to_tflite(src.model, None, src, log, output=output, progress=progress, t0=t0, **options)


def _keras_weight_bytes(model: Any) -> int:
    import numpy as np

    return int(sum(np.asarray(w).nbytes for w in model.weights))


def _from_built(job: ConvertJob) -> ConversionResult:
    return job.with_roads(convert_keras_to_tflite(job.model, job.layer_map, job.src, job.log, output=job.output,
                                                  t0=job.t0, quantize=job.quantize, calibration=job.calibration,
                                                  **job.checks()))


def _from_keras(job: ConvertJob) -> ConversionResult:
    return convert_keras_source_to_tflite(job.source, output=job.output, trust_code=job.load.trust_code,
                                          quantize=job.quantize, calibration=job.calibration, **job.checks())


_QUANT = ("quantize", "calibration")
register_target(Target(
    "tflite", "a LiteRT flatbuffer (.tflite)", aliases=("litert",), suffixes=(".tflite",), output="suffix",
    output_hint="pass -o model.tflite",
    ways={"torch": Way(_from_built, needs="keras", options=("route", *_QUANT)),
          "onnx": Way(_from_built, needs="keras", options=("route", *_QUANT)),
          # a Keras model is a TensorFlow graph already: TF's own converter, no porttax mapping
          "keras": Way(_from_keras, needs="source", options=_QUANT)}))
