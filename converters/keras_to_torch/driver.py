"""Walk a Keras 3 model's layer graph and build a readable torch module, one registered converter per layer.

The driver owns what every layer shares: getting a functional graph out of any model (Functional,
Sequential, nested models, subclassed models whose layers are all known), refusing the whole
conversion up front when a layer has no converter (every such layer named, with where it sits),
naming modules after Keras layers, the boundary layouts, and the mapping log. The result is a
`torch.fx.GraphModule`: its `forward` is generated Python a person can read (`print(module.code)`),
and `torch.export` takes it as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from porttax._frameworks import import_keras, import_torch
from porttax.converters.keras_to_torch.context import (
    Context,
    LayerCall,
    TVal,
    channels_first,
    is_identity,
    live,
)
from porttax.converters.mapping_log import MappingLog
from porttax.converters.registry import REGISTRY, Converter
from porttax.errors import UnsupportedError
from porttax.types import TensorSpec

SOURCE, TARGET = "keras", "torch"
ProgressFn = Callable[[int, int, str], None]


@dataclass
class KerasToTorchResult:
    module: Any  # torch.fx.GraphModule
    log: MappingLog
    inputs: list[TensorSpec]  # in the torch module's layout
    output_names: list[str]
    channels_first: bool = False
    layer_map: Any = None  # porttax.parity.taps.LayerMap: which Keras layer output each module output is


def op_key(operation: Any) -> str:
    """Registry key of a Keras operation: its class name, with `ops.` for `keras.ops` operations
    (keras.ops.Add and the layer keras.layers.Add are different things with one class name)."""
    cls = type(operation)
    if cls.__module__.startswith("keras.src.ops."):
        return f"ops.{cls.__name__}"
    return cls.__name__


def lookup(operation: Any) -> Converter | None:
    return converter_for_class(type(operation))


def converter_for_class(cls: type) -> Converter | None:
    """The converter a layer or operation of class `cls` gets (what `lookup` gives its instances)."""
    for klass in cls.__mro__:  # a user subclass of Dense converts as a Dense unless registered itself
        if klass.__module__.startswith("keras.src.ops.") and klass is not cls:
            break
        key = f"ops.{klass.__name__}" if klass.__module__.startswith("keras.src.ops.") else klass.__name__
        conv = REGISTRY.lookup(SOURCE, TARGET, key)
        if conv is not None:
            if klass is not cls and _overrides_call(cls, klass):
                return None  # the subclass computes something else; converting it as its base would lie
            return conv
        if klass.__module__.startswith("keras.src.layers.layer") or klass.__name__ in ("Layer", "Operation"):
            break
    return None


def _overrides_call(cls: type, base: type) -> bool:
    return any("call" in vars(k) for k in cls.__mro__[: cls.__mro__.index(base)])


def functional_view(model: Any) -> Any:
    """A Functional graph computing what `model` computes.

    Functional models are their own graph; a built Sequential holds one. A subclassed model is traced
    by calling its `call` on symbolic inputs: its layers and `keras.ops` calls then record nodes like
    a functional model's. Code that bypasses Keras (raw TensorFlow ops) fails that trace, and the
    error says so.
    """
    keras = import_keras()
    from keras.src.models.functional import Functional

    if isinstance(model, Functional):
        return model
    if isinstance(model, keras.Sequential):
        if getattr(model, "_functional", None) is None:
            raise UnsupportedError(
                f"Sequential model {model.name!r} has no input shape, so its graph is unknown",
                hint="build it with keras.Input(shape=...) as its first layer, or call it once on data",
            )
        return model._functional
    if isinstance(model, keras.Model):
        return _trace_subclassed(model)
    raise UnsupportedError(f"expected a Keras model, got {type(model).__name__}")


def _trace_subclassed(model: Any) -> Any:
    keras = import_keras()
    specs = list((getattr(model, "_build_shapes_dict", None) or {}).values())
    if not specs:
        raise UnsupportedError(
            f"subclassed model {model.name!r} has never been built, so porttax cannot know its inputs",
            hint="call the model once on an example batch (or model.build(shape)) before saving it",
        )
    if len(specs) != 1:
        raise UnsupportedError(f"subclassed model {model.name!r} takes {len(specs)} inputs; porttax traces "
                               "subclassed models with one input", hint="rewrite it as a functional model")
    shape = tuple(specs[0])
    inp = keras.Input(batch_shape=shape, name="inputs")
    try:
        out = model.call(inp)
    except Exception as exc:
        raise UnsupportedError(
            f"subclassed model {model.name!r} could not be traced symbolically ({type(exc).__name__}: {exc})",
            hint="its call() must use Keras layers and keras.ops only; rewrite the rest as layers, or "
            "export it to ONNX and use the ONNX road",
        ) from exc
    return keras.Model(inp, out, name=model.name)


def _walk_order(functional: Any) -> list[Any]:
    nodes = []
    by_depth = functional._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        nodes.extend(by_depth[depth])
    return nodes


def _is_model(op: Any) -> bool:
    keras = import_keras()
    return isinstance(op, keras.Model)


@dataclass
class LayerUse:
    """One layer (or keras.ops call) of a model, nested models flattened, and whether it converts."""

    layer: Any
    where: str  # its name, with enclosing model names: "backbone/conv1"
    op: str  # registry key (op_key)
    class_name: str
    converter: Converter | None


def scan_layers(model: Any, prefix: str = "") -> list[LayerUse]:
    """Every operation in `model`'s graph, in execution order, nested models walked into.

    The single place that decides which layers the Keras → torch road must convert: the conversion
    refuses up front when one lacks a converter, and `porttax inspect` reports the same list.
    """
    from keras.src.layers.core.input_layer import InputLayer

    import porttax.converters.keras_to_torch.families  # noqa: F401  (registers converters)

    uses: list[LayerUse] = []
    seen: set[int] = set()
    for node in _walk_order(functional_view(model)):
        op = node.operation
        if op is None or isinstance(op, InputLayer) or id(op) in seen:
            continue
        seen.add(id(op))  # a shared layer is one layer, however often it is called
        where = f"{prefix}{op.name}"
        if _is_model(op):
            uses.extend(scan_layers(op, prefix=where + "/"))
            continue
        uses.append(LayerUse(op, where, op_key(op), f"{type(op).__module__}.{type(op).__qualname__}", lookup(op)))
    return uses


def find_unsupported(model: Any, prefix: str = "") -> list[dict[str, str]]:
    """Every layer in `model` (nested models included) with no converter, with where it sits."""
    return [{"layer": u.where, "op": u.op, "class": u.class_name}
            for u in scan_layers(model, prefix) if u.converter is None]


def _uses_porttax_names(model: Any) -> bool:
    """Layers named by porttax's torch → Keras road (module paths joined by '-') map back to paths."""
    return bool(getattr(model, "_porttax_layer_map", None))


