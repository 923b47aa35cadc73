"""Converted-model CPU latency as a ratio to the source PyTorch model, measured in one run.

    .venv/bin/python bench/latency.py [--seconds 6] [--models resnet18,llama-tiny] [--threads all,1]

Machines are noisy, so each model is converted once and then source and converted runtimes are
called in turn (torch, Keras, SavedModel, torch, ...) in this one process, so all of them see the
same drift in machine speed, and the ratio of median call times is printed. Only ratios are meaningful across machines; the target is <= 1.5x.
The last column is the SavedModel written with `--jit` (serving function compiled with XLA).

`--threads` runs the whole table once per thread count, each in its own process, with the same count
given to both sides (torch.set_num_threads and TF's intra-op pool; TF's inter-op pool is 1): thread
pools are process-wide and TF fixes its pools at start-up. Why both: torch runs an op on one thread
when it is too small to split, while TF's oneDNN kernels (batched matmul, softmax, swish) split every
op over the pool, which on a model whose call takes under a millisecond (llama-tiny) costs more than
the op itself (the converter writes small attention and SiLU without them; softmax remains). At one
thread each, the comparison is of the converted graph alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from porttax._frameworks import import_tf, import_torch, import_torchvision  # noqa: E402


def build(name: str):
    torch = import_torch()
    if name == "resnet18":
        torch.manual_seed(0)
        return import_torchvision().models.resnet18(weights=None).eval(), (torch.randn(1, 3, 224, 224),)
    from porttax import models

    return models.build_model(name), models.example_inputs(name, batch=1, seq=64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,llama-tiny")
    ap.add_argument("--seconds", type=float, default=6.0, help="timing budget per model")
    ap.add_argument("--threads", default="all,1",
                    help="comma-separated thread counts for both runtimes, one process each; all = every core")
    args = ap.parse_args()
    counts = args.threads.split(",")
    if len(counts) > 1:
        for count in counts:
            argv = [a for a in sys.argv[1:] if not a.startswith("--threads")]
            if "--threads" in sys.argv:  # drop the value of a separate "--threads V"
                i = sys.argv.index("--threads")
                argv = sys.argv[1:i] + sys.argv[i + 2:]
            subprocess.run([sys.executable, __file__, *argv, f"--threads={count}"], check=True)
        return
    threads = (os.cpu_count() or 1) if counts[0] == "all" else int(counts[0])

    import porttax
    from porttax.parity import make_inputs
    from porttax.parity.runners import KerasRunner, SavedModelRunner, TorchRunner
    from porttax.tax import time_interleaved

    torch = import_torch()
    tf = import_tf()
    torch.set_num_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    print(f"\nthreads per runtime: {threads} (torch {torch.get_num_threads()}, TF intra-op "
          f"{tf.config.threading.get_intra_op_parallelism_threads()}), cpu count {os.cpu_count()}")
    print(f"{'model':<12} {'torch ms':>9} {'keras ms':>9} {'ratio':>6} {'savedmodel ms':>14} {'ratio':>6} "
          f"{'sm --jit ms':>12} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            module, example = build(name)
            res = porttax.convert(module, example_inputs=example, to="savedmodel",
                                  output=Path(tmp) / f"{name}_sm", parity=True, measure_latency=False)
            assert res.passed, res.parity.summary_line()
            jit = porttax.convert(module, example_inputs=example, to="savedmodel", jit=True,
                                  output=Path(tmp) / f"{name}_sm_jit", parity=True, measure_latency=False)
            assert jit.passed, jit.parity.summary_line()
            names = [s.name for s in res.source.specs]
            inputs = make_inputs(res.source.specs, 0)
            runners = {
                "torch": TorchRunner(module, names),
                "keras": KerasRunner(res.keras_model, compiled=True),
                "savedmodel": SavedModelRunner(res.output),
                "jit": SavedModelRunner(jit.output),
            }
            med = time_interleaved({k: (lambda r=r: r.run(inputs)) for k, r in runners.items()},
                                   budget_s=args.seconds)
            print(f"{name:<12} {med['torch']:9.2f} {med['keras']:9.2f} {med['keras'] / med['torch']:5.2f}x "
                  f"{med['savedmodel']:14.2f} {med['savedmodel'] / med['torch']:5.2f}x "
                  f"{med['jit']:12.2f} {med['jit'] / med['torch']:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
