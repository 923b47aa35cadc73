"""Walk a `torch.export` graph and build the Keras model, one registered converter per op.

The driver owns what is common to every op: resolving arguments, folding everything that does not
depend on the model inputs into constants (causal masks, rotary tables, position ids), naming
layers after their source modules, the mapping log, and refusing the whole conversion up front
when any op has no converter, so a user never gets a silently wrong model.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

from porttax._frameworks import import_keras, import_torch
from porttax.converters.mapping_log import MappingLog
from porttax.converters.registry import REGISTRY, Converter
from porttax.converters.torch_to_keras.context import Call, Context, Val, live_val
from porttax.converters.torch_to_keras.symbolic import (
    STATIC_HINT, any_symbolic, dims_of, symbolic_scalar, symbolic_tensor,
)
from porttax.errors import UnsupportedError
from porttax.layer_map import MAX_CONST_ELEMENTS, LayerMap, Tap
from porttax.torch_ir import decompose, module_outputs, size_hints

SOURCE, TARGET = "torch", "keras"

# Ops whose result depends only on the static shape of their input, never on its values.
_SHAPE_ONLY = {
    "aten.new_ones", "aten.new_zeros", "aten.new_full", "aten.new_empty", "aten.zeros_like",
    "aten.ones_like", "aten.full_like", "aten.empty_like", "aten.sym_size", "aten.sym_numel",
}
# Ops that only assert or annotate; they produce no value the model needs.
_NO_VALUE = {"aten._assert_tensor_metadata", "aten._assert_scalar", "aten.sym_constrain_range_for_size"}
# Ops the driver itself takes care of, with or without a registered converter (the coverage table counts them).
HANDLED_BY_DRIVER = frozenset(_SHAPE_ONLY | _NO_VALUE)
# Ops whose converters read symbolic size arguments from the output shape the export recorded; any
# other op that takes a size computed from an open dim is refused (its value would be the example's).
_SIZE_ARGS = {
    "aten.view", "aten._unsafe_view", "aten.expand", "aten.slice", "aten.full", "aten.arange", "aten.zeros",
    "aten.ones", "aten.empty", "aten.eye", "aten.scalar_tensor", "aten.empty_strided", *_SHAPE_ONLY,
}

ProgressFn = Callable[[int, int, str], None]


@dataclass
class TorchToKerasResult:
    model: Any  # keras.Model
    log: MappingLog
    input_names: list[str]
    output_count: int
    layer_map: LayerMap | None = None


def _lookup(node: Any) -> Converter | None:
    target = node.target
    full = str(target)
    conv = REGISTRY.lookup(SOURCE, TARGET, full)
    if conv is None and hasattr(target, "overloadpacket"):
        conv = REGISTRY.lookup(SOURCE, TARGET, str(target.overloadpacket))
    return conv


def _module_of(node: Any) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", "<top level>"
    path, type_ = list(stack.values())[-1]
    type_name = type_ if isinstance(type_, str) else f"{type_.__module__}.{type_.__qualname__}"
    return str(path), type_name


def _normalize(node: Any) -> dict[str, Any]:
    schema = node.target._schema
    out: dict[str, Any] = {}
    positional = [a for a in schema.arguments if not a.kwarg_only]
    for i, arg in enumerate(schema.arguments):
        if not arg.kwarg_only and i < len(node.args) and arg in positional:
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out


def _packet(node: Any) -> str:
    t = node.target
    return str(t.overloadpacket) if hasattr(t, "overloadpacket") else str(t)


def _op_label(node: Any) -> str:
    if node.target is operator.getitem:
        return "getitem"
    return str(node.target)


@dataclass
class OpUse:
    """One call in a decomposed program: where it sits and whether the direct road converts it."""

    node: Any
    op: str
    module: str  # module path, "" at the top level
    module_type: str
    live: bool  # depends on the model inputs (otherwise it is folded to a constant at conversion)
    needs_converter: bool  # False for getitem and assertions, which produce no value to convert
    converter: Converter | None
    code: str = ""  # the last line of the source stack trace, when torch recorded one


def _is_tensor(node: Any) -> bool:
    meta = node.meta.get("val")
    return hasattr(meta, "shape") and hasattr(meta, "dtype")


def scan_ops(ep: Any) -> list[OpUse]:
    """Every call_function node of a decomposed program, with its module and converter.

    The single place that decides which ops the direct road must convert: the conversion refuses up
    front when one lacks a converter, and `porttax inspect` reports the same list without converting.
    """
    live: set[Any] = set()
    user_inputs = {s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"}
    uses: list[OpUse] = []
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in user_inputs:
                live.add(node)
            continue
        if node.op != "call_function":
            continue
        if _packet(node) not in _SHAPE_ONLY and any(a in live for a in node.all_input_nodes):
            live.add(node)
        elif symbolic_tensor(node) or (_is_tensor(node) and any(symbolic_scalar(a) for a in node.all_input_nodes)):
            live.add(node)  # its shape or value depends on an open size: computed in the model, not folded
        needs = node.target is not operator.getitem and _packet(node) not in _NO_VALUE
        path, type_name = _module_of(node)
        trace = (node.meta.get("stack_trace") or "").strip().splitlines()
        uses.append(OpUse(node, _op_label(node), path, type_name, node in live, needs,
                          _lookup(node) if needs else None, trace[-1].strip() if trace else ""))
    return uses


def convert_exported_program(
    ep: Any, *, name: str = "converted", progress: ProgressFn | None = None, reuse: dict[str, Any] | None = None
) -> TorchToKerasResult:
    """Convert an ExportedProgram (any IR torch.export produces) to a Keras functional model.

    `reuse` (layer name → built Keras layer) shares the layers of an earlier conversion of the same
    module: see Context.reuse."""
    torch = import_torch()
    keras = import_keras()
    from torch.export.graph_signature import InputKind

    import porttax.converters.torch_to_keras as _families  # noqa: F401  (registers converters)

    ep = decompose(ep)
    graph = ep.graph
    log = MappingLog()
    ctx = Context(log, reuse)

    consts: dict[str, Val] = {}
    user_inputs: list[Any] = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            user_inputs.append(spec.arg.name)
            continue
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            tensor = ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
        elif spec.kind in (InputKind.CONSTANT_TENSOR, InputKind.CUSTOM_OBJ):
            tensor = ep.constants[spec.target]
        else:
            raise UnsupportedError(f"exported input {spec.arg.name} of kind {spec.kind} is not supported")
        consts[spec.arg.name] = Val(const=tensor, param=spec.target, shape=tuple(getattr(tensor, "shape", ())))

    nodes = list(graph.nodes)
    uses = scan_ops(ep)
    live = {u.node for u in uses if u.live}

    # Refuse up front, naming every op that has no converter and where it sits.
    missing: dict[tuple[str, str], dict[str, Any]] = {}
    for use in uses:
        if not use.live or not use.needs_converter or use.converter is not None:
            continue
        entry = missing.setdefault((use.op, use.module), {"op": use.op, "module": use.module,
                                                          "module_type": use.module_type, "count": 0})
        entry["count"] += 1
        if use.code and "code" not in entry:
            entry["code"] = use.code
    if missing:
        log.unsupported = [dict(v, count=str(v["count"])) for v in missing.values()]
        lines = [
            f"  - {m['op']} x{m['count']} in {m['module'] or '<top level>'} ({m['module_type']})"
            + (f": {m['code']}" if m.get("code") else "")
            for m in missing.values()
        ]
        err = UnsupportedError(
            "no torch→Keras converter for these ops, so porttax stopped instead of writing a wrong "
            "model:\n" + "\n".join(lines),
            hint="rewrite that code with supported ops, register a converter with "
            "porttax.converters.register_torch_to_keras(op), or open an issue with the model",
        )
        err.log = log  # type: ignore[attr-defined]
        raise err

    env: dict[Any, Any] = {}

    def resolve(arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node):
            return env[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(resolve(a) for a in arg)
        return arg

    def torch_value(arg: Any) -> Any:
        """Arguments for evaluating a node in torch (constant folding)."""
        if isinstance(arg, torch.fx.Node):
            v = env[arg]
            if isinstance(v, Val):
                if v.live:  # only shape-only ops see a live input here
                    meta = arg.meta["val"]
                    return torch.zeros(size_hints(meta.shape), dtype=meta.dtype)
                return v.const
            return v
        if isinstance(arg, (list, tuple)):
            return type(arg)(torch_value(a) for a in arg)
        return arg

    inputs = []
    for node in nodes:
        if node.op != "placeholder":
            continue
        if node.name in consts:
            env[node] = consts[node.name]
            continue
        meta = node.meta["val"]
        if not hasattr(meta, "shape"):  # a Python number passed to forward: torch.export fixed it, so a constant
            env[node] = Val(const=meta)
            continue
        shape = size_hints(meta.shape)
        dims = dims_of(meta.shape)
        open_shape = [None if not isinstance(d, int) else d for d in dims]
        dtype = str(meta.dtype).replace("torch.", "")
        kin = keras.Input(shape=open_shape[1:], batch_size=open_shape[0] if shape else None, dtype=dtype,
                          name=node.name)
        inputs.append(kin)
        ctx.sizes.add_input(kin, dims)
        env[node] = live_val(kin, shape)
        env[node].dims = dims

    total = sum(1 for n in nodes if n.op == "call_function")
    done = 0
    outputs: list[Any] = []
    for node in nodes:
        if node.op == "call_function":
            done += 1
            if progress is not None:
                progress(done, total, str(node.target))
            path, type_name = _module_of(node)
            record = log.layer(path, type_name)
            record.ops.append(_op_label(node))
            if node.target is operator.getitem:
                container, index = env[node.args[0]], node.args[1]
                if isinstance(container, Val) and container.items is not None:
                    env[node] = container.items[index]
                elif isinstance(container, Val) and not container.live:
                    env[node] = Val(const=container.const[index])
                else:
                    env[node] = container[index]
                continue
            if _packet(node) in _NO_VALUE:
                env[node] = None
                continue
            if node not in live:
                with torch.no_grad():
                    result = node.target(*torch_value(node.args), **torch_value(node.kwargs))
                env[node] = Val(const=result, shape=tuple(getattr(result, "shape", ())))
                record.folded_ops += 1
                continue
            conv = _lookup(node)
            assert conv is not None  # checked above
            sized = [a for a in node.all_input_nodes if symbolic_scalar(a)]
            if sized and _packet(node) not in _SIZE_ARGS:
                record.status = "unsupported"
                raise UnsupportedError(
                    f"{_op_label(node)} in {path or '<top level>'} ({type_name}) computes with the size "
                    f"{sized[0].meta['val']} of an open input dim, which the Keras graph cannot carry",
                    hint=STATIC_HINT + ", or compute it from tensor ops")
            call = Call(node, _normalize(node), ctx, resolve, path, type_name)
            ctx.current = record
            try:
                result = conv.fn(call)
            except UnsupportedError:
                record.status = "unsupported"
                raise
            finally:
                ctx.current = None
            record.converters.append(conv.name)
            env[node] = _wrap(result, call)
        elif node.op == "output":
            flat = node.args[0]
            for out in flat:
                v = env[out]
                if not isinstance(v, Val):
                    raise UnsupportedError(f"model output {out} is not a tensor")
                if v.live:
                    outputs.append(ctx.torch_layout(v))
                else:
                    # An output that does not depend on the inputs: broadcast it against one.
                    outputs.append(_constant_output(keras, inputs[0], v))

    # one input is the tensor itself, not a list of one: a list makes Keras warn, on every call with a
    # single tensor, that the structure of the inputs does not match
    model = keras.Model(inputs=inputs[0] if len(inputs) == 1 else inputs, outputs=outputs, name=_model_name(name))
    layer_map = _layer_map(graph, env, model)
    return TorchToKerasResult(model, log, [i.name for i in inputs], len(outputs), layer_map)


def _layer_map(graph: Any, env: dict[Any, Any], model: Any) -> LayerMap:
    """Where every module output of the source lives in `model` (see porttax.parity.taps)."""
    import numpy as np

    from porttax.converters.torch_to_keras.context import const_to_numpy

    in_model = {id(op) for op in model.operations}
    taps: list[Tap] = []
    consts: dict[str, Any] = {}
    for tap, node in module_outputs(graph):
        v = env.get(node)
        if not isinstance(v, Val):
            continue
        if v.live:
            history = getattr(v.tensor, "_keras_history", None)
            if history is None or id(history.operation) not in in_model:
                continue  # feeds no model output, so the model does not compute it
            tap.operation, tap.node_index, tap.tensor_index = (history.operation.name, history.node_index,
                                                               history.tensor_index)
            tap.perm = list(v.perm) if v.perm is not None else None
        else:
            value = np.asarray(const_to_numpy(v.const))
            if value.size > MAX_CONST_ELEMENTS or value.dtype.kind not in "biuf":
                continue
            tap.kind = "const"
            consts[tap.key] = value
        taps.append(tap)
    return LayerMap(taps, consts)


def _wrap(result: Any, call: Call) -> Any:
    if isinstance(result, Val):
        if result.shape is None and result.live:
            result.shape = call.out_shape
        if result.live:
            _check_open(result, dims_of(call.node.meta["val"].shape), call)
        return result
    if isinstance(result, list):
        metas = call.node.meta.get("val")
        for item, meta in zip(result, metas if isinstance(metas, (list, tuple)) else []):
            if isinstance(item, Val) and item.live and hasattr(meta, "shape"):
                _check_open(item, dims_of(meta.shape), call)
        return Val(items=result)
    out = live_val(result, call.out_shape)
    _check_open(out, call.out_dims, call)
    return out


def _check_open(val: Val, dims: tuple[Any, ...], call: Call) -> None:
    """Record the value's symbolic dims, and refuse a converter that fixed one to the example's size."""
    val.dims = dims
    if not any_symbolic(dims):
        return
    static = tuple(getattr(val.tensor, "shape", ()))
    if len(static) != len(dims):
        return
    for torch_dim, d in enumerate(dims):
        held = static[val.axis(torch_dim)]
        if not isinstance(d, int) and held is not None:
            raise call.unsupported(
                f"its converter fixes the open size {d} (dim {torch_dim}) to {held}, the example's size",
                hint=STATIC_HINT + ", or open an issue with the model")


def _constant_output(keras: Any, anchor: Any, v: Val) -> Any:
    import numpy as np

    from porttax.converters.torch_to_keras.context import const_to_numpy

    c = np.asarray(const_to_numpy(v.const))
    zero = keras.ops.cast(keras.ops.sum(keras.ops.zeros_like(anchor)) * 0, c.dtype)
    return keras.ops.add(c, zero)


def _model_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name).lstrip("_-")
    return cleaned or "converted"  # TF scope names must start with a letter or digit ("_Wrap" is refused)
