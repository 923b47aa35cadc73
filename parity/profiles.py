"""Tolerance profiles: how much drift a port may show, by the precision the models run in.

One number per profile keeps verdicts explainable ("rel_l2 3e-4 > 1e-5 (fp32)"). The statistic is the
relative L2 error ‖a−b‖/‖b‖ of the whole output: unlike max_rel it does not explode on elements near
zero, and unlike max_abs it does not depend on the output's scale.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from porttax.errors import InputError
from porttax.parity.metrics import OutputMetrics

# lower is better for all of them; top1_disagreement = 1 − top-1 agreement (logits-like outputs only)
STATS = ("rel_l2", "max_abs", "max_rel", "mean_abs", "median_abs", "top1_disagreement")


@dataclass(frozen=True)
class Profile:
    """Pass when `metrics.<stat>` ≤ `threshold`."""

    name: str
    threshold: float
    stat: str = "rel_l2"
    description: str = ""

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise InputError(f"profile {self.name!r}: unknown statistic {self.stat!r}; valid: {', '.join(STATS)}")
        if not self.threshold >= 0:
            raise InputError(f"profile {self.name!r}: threshold must be >= 0, got {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("fp32", 1e-5, description="float32 on CPU (or GPU with TF32 off): only reordering error"),
        Profile("tf32", 1e-3, description="float32 on GPU with TF32 matmuls/convolutions (10-bit mantissa)"),
        Profile("bf16", 1e-2, description="bfloat16 compute (8-bit mantissa)"),
        Profile("fp16", 1e-3, description="float16 compute (11-bit mantissa)"),
        # quantised models are judged by what they decide, not by 1e-5: at most 1 argmax in 10 may move
        Profile("int8", 0.1, stat="top1_disagreement",
                description="int8 / dynamic-range quantised: top-1 agreement with the float source ≥ 90%"),
    )
}


def get_profile(name: str | Profile) -> Profile:
    """The named profile; a `Profile` passes through so callers can define their own."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise InputError(f"unknown tolerance profile {name!r}; valid: {', '.join(PROFILES)}") from None


def verdict(
    metrics: OutputMetrics, profile: str | Profile, atol: float | None = None, rtol: float | None = None
) -> tuple[bool, str]:
    """(passed, reason) for one output.

    `rtol` replaces the profile's threshold on its statistic. `atol` is an absolute floor: an output also
    passes when max_abs ≤ atol, for outputs so close to zero that relative error says nothing.
    Shape and non-finite checks come first and no tolerance overrides them: a NaN or Inf must sit
    where the source has the same one (see porttax.parity.metrics); shared ones are counted in the reason,
    and an output with nothing finite on either side fails: it proves nothing.
    """
    p = get_profile(profile)
    if not metrics.shape_match:
        return False, f"shape {list(metrics.actual_shape)} != expected {list(metrics.expected_shape)}"
    if metrics.nonfinite_mismatch:
        return False, (f"{metrics.nonfinite_mismatch} position(s) non-finite where the source is not, or the other "
                       f"way round (NaN converted {metrics.nan_actual} / source {metrics.nan_expected}, Inf converted "
                       f"{metrics.inf_actual} / source {metrics.inf_expected}); no tolerance forgives a NaN or Inf "
                       "the source does not have")
    if metrics.nonfinite_shared and metrics.nonfinite_shared == math.prod(metrics.expected_shape):
        return False, (f"all {metrics.nonfinite_shared} values are NaN or Inf on both sides: nothing finite to "
                       "compare, so nothing is proven (poisoned weights or inputs?)")
    threshold = p.threshold if rtol is None else float(rtol)
    value = getattr(metrics, p.stat)
    label = f"{p.name}" if rtol is None else f"{p.name}, rtol override"
    if metrics.nonfinite_shared:
        label += f"; {metrics.nonfinite_shared} non-finite value(s) where the source has the same"
    if value is not None and not math.isnan(value) and value <= threshold:
        return True, f"{p.stat} {value:.3g} <= {threshold:.3g} ({label})"
    shown = "undefined" if value is None else f"{value:.3g}"
    if atol is not None and metrics.max_abs is not None and metrics.max_abs <= atol:
        return True, f"max_abs {metrics.max_abs:.3g} <= atol {atol:.3g} ({p.stat} {shown} over {threshold:.3g})"
    if value is None:
        return False, f"{p.stat} is undefined for this output ({label}: it needs logits-like outputs)"
    return False, f"{p.stat} {shown} > {threshold:.3g} ({label})"
