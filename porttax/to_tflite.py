"""PyTorch (or ONNX) → LiteRT `.tflite`: the SavedModel road, then TensorFlow's own TFLite converter.

The model is built by the same road as a SavedModel and written to a scratch folder, which
`tf.lite.TFLiteConverter` turns into flatbuffer bytes with builtin ops only: a model that would need
TF Select ("Flex") ops, which a stock LiteRT runtime lacks, is refused with those ops named rather than
shipped half-runnable. Parity runs the written file in the LiteRT interpreter, as a phone would.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError, UnsupportedError, brief
from porttax.progress import QUIET, Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk

def savedmodel_to_tflite(savedmodel: Path, name: str = "model") -> bytes:
    """TFLite flatbuffer bytes of a SavedModel's serving signature, builtin ops only."""
    from porttax._frameworks import import_tf

    tf = import_tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
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


def convert_keras_to_tflite(model: Any, layer_map: Any, src: Any, log: Any, *, output: str | Path,
                            parity: bool = True, seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32",
                            measure_latency: bool = True, force: bool = False, progress: Progress | None = None,
                            t0: float | None = None) -> Any:
    """Write the converted Keras model as `.tflite` and check it in the LiteRT interpreter."""
    from porttax import conversion
    from porttax.parity.runners import TfLiteRunner
    from porttax.saving import atomic_output, write_savedmodel

    progress = progress or QUIET
    t0 = time.perf_counter() if t0 is None else t0
    if Path(output).suffix.lower() != ".tflite":
        raise InputError("a LiteRT model file must end in .tflite", path=str(output), hint="use -o model.tflite")
    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total,
                     ops_folded=log.ops_folded, transposes_inserted=log.transposes_inserted,
                     source_transposes=log.source_transposes)
    report = None
    with atomic_output(output, force=force) as tmp:
        with tempfile.TemporaryDirectory(prefix="porttax-tflite-") as scratch:
            progress.stage("writing a SavedModel for TensorFlow's TFLite converter")
            savedmodel = Path(scratch) / "savedmodel"
            write_savedmodel(model, savedmodel, None)
            progress.stage(f"converting to LiteRT flatbuffer {output}")
            tmp.write_bytes(savedmodel_to_tflite(savedmodel, src.name))
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
        runner = TfLiteRunner(tmp, name=f"{src.name}.tflite")
        report = conversion._parity(src, runner, seeds, profile, progress) if parity else None
        if measure_latency:
            conversion._latency(src, runner, tax, progress)
    if report is not None:
        conversion._fill_drift(tax, report)
    return conversion.ConversionResult("tflite", Path(output), model, log, report, tax, src, layer_map=layer_map)
