"""Every target porttax writes for one model: CPU latency and size on disk as ratios to the PyTorch source.

    .venv/bin/python bench/targets.py [--models resnet18,llama-tiny] [--seconds 6]

Each target is converted once (direct road, parity on), loaded the way its runtime loads it (Keras,
TensorFlow, onnxruntime, the LiteRT interpreter, ExecuTorch's runtime, TF.js in Node.js), and timed
with the torch source in short alternating blocks in this process (porttax.tax.time_interleaved), so
machine noise hits every runtime alike. Sizes are bytes on disk against the source's weight bytes.
Only the ratios mean anything across machines.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roads import build  # noqa: E402  (same models, same seeds)

from porttax._frameworks import import_tf, import_torch  # noqa: E402

TARGETS = [("keras", "model.keras", {}), ("savedmodel", "model_sm", {}), ("onnx", "model.onnx", {}),
           ("tflite", "model.tflite", {}), ("tflite", "model_dynamic.tflite", {"quantize": "dynamic"}),
           ("executorch", "model.pte", {}), ("tfjs", "model_web", {})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,llama-tiny")
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()

    import porttax
    from porttax.parity import make_inputs
    from porttax.parity.open import open_runner
    from porttax.parity.runners import TorchRunner
    from porttax.tax import size_on_disk, time_interleaved, weight_bytes

    torch = import_torch()
    import_tf()
    print(f"{'model':<11} {'target':<20} {'drift':>9} {'latency ms':>11} {'vs torch':>9} {'MB':>7} {'size':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            module, example = build(name)
            program = torch.export.export(module, example)
            source = Path(tmp) / f"{name}.pt2"
            torch.export.save(program, str(source))
            runners, rows, specs = {}, {}, None
            for target, file, extra in TARGETS:
                out = Path(tmp) / f"{name}-{file}"
                result = porttax.convert(source, to=target, output=out, measure_latency=False, **extra)
                label = target + (f" ({extra['quantize']})" if extra else "")
                runners[label] = open_runner(out)
                rows[label] = (result.tax.drift_rel_l2, size_on_disk(out), result.tax.top1_agreement)
                specs = result.source.specs
            src = TorchRunner(module, [s.name for s in specs], name=name)
            inputs = make_inputs(specs, 0)
            fns = {"torch": lambda: src.run(inputs)} | {k: (lambda r=r: r.run(inputs)) for k, r in runners.items()}
            times = time_interleaved(fns, budget_s=args.seconds)
            weights = weight_bytes(program)
            print(f"{name:<11} {'torch (source)':<20} {'':>9} {times['torch']:>11.3f} {1.0:>8.2f}× "
                  f"{weights / 1e6:>7.2f} {1.0:>5.2f}×")
            for label, (drift, size, top1) in rows.items():
                drift_text = f"{drift:.1e}" if drift is not None else "—"
                print(f"{'':<11} {label:<20} {drift_text:>9} {times[label]:>11.3f} {times[label] / times['torch']:>8.2f}× "
                      f"{size / 1e6:>7.2f} {size / weights:>5.2f}×")


if __name__ == "__main__":
    main()
