"""What a Keras → torch layer converter works with.

The driver builds a `torch.fx` graph: every Keras layer becomes a submodule registered under the
Keras layer's name and called with `call_module`, so the converted model's `forward` (its `.code`)
reads like the Keras model, and its state_dict keys are the Keras layer names.

A value in that graph is a `TVal`: a live fx `Proxy` (torch operations on it are recorded), or a
constant known at conversion time. A live value may be held in a permuted layout: `perm` says that
the torch tensor equals `keras_tensor.permute(perm)`. Keras is channels-last, torch convolutions are
channels-first; carrying the permutation as data lets layout-agnostic layers (activations, adds,
batch norms, concatenations) run in whatever layout their input has, so a ResNet needs one
transpose in and one out instead of two per convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from porttax._frameworks import import_torch
from porttax.converters.mapping_log import LayerRecord, MappingLog, WeightPort
from porttax.converters.transforms import Identity, Transform
from porttax.errors import UnsupportedError

Perm = tuple[int, ...] | None
Shape = tuple[int | None, ...]


def channels_first(rank: int) -> tuple[int, ...]:
    """The permutation taking a channels-last Keras tensor of `rank` to torch's channels-first."""
    return (0, rank - 1, *range(1, rank - 1))


def is_identity(perm: Perm) -> bool:
    return perm is None or tuple(perm) == tuple(range(len(perm)))


def module_path(layer_name: str, porttax_names: bool) -> str:
    """The torch module path for a Keras layer name.

    Layers porttax itself named after torch modules (`layers-0-mlp`, see
    porttax.layer_map.keras_layer_name) map back to the nested path `layers.0.mlp`, so a round
    trip restores the original state_dict keys. Any other name keeps its readable form with the
    characters a module name cannot hold replaced by `_`.
    """
    if porttax_names:
        parts = [_identifier(p) for p in layer_name.split("-")]
        return ".".join(p for p in parts if p) or "layer"
    return _identifier(layer_name) or "layer"


def _identifier(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text)
    return out


@dataclass(eq=False)
class TVal:
    proxy: Any = None  # an fx Proxy when live
    const: Any = None  # a NumPy array or Python scalar when known at conversion time
    shape: Shape | None = None  # shape in the Keras layout
    perm: Perm = None
    dtype: str = "float32"
    _views: dict = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.proxy is not None

    @property
    def rank(self) -> int:
        return len(self.shape) if self.shape is not None else 0


