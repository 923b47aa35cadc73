"""State of one ONNX → PyTorch conversion: values by ONNX name, the fx graph being built, constants.

A value is a `Const` (a NumPy array known at conversion time: initializers, `Constant` nodes, and
anything computed only from them, such as the shape arithmetic exporters emit) or a `Live` fx node
with its static shape. Converters read inputs with `call.const(i)` / `call.live(i)` and return
fx nodes or constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from porttax.errors import UnsupportedError

# NumPy (ml_dtypes) names of the float types torch holds natively but NumPy only through ml_dtypes
_ML_DTYPES = ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")


class NeedsConstant(UnsupportedError):
    """A converter needs an input's value at conversion time (a shape, axes, a weight) and the graph
    computes it at run time. `input_name` is the ONNX value, so a caller that knows it (a test feeding
    fixed data, a user freezing an input) can make it an initializer and convert again."""

    def __init__(self, message: str, *, input_name: str = "", path: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, path=path, hint=hint)
        self.input_name = input_name

    def at(self, path: str) -> "NeedsConstant":
        return self if self.path is not None else NeedsConstant(self.message, input_name=self.input_name, path=path,
                                                                 hint=self.hint)


def to_torch(value: np.ndarray):
    """A NumPy array as a torch tensor, bfloat16 and float8 (ml_dtypes arrays) included."""
    import torch

    array = np.array(value, copy=True)
    if array.dtype.kind in "OSU":
        raise UnsupportedError(f"a {array.dtype} constant: torch tensors hold no strings",
                               hint="keep string processing outside the converted model")
    if array.dtype.name in _ML_DTYPES:
        bits = array.view(np.uint8 if array.itemsize == 1 else np.int16)
        return torch.from_numpy(bits).view(getattr(torch, array.dtype.name))
    return torch.from_numpy(array)


def to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor as a NumPy array, bfloat16 and float8 as ml_dtypes arrays (the inverse of to_torch)."""
    import torch

    t = tensor.detach().cpu()
    name = str(t.dtype).replace("torch.", "")
    if name in _ML_DTYPES:
        import ml_dtypes

        bits = t.view(torch.uint8 if t.element_size() == 1 else torch.int16).numpy()
        return bits.view(getattr(ml_dtypes, name))
    return t.numpy()


@dataclass
class Const:
    value: np.ndarray


@dataclass
class Live:
    node: Any  # torch.fx.Node
    shape: tuple[int, ...] | None
    dtype: str | None  # numpy dtype name


def module_path(initializer: str | None, suffixes: tuple[str, ...] = (".weight", ".bias")) -> str | None:
    """`layer1.0.conv1.weight` -> `layer1.0.conv1`: the module path torch's exporter kept in the name."""
    if not initializer:
        return None
    for suffix in suffixes:
        if initializer.endswith(suffix):
            path = initializer[: -len(suffix)]
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", path):
                return path
    return None


@dataclass
class Context:
    graph: Any  # torch.fx.Graph
    root: Any  # torch.nn.Module that owns parameters, buffers and submodules
    opset: int
    shapes: dict[str, tuple[tuple[int, ...] | None, str | None]] = field(default_factory=dict)
    consumers: dict[str, list[Any]] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)  # ONNX value name -> Const | Live
    # constant value name -> the initializer it was computed from (a transposed weight keeps its name)
    origin: dict[str, str] = field(default_factory=dict)
    # output of a node an earlier converter fused into its layer -> (that layer, the fx node that replaces it)
    absorbed: dict[str, tuple[str, Any]] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set)
    # converts a control-flow body inline: (body GraphProto, {body input: value}) -> its output values
    subgraph: Any = None
    _fake: dict[Any, Any] = field(default_factory=dict)  # fx node -> fake tensor (or tuple), see infer()
    _fake_mode: Any = None

    def infer(self, node: Any) -> tuple[tuple[int, ...] | None, str | None]:
        """(shape, dtype) of an fx node, found by running the graph up to it on fake tensors — for values
        whose shape ONNX shape inference could not give (shapes the graph computes from its inputs'
        shapes, which fold here because the inputs' sizes are fixed). (None, None) where that fails, e.g.
        for sizes that depend on the data (NonZero)."""
        try:
            value = self._fake_value(node)
        except Exception:  # an op fake tensors cannot run, or a data-dependent size
            return None, None
        import torch

        if not isinstance(value, torch.Tensor):
            return None, None
        try:
            shape = tuple(int(d) for d in value.shape)
        except Exception:  # a symbolic size
            return None, None
        return shape, str(value.dtype).removeprefix("torch.")

    def _fake_value(self, node: Any) -> Any:
        import torch
        import torch.fx
        from torch._subclasses.fake_tensor import FakeTensorMode

        if self._fake_mode is None:
            self._fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        if node in self._fake:
            return self._fake[node]
        if node.op == "placeholder":
            live = next(v for v in self.env.values() if isinstance(v, Live) and v.node is node)
            with self._fake_mode:
                value = torch.empty(live.shape, dtype=getattr(torch, live.dtype or "float32"))
        elif node.op == "get_attr":
            value = self.root.get_buffer(node.target) if "." not in node.target else self.root.get_submodule(
                node.target.rsplit(".", 1)[0]).get_buffer(node.target.rsplit(".", 1)[1])
        else:
            args = torch.fx.node.map_arg(node.args, self._fake_value)
            kwargs = torch.fx.node.map_arg(node.kwargs, self._fake_value)
            fn = self.root.get_submodule(node.target) if node.op == "call_module" else node.target
            with self._fake_mode:
                value = fn(*args, **kwargs)
        self._fake[node] = value
        return value

    def unique(self, base: str) -> str:
        name = re.sub(r"[^A-Za-z0-9_.]", "_", base).strip(".") or "module"
        if name[0].isdigit():
            name = f"m_{name}"
        candidate, i = name, 1
        while candidate in self._names or _exists(self.root, candidate):
            i += 1
            candidate = f"{name}_{i}"
        self._names.add(candidate)
        return candidate

    def add_module(self, path: str, module: Any) -> str:
        name = self.unique(path)
        parent = self.root
        *parents, leaf = name.split(".")
        for part in parents:
            if not hasattr(parent, part):
                import torch

                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, module)
        return name

    def tensor(self, value: np.ndarray, hint: str = "const") -> Any:
        """A constant as a graph value: a buffer on the root module (fx get_attr)."""
        name = self.unique(f"_const_{hint}").replace(".", "_")
        self.root.register_buffer(name, to_torch(value), persistent=False)
        return self.graph.get_attr(name)


