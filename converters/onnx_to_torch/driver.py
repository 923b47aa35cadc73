"""Walk an ONNX graph and build a `torch.fx.GraphModule` that computes the same function.

Nodes whose inputs are all constants are evaluated at conversion time with onnx's reference
evaluator, so the shape arithmetic exporters emit (Shape → Gather → Concat → Reshape) folds into
plain constants and the converters only see tensors that depend on the model's inputs. Every op
without a converter is collected before anything is built, so one run names all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from porttax.converters.mapping_log import MappingLog
from porttax.converters.onnx_to_torch.context import Const, Context, Live, OnnxCall
from porttax.converters.registry import REGISTRY
from porttax.errors import InputError, UnsupportedError

# The registry's converters are written for opset 13 and newer; older files are upgraded to it first
# (upgrade_opset). 13 is the smallest step from the opsets 7-12 most published files use, so the fewest
# of the version converter's adapters run; the parity reference stays the original file in onnxruntime,
# so an adapter that changed what a node computes shows as drift.
MIN_OPSET = 13
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


@dataclass
class OnnxConversion:
    module: Any  # torch.fx.GraphModule
    log: MappingLog
    input_names: list[str]
    output_names: list[str]
    upgrade: dict[str, Any] | None = None  # the file's opset and what it was upgraded to, when it was


def upgrade_opset(model: Any, name: str = "model") -> tuple[Any, dict[str, Any] | None]:
    """(model at opset ≥ MIN_OPSET, what was done or None): files older than MIN_OPSET are upgraded
    with `onnx.version_converter`, the onnx project's own adapters between operator versions."""
    import onnx
    from onnx import version_converter

    opset = opset_of(model)
    if opset >= MIN_OPSET:
        return model, None
    try:
        upgraded = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises RuntimeError/ConvertError with the adapter that failed
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{name}: ONNX opset {opset}, which onnx.version_converter could not upgrade to "
                         f"{MIN_OPSET} ({first}); porttax converts opset {MIN_OPSET} and newer",
                         hint="re-export the model with opset 13 or newer if you have its source, or report the "
                              "file so the op can be converted at its own version") from None
    _keep_asymmetric_resize(model, upgraded, opset)
    return upgraded, {"file_opset": opset, "converted_at": MIN_OPSET,
                      "upgraded_by": f"onnx.version_converter (onnx {onnx.__version__})"}


def _keep_asymmetric_resize(original: Any, upgraded: Any, opset: int) -> None:
    """Upsample (opsets 7-9) and Resize-10 sample at x_out / scale, rounding down for nearest; the version
    converter's Resize-11 keeps neither, so it would sample at half-pixel centres (the same for integer
    scales, not for others). The attributes that say what the old ops computed are set back."""
    if opset >= 11:
        return
    from onnx import helper

    old = {n.output[0] for n in original.graph.node if n.op_type in ("Upsample", "Resize")}
    for node in upgraded.graph.node:
        if node.op_type != "Resize" or node.output[0] not in old:
            continue
        names = {a.name for a in node.attribute}
        if "coordinate_transformation_mode" not in names:
            node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
        if "nearest_mode" not in names:
            node.attribute.append(helper.make_attribute("nearest_mode", "floor"))


