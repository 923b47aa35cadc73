"""Symbolic sizes: a source captured with an open batch or sequence dim converts to a Keras model
with that dim open (`None`), so one SavedModel serves any batch and any prompt length.

torch.export names each dynamic size with a sympy symbol (s0, s72) and records every node's output
shape as expressions of those symbols. A Keras functional graph has no size values to compute
with: a dim is either open or fixed, and ops take their shape arguments as constants. So what the
source computes from sizes is written in the forms Keras can carry:
- a reshape puts -1 where one size is open, and where two are it lets `keras.layers.Reshape` read
  the leading one at run time (moving a passed-through open axis to the front when it is not there);
- a tensor whose shape is a symbolic size (`arange(seq)`, `full((seq, seq))`, a rotary table cut to
  `seq`) is built from a vector of that length, sliced out of the model input that carries the size.
What a converter cannot carry is refused by name (the driver checks every converted tensor's static
shape against the source's), never written with the example's size baked in.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from porttax.errors import UnsupportedError
from porttax.torch_ir import is_open

SymDim = Any  # an int, or a sympy expression of the export's size symbols
# The hint of every refusal that only an open size causes: the road retries such a model at fixed sizes
# (porttax.routes), so its wording is matched there through `is_open_size_refusal`.
STATIC_HINT = "convert with --static (fixed input shapes)"


def is_open_size_refusal(exc: BaseException) -> bool:
    """Whether a converter refused the model only because a size is open."""
    return isinstance(exc, UnsupportedError) and getattr(exc, "hint", None) is not None and "--static" in exc.hint


def dims_of(shape: Sequence[Any]) -> tuple[SymDim, ...]:
    """A torch (fake) tensor shape as ints and sympy expressions."""
    out: list[SymDim] = []
    for d in shape:
        if isinstance(d, int):
            out.append(d)
            continue
        expr = d.node.expr
        out.append(int(expr) if expr.is_Integer else expr)
    return tuple(out)


def is_symbolic(d: SymDim) -> bool:
    return not isinstance(d, (int, np.integer))


def any_symbolic(dims: Sequence[SymDim] | None) -> bool:
    return dims is not None and any(is_symbolic(d) for d in dims)


def symbolic_scalar(value: Any) -> bool:
    """Whether an FX argument's recorded value is a SymInt/SymFloat that is not a constant."""
    meta = value.meta.get("val") if hasattr(value, "meta") else None
    return hasattr(meta, "node") and not hasattr(meta, "shape") and is_open(meta)


def symbolic_tensor(value: Any) -> bool:
    """Whether an FX node's recorded value is a tensor with a symbolic dim."""
    meta = value.meta.get("val") if hasattr(value, "meta") else None
    return hasattr(meta, "shape") and hasattr(meta, "dtype") and any_symbolic(dims_of(meta.shape))