def _exists(root: Any, dotted: str) -> bool:
    obj = root
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


class OnnxCall:
    """One ONNX node being converted."""

    def __init__(self, ctx: Context, node: Any, inputs: list[Const | Live | None]) -> None:
        self.ctx, self.node, self.inputs = ctx, node, inputs
        self.attrs = {a.name: _attr_value(a) for a in node.attribute}

    @property
    def op(self) -> str:
        return self.node.op_type

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] is not None

    def is_const(self, i: int) -> bool:
        return self.has(i) and isinstance(self.inputs[i], Const)

    def const(self, i: int) -> np.ndarray:
        value = self.inputs[i]
        if not isinstance(value, Const):
            raise NeedsConstant(f"{self._where()}: input {i} must be known at conversion time (a constant)",
                                input_name=self.node.input[i], hint=_FREEZE_HINT)
        return value.value

    def tensor(self, i: int) -> Any:
        """An fx node for input i, a scalar constant included (for ops that need a tensor, e.g. `.to`)."""
        value = self.inputs[i]
        return value.node if isinstance(value, Live) else self.ctx.tensor(value.value, self.node.input[i])

    def dtype(self, i: int) -> str | None:
        """The NumPy dtype name of input i, from the constant or from ONNX shape inference."""
        value = self.inputs[i]
        if isinstance(value, Const):
            return value.value.dtype.name
        return value.dtype if value is not None else None

    def value(self, i: int) -> Any:
        """An fx node for input i (constants become buffers; scalars stay Python numbers)."""
        value = self.inputs[i]
        if isinstance(value, Live):
            return value.node
        assert isinstance(value, Const)
        if value.value.ndim == 0 and value.value.dtype.kind in "fiub":
            return value.value.item()
        return self.ctx.tensor(value.value, self.node.input[i])

    def shape(self, i: int) -> tuple[int, ...] | None:
        value = self.inputs[i]
        return tuple(value.value.shape) if isinstance(value, Const) else value.shape  # type: ignore[union-attr]

    @property
    def out_shape(self) -> tuple[int, ...] | None:
        return self.ctx.shapes.get(self.node.output[0], (None, None))[0]

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.ctx.graph.call_function(fn, args, kwargs)

    def unpack(self, node: Any, n: int) -> list[Any]:
        """The n items of an fx node that returns a tuple, one fx node each (one per ONNX output)."""
        import operator

        return [self.call(operator.getitem, node, i) for i in range(n)]

    @property
    def out_dtype(self) -> str | None:
        return self.ctx.shapes.get(self.node.output[0], (None, None))[1]

    def _where(self) -> str:
        return f"ONNX {self.op} node {self.node.name or self.node.output[0]!r}"

    def unsupported(self, why: str, hint: str | None = None) -> Exception:
        return UnsupportedError(f"{self._where()}: {why}",
                                hint=hint or "register a converter with porttax.converters.register_onnx_to_torch")


_FREEZE_HINT = ("the converted model is static: fix the input sizes (--input-shape) so the graph's shape arithmetic "
                "folds, or make this value an initializer")


def _attr_value(attr: Any) -> Any:
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if attr.type == attr.TENSOR:
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value
