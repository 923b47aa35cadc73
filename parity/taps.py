"""Layer taps at run time: the value of every source module's output, and the converted tensor beside it.

What a tap is, and how the map of taps is stored in an artefact, is `porttax.layer_map`; the graph it
is read from is `porttax.torch_ir`. This module runs models to fill taps in: the torch source node by
node, the converted Keras model through the tensors the map names.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from porttax.layer_map import Tap


# --- the torch side ---------------------------------------------------------------------------------


def capture_torch(program: Any, args: list[Any], *, widen: bool = False) -> tuple[dict[str, np.ndarray], list[Tap]]:
    """Run an ExportedProgram node by node, keeping the value of every module output. `widen` runs the
    same decomposed graph in float64 (the reference, porttax.parity.reference), so its taps line up."""
    from porttax._frameworks import import_torch

    from porttax.torch_ir import decompose, module_outputs

    torch = import_torch()
    gm = decompose(program).module()
    taps = module_outputs(gm.graph)
    if widen:
        from porttax.parity.reference import widen_torch_graph

        gm = widen_torch_graph(gm)
        taps = module_outputs(gm.graph)
    wanted: dict[str, list[Tap]] = {}
    for tap, node in taps:
        wanted.setdefault(node.name, []).append(tap)
    values: dict[str, np.ndarray] = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            result = super().run_node(n)
            if n.name in wanted and isinstance(result, torch.Tensor):
                t = result.detach().cpu()
                array = (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy().copy()
                for tap in wanted[n.name]:
                    values[tap.key] = array
            return result

    from porttax.parity.reference import default_dtype_float64

    with torch.no_grad(), (default_dtype_float64() if widen else contextlib.nullcontext()):
        _Recorder(gm).run(*args)
    return values, [tap for tap, _ in taps]


# --- the Keras side ----------------------------------------------------------------------------------


def tap_tensors(model: Any, taps: list[Tap]) -> dict[str, Any]:
    """{tap key: the symbolic Keras tensor carrying it} in a functional `model`, for its "tensor" taps.

    A tap whose operation is missing (a model edited after conversion) is left out rather than guessed.
    """
    ops = {op.name: op for op in model.operations}
    found = {}
    for tap in taps:
        op = ops.get(tap.operation) if tap.kind == "tensor" else None
        if op is not None and tap.node_index < len(op._inbound_nodes):
            found[tap.key] = op._inbound_nodes[tap.node_index].output_tensors[tap.tensor_index]
    return found


def to_source_layout(array: np.ndarray, perm: list[int] | None) -> np.ndarray:
    """Undo the converter's layout permutation (converted == source.permute(perm))."""
    if not perm:
        return array
    return np.transpose(array, np.argsort(perm))
