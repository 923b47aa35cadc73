"""Reshape, permute, concatenate, split, slice and index.

Shapes are taken from the exported program: static dims exactly, symbolic ones (an open batch or
sequence) kept open through `Context.reshape` and the run-time sizes of converters.torch_to_keras.symbolic.
Permutes are kept lazy: they update the value's layout instead of emitting a transpose, which lets
a permute that undoes an earlier layout change (NHWC ↔ NCHW around a LayerNorm, say) cost nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, invert, is_identity, live_val
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT, any_symbolic, is_symbolic, symbolic_scalar
from porttax.torch_ir import size_hints


@torch_to_keras("aten.view", "aten._unsafe_view", "aten.squeeze", "aten.unsqueeze")
def reshape(call: Call) -> Val:
    """Every view-like op; reshape, flatten, unflatten and view_as reach the graph as view."""
    v = call.val("self")
    x = call.ctx.torch_layout(v)
    return live_val(call.ctx.reshape(x, v.shape, call.out_shape, call.out_dims, call.op), call.out_shape)


@torch_to_keras("aten.permute")
def permute(call: Call) -> Val:
    v = call.val("self")
    dims = tuple(int(d) % v.rank for d in call.args["dims"])
    return _lazy_permute(v, dims, call.out_shape)


@torch_to_keras("aten.transpose.int", "aten.t")
def transpose(call: Call) -> Val:
    v = call.val("self")
    dims = list(range(v.rank))
    if v.rank >= 2:
        a = int(call.args.get("dim0", 0)) % v.rank
        b = int(call.args.get("dim1", 1)) % v.rank
        dims[a], dims[b] = dims[b], dims[a]
    return _lazy_permute(v, tuple(dims), call.out_shape)


def _lazy_permute(v: Val, dims: tuple[int, ...], out_shape: tuple[int, ...]) -> Val:
    # out = torch_in.permute(dims); keras holds torch_in.permute(P). Then keras = out.permute(P').
    inv = invert(dims)
    have = v.perm or tuple(range(v.rank))
    new_perm = tuple(inv[p] for p in have)
    out = live_val(v.tensor, out_shape, None if is_identity(new_perm) else new_perm)
    out.perm_from_source = True
    return out


@torch_to_keras("aten.expand")
def expand(call: Call) -> Val:
    x = call.tensor("self")
    dims = call.out_dims
    if not any_symbolic(dims):
        return live_val(call.ctx.ops.broadcast_to(x, call.out_shape), call.out_shape)
    # broadcast_to takes a static shape: an open dim grows from 1 by multiplying with ones of its size
    v = call.val("self")
    have = (1,) * (len(dims) - v.rank) + tuple(v.shape)
    grow = [d if have[i] == 1 and d != 1 else 1 for i, d in enumerate(dims)]
    ones = call.ctx.sizes.ones(grow, call.out_dtype)
    if call.out_dtype == "bool":
        return live_val(call.ctx.ops.logical_and(x, ones), call.out_shape)
    return live_val(call.ctx.ops.multiply(x, ones), call.out_shape)


@torch_to_keras("aten.repeat")
def repeat(call: Call) -> Val:
    ops = call.ctx.ops
    v = call.val("self")
    reps = [int(r) for r in call.args["repeats"]]
    x = call.ctx.torch_layout(v)
    if len(reps) > v.rank:
        x = call.ctx.reshape(x, v.shape, (1,) * (len(reps) - v.rank) + tuple(v.shape))
    return live_val(ops.tile(x, reps), call.out_shape)


@torch_to_keras("aten.repeat_interleave.self_int", "aten.repeat_interleave.self_Tensor")
def repeat_interleave(call: Call) -> Val:
    v = call.val("self")
    dim = call.args.get("dim")
    perm = v.perm if dim is not None and v.live else None
    # Repeating along one axis works in any layout: stay in the one the value is held in (k/v heads
    # after the sequence axis, for grouped-query attention) instead of transposing to the source's.
    x = v.tensor if perm is not None else call.ctx.torch_layout(v)
    if dim is None:
        x, dim = call.ctx.ops.reshape(x, (-1,)), 0
    out_dims, in_dims = call.out_dims, v.dims or tuple(v.shape)
    along = None if call.args.get("dim") is None else int(dim) % len(out_dims)
    grows = any_symbolic(out_dims) if along is None else is_symbolic(out_dims[along])
    if grows and (not any_symbolic(in_dims) if along is None else not is_symbolic(in_dims[along])):
        raise call.unsupported("repeat counts from a tensor make the output length data-dependent",
                               hint="pass output_size= to torch.repeat_interleave")
    repeats = call.val("repeats")
    if isinstance(repeats, Val):
        if repeats.live:
            raise call.unsupported("repeat counts computed from the model inputs")
        repeats = repeats.const.cpu().numpy()
    axis = int(dim) % max(v.rank, 1)
    if perm is not None:
        out = live_val(call.ctx.ops.repeat(x, repeats, axis=perm.index(axis)), call.out_shape, perm)
    else:
        out = live_val(call.ctx.ops.repeat(x, repeats, axis=axis), call.out_shape)
    uniform = np.unique(np.asarray(repeats).reshape(-1))
    if v.live and uniform.size == 1 and int(uniform[0]) > 1 and call.args.get("dim") is not None:
        out.repeat_of = (v, int(uniform[0]), axis)
    return out


@torch_to_keras("aten.cat", "aten.concat")
def cat(call: Call) -> Val:
    vals = [v for v in call.val("tensors") if not (isinstance(v, Val) and v.shape is not None
                                                   and 0 in v.shape)]
    dim = int(call.args.get("dim", 0)) % len(call.out_shape)
    tensors, perm = call.ctx.align(vals, len(call.out_shape))
    axis = perm.index(dim) if perm else dim
    tensors = [t.astype(np.float32) if isinstance(t, np.ndarray) and t.dtype == np.float64 else t
               for t in tensors]
    return live_val(call.ctx.ops.concatenate(tensors, axis=axis), call.out_shape, perm)


@torch_to_keras("aten.stack")
def stack(call: Call) -> Val:
    tensors = [call.ctx.torch_layout(v) if isinstance(v, Val) else v for v in call.val("tensors")]
    return live_val(call.ctx.ops.stack(tensors, axis=int(call.args.get("dim", 0))), call.out_shape)


def _slice(call: Call, v: Val, dim: int, start: int, stop: int, step: int, out_dim: int) -> Val:
    ops = call.ctx.ops
    axis = v.perm.index(dim) if v.perm else dim
    kshape = [v.shape[p] for p in v.perm] if v.perm else list(v.shape)
    if any(d is None for d in tuple(v.tensor.shape)):
        # an open dim somewhere: Python slicing keeps it open (ops.slice wants every size); this axis
        # is static here, or its start and stop are literal ints (slice_ handles symbolic bounds)
        index = [slice(None)] * v.rank
        index[axis] = slice(start, stop, step)
        out = v.tensor[tuple(index)]
    elif step == 1:
        begin = [0] * v.rank
        begin[axis] = start
        size = list(kshape)
        size[axis] = out_dim
        out = ops.slice(v.tensor, begin, size)
    else:
        indices = np.arange(start, stop, step, dtype=np.int32)[:out_dim]
        out = ops.take(v.tensor, indices, axis=axis)
    shape = list(v.shape)
    shape[dim] = out_dim
    return live_val(out, shape, v.perm)


@torch_to_keras("aten.slice.Tensor")
def slice_(call: Call) -> Val:
    v = call.val("self")
    dim = int(call.args.get("dim", 0)) % v.rank
    if any_symbolic(call.out_dims) or not v.live:
        opened = _open_slice(call, v, dim)
        if opened is not None:
            return opened
    size = v.shape[dim]
    start = call.args.get("start") or 0
    end = call.args.get("end")
    step = int(call.args.get("step") or 1)
    start, end, _ = slice(start, end, step).indices(size)
    return _slice(call, v, dim, start, end, step, call.out_shape[dim])


def _open_slice(call: Call, v: Val, dim: int) -> Val | None:
    """A slice along a dim whose size or bounds are symbolic; None when the static path holds."""
    out_dim = call.out_dims[dim]
    in_dim = v.dims[dim] if v.dims is not None else v.shape[dim]
    start, end = call.args.get("start"), call.args.get("end")
    step = int(call.args.get("step") or 1)
    if any(symbolic_scalar(b) for b in (start, call.args.get("step"))):
        raise call.unsupported("a slice that starts at a size computed from an open input dim",
                               hint=STATIC_HINT)
    start = int(start or 0)
    if symbolic_scalar(end) or (is_symbolic(out_dim) and is_symbolic(in_dim) is False):
        # cut to a run-time length (a rotary table cut to the sequence): gather those positions
        if start < 0:
            raise call.unsupported("a slice from a negative start to a symbolic end", hint=STATIC_HINT)
        index = call.ctx.ops.add(call.ctx.ops.multiply(call.ctx.sizes.arange(out_dim, "int32"), step), start)
        x = v.tensor if v.live else call.ctx.torch_layout(v)
        axis = v.axis(dim) if v.live else dim
        return live_val(call.ctx.ops.take(x, index, axis=axis), call.out_shape, v.perm if v.live else None)
    if not v.live:
        return None
    if start == 0 and step == 1 and out_dim == in_dim:
        return live_val(v.tensor, v.shape, v.perm)
    stop = None if end is None or int(end) >= 2 ** 62 else int(end)
    return _slice(call, v, dim, start, stop, step, call.out_shape[dim])


@torch_to_keras("aten.select.int")
def select(call: Call) -> Val:
    v = call.val("self")
    dim = int(call.args["dim"]) % v.rank
    if symbolic_scalar(call.args["index"]):
        raise call.unsupported("an index computed from an open input dim", hint=STATIC_HINT)
    raw = int(call.args["index"])
    if v.dims is not None and is_symbolic(v.dims[dim]):  # x[:, -1] on an open sequence: count from the end
        sliced = _slice(call, v, dim, raw, raw + 1 if raw != -1 else None, 1, 1)
    else:
        index = raw % v.shape[dim]
        sliced = _slice(call, v, dim, index, index + 1, 1, 1)
    x = call.ctx.torch_layout(sliced)
    return live_val(call.ctx.reshape(x, sliced.shape, call.out_shape, call.out_dims, call.op), call.out_shape)


def _split_points(size: int, sizes: list[int]) -> list[tuple[int, int]]:
    out, start = [], 0
    for s in sizes:
        out.append((start, min(start + s, size)))
        start += s
    return out


@torch_to_keras("aten.split", "aten.split_with_sizes", "aten.unbind")
def split(call: Call) -> list[Val]:
    """chunk exports as split; narrow and tensor_split as slice."""
    v = call.val("self")
    dim = int(call.args.get("dim", 0)) % v.rank
    size = v.shape[dim]
    op = str(call.node.target.overloadpacket)
    if op == "aten.unbind":
        pieces = [
            live_val(call.ctx.reshape(call.ctx.torch_layout(_slice(call, v, dim, i, i + 1, 1, 1)),
                                      v.shape[:dim] + (1,) + v.shape[dim + 1:], v.shape[:dim] + v.shape[dim + 1:]),
                     v.shape[:dim] + v.shape[dim + 1:])
            for i in range(size)
        ]
        return pieces
    metas = call.node.meta["val"]
    sizes = [size_hints(m.shape)[dim] for m in metas]
    return [_slice(call, v, dim, a, b, 1, b - a) for a, b in _split_points(size, sizes)]


@torch_to_keras("aten.index.Tensor")
def index(call: Call) -> Val:
    ops = call.ctx.ops
    v = call.val("self")
    indices = call.val("indices")
    picked = [(i, ix) for i, ix in enumerate(indices) if ix is not None]
    if len(picked) != 1:
        raise call.unsupported("advanced indexing with more than one index tensor",
                               hint="index one dimension at a time, or use torch.gather")
    dim, ix = picked[0]
    if isinstance(ix, Val) and not ix.live:
        arr = np.asarray(ix.const.cpu().numpy())
        if arr.dtype == bool:
            raise call.unsupported("boolean-mask indexing makes the output shape data-dependent")
        ix_t: Any = arr.astype(np.int64)
    else:
        ix_t = ix.tensor
    x = call.ctx.torch_layout(v)
    return live_val(ops.take(x, ix_t, axis=dim), call.out_shape)


@torch_to_keras("aten.index_select")
def index_select(call: Call) -> Val:
    ops = call.ctx.ops
    v = call.val("self")
    dim = int(call.args["dim"]) % v.rank
    ix = call.val("index")
    ix_t = ix.tensor if ix.live else np.asarray(ix.const.cpu().numpy())
    return live_val(ops.take(call.ctx.torch_layout(v), ix_t, axis=dim), call.out_shape)


@torch_to_keras("aten.gather")
def gather(call: Call) -> Val:
    """torch.gather lets the index be smaller than the input in the other dimensions (the output has
    the index's shape); take_along_axis wants them equal, so the input is cut to the index first."""
    ops = call.ctx.ops
    v = call.val("self")
    dim = int(call.args["dim"]) % max(v.rank, 1)
    x = call.tensor("self")
    ix = call.tensor("index")
    size = [v.shape[d] if d == dim else call.out_shape[d] for d in range(v.rank)]
    if list(size) != list(v.shape):
        x = ops.slice(x, [0] * v.rank, size)
    return live_val(ops.take_along_axis(x, ix, axis=dim), call.out_shape)


def _constant_pad(call: Call, v: Val, pad: list[int], value: float) -> Val:
    if any(p < 0 for p in pad):
        raise call.unsupported("negative padding (cropping) is not mapped yet")
    widths = [[0, 0] for _ in range(v.rank)]
    for i in range(len(pad) // 2):
        widths[v.rank - 1 - i] = [pad[2 * i], pad[2 * i + 1]]
    if v.perm:
        widths = [widths[p] for p in v.perm]
    return live_val(call.ctx.ops.pad(v.tensor, widths, constant_values=value), call.out_shape, v.perm)


@torch_to_keras("aten.constant_pad_nd")
def constant_pad(call: Call) -> Val:
    v = call.val("self")
    return _constant_pad(call, v, [int(p) for p in call.args["pad"]], float(call.args.get("value") or 0.0))


def _pad_indices(mode: str, size: int, before: int, after: int) -> np.ndarray:
    """The input position each output position reads along one padded axis."""
    pos = np.arange(-before, size + after)
    if mode == "reflect":  # mirror without repeating the edge: -1 -> 1, size -> size - 2
        period = 2 * (size - 1) if size > 1 else 1
        pos = np.abs(pos) % period
        return np.where(pos < size, pos, period - pos).astype(np.int32)
    if mode == "replicate":
        return np.clip(pos, 0, size - 1).astype(np.int32)
    return (pos % size).astype(np.int32)  # circular


def _gather_pad(call: Call, v: Val, pads: list[int], mode: str) -> Val:
    """Pads in a copying mode, as one gather per padded axis (pads run from the last dim backwards)."""
    x = v.tensor
    for i in range(len(pads) // 2):
        dim, (before, after) = v.rank - 1 - i, pads[2 * i: 2 * i + 2]
        if before or after:
            x = call.ctx.ops.take(x, _pad_indices(mode, v.shape[dim], before, after), axis=v.axis(dim))
    return live_val(x, call.out_shape, v.perm)


@torch_to_keras("aten.pad")
def pad(call: Call) -> Val:
    """F.pad, which export keeps whole. Constant mode is keras.ops.pad; in reflect, replicate and
    circular modes each output position copies one input position known at conversion time, so
    they are a gather per padded axis (TensorFlow's pad has no replicate or circular mode)."""
    v = call.val("self")
    pads = [int(p) for p in call.args["pad"]]
    mode = call.args.get("mode") or "constant"
    if mode == "constant":
        return _constant_pad(call, v, pads, float(call.args.get("value") or 0.0))
    if mode not in ("reflect", "replicate", "circular"):
        raise call.unsupported(f"padding mode {mode!r}")
    return _gather_pad(call, v, pads, mode)


_MODE_PADS = {f"aten.{kind}_pad{nd}d": mode for kind, mode in (("reflection", "reflect"), ("replication", "replicate"))
              for nd in (1, 2, 3)}


@torch_to_keras(*_MODE_PADS)
def mode_pad(call: Call) -> Val:
    """aten.reflection_pad2d and kin: what F.pad becomes in a graph decomposed to core ATen."""
    mode = _MODE_PADS[str(call.node.target.overloadpacket)]
    return _gather_pad(call, call.val("self"), [int(p) for p in call.args["padding"]], mode)


@torch_to_keras("aten.tril", "aten.triu")
def tri(call: Call) -> Val:
    ops = call.ctx.ops
    fn = ops.tril if str(call.node.target.overloadpacket) == "aten.tril" else ops.triu
    return live_val(fn(call.tensor("self"), k=int(call.args.get("diagonal", 0))), call.out_shape)


@torch_to_keras("aten.cumsum")
def cumsum(call: Call) -> Val:
    """torch accumulates booleans and small ints in int64 (or the `dtype` asked for): cast first."""
    ops = call.ctx.ops
    x = ops.cast(call.tensor("self"), call.out_dtype)
    return live_val(ops.cumsum(x, axis=int(call.args["dim"])), call.out_shape)