def convert_keras_model(
    model: Any,
    *,
    channels_first_io: bool = False,
    porttax_names: bool | None = None,
    name: str | None = None,
    progress: ProgressFn | None = None,
) -> KerasToTorchResult:
    """Convert a Keras 3 model to a `torch.fx.GraphModule` with modules named after the Keras layers.

    `channels_first_io=True` gives image inputs and outputs (rank ≥ 4) torch's NCHW layout; by default
    the module takes and returns the Keras model's own layout, so it is a drop-in replacement.
    """
    torch = import_torch()
    import porttax.converters.keras_to_torch.families  # noqa: F401  (registers converters)

    missing = find_unsupported(model)
    log = MappingLog()
    if missing:
        log.unsupported = missing
        lines = [f"  - {m['layer']}: {m['op']} ({m['class']})" for m in missing]
        err = UnsupportedError(
            "no Keras→torch converter for these layers, so porttax stopped instead of writing a wrong "
            "model:\n" + "\n".join(lines),
            hint="replace them with built-in Keras layers, register a converter with "
            "porttax.converters.register_keras_to_torch(ClassName), or try the ONNX road",
        )
        err.log = log  # type: ignore[attr-defined]
        raise err

    graph = functional_view(model)
    if porttax_names is None:
        porttax_names = _uses_porttax_names(model)
    ctx = Context(log, porttax_names=porttax_names)
    ctx.driver = SimpleNamespace(lookup=lookup, find_unsupported=find_unsupported, functional_view=functional_view,
                                 run_graph=_run_graph)
    total = _count_nodes(graph)
    state = {"done": 0}

    inputs: list[TensorSpec] = []
    in_vals: list[TVal] = []
    for kt in graph.inputs:
        shape = tuple(None if d is None else int(d) for d in kt.shape)
        dtype = str(kt.dtype)
        proxy = ctx.placeholder(kt.name)
        perm = channels_first(len(shape)) if channels_first_io and len(shape) >= 4 else None
        held = shape if perm is None else tuple(shape[p] for p in perm)
        inputs.append(TensorSpec(_input_name(kt.name), _dims(held, kt.name), dtype))
        in_vals.append(live(proxy, shape, perm, dtype))

    outs = _run_graph(graph, in_vals, ctx, progress, total, state)
    results = []
    for v in outs:
        if not isinstance(v, TVal):
            raise UnsupportedError("a model output is not a tensor")
        if not v.live:
            results.append(ctx.as_operand(np.asarray(v.const)))
            continue
        want = channels_first(v.rank) if channels_first_io and v.rank >= 4 else None
        results.append(ctx.in_layout(v, want))
    ctx.graph.output(results[0].node if len(results) == 1 else tuple(r.node for r in results))
    ctx.graph.lint()
    class_name = _class_name(name or model.name)
    module = torch.fx.GraphModule(ctx.root, ctx.graph, class_name=class_name)
    module.eval()
    output_names = [_input_name(getattr(kt, "name", f"output_{i}")) for i, kt in enumerate(graph.outputs)]
    from porttax.layer_map import LayerMap

    return KerasToTorchResult(module, log, inputs, output_names, channels_first_io,
                              layer_map=LayerMap(ctx.taps))


