"""Each road's SavedModel for the same model: Transpose ops in its serving graph and CPU latency, one run.

    .venv/bin/python bench/roads.py [--models resnet18,llama-tiny] [--seconds 6]

The model is converted once per road (direct op mapping; through ONNX with porttax's registry; through
ONNX with onnx2tf), every SavedModel is loaded
with plain TensorFlow, their serving graphs are counted for layout transposes (Transpose ops and the
one-operand einsums porttax writes them as), and the source and both SavedModels
are timed in short alternating blocks in this process. Only ratios mean anything across machines.
"""

from __future__ import annotations

import argparse
import os
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


def transposes(path: Path) -> int:
    tf = import_tf()
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    graph = fn.graph.as_graph_def()
    count = 0
    for nodes in [list(graph.node)] + [list(f.node_def) for f in graph.library.function]:
        consumers: dict[str, set[str]] = {}
        for n in nodes:
            for i in n.input:
                consumers.setdefault(i.lstrip("^").split(":")[0], set()).add(n.op)
        for n in nodes:
            # A Transpose read only by 2-D MatMuls is folded into their transpose_a/b flags by Grappler
            # (porttax's per-head attention transposes its keys that way); it moves no data.
            folded = n.op == "Transpose" and consumers.get(n.name, set()) == {"MatMul"}
            # porttax writes layout moves as one-operand einsums ("abcd->acdb"): counted with Transpose
            single_einsum = n.op == "Einsum" and len([i for i in n.input if not i.startswith("^")]) == 1
            count += (n.op == "Transpose" and not folded) or single_einsum
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,llama-tiny")
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()

    import porttax
    from porttax.parity import make_inputs
    from porttax.parity.runners import SavedModelRunner, TorchRunner
    from porttax.tax import time_interleaved

    import_tf()
    print(f"{'model':<12} {'road':<8} {'transposes':>10} {'drift':>9} {'latency ms':>11} {'vs torch':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            module, example = build(name)
            results = {road: porttax.convert(module, example_inputs=example, to="savedmodel", route=road,
                                             output=Path(tmp) / f"{name}_{road}", measure_latency=False)
                       for road in ("direct", "onnx", "onnx2tf")}
            src = results["direct"].source
            inputs = make_inputs(src.specs, 0)
            runners = {"torch": TorchRunner(module, [s.name for s in src.specs])}
            runners.update({road: SavedModelRunner(r.output) for road, r in results.items()})
            med = time_interleaved({k: (lambda r=r: r.run(inputs)) for k, r in runners.items()},
                                   budget_s=args.seconds)
            for road, result in results.items():
                print(f"{name:<12} {road:<8} {transposes(result.output):>10} {result.tax.drift_rel_l2:>9.1e} "
                      f"{med[road]:>11.2f} {med[road] / med['torch']:>8.2f}x", flush=True)
            print(f"{name:<12} {'torch':<8} {'':>10} {'':>9} {med['torch']:>11.2f}")


if __name__ == "__main__":
    main()