class Context:
    """Shared state of one conversion: the fx graph, module registration, layouts, weights, the log."""

    def __init__(self, log: MappingLog, porttax_names: bool = False) -> None:
        self.torch = import_torch()
        self.fx = self.torch.fx
        self.log = log
        self.porttax_names = porttax_names
        self.root = self.torch.nn.Module()
        self.graph = self.fx.Graph()
        self.tracer = self.fx.proxy.GraphAppendingTracer(self.graph)
        self._paths: set[str] = set()
        self._layer_paths: dict[int, str] = {}  # id(Keras layer) -> module path; shared layers reuse it
        self._modules: dict[str, Any] = {}
        self._ported: set[str] = set()
        self.calls: dict[str, int] = {}  # module path -> calls so far (shared layers)
        self.taps: list[Any] = []  # porttax.parity.taps.Tap per module output that is a layer output
        self._consts = 0
        self.current: LayerRecord | None = None
        self.prefix = ""  # module path of the nested Keras model being walked
        # the driver's graph functions (lookup, find_unsupported, functional_view, run_graph), set by the
        # driver: a wrapper layer (TimeDistributed) converts what it wraps through them, and no converter
        # family imports the driver, which imports every family
        self.driver: Any = None

    # ---- graph building ------------------------------------------------------------------------
    def placeholder(self, name: str) -> Any:
        return self.fx.Proxy(self.graph.placeholder(_identifier(name) or "x"), self.tracer)

    def path_for(self, layer_name: str) -> str:
        """A unique module path for a Keras layer (nested models prefix their layers' paths)."""
        base = module_path(layer_name, self.porttax_names)
        if self.prefix:
            base = f"{self.prefix}.{base}"
        path, n = base, 1
        while path in self._paths:
            path = f"{base}_{n}"
            n += 1
        self._paths.add(path)
        return path

    def layer_path(self, layer: Any) -> str:
        """The module path of a Keras layer; a layer called twice (shared) keeps one path and module."""
        key = id(layer)
        if key not in self._layer_paths:
            self._layer_paths[key] = self.path_for(layer.name)
        return self._layer_paths[key]

    def add_module(self, path: str, module: Any) -> Callable[..., Any]:
        """Register `module` at the dotted `path` and return a function that calls it in the graph.

        A path registered before (a shared layer's second call) keeps its first module.
        """

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.tracer.create_proxy("call_module", path, args, kwargs)

        if path in self._modules:
            return call
        self._modules[path] = module
        parent = self.root
        parts = path.split(".")
        for part in parts[:-1]:
            child = getattr(parent, part, None) if part in parent._modules else None
            if child is None:
                child = self.torch.nn.Module()
                parent.add_module(part, child)
            parent = child
        placeholder = parent._modules.get(parts[-1])
        if placeholder is not None and type(placeholder) is self.torch.nn.Module:
            # A container made earlier for this path's children (a layer named `a-b` came before `a`):
            # the real module takes them over, so their state_dict keys stay `a.b.*`.
            for child_name, child in placeholder._modules.items():
                module.add_module(child_name, child)
        parent.add_module(parts[-1], module)
        if self.current is not None:
            self.current.targets.append(path)
        return call

    def module_at(self, path: str) -> Any:
        return self._modules.get(path)

    def constant(self, value: Any, hint: str = "const") -> Any:
        """A NumPy constant as a non-persistent buffer (it is not a weight, so no state_dict key)."""
        torch = self.torch
        array = np.asarray(value)
        if array.ndim == 0 and array.dtype.kind in "biuf":
            return array.item()
        array = np.ascontiguousarray(array)
        self._consts += 1
        name = f"_{_identifier(hint)}_{self._consts}"
        self.root.register_buffer(name, torch.from_numpy(array.copy()), persistent=False)
        return self.tracer.create_proxy("get_attr", name, (), {})

    # ---- layout --------------------------------------------------------------------------------
    def keras_layout(self, v: TVal) -> Any:
        """The value in the Keras layout (a Proxy, or a NumPy constant)."""
        return self.in_layout(v, None)

    def in_layout(self, v: TVal, perm: Perm) -> Any:
        if not v.live:
            c = v.const
            if isinstance(c, np.ndarray) and not is_identity(perm):
                return np.transpose(c, perm)
            return c
        want = None if is_identity(perm) else tuple(perm)
        have = None if is_identity(v.perm) else tuple(v.perm)
        if want == have:
            return v.proxy
        if want in v._views:
            return v._views[want]
        rank = v.rank
        src = have or tuple(range(rank))
        dst = want or tuple(range(rank))
        move = tuple(src.index(d) for d in dst)
        out = v.proxy.permute(*move)
        self.log.transposes_inserted += 1
        v._views[want] = out
        return out

    def channels_first(self, v: TVal) -> Any:
        return self.in_layout(v, channels_first(v.rank))

    def held_axis(self, v: TVal, keras_axis: int) -> int:
        """Where Keras axis `keras_axis` of `v` sits in the layout `v` is held in."""
        axis = keras_axis % v.rank
        return axis if is_identity(v.perm) else tuple(v.perm).index(axis)

    def align(self, vals: Sequence[Any], dtype: str | None = None) -> tuple[list[Any], Perm]:
        """Operands of a broadcasting op in one common layout.

        When every live operand has the full output rank and they share a permutation, the op runs in
        that layout and constants are permuted at conversion time; otherwise everything goes to the
        Keras layout. Float constants take `dtype` (the op's output dtype in Keras) so a float64 NumPy
        array does not promote a float32 model to float64, as it does not in Keras.
        """
        lives = [v for v in vals if isinstance(v, TVal) and v.live]
        rank = max((v.rank for v in vals if isinstance(v, TVal)), default=0)
        perms = {None if is_identity(v.perm) else tuple(v.perm) for v in lives}
        perm: Perm = None
        if len(perms) == 1 and None not in perms and all(v.rank == rank for v in lives):
            perm = perms.pop()
        out = []
        for v in vals:
            if not isinstance(v, TVal):
                out.append(v)
            elif v.live:
                out.append(self.in_layout(v, perm))
            else:
                c = v.const
                if dtype is not None and isinstance(c, (np.ndarray, np.generic)) and np.asarray(c).dtype.kind == "f":
                    c = np.asarray(c).astype(dtype)
                if perm is not None and isinstance(c, np.ndarray) and c.ndim > 0:
                    c = np.transpose(c.reshape((1,) * (rank - c.ndim) + c.shape), perm)
                out.append(self.as_operand(c))
        return out, perm

    def operand(self, value: Any) -> Any:
        """Any call argument as a torch operand in the Keras layout: a live value as its proxy (moved
        back from a held layout if needed), a constant as a buffer, a Python scalar as itself."""
        if isinstance(value, TVal):
            return self.keras_layout(value) if value.live else self.as_operand(np.asarray(value.const))
        return self.as_operand(value)

    def as_operand(self, value: Any) -> Any:
        """A constant ready to combine with proxies: Python scalars stay literals, arrays are buffers."""
        if isinstance(value, np.ndarray) or isinstance(value, np.generic):
            return self.constant(np.asarray(value))
        return value

    # ---- weights -------------------------------------------------------------------------------
    def port(self, variable: Any, module: Any, param: str, path: str, transform: Transform | None = None) -> None:
        """Copy a Keras variable into `module.<param>` after `transform`, recording the port."""
        torch = self.torch
        if f"{path}.{param}" in self._ported:
            return  # a shared layer's second call
        self._ported.add(f"{path}.{param}")
        transform = transform or Identity()
        array = transform.apply(np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable))
        target = getattr(module, param)
        if tuple(target.shape) != tuple(array.shape):
            raise UnsupportedError(
                f"weight {getattr(variable, 'path', param)} has shape {array.shape} after {transform.describe()}, "
                f"but torch module {path!r} expects {param} of shape {tuple(target.shape)}"
            )
        with torch.no_grad():
            # reshape: np.ascontiguousarray turns a 0-d array (a scalar weight) into shape (1,)
            target.copy_(torch.from_numpy(np.ascontiguousarray(array)).reshape(target.shape).to(target.dtype))
        source = getattr(variable, "path", None)
        self.log.ports.append(WeightPort(source, f"{path}.{param}", transform.describe(), tuple(array.shape)))