def _count_nodes(graph: Any) -> int:
    n = 0
    for node in _walk_order(graph):
        op = node.operation
        if op is None or type(op).__name__ == "InputLayer":
            continue
        n += _count_nodes(functional_view(op)) if _is_model(op) else 1
    return n


def _run_graph(graph: Any, in_vals: list[TVal], ctx: Context, progress: ProgressFn | None, total: int,
               state: dict[str, int]) -> list[Any]:
    keras = import_keras()
    tensor_dict: dict[int, Any] = {}
    for kt, v in zip(graph.inputs, in_vals):
        tensor_dict[id(kt)] = v
    for node in _walk_order(graph):
        op = node.operation
        if op is None or node.is_input:
            continue
        if any(id(x) not in tensor_dict for x in node.input_tensors):
            continue  # not computable from the inputs (a dangling branch); Keras skips it too
        args, kwargs = node.arguments.fill_in(tensor_dict)
        if _is_model(op):
            inner = functional_view(op)
            flat = [v for v in keras.tree.flatten((args, kwargs)) if isinstance(v, TVal)]
            saved = ctx.prefix
            ctx.prefix = ctx.layer_path(op)
            try:
                results = _run_graph(inner, flat[: len(inner.inputs)], ctx, progress, total, state)
            finally:
                ctx.prefix = saved
        else:
            state["done"] += 1
            if progress is not None:
                progress(state["done"], total, op.name)
            results = _convert_one(op, node, args, kwargs, ctx)
        for kt, v in zip(node.outputs, results):
            tensor_dict[id(kt)] = v
    return [tensor_dict.get(id(kt)) for kt in graph.outputs]


def _convert_one(op: Any, node: Any, args: tuple, kwargs: dict, ctx: Context) -> list[TVal]:
    conv = lookup(op)
    assert conv is not None  # find_unsupported checked every layer
    record = ctx.log.layer(f"{ctx.prefix + '/' if ctx.prefix else ''}{op.name}", op_key(op))
    record.ops.append(op_key(op))
    path = ctx.layer_path(op) if not _is_op(op) else (ctx.prefix or "")
    call = LayerCall(op, tuple(args), dict(kwargs), list(node.outputs), ctx, path)
    ctx.current = record
    try:
        result = conv.fn(call)
    except UnsupportedError:
        record.status = "unsupported"
        raise
    finally:
        ctx.current = None
    record.converters.append(conv.name)
    results = result if isinstance(result, list) else [result]
    if not ctx.prefix:  # taps name top-level Keras layers (parity runs the top-level model)
        _record_taps(ctx, op, node, path, results)
    return results


def _record_taps(ctx: Context, op: Any, node: Any, path: str, results: list[Any]) -> None:
    """A tap for every module whose own output is this Keras layer's output (so they can be compared
    one to one when localising drift). A Dense with a fused activation has none: its Linear's output
    is not the Keras layer's output."""
    from porttax.layer_map import Tap

    calls = ctx.calls.get(path, 0)
    ctx.calls[path] = calls + 1
    key_base = path if calls == 0 else f"{path}@{calls}"
    for index, value in enumerate(results):
        if not isinstance(value, TVal) or not value.live:
            continue
        fx_node = value.proxy.node
        if fx_node.op != "call_module" or fx_node.target != path:
            continue
        perm = None if is_identity(value.perm) else [int(i) for i in np.argsort(value.perm)]
        module = ctx.module_at(path)
        shape = [int(d) if d is not None else -1 for d in (value.shape or ())]
        if value.perm is not None:
            shape = [shape[p] for p in value.perm]
        ctx.taps.append(Tap(f"{key_base}#0", path, type(module).__name__, len(ctx.taps), operation=op.name,
                            node_index=op._inbound_nodes.index(node), tensor_index=index, perm=perm, shape=shape))


def _is_op(op: Any) -> bool:
    return type(op).__module__.startswith("keras.src.ops.")


def _dims(shape: tuple[int | None, ...], name: str) -> tuple[Any, ...]:
    dims: list[Any] = []
    for i, d in enumerate(shape):
        if d is not None:
            dims.append(int(d))
        elif i == 0:
            dims.append("batch")
        else:
            dims.append(f"{_input_name(name)}.{i}")
    return tuple(dims)


def _input_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name) or "x"


def _class_name(name: str) -> str:
    words = "".join(ch if ch.isalnum() else " " for ch in name).split()
    cleaned = "".join(w[:1].upper() + w[1:] for w in words)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "Converted" + cleaned
    return cleaned

