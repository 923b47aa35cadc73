"""porttax.parity: prove a converted model computes what its source computes.

Run the source and the converted model on the same inputs (seeded from the signature, or the user's
cases), compare every output pair in float64, and judge each against a tolerance profile. Importing this
package imports no framework; runners import theirs on first use.
"""

from __future__ import annotations

from typing import Any

from porttax.parity.check import Tolerance, check_parity, compare_baseline, expand_sizes, sweep_sizes
from porttax.parity.inputs import load_npz_cases, make_inputs
from porttax.parity.metrics import OutputMetrics, compare
from porttax.parity.profiles import PROFILES, Profile, get_profile, verdict
from porttax.parity.report import (
    SCHEMA_VERSION, BaselineResult, CaseResult, GenerationResult, LayerResult, Localization, OutputResult,
    ParityReport, environment,
)
from porttax.parity.runners import KerasRunner, Runner, SavedModelRunner, TorchRunner

__all__ = [
    "SCHEMA_VERSION", "BaselineResult", "CaseResult", "GenerationResult", "KerasRunner", "LayerResult",
    "Localization", "OutputMetrics", "OutputResult", "PROFILES", "ParityReport", "Profile", "Runner",
    "SavedModelRunner", "Tolerance", "TorchRunner", "assert_parity", "check_parity", "compare",
    "compare_baseline", "environment", "expand_sizes", "get_profile", "load_npz_cases", "make_inputs", "sweep_sizes",
    "verdict",
]


def assert_parity(report_or_source: Any, converted: Any = None, *args: Any, **kwargs: Any) -> ParityReport:
    """Gate a project's own pytest suite on parity.

    `assert_parity(report)` checks a report; `assert_parity(source, converted, ...)` runs check_parity
    with the same arguments first (runners, or anything `porttax.parity.open_runner` opens: a module,
    `.pt2`, `.keras`, SavedModel dir, `.onnx`). The AssertionError carries the summary, every failure
    and the first diverging layer, so a red test says where to look.
    """
    if isinstance(report_or_source, ParityReport):
        report = report_or_source
    else:
        from porttax.parity.open import open_pair

        src, conv = open_pair(report_or_source, converted)
        report = check_parity(src, conv, *args, **kwargs)
    if not report.passed:
        lines = [report.summary_line(), *report.failures()]
        if report.localization is not None:
            lines.append(report.localization.note)
        raise AssertionError("\n".join(lines))
    return report