def live(proxy: Any, shape: Sequence[int | None], perm: Perm = None, dtype: str = "float32") -> TVal:
    return TVal(proxy=proxy, shape=tuple(shape), perm=None if is_identity(perm) else tuple(perm), dtype=dtype)


@dataclass
class LayerCall:
    """One call of a Keras layer or op, as a converter sees it."""

    layer: Any  # the keras Operation (a Layer, or a keras.ops operation)
    args: tuple[Any, ...]  # call arguments with Keras tensors replaced by TVals
    kwargs: dict[str, Any]
    outputs: list[Any]  # the node's output KerasTensors (shapes, dtypes)
    ctx: Context
    path: str  # module path this layer's modules live under

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def kind(self) -> str:
        return type(self.layer).__name__

    @property
    def x(self) -> TVal:
        """The first input (the one most layers have)."""
        first = self.args[0] if self.args else next(iter(self.kwargs.values()))
        if isinstance(first, (list, tuple)):
            first = first[0]
        return first

    def inputs(self) -> list[TVal]:
        """Every TVal among the positional arguments, lists flattened (merge layers take a list)."""
        out: list[TVal] = []
        for a in self.args:
            if isinstance(a, (list, tuple)):
                out.extend(v for v in a if isinstance(v, TVal))
            elif isinstance(a, TVal):
                out.append(a)
        return out

    def out_shape(self, index: int = 0) -> Shape:
        return tuple(None if d is None else int(d) for d in self.outputs[index].shape)

    def out_dtype(self, index: int = 0) -> str:
        return str(self.outputs[index].dtype)

    def add_module(self, module: Any, suffix: str = "") -> Callable[..., Any]:
        """Register this layer's module (or its `suffix` child); returns the graph call for it."""
        path = self.path if not suffix else f"{self.path}.{suffix}"
        return self.ctx.add_module(path, module)

    def module(self, suffix: str = "") -> Any:
        """The module registered for this layer (the shared one, on a second call)."""
        return self.ctx.module_at(self.path if not suffix else f"{self.path}.{suffix}")

    def port(self, variable: Any, module: Any, param: str, transform: Transform | None = None,
             suffix: str = "") -> None:
        path = self.path if not suffix else f"{self.path}.{suffix}"
        self.ctx.port(variable, self.ctx.module_at(path) or module, param, path, transform)

    def result(self, proxy: Any, perm: Perm = None, index: int = 0) -> TVal:
        return live(proxy, self.out_shape(index), perm, self.out_dtype(index))

    def unsupported(self, why: str, hint: str | None = None) -> UnsupportedError:
        return UnsupportedError(f"Keras layer {self.name!r} ({self.kind}): {why}", hint=hint)
