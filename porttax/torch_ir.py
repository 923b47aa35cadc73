"""The IR both the torch → Keras converter and the parity localiser read, and how its nodes are named.

The converter maps the graph `decompose` gives; the localiser runs the source on that same graph to
capture each module's output, and `module_outputs` names those outputs (taps) from the graph's
`nn_module_stack` metadata. Both sides import it from here, below them, so the parity suite never
imports a converter.
"""

from __future__ import annotations

import re
from typing import Any

from porttax.layer_map import Tap

_CALL_SUFFIX = re.compile(r"@(\d+)$")


def is_open(d: Any) -> bool:
    """Whether a recorded dim is still symbolic: not an int, and not a symbol the export has since
    specialised (a SymInt whose expression became a number, when the model's code pinned that size)."""
    if isinstance(d, int):
        return False
    node = getattr(d, "node", None)
    return node is None or not node.expr.is_number


def size_hints(shape: Any) -> tuple[int, ...]:
    """A recorded shape as ints: symbolic sizes as the example's value.

    Never `int(d)` on a symbolic size: that guards the program's shape environment, which from then
    on treats the size as fixed for every node that uses it (a dynamic batch becomes batch 2).
    A data-dependent size (the row count of `nonzero`) has no example value; it reads as 0. It stays
    open (`is_open`), so a converter that needs it as a number refuses, and only the export's range
    assertions, which produce nothing, ever read the 0."""
    out = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
            continue
        hint = getattr(d.node, "hint", None)
        if hint is not None:
            out.append(int(hint))
        elif d.node.expr.is_number:
            out.append(int(d.node.expr))
        else:
            out.append(0)
    return tuple(out)


def decompose(ep: Any) -> Any:
    """The IR the converters see; the parity localiser runs the source on the same IR so taps line up."""
    return ep.run_decompositions({})  # functional ops only; composite ops such as linear stay whole


def _scopes(node: Any) -> dict[str, tuple[str, str]]:
    """{scope key: (call name, module type)} for every module call enclosing `node` (root excluded)."""
    out = {}
    for key, (path, type_name) in (node.meta.get("nn_module_stack") or {}).items():
        if not path:
            continue
        m = _CALL_SUFFIX.search(key)
        call = f"{path}@{m.group(1)}" if m and m.group(1) != "0" else path
        type_short = type_name.rsplit(".", 1)[-1] if isinstance(type_name, str) else getattr(type_name, "__name__", "")
        out[key] = (call, type_short)
    return out


def module_outputs(graph: Any) -> list[tuple[Tap, Any]]:
    """(Tap, node) for every tensor a module call hands to code outside it, in execution order.

    A node is an output of module call S when some user of it lies outside S (or is the graph output).
    Inner modules come before the modules that contain them when they share an output node.
    """
    nodes = [n for n in graph.nodes if n.op == "call_function"]
    scopes = {n: _scopes(n) for n in nodes}
    found: list[tuple[int, int, str, str, Any]] = []
    for position, node in enumerate(nodes):
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape") or not hasattr(val, "dtype"):
            continue  # tuples (their getitems are tapped) and non-tensors
        for key, (call, type_name) in scopes[node].items():
            if any(u.op == "output" or key not in scopes.get(u, {}) for u in node.users):
                found.append((position, -call.count("."), call, type_name, node))
    found.sort(key=lambda f: (f[0], f[1]))
    counts: dict[str, int] = {}
    taps = []
    for order, (_, _, call, type_name, node) in enumerate(found):
        n = counts.get(call, 0)
        counts[call] = n + 1
        shape = list(size_hints(node.meta["val"].shape))
        taps.append((Tap(f"{call}#{n}", _CALL_SUFFIX.sub("", call), type_name, order, shape=shape), node))
    return taps
