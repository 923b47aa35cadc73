"""The parity report: per case, per output metrics and verdicts, the profile used, and the environment.

A drift number means little without the versions and precision modes it was measured under (TF32 on a
GPU alone moves rel_l2 from 1e-7 to 1e-4), so every report carries `environment()`.
"""

from __future__ import annotations

import math
import platform
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from porttax.parity.metrics import OutputMetrics
from porttax.parity.profiles import NoiseCheck, Profile

# Bump the major part when a field changes meaning or disappears; the minor part when fields are added.
# docs/parity-report.md documents every field of this version.
SCHEMA_VERSION = "1.2"  # 1.1: nonfinite_shared / nonfinite_mismatch; 1.2: the float64 reference (docs/parity-report.md)


@dataclass
class OutputResult:
    name: str
    metrics: OutputMetrics  # converted against source
    passed: bool
    reason: str
    noise: NoiseCheck | None = None  # both sides against the float64 reference, when one ran

    @property
    def rule(self) -> str:
        """What decided: "noise" (factor × the source's own error), "floor", or "fixed" (no reference)."""
        return self.noise.rule if self.noise is not None else "fixed"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason, "rule": self.rule,
                "metrics": self.metrics.to_dict(), "reference": self.noise.to_dict() if self.noise else None}


@dataclass
class CaseResult:
    """One input case: a seed, or a label such as "case0" for user-given inputs.

    `reason` holds a case-level failure (the models returned different numbers of outputs).
    """

    label: str
    outputs: list[OutputResult]
    seed: int | None = None
    reason: str = ""
    sizes: dict[str, int] = field(default_factory=dict)  # concrete sizes of symbolic dims in this case

    @property
    def passed(self) -> bool:
        return not self.reason and all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "seed": self.seed, "sizes": dict(self.sizes), "passed": self.passed,
                "reason": self.reason, "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class LayerResult:
    """Drift at one matched layer: the source layer's output against the converted layer's output.

    `drift` is accumulated drift (what this layer's output differs by, given everything before it);
    `passed` judges it against the report's tolerance. `index` is execution order on the source side.
    """

    name: str  # source-side name (module path, or Keras layer name in the Keras → torch direction)
    target: str  # converted-side name it was matched with
    index: int
    metrics: OutputMetrics
    passed: bool
    reason: str = ""
    output: int = 0  # which output of a multi-output layer
    noise: NoiseCheck | None = None  # this layer's own float32 noise against the float64 reference

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "index": self.index, "output": self.output,
                "passed": self.passed, "reason": self.reason, "metrics": self.metrics.to_dict(),
                "reference": self.noise.to_dict() if self.noise else None}


@dataclass
class ReferenceInfo:
    """Which reference judged the run: `used` is "float64" or None (the fixed rule), `note` says why."""

    requested: str  # "auto", "float64" or "none"
    used: str | None
    note: str
    factor: float

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "used": self.used, "note": self.note, "factor": self.factor}


@dataclass
class Localization:
    """Per-layer drift for one case, in execution order, and the first layer whose drift fails."""

    case: str
    layers: list[LayerResult]
    first_divergent: str | None = None
    unmatched: list[str] = field(default_factory=list)  # source layers with no counterpart
    note: str = ""
    # how layers were paired: "layer map" (the one porttax wrote into the artefact), "layer names"
    # (rebuilt from names, weight sizes and shapes: a re-saved file), None (not at all)
    matched_by: str | None = "layer map"

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "first_divergent": self.first_divergent, "note": self.note,
                "matched_by": self.matched_by,
                "unmatched": list(self.unmatched), "layers": [lay.to_dict() for lay in self.layers]}


@dataclass
class GenerationResult:
    """Greedy decoding on both sides from the same prompt: where the token streams part."""

    steps: int
    prompt_length: int
    source_tokens: list[list[int]]  # per batch row, the generated ids
    converted_tokens: list[list[int]]
    first_divergent_step: int | None  # None when every step agreed
    tie: str | None = None  # why a divergence is a near-tie within the source's own float32 noise

    @property
    def agreement(self) -> float:
        pairs = [(a, b) for ra, rb in zip(self.source_tokens, self.converted_tokens) for a, b in zip(ra, rb)]
        return sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0

    @property
    def passed(self) -> bool:
        return self.first_divergent_step is None or self.tie is not None

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "prompt_length": self.prompt_length, "agreement": self.agreement,
                "first_divergent_step": self.first_divergent_step, "passed": self.passed, "tie": self.tie,
                "source_tokens": self.source_tokens, "converted_tokens": self.converted_tokens}


@dataclass
class BaselineResult:
    """This run against an earlier report: an output whose drift grew by more than `margin` fails."""

    path: str
    margin: float  # allowed growth factor: new <= old * margin (plus a floor for near-zero drift)
    passed: bool
    regressions: list[str] = field(default_factory=list)  # "seed=0 / logits: rel_l2 1e-7 -> 5e-6"
    compared: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "margin": self.margin, "passed": self.passed, "compared": self.compared,
                "regressions": list(self.regressions)}


