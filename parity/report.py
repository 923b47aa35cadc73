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
from porttax.parity.profiles import Profile


@dataclass
class OutputResult:
    name: str
    metrics: OutputMetrics
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "reason": self.reason, "metrics": self.metrics.to_dict()}


@dataclass
class CaseResult:
    """One input case: a seed, or a label such as "case0" for user-given inputs.

    `reason` holds a case-level failure (the models returned different numbers of outputs).
    """

    label: str
    outputs: list[OutputResult]
    seed: int | None = None
    reason: str = ""

    @property
    def passed(self) -> bool:
        return not self.reason and all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "seed": self.seed, "passed": self.passed, "reason": self.reason,
                "outputs": [o.to_dict() for o in self.outputs]}


@dataclass
class ParityReport:
    source: str
    converted: str
    profile: Profile
    cases: list[CaseResult]
    passed: bool
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def worst_rel_l2(self) -> float:
        """Largest rel_l2 over all outputs; inf when some output has no defined rel_l2 (shape mismatch)."""
        values = [o.metrics.rel_l2 for c in self.cases for o in c.outputs]
        if not values:
            return math.nan
        if any(v is None or math.isnan(v) for v in values):
            return math.inf
        return max(v for v in values if v is not None)

    def failures(self) -> list[str]:
        """One line per failed case or output, e.g. "seed=1 / logits: rel_l2 2e-3 > 1e-5 (fp32)"."""
        lines = []
        for c in self.cases:
            if c.reason:
                lines.append(f"{c.label}: {c.reason}")
            lines.extend(f"{c.label} / {o.name}: {o.reason}" for o in c.outputs if not o.passed)
        return lines

    def summary_line(self) -> str:
        n_out = max((len(c.outputs) for c in self.cases), default=0)
        head = (f"{'PASS' if self.passed else 'FAIL'} [{self.profile.name}] {self.converted} vs {self.source}: "
                f"{len(self.cases)} case(s), {n_out} output(s), worst rel_l2 {self.worst_rel_l2:.3g}")
        fails = self.failures()
        if fails:
            head += f"; {len(fails)} failure(s), first: {fails[0]}"
        return head

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst_rel_l2
        return {
            "source": self.source,
            "converted": self.converted,
            "profile": self.profile.to_dict(),
            "passed": self.passed,
            "worst_rel_l2": worst if math.isfinite(worst) else str(worst),  # JSON has no inf/nan
            "cases": [c.to_dict() for c in self.cases],
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
