"""check_parity: run both models on the same cases, judge every output, and explain a failure.

The flow a team relies on: cases (seeds × concrete sizes of the dynamic dims, or the user's `.npz`) →
both runners → float64 metrics per output → verdict against the profile (or per-output tolerances) →
when anything fails (or `localize=True`), per-layer drift to name the first diverging layer →
precision-mode warnings → optional comparison with a baseline report.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from porttax.errors import InputError
from porttax.parity.inputs import make_inputs
from porttax.parity.localize import localize as localize_layers
from porttax.parity.metrics import compare
from porttax.parity.precision import precision_warnings
from porttax.parity.profiles import NOISE_FACTOR, STATS, Profile, get_profile, noise_verdict
from porttax.parity.reference import check_reference_mode, open_reference
from porttax.parity.report import BaselineResult, CaseResult, OutputResult, ParityReport, ReferenceInfo, environment
from porttax.parity.runners import Runner, validate_inputs
from porttax.types import TensorSpec

CaseFn = Callable[[int, int, str], None]  # progress: (done, total, label)


@dataclass(frozen=True)
class Tolerance:
    """A per-output override: `rtol` replaces the profile threshold, `atol` is an absolute floor."""

    atol: float | None = None
    rtol: float | None = None


def expand_sizes(shapes: Mapping[str, Sequence[int]] | None) -> list[dict[str, int]]:
    """{"seq": [16, 64], "batch": [1, 2]} → every combination as a dict; [{}] when nothing is swept."""
    if not shapes:
        return [{}]
    names = list(shapes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(shapes[n]) for n in names))]


# Sizes a conversion's parity check runs each open dim at (one per seed, in turn): a batch of one and
# of several, and sequences shorter, equal to and longer than the usual example of 16 (odd lengths
# catch a converter that baked an even split or a power of two).
_SWEEP = {"batch": (1, 3, 2), "seq": (7, 16, 33)}


def sweep_sizes(specs: Sequence[TensorSpec], bounds: Mapping[str, tuple[int, int]] | None = None) -> list[dict[str, int]]:
    """Several concrete sizes for each open dim of `specs` ([{}] when every dim is fixed), kept within
    `bounds` ({dim: (low, high)}: the ranges the source was captured for).

    A batch-like dim runs at 1, 3 and 2, any other at 7, 16 and 33; dims named by an input and axis
    ("x.2", an open image height) keep the single default size, as a model may need a minimum there."""
    names = [d for d in symbolic_dims(specs) if "." not in d]
    if not names:
        return [{}]
    out = []
    for i in range(3):
        sizes = {}
        for name in names:
            size = _SWEEP["batch" if "batch" in name else "seq"][i]
            low, high = (bounds or {}).get(name, (1, size))
            sizes[name] = int(min(max(size, low), high))
        if sizes not in out:
            out.append(sizes)
    return out


def symbolic_dims(specs: Sequence[TensorSpec]) -> list[str]:
    return sorted({d for s in specs for d in s.shape if isinstance(d, str)})


def _label(seed: int | None, sizes: Mapping[str, int], index: int | None = None) -> str:
    head = f"case{index}" if index is not None else f"seed={seed}"
    return " ".join([head, *(f"{k}={v}" for k, v in sizes.items())])


def check_parity(
    source: Runner,
    converted: Runner,
    specs: Sequence[TensorSpec] | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    profile: str | Profile = "fp32",
    cases: Sequence[Mapping[str, np.ndarray]] | None = None,
    sizes: Mapping[str, int] | Sequence[Mapping[str, int]] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
    stat: str | None = None,
    topk: Sequence[int] = (1,),
    localize: bool | None = None,
    baseline: str | Path | Mapping[str, Any] | None = None,
    baseline_margin: float = 2.0,
    generate: int = 0,
    model: str = "",
    progress: CaseFn | None = None,
    reference: str = "auto",
    noise_factor: float = NOISE_FACTOR,
    paired: bool = False,
) -> ParityReport:
    """Compare `converted` against `source`; the report passes only if every output of every case does.

    Inputs come from `specs` (default: the source's signature) for each seed and each size dict in
    `sizes` (`paired=True`: each seed at one size dict, in turn, so a sweep costs no extra cases), or are
    exactly the user's `cases`. A case the converted model cannot take (a fixed dim
    where the source is dynamic) fails with a message saying which input and axis. `localize=None`
    localises only when something fails; True always; False never. `stat` picks the gating statistic
    (rel_l2, max_abs, max_rel, mean_abs, median_abs); `rtol` is then its threshold. `generate=N`
    also decodes N tokens greedily on both sides (causal LMs) and fails on the first differing token.

    `reference="auto"` (default) also runs the source widened to float64 on every case and judges each
    output by how far each side is from it: the converted model may be up to `noise_factor` × as far
    as the source itself is (never held below the profile's threshold). Where the source cannot run in
    float64, or with `reference="none"`, the profile's fixed threshold on converted vs source decides;
    the report says which (`report.reference`, and each output's `rule`).
    """
    prof = get_profile(profile)
    if stat is not None and stat not in STATS:
        raise InputError(f"unknown gating statistic {stat!r}; valid: {', '.join(STATS)}")
    if (stat is not None and stat != prof.stat) or rtol is not None:
        # The report carries the threshold actually applied, so every renderer states the real gate.
        gate = stat or prof.stat
        prof = Profile(prof.name if gate == prof.stat else f"{prof.name}/{gate}",
                       prof.threshold if rtol is None else float(rtol), gate,
                       prof.description + ("" if rtol is None else f"; threshold set to {float(rtol):g} by rtol"))
        rtol = None
    specs = list(specs if specs is not None else (source.specs or converted.specs or []))
    labelled = _cases(specs, seeds, cases, sizes, paired)
    tolerances = dict(tolerances or {})
    check_reference_mode(reference)
    if not noise_factor >= 1.0:
        raise InputError(f"noise factor must be >= 1 (a converted model may not be asked to beat its source), "
                         f"got {noise_factor}")
    if prof.stat == "top1_disagreement":
        wide, note = None, f"profile {prof.name} judges top-1 agreement with the source; no float64 reference"
    else:
        wide, note = open_reference(source, reference)
    ref_info = ReferenceInfo(reference, "float64" if wide is not None else None, note, float(noise_factor))
    results: list[CaseResult] = []
    for done, (label, seed, case_sizes, inputs) in enumerate(labelled):
        if progress is not None:
            progress(done, len(labelled), label)
        expected_ref = None
        if wide is not None:
            try:
                expected_ref = wide.run(inputs)
            except Exception as exc:  # a float64 kernel missing at run time: judge the rest by the fixed rule
                wide = None
                ref_info.used = None
                ref_info.note = (f"the float64 reference failed on {label} ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); the fixed tolerance "
                                 "judges every output" + (f" from {label} on" if done else ""))
        result, disagrees = _run_case(source, converted, inputs, prof, label, seed, case_sizes, atol, rtol,
                                      tolerances, topk, expected_ref, noise_factor)
        if disagrees:  # widening changed what the model computes: the reference cannot judge anything
            wide = None
            ref_info.used = None
            ref_info.note = (f"the float64 reference disagrees with the source itself on {label} ({disagrees}): "
                             "widening changed what the model computes (a deliberate low-precision step?), so it "
                             "cannot judge; the fixed tolerance judges every output")
            for earlier in results:
                earlier.outputs = [_fixed(o, prof, atol, rtol, tolerances) for o in earlier.outputs]
        results.append(result)
    # the first failing case (judged last: a reference found unusable re-judges earlier cases)
    failing_inputs = next(((label, inputs) for (label, _, _, inputs), r in zip(labelled, results)
                           if not r.passed and not r.reason.startswith("converted model cannot")), None)
    if progress is not None:
        progress(len(labelled), len(labelled), "done")
    report = ParityReport(
        source=source.describe(), converted=converted.describe(), profile=prof, cases=results,
        passed=all(c.passed for c in results), environment=environment(),
        source_device=getattr(source, "device_label", "cpu"), converted_device=getattr(converted, "device_label", "cpu"),
        gate_stat=prof.stat, model=model or converted.name, reference=ref_info,
    )
    report.environment["runtimes"] = {"source": _runtime(source), "converted": _runtime(converted)}
    report.warnings = precision_warnings(prof, {
        "source": (report.source_device, _modes(source, report.environment)),
        "converted": (report.converted_device, _modes(converted, report.environment)),
    })
    if localize or (localize is None and failing_inputs is not None):
        label, inputs = failing_inputs or (labelled[0][0], labelled[0][3])
        report.localization = localize_layers(source, converted, inputs, prof, label=label, atol=atol, rtol=rtol,
                                              reference=wide, noise_factor=noise_factor)
    if generate:
        from porttax.parity.generate import greedy_decode

        first_sizes = labelled[0][2]
        report.generation = greedy_decode(source, converted, specs, generate, sizes=first_sizes, reference=wide,
                                          noise_factor=noise_factor)
        report.passed = report.passed and report.generation.passed
    if baseline is not None:
        report.baseline = compare_baseline(report, baseline, baseline_margin)
        report.passed = report.passed and report.baseline.passed
    return report


def _cases(
    specs: Sequence[TensorSpec],
    seeds: Sequence[int],
    cases: Sequence[Mapping[str, np.ndarray]] | None,
    sizes: Mapping[str, int] | Sequence[Mapping[str, int]] | None,
    paired: bool = False,
) -> list[tuple[str, int | None, dict[str, int], dict[str, np.ndarray]]]:
    if cases is not None:
        out = [(_label(None, {}, i), None, {}, dict(c)) for i, c in enumerate(cases)]
    else:
        size_list = [dict(sizes)] if isinstance(sizes, Mapping) else [dict(s) for s in (sizes or [{}])]
        known = symbolic_dims(specs)
        for s in size_list:
            unknown = sorted(set(s) - set(known))
            if unknown:
                raise InputError(f"--shapes names {unknown}, but the source signature's dynamic dims are "
                                 f"{known or 'none (every dim is fixed)'}",
                                 hint="name a dynamic dim of the source, e.g. --shapes " + (f"{known[0]}=8,16"
                                      if known else "(export the source with dynamic_shapes first)"))
        swept = len(size_list) > 1  # sizes go into labels only when they vary, so labels stay stable
        if paired and seeds:
            count = max(len(seeds), len(size_list))
            pairs = [(size_list[i % len(size_list)], list(seeds)[i % len(seeds)]) for i in range(count)]
        else:
            pairs = [(s, seed) for s in size_list for seed in seeds]
        out = [(_label(seed, s if swept else {}), seed, s, make_inputs(specs, seed, s)) for s, seed in pairs]
    if not out:
        raise InputError("check_parity needs at least one seed or case")
    return out


def _run_case(
    source: Runner, converted: Runner, inputs: dict[str, np.ndarray], prof: Profile, label: str,
    seed: int | None, sizes: dict[str, int], atol: float | None, rtol: float | None,
    tolerances: Mapping[str, Tolerance], topk: Sequence[int], reference_outputs: list[np.ndarray] | None = None,
    noise_factor: float = NOISE_FACTOR,
) -> tuple[CaseResult, str]:
    poisoned = {name: int(np.count_nonzero(~np.isfinite(x))) for name, x in inputs.items()
                if np.asarray(x).dtype.kind == "f" and not np.isfinite(x).all()}
    if poisoned:  # NaN in, NaN out on both sides: such a case would pass while proving nothing
        reason = ("the inputs hold non-finite values (" + ", ".join(f"{n}: {c}" for n, c in poisoned.items())
                  + "), so this case cannot tell a faithful model from a broken one; give finite inputs")
        return CaseResult(label, [], seed=seed, reason=reason, sizes=sizes), ""
    if converted.specs is not None:
        try:
            validate_inputs(inputs, converted.specs, converted.describe())
        except InputError as exc:
            reason = (f"converted model cannot take this case: {exc.args[0]}. It was exported with a fixed size "
                      "on that axis; convert it with a dynamic dim (or check only the size it was built for)")
            return CaseResult(label, [], seed=seed, reason=reason, sizes=sizes), ""
    expected = source.run(inputs)
    actual = converted.run(inputs)
    names = list(source.output_names or converted.output_names or [])
    names += [f"output_{i}" for i in range(len(names), max(len(expected), len(actual)))]
    reason = ""
    if len(expected) != len(actual):
        reason = f"source gave {len(expected)} output(s), converted gave {len(actual)}"
    if reference_outputs is not None and len(reference_outputs) != len(expected):
        reference_outputs = None  # cannot pair them up; the fixed rule judges this case
    disagrees = _disagreement(expected, reference_outputs, prof) if reference_outputs is not None else ""
    if disagrees:
        reference_outputs = None
    outputs = []
    for i, (name, a, e) in enumerate(zip(names, actual, expected)):
        m = compare(a, e, topk=topk)
        src_ref = conv_ref = None
        if reference_outputs is not None and np.shape(reference_outputs[i]) == np.shape(e):
            src_ref, conv_ref = compare(e, reference_outputs[i]), compare(a, reference_outputs[i])
        tol = tolerances.get(name, Tolerance())
        ok, why, noise = noise_verdict(m, prof, src_ref, conv_ref, atol=tol.atol if tol.atol is not None else atol,
                                       rtol=tol.rtol if tol.rtol is not None else rtol, factor=noise_factor)
        outputs.append(OutputResult(name, m, ok, why, noise))
    return CaseResult(label, outputs, seed=seed, reason=reason, sizes=sizes), disagrees


# A float32 model is rarely more than 1e-4 from its float64 result; 100x the profile's threshold (1e-3 for
# fp32) means the widened model computes something else, and a reference that wrong would pass anything.
_SANE_FACTOR = 100.0


def _disagreement(expected: Sequence[np.ndarray], reference: Sequence[np.ndarray], prof: Profile) -> str:
    """Why the float64 reference cannot be the source's exact result, or "" when it can."""
    for i, (e, r) in enumerate(zip(expected, reference)):
        e, r = np.asarray(e), np.asarray(r)
        if e.dtype.kind != "f" and e.dtype.name != "bfloat16" or e.shape != r.shape:
            continue
        m = compare(e, r)
        if m.rel_l2 is not None and m.rel_l2 > _SANE_FACTOR * prof.threshold:
            return f"output {i}: rel_l2 {m.rel_l2:.3g} > {_SANE_FACTOR * prof.threshold:.3g}"
    return ""


def _fixed(out: OutputResult, prof: Profile, atol: float | None, rtol: float | None,
           tolerances: Mapping[str, Tolerance]) -> OutputResult:
    """`out` judged again by the fixed rule (the reference turned out unusable)."""
    tol = tolerances.get(out.name, Tolerance())
    ok, why, _ = noise_verdict(out.metrics, prof, None, None, atol=tol.atol if tol.atol is not None else atol,
                               rtol=tol.rtol if tol.rtol is not None else rtol)
    return OutputResult(out.name, out.metrics, ok, why, None)


def _runtime(runner: Runner) -> dict[str, Any]:
    info = dict(getattr(runner, "info", {}) or {})
    info.setdefault("runner", runner.describe())
    info.setdefault("device", getattr(runner, "device_label", "cpu"))
    return info


def _modes(runner: Runner, env: Mapping[str, Any]) -> dict[str, Any]:
    """Precision modes for a runner: its worker's report when it ran elsewhere, else this process's."""
    info = getattr(runner, "info", None) or {}
    if "precision" in info:
        return dict(info["precision"])
    modes: dict[str, Any] = {}
    framework = runner.framework
    if framework == "torch" and "torch" in env:
        modes.update({k: v for k, v in env["torch"].items() if k != "version"})
    if framework in ("keras", "tf") and "tensorflow" in env:
        modes["tensor_float_32_execution"] = env["tensorflow"]["tensor_float_32_execution"]
    if framework == "keras" and "jax" in env and env.get("keras", {}).get("backend") == "jax":
        modes["jax_default_matmul_precision"] = env["jax"]["default_matmul_precision"]
    return modes


# --- baselines ---------------------------------------------------------------------------------------

_FLOOR = 1e-9  # drift below this is float32 noise; growth from 1e-12 to 1e-10 is not a regression


def compare_baseline(report: ParityReport, baseline: str | Path | Mapping[str, Any], margin: float) -> BaselineResult:
    """Fail outputs whose gate statistic grew beyond `margin` × the earlier report's (both per case/output).

    A report is still within tolerance when its drift creeps up; catching the creep early is the point.
    Where both reports measured the output against a float64 reference, the ratio to the source's own
    error is compared instead (growth from a ratio below 1 counts from 1, the source's own noise).
    """
    if not margin >= 1.0:
        raise InputError(f"baseline margin must be >= 1 (a growth factor), got {margin}")
    path = "<dict>"
    if not isinstance(baseline, Mapping):
        path = str(baseline)
        try:
            baseline = json.loads(Path(baseline).read_text())
        except FileNotFoundError:
            raise InputError("no such baseline report", path=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"baseline is not a JSON report: {exc}", path=path) from None
    if not isinstance(baseline, Mapping) or "cases" not in baseline or "schema_version" not in baseline:
        raise InputError("baseline is not a porttax parity report (no schema_version/cases)", path=path,
                         hint="write one with `porttax parity ... --json parity.json`")
    if str(baseline["schema_version"]).split(".")[0] != "1":
        raise InputError(f"baseline schema {baseline['schema_version']} is not readable by this porttax", path=path)
    stat = report.gate_stat
    old: dict[tuple[str, str], float] = {}
    old_ratio: dict[tuple[str, str], float] = {}
    for case in baseline["cases"]:
        for out in case.get("outputs", []):
            value = out.get("metrics", {}).get(stat)
            if isinstance(value, (int, float)):
                old[(case["label"], out["name"])] = float(value)
            ratio = (out.get("reference") or {}).get("ratio")
            if isinstance(ratio, (int, float)):
                old_ratio[(case["label"], out["name"])] = float(ratio)
    regressions, compared = [], 0
    for case in report.cases:
        for out in case.outputs:
            key = (case.label, out.name)
            if out.noise is not None and key in old_ratio:
                # both runs measured against float64: compare how much of the source's own error the port adds,
                # which does not move when only the source's rounding does
                compared += 1
                before, now = old_ratio[key], out.noise.ratio
                if math.isnan(now) or now > max(before, 1.0) * margin:
                    regressions.append(f"{case.label} / {out.name}: ratio to the source's own error {before:.3g}x "
                                       f"-> {now:.3g}x (allowed {margin:g}x growth)")
                continue
            before = old.get(key)
            now = getattr(out.metrics, stat)
            if before is None:
                continue
            compared += 1
            if now is None or math.isnan(now) or now > max(before, _FLOOR) * margin:
                regressions.append(f"{case.label} / {out.name}: {stat} {before:.3g} -> "
                                   f"{'undefined' if now is None else f'{now:.3g}'} (allowed {margin:g}x)")
    note = [] if compared else [f"no case/output of this run matches one in the baseline ({path})"]
    return BaselineResult(path, margin, not regressions and compared > 0, regressions + note, compared)
