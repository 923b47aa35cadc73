"""What porttax corrects in the TensorFlow.js converter's `model.json` before a graph model is published.

Both corrections need facts only the SavedModel has, read from its frozen serving graph in porttax's
own TensorFlow (`graph_facts`) — the graph the converter freezes too, so node and tensor names agree:

- **Einsum with an ellipsis.** porttax's attention writes `...bhld,...bhsd->...bhls` on purpose (Keras'
  TF backend would otherwise rewrite it into Transpose + MatMul, several times slower in TensorFlow),
  and users' Keras models use `...` too (EinsumDense). The converter keeps such nodes, but TF.js's
  Einsum kernel refuses them at run time ("The ellipsis notation is not supported yet"). Each operand's
  rank is static in the frozen graph, so the ellipsis is spelled out as the axes it stands for: the
  same contraction, in a spelling TF.js takes.
- **Which output is which.** The converter keys the signature's outputs by matching each output
  tensor's dtype and shape against the SavedModel's signature; where two outputs share both it falls
  back to the tensor's name (`Identity_2:0`), and the caller can no longer ask for `output_2`. The
  frozen function returns its outputs in the flattened order of the signature's dict (its keys
  sorted), so each output tensor's key is known, and porttax puts the keys back.
"""

from __future__ import annotations

import base64
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import UnsupportedError

Shape = Sequence[int | None] | None


@dataclass
class GraphFacts:
    """From a SavedModel's frozen serving function: Einsum nodes (name → equation, operand shapes) and
    the signature key of each output tensor (`Identity_2:0` → `output_10`)."""

    einsums: dict[str, tuple[str, list[Shape]]] = field(default_factory=dict)
    output_keys: dict[str, str] = field(default_factory=dict)


def graph_facts(savedmodel: Path, signature: str = "serving_default") -> GraphFacts:
    from porttax._frameworks import import_tf

    tf = import_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(savedmodel))  # kept alive while frozen: the function reads its variables
    function = loaded.signatures[signature]
    facts = GraphFacts()
    structure = function.structured_outputs
    if isinstance(structure, dict):
        keys = tf.nest.flatten({k: k for k in structure})  # the order the function returns them in
        facts.output_keys = {t.name: key for t, key in zip(function.outputs, keys)}
    frozen = convert_variables_to_constants_v2(function)
    for op in frozen.graph.get_operations():
        if op.type == "Einsum":
            equation = op.get_attr("equation").decode()
            facts.einsums[op.name] = (equation, [t.shape.as_list() if t.shape.rank is not None else None
                                                 for t in op.inputs])
    return facts


def explicit_equation(equation: str, shapes: Sequence[Shape]) -> str | None:
    """`equation` with its ellipsis replaced by letters for the axes it covers; None when it cannot be
    (an unknown rank, or ellipsis axes that broadcast, which explicit letters cannot express)."""
    if "..." not in equation:
        return equation
    if "->" not in equation or any(s is None for s in shapes):
        return None
    lhs, out = equation.replace(" ", "").split("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        return None
    widths = []
    for term, shape in zip(terms, shapes):
        width = len(shape) - len(term.replace("...", "")) if "..." in term else 0  # type: ignore[arg-type]
        if width < 0:
            return None
        widths.append(width)
    total = max(widths)
    free = [c for c in string.ascii_letters if c not in equation][:total]
    if len(free) < total:
        return None
    sizes: list[set[int | None]] = [set() for _ in range(total)]
    for term, shape, width in zip(terms, shapes, widths):
        if "..." in term:
            start = term.index("...")
            for i in range(width):  # ellipsis axes align from the right, as NumPy broadcasting does
                sizes[total - width + i].add(shape[start + i])  # type: ignore[index]
    if any(len(s - {None}) > 1 for s in sizes):
        return None
    spelled = [t.replace("...", "".join(free[total - w:])) for t, w in zip(terms, widths)]
    return ",".join(spelled) + "->" + out.replace("...", "".join(free))


def fix_model_json(model_json: Path, facts: GraphFacts, name: str) -> list[str]:
    """Apply both corrections to a converted graph model in place; returns what was changed, for the
    progress log. An Einsum that cannot be spelled out is refused, naming the node, rather than shipped
    to fail in the browser."""
    model = json.loads(model_json.read_text(encoding="utf-8"))
    notes = []
    spelled = _spell_out_einsums(model, facts, name)
    if spelled:
        notes.append(f"spelled out the '...' of {spelled} Einsum equation(s), which TF.js's kernel refuses")
    renamed = _restore_output_keys(model, facts)
    if renamed:
        notes.append(f"restored the signature key of {renamed} output(s) the converter named after tensors")
    if notes:
        model_json.write_text(json.dumps(model), encoding="utf-8")
    return notes


def _spell_out_einsums(model: dict[str, Any], facts: GraphFacts, name: str) -> int:
    topology = model.get("modelTopology", {})
    nodes = list(topology.get("node", []))
    for function in (topology.get("library") or {}).get("function", []):
        nodes.extend(function.get("nodeDef", []))
    count = 0
    for node in nodes:
        if node.get("op") != "Einsum":
            continue
        attr = node.setdefault("attr", {}).get("equation", {})
        equation = base64.b64decode(attr.get("s", "")).decode()
        if "..." not in equation:
            continue
        known = facts.einsums.get(node.get("name", ""))
        rewritten = explicit_equation(equation, known[1]) if known and known[0] == equation else None
        if rewritten is None:
            raise UnsupportedError(
                f"{name}: TF.js cannot run Einsum node {node.get('name')!r} ({equation!r}): its Einsum kernel "
                "does not take '...', and porttax cannot spell it out (operand ranks unknown, or the '...' "
                "axes broadcast)", hint="give the model static ranks at that op, or write the equation without '...'")
        node["attr"]["equation"] = {"s": base64.b64encode(rewritten.encode()).decode()}
        count += 1
    return count


def _restore_output_keys(model: dict[str, Any], facts: GraphFacts) -> int:
    outputs = (model.get("signature") or {}).get("outputs")
    if not outputs or not facts.output_keys:
        return 0
    restored: dict[str, Any] = {}
    renamed = 0
    for key, info in outputs.items():
        proper = facts.output_keys.get(str(info.get("name")), key)
        renamed += proper != key
        restored[proper] = info
    if len(restored) != len(outputs):  # two tensors claimed one key: leave the converter's names alone
        return 0
    model["signature"]["outputs"] = restored
    return renamed