@dataclass
class ParityReport:
    source: str
    converted: str
    profile: Profile
    cases: list[CaseResult]
    passed: bool
    environment: dict[str, Any] = field(default_factory=dict)
    source_device: str = "cpu"
    converted_device: str = "cpu"
    warnings: list[str] = field(default_factory=list)  # e.g. a precision mode nobody asked for
    localization: Localization | None = None
    generation: GenerationResult | None = None
    baseline: BaselineResult | None = None
    gate_stat: str = "rel_l2"  # the statistic the verdicts judged
    model: str = ""  # a short label for the pair (used by JUnit/HTML titles)
    reference: ReferenceInfo | None = None

    @property
    def cross_device(self) -> bool:
        return self.source_device.split(":")[0] != self.converted_device.split(":")[0]

    @property
    def first_divergent(self) -> str | None:
        return self.localization.first_divergent if self.localization else None

    @property
    def worst_rel_l2(self) -> float:
        """Largest rel_l2 over all outputs; inf when some output has no defined rel_l2 (shape mismatch)."""
        values = [o.metrics.rel_l2 for c in self.cases for o in c.outputs]
        if not values:
            return math.nan
        if any(v is None or math.isnan(v) for v in values):
            return math.inf
        return max(v for v in values if v is not None)

    @property
    def worst_noise(self) -> NoiseCheck | None:
        """The output that used most of its noise allowance (highest ratio to the source's own error)."""
        checks = [o.noise for c in self.cases for o in c.outputs if o.noise is not None]
        return max(checks, key=lambda n: (n.ratio, n.converted_error)) if checks else None

    def failures(self) -> list[str]:
        """One line per failed case or output, e.g. "seed=1 / logits: rel_l2 2e-3 > 1e-5 (fp32)"."""
        lines = []
        for c in self.cases:
            if c.reason:
                lines.append(f"{c.label}: {c.reason}")
            lines.extend(f"{c.label} / {o.name}: {o.reason}" for o in c.outputs if not o.passed)
        if self.generation is not None and not self.generation.passed:
            lines.append(f"generation: tokens diverge at step {self.generation.first_divergent_step} "
                         f"(agreement {self.generation.agreement:.1%})")
        if self.baseline is not None and not self.baseline.passed:
            lines.extend(f"baseline: {r}" for r in self.baseline.regressions)
        return lines

    def summary_line(self) -> str:
        n_out = max((len(c.outputs) for c in self.cases), default=0)
        head = (f"{'PASS' if self.passed else 'FAIL'} [{self.profile.name}] {self.converted} vs {self.source}: "
                f"{len(self.cases)} case(s), {n_out} output(s), worst rel_l2 {self.worst_rel_l2:.3g}")
        noise = self.worst_noise
        if noise is not None:
            head += f" ({noise.describe()})"
        elif self.reference is not None and self.reference.requested != "none":
            head += " (fixed rule: no float64 reference)"
        if self.cross_device:
            head += f" [cross-device: source on {self.source_device}, converted on {self.converted_device}]"
        fails = self.failures()
        if fails:
            head += f"; {len(fails)} failure(s), first: {fails[0]}"
        if self.first_divergent:
            head += f"; first diverging layer: {self.first_divergent}"
        return head

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_rel_l2
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "source": self.source,
            "converted": self.converted,
            "source_device": self.source_device,
            "converted_device": self.converted_device,
            "cross_device": self.cross_device,
            "profile": self.profile.to_dict(),
            "gate_stat": self.gate_stat,
            "passed": self.passed,
            "worst_rel_l2": worst if math.isfinite(worst) else str(worst),  # JSON has no inf/nan
            "first_divergent": self.first_divergent,
            "reference": self.reference.to_dict() if self.reference else None,
            "warnings": list(self.warnings),
            "cases": [c.to_dict() for c in self.cases],
            "localization": self.localization.to_dict() if self.localization else None,
            "generation": self.generation.to_dict() if self.generation else None,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "environment": self.environment,
        }


def environment() -> dict[str, Any]:
    """Versions and precision modes of the frameworks this process has already imported.

    Reads sys.modules only: importing TensorFlow just to print its version would cost seconds and, before
    torch, break torch.export (see porttax._frameworks).
    """
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "numpy": np.__version__}
    mods = sys.modules
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notes from precision getters are not the user's problem
        if (torch := mods.get("torch")) is not None and hasattr(torch, "__version__"):
            env["torch"] = {
                "version": torch.__version__,
                "cuda": torch.cuda.is_available(),
                "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
            }
        if (tf := mods.get("tensorflow")) is not None and hasattr(tf, "config"):
            env["tensorflow"] = {
                "version": tf.__version__,
                "gpus": len(tf.config.list_physical_devices("GPU")),
                "tensor_float_32_execution": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            }
        if (keras := mods.get("keras")) is not None and hasattr(keras, "config"):
            env["keras"] = {"version": keras.__version__, "backend": keras.config.backend()}
        if (jax := mods.get("jax")) is not None and hasattr(jax, "config"):
            env["jax"] = {"version": jax.__version__,
                          "default_matmul_precision": jax.config.jax_default_matmul_precision}
    return env
