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


# How far past the source's own float32 error a converted model may be, against the float64 reference.
# Chosen from measurements: bench/parity_noise.py converts torchvision architectures (clean) and plants
# faults in them, and this is the factor that passed every clean conversion and caught every fault.
NOISE_FACTOR = 4.0


@dataclass(frozen=True)
class NoiseCheck:
    """The noise-aware rule for one output: both models measured against the float64 reference.

    `source_error` is what the source itself, in its own dtype, is off by; `converted_error` the
    converted model's. The output passes when converted_error ≤ threshold = max(floor, factor ×
    source_error): a port may add rounding of its own, up to `factor` times what the source already
    makes, and never needs to beat `floor` (the profile's fixed threshold).
    """

    reference: str  # "float64"
    stat: str
    source_dtype: str
    source_error: float
    converted_error: float
    factor: float
    floor: float

    @property
    def threshold(self) -> float:
        return max(self.floor, self.factor * self.source_error)

    @property
    def ratio(self) -> float:
        """converted_error / source_error: 1.0 means the port is exactly as exact as its source."""
        if self.source_error > 0:
            return self.converted_error / self.source_error
        return 1.0 if self.converted_error == 0 else math.inf

    @property
    def rule(self) -> str:
        """"noise" when the source's own error set the threshold, "floor" when the fixed floor did."""
        return "noise" if self.factor * self.source_error > self.floor else "floor"

    @property
    def passed(self) -> bool:
        return self.converted_error <= self.threshold

    def describe(self) -> str:
        ratio = "inf" if math.isinf(self.ratio) else f"{self.ratio:.2g}x"
        return (f"{self.stat} vs {self.reference} {self.converted_error:.3g} = {ratio} the source's own "
                f"{self.source_dtype} error {self.source_error:.3g}")

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {"reference": self.reference, "stat": self.stat, "source_dtype": self.source_dtype,
                "source_error": self.source_error, "converted_error": self.converted_error,
                "ratio": ratio if math.isfinite(ratio) else str(ratio), "factor": self.factor,
                "floor": self.floor, "threshold": self.threshold, "rule": self.rule, "passed": self.passed}


def _precondition(metrics: OutputMetrics) -> str | None:
    """Why an output fails before any tolerance is looked at (shape, NaN/Inf), or None."""
    if not metrics.shape_match:
        return f"shape {list(metrics.actual_shape)} != expected {list(metrics.expected_shape)}"
    if metrics.nonfinite_mismatch:
        return (f"{metrics.nonfinite_mismatch} position(s) non-finite where the source is not, or the other "
                f"way round (NaN converted {metrics.nan_actual} / source {metrics.nan_expected}, Inf converted "
                f"{metrics.inf_actual} / source {metrics.inf_expected}); no tolerance forgives a NaN or Inf "
                "the source does not have")
    if metrics.nonfinite_shared and metrics.nonfinite_shared == math.prod(metrics.expected_shape):
        return (f"all {metrics.nonfinite_shared} values are NaN or Inf on both sides: nothing finite to "
                "compare, so nothing is proven (poisoned weights or inputs?)")
    return None


def verdict(
    metrics: OutputMetrics, profile: str | Profile, atol: float | None = None, rtol: float | None = None
) -> tuple[bool, str]:
    """(passed, reason) for one output under the fixed rule: the profile's threshold on its statistic.

    `rtol` replaces the profile's threshold on its statistic. `atol` is an absolute floor: an output also
    passes when max_abs ≤ atol, for outputs so close to zero that relative error says nothing.
    Shape and non-finite checks come first and no tolerance overrides them: a NaN or Inf must sit
    where the source has the same one (see porttax.parity.metrics); shared ones are counted in the reason,
    and an output with nothing finite on either side fails: it proves nothing.
    """
    p = get_profile(profile)
    failed = _precondition(metrics)
    if failed:
        return False, failed
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


def noise_verdict(
    metrics: OutputMetrics,
    profile: str | Profile,
    source_vs_reference: OutputMetrics | None,
    converted_vs_reference: OutputMetrics | None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    factor: float = NOISE_FACTOR,
    reference: str = "float64",
) -> tuple[bool, str, NoiseCheck | None]:
    """(passed, reason, the noise check or None) for one output, judged against the float64 reference.

    `metrics` is converted vs source, as always: its shape and NaN/Inf checks come first. Where the
    reference gave this output, the profile's statistic of each side against it decides (NoiseCheck);
    where it did not (no reference, a top-1 profile, an integer output), the fixed rule does.
    """
    p = get_profile(profile)
    failed = _precondition(metrics)
    usable = (source_vs_reference is not None and converted_vs_reference is not None and p.stat != "top1_disagreement"
              and metrics.expected_dtype not in ("int8", "int16", "int32", "int64", "uint8", "bool"))
    if failed or not usable:
        ok, why = verdict(metrics, p, atol=atol, rtol=rtol)
        return ok, why, None
    noise, err = getattr(source_vs_reference, p.stat), getattr(converted_vs_reference, p.stat)
    if noise is None or err is None or math.isnan(noise) or math.isnan(err):
        ok, why = verdict(metrics, p, atol=atol, rtol=rtol)
        return ok, why, None
    check = NoiseCheck(reference, p.stat, metrics.expected_dtype, float(noise), float(err), float(factor),
                       p.threshold if rtol is None else float(rtol))
    label = p.name if rtol is None else f"{p.name}, rtol override"
    if metrics.nonfinite_shared:
        label += f"; {metrics.nonfinite_shared} non-finite value(s) where the source has the same"
    allowed = f"{factor:g}x its error" if check.rule == "noise" else "the floor"
    ratio = "inf" if math.isinf(check.ratio) else f"{check.ratio:.2g}x"
    why = (f"{ratio} the source's own {check.source_dtype} error {check.source_error:.3g}; allowed: {allowed}; "
           f"{label}")
    head = f"{check.stat} vs {reference} {check.converted_error:.3g}"
    if check.passed:
        return True, f"{head} <= {check.threshold:.3g} ({why})", check
    if atol is not None and metrics.max_abs is not None and metrics.max_abs <= atol:
        return True, f"max_abs {metrics.max_abs:.3g} <= atol {atol:.3g} ({head}, over {check.threshold:.3g})", check
    return False, f"{head} > {check.threshold:.3g} ({why})", check
