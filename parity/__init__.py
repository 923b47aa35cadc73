"""porttax.parity: prove a converted model computes what its source computes.

Run the source and the converted model on the same inputs (seeded from the signature, or the user's
cases), compare every output pair in float64, and judge each against a tolerance profile. Importing this
package imports no framework; runners import theirs on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from porttax.errors import InputError
from porttax.parity.inputs import load_npz_cases, make_inputs
from porttax.parity.metrics import OutputMetrics, compare
from porttax.parity.profiles import PROFILES, Profile, get_profile, verdict
from porttax.parity.report import CaseResult, OutputResult, ParityReport, environment
from porttax.parity.runners import KerasRunner, Runner, SavedModelRunner, TorchRunner
from porttax.types import TensorSpec

__all__ = [
    "CaseResult", "KerasRunner", "OutputMetrics", "OutputResult", "PROFILES", "ParityReport", "Profile",
    "Runner", "SavedModelRunner", "TorchRunner", "assert_parity", "check_parity", "compare", "environment",
    "get_profile", "load_npz_cases", "make_inputs", "verdict",
]


def check_parity(
    source: Runner,
    converted: Runner,
    specs: Sequence[TensorSpec],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    profile: str | Profile = "fp32",
    cases: Sequence[Mapping[str, np.ndarray]] | None = None,
    sizes: dict[str, int] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    topk: Sequence[int] = (1,),
) -> ParityReport:
    """Compare `converted` against `source` on every case; the report passes only if every output does.

    Inputs are generated from `specs` for each seed (symbolic dims from `sizes`), or, when `cases` is
    given, are exactly those cases (labelled case0, case1, ...) and `seeds` is ignored. Output names come
    from the source runner when it knows them. A different number of outputs fails the case; the outputs
    both sides have are still compared so the report shows how far they got.
    """
    prof = get_profile(profile)
    if cases is not None:
        labelled = [(f"case{i}", None, dict(c)) for i, c in enumerate(cases)]
    else:
        labelled = [(f"seed={s}", s, make_inputs(specs, s, sizes)) for s in seeds]
    if not labelled:
        raise InputError("check_parity needs at least one seed or case")
    results: list[CaseResult] = []
    for label, seed, inputs in labelled:
        expected = source.run(inputs)
        actual = converted.run(inputs)
        names = list(source.output_names or converted.output_names or [])
        names += [f"output_{i}" for i in range(len(names), max(len(expected), len(actual)))]
        reason = ""
        if len(expected) != len(actual):
            reason = f"source gave {len(expected)} output(s), converted gave {len(actual)}"
        outputs = []
        for name, a, e in zip(names, actual, expected):
            m = compare(a, e, topk=topk)
            ok, why = verdict(m, prof, atol=atol, rtol=rtol)
            outputs.append(OutputResult(name, m, ok, why))
        results.append(CaseResult(label, outputs, seed=seed, reason=reason))
    return ParityReport(
        source=source.describe(),
        converted=converted.describe(),
        profile=prof,
        cases=results,
        passed=all(c.passed for c in results),
        environment=environment(),
    )


def assert_parity(report: ParityReport) -> None:
    """Raise AssertionError with the summary and every failure, for use in pytest."""
    if not report.passed:
        raise AssertionError("\n".join([report.summary_line(), *report.failures()]))