def opset_of(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def find_unsupported(model: Any) -> dict[str, list[str]]:
    """Op types without a converter -> the nodes that use them (constant-only nodes still need none)."""
    import porttax.converters.onnx_to_torch.families  # noqa: F401  (registers converters)

    opset = opset_of(model)
    missing: dict[str, list[str]] = {}
    for node in _all_nodes(model.graph):
        if node.op_type == "Constant":
            continue
        if node.domain not in ("", "ai.onnx") or REGISTRY.lookup("onnx", "torch", node.op_type, opset) is None:
            missing.setdefault(f"{node.domain + '.' if node.domain else ''}{node.op_type}", []).append(
                node.name or node.output[0])
    return missing


def _all_nodes(graph: Any):
    """Every node of a graph, those inside If/Loop/Scan bodies included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            bodies = [attr.g] if attr.type == attr.GRAPH else list(attr.graphs) if attr.type == attr.GRAPHS else []
            for body in bodies:
                yield from _all_nodes(body)


def convert_onnx_model(model: Any, name: str = "model") -> OnnxConversion:
    import onnx
    import torch
    import torch.fx

    import porttax.converters.onnx_to_torch.families  # noqa: F401  (registers converters)

    model, upgrade = upgrade_opset(model, name)
    opset = opset_of(model)
    missing = find_unsupported(model)
    if missing:
        listing = ", ".join(f"{op} ×{len(nodes)} (e.g. node {nodes[0]!r})" for op, nodes in sorted(missing.items()))
        raise UnsupportedError(f"{name}: no converter for ONNX op(s) {listing}",
                               hint="porttax.converters.register_onnx_to_torch teaches porttax an op")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # shape inference is a help, not a requirement
        inferred = model
    graph = model.graph
    root = torch.nn.Module()
    fx_graph = torch.fx.Graph()
    ctx = Context(graph=fx_graph, root=root, opset=opset)
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        ctx.shapes[info.name] = _shape_dtype(info)
    _count_consumers(ctx, graph)
    for out in graph.output:
        ctx.consumers.setdefault(out.name, []).append(None)  # a graph output is a consumer too

    from onnx import numpy_helper

    env: dict[str, Const | Live] = ctx.env
    env.update({t.name: Const(numpy_helper.to_array(t)) for t in graph.initializer})
    ctx.origin.update({t.name: t.name for t in graph.initializer})
    input_names: list[str] = []
    for inp in graph.input:
        if inp.name in env:
            continue
        shape, dtype = ctx.shapes.get(inp.name, (None, None))
        placeholder = fx_graph.placeholder(ctx.unique(inp.name).replace(".", "_"))
        env[inp.name] = Live(placeholder, shape, dtype)
        input_names.append(inp.name)

    log = MappingLog()
    ctx.subgraph = lambda body, bindings: _run_subgraph(ctx, body, bindings, log, opset, name)
    for node in graph.node:
        _run_node(ctx, node, log, opset, name)
    outputs = []
    for out in graph.output:
        value = env[out.name]
        outputs.append(value.node if isinstance(value, Live) else ctx.tensor(value.value, out.name))
    fx_graph.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
    module = torch.fx.GraphModule(root, fx_graph, class_name=_class_name(name))
    module.eval()
    return OnnxConversion(module, log, input_names, [o.name for o in graph.output], upgrade)


def _run_node(ctx: Context, node: Any, log: MappingLog, opset: int, name: str) -> None:
    """Convert one node into ctx.env: a constant (folded), a fused node's result, or its converter's fx nodes."""
    env = ctx.env
    record = log.layer(node.name or node.output[0], node.op_type)
    if any(i and i not in env for i in node.input):
        missing = [i for i in node.input if i and i not in env]
        raise InputError(f"{name}: node {node.name!r} reads {missing}, which no earlier node produces",
                         hint="the graph is not topologically sorted or is incomplete")
    inputs = [env.get(i) if i else None for i in node.input]
    if node.op_type == "Constant":
        env[node.output[0]] = Const(_constant_value(node))
        record.ops.append("Constant")
        record.folded_ops += 1
        return
    if node.output[0] in ctx.absorbed:
        label, fused = ctx.absorbed[node.output[0]]
        env[node.output[0]] = Live(fused, *ctx.shapes.get(node.output[0], (None, None)))
        record.ops.append(f"{node.op_type} (fused into {label})")
        return
    subgraphs = any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute)  # their converters fold what folds
    if node.op_type not in _NEVER_FOLD and not subgraphs and all(v is None or isinstance(v, Const) for v in inputs) \
            and node.domain in ("", "ai.onnx"):
        for out_name, value in zip(node.output, _evaluate(node, inputs, opset)):
            env[out_name] = Const(value)
        sources = {ctx.origin[i] for i in node.input if i in ctx.origin and env[i].value.size > 1}
        if len(sources) == 1 and len(node.output) == 1:  # e.g. Transpose(weight): still that weight
            ctx.origin[node.output[0]] = sources.pop()
        record.ops.append(node.op_type)
        record.folded_ops += 1
        return
    if node.op_type == "Shape" and isinstance(inputs[0], Live) and inputs[0].shape is not None:
        env[node.output[0]] = Const(_evaluate(node, [Const(np.zeros(inputs[0].shape, np.float32))], opset)[0])
        record.ops.append("Shape")
        record.folded_ops += 1
        return
    conv = REGISTRY.lookup("onnx", "torch", node.op_type, opset) if node.domain in ("", "ai.onnx") else None
    if conv is None:
        record.status = "unsupported"
        raise UnsupportedError(f"{name}: no converter for ONNX op {node.domain + '.' if node.domain else ''}"
                               f"{node.op_type} (node {node.name or node.output[0]!r})",
                               hint="porttax.converters.register_onnx_to_torch teaches porttax an op")
    call = OnnxCall(ctx, node, inputs)
    results = conv.fn(call)
    results = results if isinstance(results, (list, tuple)) else [results]
    for k, out_name in enumerate(node.output):
        value = results[k] if k < len(results) else None
        if out_name and value is None and out_name in ctx.consumers:
            raise call.unsupported(f"output {k} ({out_name!r}) is used, and this converter computes only the "
                                   f"first {sum(r is not None for r in results)}")
        if out_name and value is not None:
            env[out_name] = value if isinstance(value, (Const, Live)) else _live(ctx, value, out_name)
    record.ops.append(node.op_type)


def _run_subgraph(ctx: Context, body: Any, bindings: dict[str, Any], log: MappingLog, opset: int,
                  name: str) -> list[Any]:
    """Convert a control-flow body (If branch, one Loop or Scan iteration) inline: its inputs bound to
    `bindings`, outer values read from the enclosing scope; returns the body's outputs (Const or Live)."""
    from onnx import numpy_helper

    for node in body.node:  # a body runs once per iteration: an earlier iteration's fusions do not carry over
        for out in node.output:
            ctx.absorbed.pop(out, None)
    ctx.env.update(bindings)
    ctx.env.update({t.name: Const(numpy_helper.to_array(t)) for t in body.initializer})
    for node in body.node:
        _run_node(ctx, node, log, opset, name)
    return [ctx.env[o.name] for o in body.output]


def _count_consumers(ctx: Context, graph: Any) -> None:
    """Which nodes read each value — reads from inside If/Loop/Scan bodies count for the node holding the
    body, so no converter fuses away a value a body still needs."""
    for node in graph.node:
        for i in node.input:
            ctx.consumers.setdefault(i, []).append(node)
        for attr in node.attribute:
            bodies = [attr.g] if attr.type == attr.GRAPH else list(attr.graphs) if attr.type == attr.GRAPHS else []
            for body in bodies:
                _count_consumers(ctx, body)
                for inner in body.node:
                    for i in inner.input:
                        ctx.consumers.setdefault(i, []).append(node)
                for out in body.output:
                    ctx.consumers.setdefault(out.name, []).append(None)


def _live(ctx: Context, node: Any, name: str) -> Live:
    """A converter's fx node as a value, with the shape ONNX inference gave it or, where it gave none, the
    shape found by running the graph so far on fake tensors (converters need static shapes)."""
    shape, dtype = ctx.shapes.get(name, (None, None))
    if shape is None:
        found, found_dtype = ctx.infer(node)
        shape, dtype = found, dtype or found_dtype
    return Live(node, shape, dtype)


def _class_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name)
    return cleaned if cleaned[:1].isalpha() else f"Onnx_{cleaned}"