class Sizes:
    """Where each size symbol can be read at run time: (Keras input, axis)."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops
        self._sources: dict[Any, tuple[Any, int]] = {}
        self._vectors: dict[Any, Any] = {}

    def add_input(self, tensor: Any, dims: Sequence[SymDim]) -> None:
        for axis, d in enumerate(dims):
            if is_symbolic(d) and d.is_Symbol and d not in self._sources:
                self._sources[d] = (tensor, axis)

    def vector(self, expr: SymDim) -> Any:
        """An int32 vector of ones whose length is `expr` at run time."""
        if not is_symbolic(expr):
            return np.ones(int(expr), dtype=np.int32)
        if expr in self._vectors:
            return self._vectors[expr]
        ops = self.ops
        if expr.is_Symbol:
            if expr not in self._sources:
                raise UnsupportedError(f"size {expr} is not the size of any model input axis", hint=STATIC_HINT)
            tensor, axis = self._sources[expr]
            index = tuple(slice(None) if i == axis else 0 for i in range(len(tensor.shape)))
            out = ops.ones_like(tensor[index], dtype="int32")
        elif expr.is_Add:
            constant = int(sum(t for t in expr.args if t.is_number))
            rest = expr - constant
            base = self.vector(rest)
            if constant >= 0:
                out = ops.concatenate([base, np.ones(constant, dtype=np.int32)], axis=0) if constant else base
            else:
                out = base[:constant]
        elif expr.is_Mul:
            factors = list(expr.args)
            out = self.vector(factors[0])
            for f in factors[1:]:
                outer = ops.multiply(ops.expand_dims(out, 1), ops.expand_dims(self.vector(f), 0))
                out = ops.reshape(outer, (-1,))
        else:
            raise UnsupportedError(f"a tensor's size is {expr}, which porttax cannot rebuild from the input sizes",
                                   hint=STATIC_HINT)
        self._vectors[expr] = out
        return out

    def ones(self, dims: Sequence[SymDim], dtype: str) -> Any:
        """A tensor of ones of shape `dims`, its symbolic dims taken from the inputs at run time."""
        ops = self.ops
        rank = len(dims)
        out: Any = np.ones([1 if is_symbolic(d) else int(d) for d in dims], dtype=np.int32)
        for axis, d in enumerate(dims):
            if is_symbolic(d):
                v = ops.reshape(self.vector(d), [1] * axis + [-1] + [1] * (rank - axis - 1))
                out = ops.multiply(out, v)
        return ops.cast(out, dtype)

    def arange(self, length: SymDim, dtype: str) -> Any:
        """0, 1, … length-1 with a symbolic length."""
        return self.ops.cast(self.ops.cumsum(self.vector(length), axis=0) - 1, dtype)


def _groups(a: Sequence[int], b: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Axes of shape `a` and `b` that a reshape merges or splits together (equal products)."""
    out: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        gi, gj, pa, pb = [i], [j], a[i], b[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if (pa < pb and i < len(a)) or j >= len(b):
                gi.append(i)
                pa *= a[i]
                i += 1
            else:
                gj.append(j)
                pb *= b[j]
                j += 1
        out.append((gi, gj))
    if out:
        out[-1][0].extend(range(i, len(a)))
        out[-1][1].extend(range(j, len(b)))
    else:
        out.append((list(range(len(a))), list(range(len(b)))))
    return out


def symbolic_reshape(ctx: Any, x: Any, source: Sequence[int], target: Sequence[int],
            target_dims: Sequence[SymDim] | None = None, what: str = "reshape") -> Any:
    """`x` (concrete shape `source` in the example, open axes None in `x.shape`) reshaped to `target`.

    `target_dims` says which target dims are symbolic; without it, each group of axes the reshape
    merges or splits is open when one of its source axes is, and its one non-unit target axis is."""
    ops = ctx.ops
    open_in = [d is None for d in tuple(x.shape)]
    target = [int(d) for d in target]
    if not any(open_in) and not any_symbolic(target_dims):
        return ops.reshape(x, target)
    groups = _groups([int(d) for d in source], target)
    if target_dims is not None:
        open_out = [is_symbolic(d) for d in target_dims]
    else:
        open_out = [False] * len(target)
        for gi, gj in groups:
            if any(open_in[i] for i in gi):
                big = [j for j in gj if target[j] != 1]
                if len(big) != 1:
                    raise UnsupportedError(f"{what}: {tuple(source)} → {tuple(target)} splits a symbolic size; "
                                           "porttax cannot tell which of the new axes stays open", hint=STATIC_HINT)
                open_out[big[0]] = True
    opened = [j for j, o in enumerate(open_out) if o]
    if len(opened) <= 1:
        return ops.reshape(x, [-1 if o else t for t, o in zip(target, open_out)])
    # Two open target axes: one of them must pass an open source axis through unchanged, which
    # keras.layers.Reshape then reads at run time as the leading (batch) axis.
    through = [(gi, gj) for gi, gj in groups if len([i for i in gi if source[i] != 1]) == 1
               and len([j for j in gj if target[j] != 1]) == 1 and any(open_in[i] for i in gi)]
    if len(opened) > 2 or not through:
        raise UnsupportedError(f"{what}: {tuple(source)} → {tuple(target)} needs {len(opened)} symbolic sizes at "
                               "once, which a Keras graph cannot compute", hint=STATIC_HINT)
    prefer = [g for g in through if 0 in g[0] and 0 in g[1]] or through
    gi, gj = prefer[0]
    i = next(i for i in gi if source[i] != 1)
    j = next(j for j in gj if target[j] != 1)
    moved = x if i == 0 else ops.moveaxis(x, i, 0)
    rest = [-1 if o else t for k, (t, o) in enumerate(zip(target, open_out)) if k != j]
    layer = ctx.keras.layers.Reshape(rest, name=ctx.unique_name("open_reshape"))
    ctx.track(layer)
    out = layer(moved)
    return out if j == 0 else ops.moveaxis(out, 0, j)
