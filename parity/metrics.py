"""Distances between one output of the source model and the same output of the converted model.

Everything is computed in float64 so the comparison itself adds no rounding. Non-finite values are
checked position by position before any distance: a NaN or ±Inf where the source has a finite value
(or a finite value where the source has one, or Inf of the other sign) is a mismatch, and no
tolerance forgives it; the same non-finite value at the same position is what a faithful port of a
model that makes NaN (a square root of signed inputs) gives, so it is counted, not failed. Distances
are then taken over the positions finite on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

_TINY = np.finfo(np.float64).tiny


@dataclass
class OutputMetrics:
    """How far `actual` (converted) is from `expected` (source); None where a value is undefined."""

    shape_match: bool
    actual_shape: tuple[int, ...]
    expected_shape: tuple[int, ...]
    actual_dtype: str
    expected_dtype: str
    nan_actual: int = 0
    nan_expected: int = 0
    inf_actual: int = 0
    inf_expected: int = 0
    inf_mask_match: bool = True
    nonfinite_shared: int = 0  # positions where both sides hold the same NaN or ±Inf
    nonfinite_mismatch: int = 0  # positions non-finite on one side only, or NaN against Inf, or ±Inf flipped
    max_abs: float | None = None
    max_rel: float | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    mean_abs: float | None = None
    median_abs: float | None = None
    topk_agreement: dict[int, float] = field(default_factory=dict)  # k -> fraction of positions agreeing

    @property
    def top1_disagreement(self) -> float | None:
        """Share of positions whose argmax differs (the gate of quantisation profiles); None when the
        output is not logits-like, so top-1 is undefined."""
        agree = self.topk_agreement.get(1)
        return None if agree is None else 1.0 - agree

    @property
    def finite_ok(self) -> bool:
        """Every NaN and Inf where the source has the same one: the precondition for any pass."""
        return self.nonfinite_mismatch == 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["actual_shape"] = list(self.actual_shape)
        d["expected_shape"] = list(self.expected_shape)
        d["topk_agreement"] = {str(k): v for k, v in self.topk_agreement.items()}
        d["finite_ok"] = self.finite_ok
        return d


def _as_f64(x: Any) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _nonfinite_kind(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), 2, np.where(np.isinf(x), np.sign(x), 0)).astype(np.int8)


def _looks_like_logits(a: np.ndarray) -> bool:
    is_float = a.dtype.kind == "f" or a.dtype.name == "bfloat16"
    return is_float and a.ndim >= 2 and a.shape[-1] > 1


def topk_agreement(actual: np.ndarray, expected: np.ndarray, k: int) -> float:
    """Fraction of positions (all axes but the last) whose top-k index *sets* over the last axis agree.

    For k=1 this is argmax agreement: the share of tokens/samples whose predicted class is unchanged.
    """
    if k == 1:
        return float(np.mean(np.argmax(actual, axis=-1) == np.argmax(expected, axis=-1)))
    top_a = np.sort(np.argpartition(-actual, k - 1, axis=-1)[..., :k], axis=-1)
    top_e = np.sort(np.argpartition(-expected, k - 1, axis=-1)[..., :k], axis=-1)
    return float(np.mean(np.all(top_a == top_e, axis=-1)))


def compare(actual: Any, expected: Any, *, topk: Sequence[int] = (1,)) -> OutputMetrics:
    """Metrics for one output pair. `expected` is the reference (source model) side."""
    a_raw, e_raw = np.asarray(actual), np.asarray(expected)
    m = OutputMetrics(
        shape_match=a_raw.shape == e_raw.shape,
        actual_shape=tuple(a_raw.shape),
        expected_shape=tuple(e_raw.shape),
        actual_dtype=str(a_raw.dtype),
        expected_dtype=str(e_raw.dtype),
    )
    a, e = _as_f64(a_raw), _as_f64(e_raw)
    m.nan_actual, m.nan_expected = int(np.isnan(a).sum()), int(np.isnan(e).sum())
    m.inf_actual, m.inf_expected = int(np.isinf(a).sum()), int(np.isinf(e).sum())
    if not m.shape_match:
        m.inf_mask_match = m.inf_actual == 0 and m.inf_expected == 0
        m.nonfinite_mismatch = m.nan_actual + m.nan_expected + m.inf_actual + m.inf_expected
        return m
    # What each position holds: 0 finite, ±1 ±Inf, 2 NaN. +Inf against -Inf is as wrong as Inf against finite.
    kind_a, kind_e = _nonfinite_kind(a), _nonfinite_kind(e)
    m.inf_mask_match = bool(np.array_equal(np.where(np.abs(kind_a) == 1, kind_a, 0), np.where(np.abs(kind_e) == 1, kind_e, 0)))
    m.nonfinite_mismatch = int(np.count_nonzero(kind_a != kind_e))
    m.nonfinite_shared = int(np.count_nonzero((kind_a == kind_e) & (kind_e != 0)))

    finite = np.isfinite(a) & np.isfinite(e)
    af, ef = a[finite], e[finite]
    if af.size:
        diff = np.abs(af - ef)
        m.max_abs = float(diff.max())
        with np.errstate(over="ignore"):  # diff / tiny is inf where the reference is 0: max_rel says so
            m.max_rel = float((diff / np.maximum(np.abs(ef), _TINY)).max())
        m.mean_abs = float(diff.mean())
        m.median_abs = float(np.median(diff))
        err, ref = float(np.linalg.norm(af - ef)), float(np.linalg.norm(ef))
        m.rel_l2 = err / ref if ref > 0 else err
        na = float(np.linalg.norm(af))
        if na == 0.0 and ref == 0.0:
            m.cosine = 1.0
        elif na == 0.0 or ref == 0.0:
            m.cosine = 0.0
        else:
            m.cosine = float(np.dot(af, ef) / (na * ref))
    else:  # empty tensors (or all non-finite, which the NaN/Inf checks judge): nothing differs
        m.max_abs = m.max_rel = m.mean_abs = m.median_abs = m.rel_l2 = 0.0
        m.cosine = 1.0

    if _looks_like_logits(a_raw) and _looks_like_logits(e_raw) and a.size and m.finite_ok:
        for k in topk:
            if 1 <= k <= a.shape[-1]:
                m.topk_agreement[int(k)] = topk_agreement(a, e, int(k))
    return m