def _shape_dtype(info: Any) -> tuple[tuple[int, ...] | None, str | None]:
    from onnx import helper

    t = info.type.tensor_type
    dtype = None
    if t.elem_type:
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        except Exception:
            dtype = None
    if not t.HasField("shape"):
        return None, dtype
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return (tuple(dims) if all(d is not None for d in dims) else None), dtype


def _constant_value(node: Any) -> np.ndarray:
    from onnx import helper, numpy_helper

    attr = node.attribute[0]
    value = helper.get_attribute_value(attr)
    if attr.name == "value":
        return numpy_helper.to_array(value)
    if attr.name in ("value_float", "value_int"):
        return np.array(value, dtype=np.float32 if attr.name == "value_float" else np.int64)
    if attr.name in ("value_floats", "value_ints"):
        return np.array(value, dtype=np.float32 if attr.name == "value_floats" else np.int64)
    raise UnsupportedError(f"Constant node {node.name!r} with attribute {attr.name}")


def _gather_elements(node: Any, data: np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    indices = np.where(indices < 0, indices + data.shape[axis], indices)
    return [np.take_along_axis(data, indices.astype(np.int64), axis)]


# ops whose reference implementation is wrong for common inputs (onnx 1.23's GatherElements fails on
# more than 64 rows), computed with NumPy directly
_NUMPY_FOLDS = {"GatherElements": _gather_elements}


def _evaluate(node: Any, inputs: list[Const | Live | None], opset: int) -> list[np.ndarray]:
    """Run one node on constant inputs with onnx's reference implementation."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    if node.op_type in _NUMPY_FOLDS:
        return _NUMPY_FOLDS[node.op_type](node, *[v.value for v in inputs if isinstance(v, Const)])

    names = [f"in{i}" if i_name else "" for i, i_name in enumerate(node.input)]
    clone = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))],
                             domain=node.domain or None)
    clone.attribute.extend(node.attribute)
    feeds = {n: v.value for n, v in zip(names, inputs) if n and isinstance(v, Const)}
    graph = helper.make_graph([clone], "fold", [helper.make_tensor_value_info(n, 0, None) for n in feeds],
                              [helper.make_tensor_value_info(o, 0, None) for o in clone.output])
    fold = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(fold).run(None, feeds)
    except Exception as exc:
        raise UnsupportedError(f"ONNX {node.op_type} node {node.name!r}: cannot evaluate on constants ({exc})") from exc
    return [np.asarray(r) for r in results]
