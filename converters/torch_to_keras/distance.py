"""Pairwise distances: `torch.cdist` (aten.cdist / aten._cdist_forward) and `F.pdist` (aten.pdist /
aten._pdist_forward).

torch computes the p-norm of each difference of points. For p=2 it switches to a matmul form,
sqrt(‖a‖² − 2a·b + ‖b‖²), when either point set has more than 25 points (compute_mode None or 0)
or always (compute_mode 1). The two forms round differently, most where points nearly coincide
(the matmul form loses the small difference to cancellation), so the converted model takes the
same branch torch takes and writes the same formula; the branch is chosen from the static point
counts, which is why an open point count is refused there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, live_val
from porttax.converters.torch_to_keras.symbolic import STATIC_HINT, is_symbolic

# torch's `cdist_impl`: the matmul form is used above this many points per set (compute_mode 0/None)
_MM_ABOVE = 25


def _p(call: Call) -> float:
    p = float(call.args["p"])
    if p < 0 or math.isnan(p):
        raise call.unsupported(f"p={p}: a p-norm distance needs p >= 0")
    return p


def _norm_of_differences(ops: Any, diff: Any, p: float) -> Any:
    """‖diff‖_p over the last axis, written as torch's distance kernels accumulate it."""
    if p == 0:  # the number of coordinates that differ
        return ops.sum(ops.cast(ops.not_equal(diff, 0), diff.dtype), axis=-1)
    if p == 1:
        return ops.sum(ops.abs(diff), axis=-1)
    if p == 2:
        return ops.sqrt(ops.sum(ops.square(diff), axis=-1))
    if math.isinf(p):
        return ops.max(ops.abs(diff), axis=-1)
    return ops.power(ops.sum(ops.power(ops.abs(diff), p), axis=-1), 1.0 / p)


def _euclidean_by_matmul(ops: Any, x1: Any, x2: Any) -> Any:
    """torch's `_euclidean_dist`: [−2a, ‖a‖², 1] · [b, 1, ‖b‖²], clamped at 1e-30, square-rooted."""
    n1 = ops.sum(ops.square(x1), axis=-1, keepdims=True)
    n2 = ops.sum(ops.square(x2), axis=-1, keepdims=True)
    a = ops.concatenate([ops.multiply(x1, -2.0), n1, ops.ones_like(n1)], axis=-1)
    b = ops.concatenate([x2, ops.ones_like(n2), n2], axis=-1)
    return ops.sqrt(ops.maximum(ops.matmul(a, ops.swapaxes(b, -1, -2)), 1e-30))


def _points(call: Call, name: str) -> Val:
    v = call.val(name)
    if v.rank < 2 or v.shape[-1] == 0:
        raise call.unsupported(f"{name} of shape {tuple(v.shape)}: points must be (..., count, dims) with dims > 0")
    return v


@torch_to_keras("aten._cdist_forward", "aten.cdist")
def cdist(call: Call) -> Val:
    """Distances between every point of x1 (..., P, M) and every point of x2 (..., R, M): (..., P, R)."""
    ops = call.ctx.ops
    p = _p(call)
    v1, v2 = _points(call, "x1"), _points(call, "x2")
    mode = call.args.get("compute_mode")
    mode = 0 if mode is None else int(mode)
    x1, x2 = call.tensor("x1"), call.tensor("x2")
    if p == 2 and mode == 0:
        counts = [v.dims[-2] if v.dims is not None else v.shape[-2] for v in (v1, v2)]
        if any(is_symbolic(c) for c in counts):
            raise call.unsupported("torch picks its formula from the point counts, and one of them is an open size",
                                   hint=STATIC_HINT + ", or pass compute_mode='use_mm_for_euclid_dist' or "
                                   "'donot_use_mm_for_euclid_dist'")
    if p == 2 and (mode == 1 or (mode == 0 and (v1.shape[-2] > _MM_ABOVE or v2.shape[-2] > _MM_ABOVE))):
        out = _euclidean_by_matmul(ops, x1, x2)
    else:
        out = _norm_of_differences(ops, ops.subtract(ops.expand_dims(x1, -2), ops.expand_dims(x2, -3)), p)
    return live_val(out, call.out_shape)


@torch_to_keras("aten._pdist_forward", "aten.pdist")
def pdist(call: Call) -> Val:
    """Distances between the rows i < j of an (N, M) input, in torch's order: (0,1), (0,2), … (N−2,N−1)."""
    ops = call.ctx.ops
    p = _p(call)
    v = _points(call, "input" if "input" in call.args else "self")
    if v.rank != 2:
        raise call.unsupported(f"pdist of a {v.rank}-D input (it takes (N, M))")
    if v.dims is not None and is_symbolic(v.dims[0]):
        raise call.unsupported("pdist of an open number of rows: its output length is N(N-1)/2", hint=STATIC_HINT)
    n = v.shape[0]
    rows, cols = np.triu_indices(n, k=1)
    x = call.ctx.torch_layout(v)
    diff = ops.subtract(ops.take(x, rows.astype(np.int32), axis=0), ops.take(x, cols.astype(np.int32), axis=0))
    return live_val(_norm_of_differences(ops, diff, p), call.out_shape)
