"""Keras → PyTorch: converted-module CPU latency as a ratio to the Keras model on TensorFlow, in one run.

    .venv/bin/python bench/latency_to_torch.py [--seconds 6] [--models mobilenet_v2,lstm_text]

Each model is built with a fixed seed, converted once (parity must pass), then the Keras model (called
through a tf.function, as porttax's parity runner and TF Serving call it), the converted torch module
(eager) and the `.pt2` reloaded with torch.export.load are timed in short alternating blocks in this
process, so all see the same drift in machine speed; the ratio of medians is printed. Only ratios
mean anything across machines; the target is <= 1.5x.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from porttax._frameworks import import_keras, import_torch  # noqa: E402


def build(name: str):
    keras = import_keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    if name == "lstm_text":
        ids = keras.Input((64,), dtype="int32", name="ids")
        h = layers.Embedding(2000, 64, name="embed")(ids)
        h = layers.Bidirectional(layers.LSTM(64, return_sequences=True), name="bilstm1")(h)
        h = layers.Bidirectional(layers.LSTM(32), name="bilstm2")(h)
        return keras.Model(ids, layers.Dense(5, activation="softmax", name="head")(h), name="lstm_text")
    if name == "gru":
        x = keras.Input((64, 32), name="x")
        h = layers.GRU(64, return_sequences=True, name="gru1")(x)
        return keras.Model(x, layers.Dense(4, name="head")(layers.GRU(64, name="gru2")(h)), name="gru")
    raise SystemExit(f"unknown model {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,lstm_text")
    ap.add_argument("--seconds", type=float, default=6.0, help="timing budget per model")
    args = ap.parse_args()

    import porttax
    from porttax.parity import make_inputs
    from porttax.parity.runners import KerasRunner, TorchRunner
    from porttax.tax import time_interleaved

    torch = import_torch()
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    print(f"{'model':<14} {'keras(tf) ms':>12} {'torch ms':>9} {'ratio':>6} {'.pt2 ms':>8} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = build(name)
            res = porttax.convert(model, to="torch", output=Path(tmp) / f"{name}.pt2", measure_latency=False)
            assert res.passed, res.parity.summary_line()
            specs = res.source.specs
            names = [s.name for s in specs]
            inputs = make_inputs(specs, 0, sizes={"batch": 1})
            runners = {
                "keras": KerasRunner(model, names, compiled=True),
                "torch": TorchRunner(res.torch_module, names),
                "pt2": TorchRunner(torch.export.load(str(res.output)), names),
            }
            med = time_interleaved({k: (lambda r=r: r.run(inputs)) for k, r in runners.items()},
                                   budget_s=args.seconds)
            print(f"{name:<14} {med['keras']:12.2f} {med['torch']:9.2f} {med['torch'] / med['keras']:5.2f}x "
                  f"{med['pt2']:8.2f} {med['pt2'] / med['keras']:5.2f}x", flush=True)


if __name__ == "__main__":
    main()
