"""Render a `ParityReport` for the places people read it: JSON for machines, Markdown for a pull-request
comment, JUnit XML for CI dashboards, one self-contained HTML page, and a table in the terminal.

Every renderer reads the report and nothing else, so the same run looks the same everywhere. They
share a few choices: numbers to three significant digits, the gate statistic and threshold stated next
to every verdict, and the first diverging layer named wherever a failure is shown, because "which
layer" is the first question anyone asks about drift.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from porttax.parity.metrics import OutputMetrics
from porttax.parity.report import (
    SCHEMA_VERSION,
    BaselineResult,
    CaseResult,
    GenerationResult,
    LayerResult,
    Localization,
    OutputResult,
    ParityReport,
)
from porttax.saving import atomic_output

__all__ = ["print_table", "to_html", "to_json", "to_junit", "to_markdown", "write_reports"]

LOG_FLOOR = 1e-12  # the drift plot's floor: a log axis has no zero, and identical layers drift exactly 0
FAIL_COLOUR = "#d62728"  # failing points and the first-layer marker; used only inside the drift plot
LINE_COLOUR = "#1f77b4"  # the drift polyline; likewise unique, so a screenshot can find the plot
PASS_COLOUR = "#2ca02c"
_LAYERS_BEFORE = 5  # agreeing layers shown before the first diverging one
_LAYERS_FAILING = 5  # failing layers shown from the first diverging one on


# ---------------------------------------------------------------- shared helpers


def _num(value: float | None) -> str:
    """Three significant digits, or an em dash where the metric is undefined (e.g. a shape mismatch)."""
    return "—" if value is None else f"{value:.3g}"


def _cos(value: float | None) -> str:
    """Cosine to six places: three significant digits would round every near-miss to 1."""
    return "—" if value is None else f"{value:.6f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _label(report: ParityReport) -> str:
    """What to call the pair in titles and JUnit class names; the converted model when unnamed."""
    return report.model or report.converted


def _gate(report: ParityReport, metrics: OutputMetrics) -> float | None:
    return getattr(metrics, report.gate_stat)


def _gate_line(report: ParityReport) -> str:
    ref = report.reference
    if ref is not None and ref.used:
        return (f"{report.gate_stat} vs {ref.used} ≤ max({report.profile.threshold:.3g}, "
                f"{ref.factor:g}× the source's own error)")
    return f"{report.gate_stat} ≤ {report.profile.threshold:.3g}"


def _uses_reference(report: ParityReport) -> bool:
    return any(o.noise is not None for c in report.cases for o in c.outputs)


def _ratio(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:.2f}×"


def _noise_cells(out: OutputResult) -> list[str]:
    """source's own error, converted error (both vs the reference), their ratio, the rule that decided."""
    n = out.noise
    if n is None:
        return ["—", "—", "—", out.rule]
    return [_num(n.source_error), _num(n.converted_error), _ratio(n.ratio), n.rule]


_NOISE_HEAD = ["source err", "converted err", "ratio", "rule"]


def _reference_text(report: ParityReport) -> str:
    """One sentence: which reference judged the run, or why none did."""
    ref = report.reference
    if ref is None:
        return ""
    noise = report.worst_noise
    worst = f"; worst: {noise.describe()}" if noise is not None else ""
    return ref.note + worst


def _devices(report: ParityReport) -> str:
    text = f"source on {report.source_device}, converted on {report.converted_device}"
    return f"{text} (cross-device)" if report.cross_device else text


def _has_top1(report: ParityReport) -> bool:
    return any(1 in o.metrics.topk_agreement for c in report.cases for o in c.outputs)


def _first_layer(loc: Localization) -> LayerResult | None:
    """The matched layer the localization names as first divergent; None when it names none."""
    return next((lay for lay in loc.layers if lay.name == loc.first_divergent), None)


def _divergence(report: ParityReport) -> str:
    """Where drift starts, in one line for failure texts; "" when the report does not say."""
    loc = report.localization
    if loc is None or loc.first_divergent is None:
        return ""
    first = _first_layer(loc)
    if first is None:
        return f"{loc.first_divergent} (case {loc.case}; not among the matched layers)"
    return (f"{first.name} (converted as {first.target}, case {loc.case}): "
            f"{report.gate_stat} {_num(_gate(report, first.metrics))}")


def _layers_around(loc: Localization, first: LayerResult) -> list[LayerResult]:
    """A few layers that still agree, then the first failing ones: enough to see where drift starts."""
    at = loc.layers.index(first)
    failing = [lay for lay in loc.layers[at:] if not lay.passed][:_LAYERS_FAILING]
    return loc.layers[max(0, at - _LAYERS_BEFORE):at] + failing


def strict_json_value(value: Any) -> Any:
    """`value` with every non-finite float replaced by "inf", "-inf" or "nan", which strict JSON allows."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): strict_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(v) for v in value]
    return value


def _flatten(env: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """("torch.version", "2.14.0") pairs from the nested environment dict, for key/value tables."""
    for key, value in env.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


# ---------------------------------------------------------------- JSON


def to_json(report: ParityReport) -> str:
    """The report as strict JSON (RFC 8259 has no Infinity/NaN, and max_rel is inf wherever the source
    output is exactly 0), so any parser, not only Python's lenient one, reads it."""
    return json.dumps(strict_json_value(report.to_dict()), indent=2, allow_nan=False, default=str)


# ---------------------------------------------------------------- Markdown


def _md(text: str) -> str:
    """Plain text safe inside a GitHub table cell: no stray HTML, no column-breaking pipes or newlines."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def _md_code(text: str) -> str:
    """A code span; entities are not decoded inside one, so only backticks and pipes need care."""
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def _md_verdict(passed: bool, reason: str) -> str:
    return "✅ pass" if passed else f"❌ {_md(reason)}"


def _md_output_row(case: CaseResult, out: OutputResult, top1: bool, noise: bool) -> str:
    m = out.metrics
    cells = [_md(case.label), _md_code(out.name), _num(m.rel_l2), _num(m.max_abs), _cos(m.cosine)]
    if top1:
        cells.append(_pct(m.topk_agreement.get(1)))
    if noise:
        cells.extend(_noise_cells(out))
    cells.append(_md_verdict(out.passed, out.reason))
    return "| " + " | ".join(cells) + " |"


def _md_case_table(report: ParityReport) -> list[str]:
    top1, noise = _has_top1(report), _uses_reference(report)
    numeric = ["rel_l2", "max_abs", "cosine", *(["top-1"] if top1 else []), *(_NOISE_HEAD if noise else [])]
    head = ["case", "output", *numeric, "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(numeric) + "---|"]
    for case in report.cases:
        lines.extend(_md_output_row(case, out, top1, noise) for out in case.outputs)
        if case.reason:
            blanks = ["—"] * (len(head) - 3)
            lines.append("| " + " | ".join([_md(case.label), "*(case)*", *blanks, _md_verdict(False, case.reason)])
                         + " |")
    return lines


def _md_layer_table(report: ParityReport, layers: list[LayerResult], first: LayerResult | None) -> list[str]:
    lines = [f"| # | layer | converted as | {report.gate_stat} | max_abs | cosine | verdict |",
             "|---:|---|---|---:|---:|---:|---|"]
    for lay in layers:
        name = _md_code(lay.name)
        name = f"**{name}**" if lay is first else name
        lines.append(f"| {lay.index} | {name} | {_md_code(lay.target)} | {_num(_gate(report, lay.metrics))} | "
                     f"{_num(lay.metrics.max_abs)} | {_cos(lay.metrics.cosine)} | "
                     f"{'✅' if lay.passed else '❌'} |")
    return lines


def _md_localization(report: ParityReport, loc: Localization) -> list[str]:
    first = _first_layer(loc)
    if first is None:
        found = ("no layer exceeds tolerance" if loc.first_divergent is None else
                 f"the first diverging layer, {_md_code(loc.first_divergent)}, is not among the matched layers")
        lines = [f"**Per-layer check** ({len(loc.layers)} layers, case {_md(loc.case)}): {found}."]
    else:
        m = first.metrics
        lines = [f"**First diverging layer: {_md_code(first.name)}** (converted as {_md_code(first.target)}, "
                 f"case {_md(loc.case)}): {report.gate_stat} {_num(_gate(report, m))}, "
                 f"max_abs {_num(m.max_abs)}, cosine {_cos(m.cosine)}", "",
                 *_md_layer_table(report, _layers_around(loc, first), first)]
    if loc.unmatched:
        lines += ["", f"{len(loc.unmatched)} source layer(s) had no counterpart: "
                      + ", ".join(_md_code(n) for n in loc.unmatched[:10])
                      + (" …" if len(loc.unmatched) > 10 else "")]
    if loc.note:
        lines += ["", _md(loc.note)]
    return lines


def _generation_text(gen: GenerationResult) -> str:
    where = ("every step agrees" if gen.first_divergent_step is None
             else f"tokens diverge at step {gen.first_divergent_step}"
             + (f", at {gen.tie}" if gen.tie else ""))
    return (f"greedy decoding, {gen.steps} step(s) after a {gen.prompt_length}-token prompt: "
            f"agreement {gen.agreement:.1%}, {where}")


def _baseline_text(base: BaselineResult) -> str:
    found = f"{len(base.regressions)} regression(s)" if base.regressions else "no regressions"
    return f"{base.path} (margin ×{base.margin:g}, {base.compared} output(s) compared): {found}"


def _md_details(summary: str, body: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>"]


def to_markdown(report: ParityReport) -> str:
    """A pull-request comment: the verdict first, then only what a reviewer needs to act on it.

    A passing report collapses its table, so green runs stay one screen; a failing one shows every
    row, the first diverging layer and the layers around it.
    """
    mark = "✅ PASS" if report.passed else "❌ FAIL"
    lines = [f"### {mark} · porttax parity: {_md_code(_label(report))}", "",
             f"{_md_code(report.converted)} vs {_md_code(report.source)}  ",
             f"**Profile** {_md_code(report.profile.name)} · gate {_md_code(_gate_line(report))} · "
             f"worst rel_l2 {_num(report.worst_rel_l2)}  ",
             *([f"**Reference** {_md(_reference_text(report))}  "] if report.reference else []),
             f"**Devices** {_md(_devices(report))}"]
    if report.warnings:
        lines += ["", "> ⚠️ **Warnings**", *(f"> - {_md(w)}" for w in report.warnings)]
    table = _md_case_table(report)
    n_out = sum(len(c.outputs) for c in report.cases)
    lines.append("")
    if report.passed:
        lines += _md_details(f"{len(report.cases)} case(s), {n_out} output(s), all within tolerance", table)
    else:
        lines += table
    if report.localization is not None:
        lines += ["", *_md_localization(report, report.localization)]
    if report.generation is not None:
        gen_mark = "✅" if report.generation.passed else "❌"
        lines += ["", f"**Generation** {gen_mark} {_md(_generation_text(report.generation))}"]
    if report.baseline is not None:
        base_mark = "✅" if report.baseline.passed else "❌"
        lines += ["", f"**Baseline** {base_mark} {_md(_baseline_text(report.baseline))}",
                  *(f"- {_md(r)}" for r in report.baseline.regressions)]
    env = [f"| {_md_code(key)} | {_md(str(value))} |" for key, value in _flatten(report.environment)]
    lines += ["", *_md_details("Environment", ["| | |", "|---|---|", *env] if env else ["not recorded"])]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- JUnit XML

# The report records no durations, so every testcase and suite says 0 seconds rather than guess.
_UNTIMED = "0.000"
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """XML 1.0 cannot carry most control characters even escaped; a reason string might hold one."""
    return _XML_INVALID.sub("?", text)


def _metrics_text(report: ParityReport, m: OutputMetrics, out: OutputResult | None = None) -> str:
    top = ", ".join(f"top-{k} {v:.1%}" for k, v in sorted(m.topk_agreement.items()))
    lines = [f"rel_l2 {_num(m.rel_l2)}, max_abs {_num(m.max_abs)}, max_rel {_num(m.max_rel)}, "
             f"cosine {_cos(m.cosine)}, mean_abs {_num(m.mean_abs)}" + (f", {top}" if top else ""),
             f"gate: {_gate_line(report)} (profile {report.profile.name})",
             *([f"reference: {_reference_text(report)}"] if report.reference else []),
             f"shape converted {list(m.actual_shape)} / source {list(m.expected_shape)}, "
             f"dtype converted {m.actual_dtype} / source {m.expected_dtype}",
             f"NaN converted {m.nan_actual} / source {m.nan_expected}, "
             f"Inf converted {m.inf_actual} / source {m.inf_expected}, "
             f"shared with the source {m.nonfinite_shared}, mismatched {m.nonfinite_mismatch}"]
    if out is not None and out.noise is not None:
        n = out.noise
        lines.append(f"against {n.reference}: source's own error {_num(n.source_error)}, converted "
                     f"{_num(n.converted_error)}, ratio {_ratio(n.ratio)}, threshold {_num(n.threshold)} "
                     f"(rule {n.rule}: max(floor {_num(n.floor)}, {n.factor:g}× the source's error))")
    return "\n".join(lines)


def _testcase(parent: ET.Element, classname: str, name: str, failure: tuple[str, str] | None) -> None:
    """One <testcase>; `failure` is (message, text) when it failed."""
    case = ET.SubElement(parent, "testcase", name=_xml(name), classname=_xml(classname), time=_UNTIMED)
    if failure is not None:
        message, text = failure
        node = ET.SubElement(case, "failure", message=_xml(message), type="parity")
        node.text = _xml(text)


def _junit_testcases(report: ParityReport, suite: ET.Element) -> None:
    label, where = _label(report), ""
    if divergence := _divergence(report):
        where = f"\nfirst diverging layer: {divergence}"
    for case in report.cases:
        for out in case.outputs:
            failure = None if out.passed else (out.reason, f"{out.reason}\n{_metrics_text(report, out.metrics, out)}"
                                                            f"{where}")
            _testcase(suite, label, f"{case.label} / {out.name}", failure)
        if case.reason:
            _testcase(suite, label, f"{case.label} / (case)", (case.reason, case.reason + where))
    if (gen := report.generation) is not None:
        failure = None if gen.passed else (f"tokens diverge at step {gen.first_divergent_step}",
                                           _generation_text(gen) + _token_rows(gen) + where)
        _testcase(suite, label, "generation", failure)
    if (base := report.baseline) is not None:
        failure = None if base.passed else (f"{len(base.regressions)} regression(s) against {base.path}",
                                            "\n".join([_baseline_text(base), *base.regressions]))
        _testcase(suite, label, "baseline", failure)


def _token_rows(gen: GenerationResult) -> str:
    """The first few batch rows whose token streams differ, so the failure shows what was generated."""
    rows = [(i, a, b) for i, (a, b) in enumerate(zip(gen.source_tokens, gen.converted_tokens)) if a != b]
    return "".join(f"\nrow {i}: source {a} / converted {b}" for i, a, b in rows[:3])


def _junit_properties(report: ParityReport, suite: ET.Element) -> None:
    props = {"schema_version": SCHEMA_VERSION, "source": report.source,
             "converted": report.converted, "profile": report.profile.name,
             "threshold": f"{report.profile.threshold:g}", "gate_stat": report.gate_stat,
             "source_device": report.source_device, "converted_device": report.converted_device,
             "cross_device": str(report.cross_device).lower(), "worst_rel_l2": _num(report.worst_rel_l2)}
    if report.reference is not None:
        props["reference"] = report.reference.used or "none"
        props["noise_factor"] = f"{report.reference.factor:g}"
        if (noise := report.worst_noise) is not None:
            props["worst_ratio"] = _ratio(noise.ratio)
    if report.localization is not None and report.first_divergent is not None:
        props["first_divergent"] = report.first_divergent
        props["first_divergent_case"] = report.localization.case
    node = ET.SubElement(suite, "properties")
    for key, value in props.items():
        ET.SubElement(node, "property", name=key, value=_xml(value))


def _count(elements: Sequence[ET.Element]) -> dict[str, str]:
    """tests/failures/errors/skipped over the <testcase>s under `elements`, counted from the XML itself."""
    cases = [tc for el in elements for tc in el.iter("testcase")]
    return {"tests": str(len(cases)),
            "failures": str(sum(tc.find("failure") is not None for tc in cases)),
            "errors": str(sum(tc.find("error") is not None for tc in cases)),
            "skipped": str(sum(tc.find("skipped") is not None for tc in cases)),
            "time": _UNTIMED}


def _junit_suite(report: ParityReport, index: int) -> ET.Element:
    suite = ET.Element("testsuite", name=_xml(_label(report)), id=str(index))
    _junit_properties(report, suite)
    _junit_testcases(report, suite)
    suite.attrib.update(_count([suite]))
    out = ET.SubElement(suite, "system-out")
    out.text = _xml("\n".join([report.summary_line(), *(f"warning: {w}" for w in report.warnings)]))
    return suite


def to_junit(reports: ParityReport | Sequence[ParityReport]) -> str:
    """JUnit XML, the format every CI dashboard reads: one <testsuite> per report, one <testcase> per
    case × output.

    A case-level failure (the models returned different numbers of outputs) is its own failing
    testcase, named "<case> / (case)"; a generation check and a baseline comparison, when the report
    has them, are testcases named "generation" and "baseline". Counts are taken from the XML built.
    """
    items = [reports] if isinstance(reports, ParityReport) else list(reports)
    root = ET.Element("testsuites", name="porttax parity")
    suites = [_junit_suite(r, i) for i, r in enumerate(items)]
    root.extend(suites)
    root.attrib.update(_count(suites))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------- HTML and the drift plot

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 24px auto;
       max-width: 1000px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 6px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.banner { padding: 14px 18px; border-left: 6px solid; border-radius: 4px; }
.banner.pass { background: #e8f5e9; border-color: #1b5e20; }
.banner.fail { background: #fbe9e7; border-color: #8e1b1b; }
.banner p { margin: 2px 0; }
table { border-collapse: collapse; width: 100%; } th, td { padding: 4px 8px; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12.5px ui-monospace, Menlo, Consolas, monospace; background: #f3f3f3; padding: 0 3px; }
.ok { color: #1b5e20; } .bad { color: #8e1b1b; font-weight: 600; }
.warn { background: #fff8e1; border-left: 4px solid #b08800; padding: 8px 14px; }
svg { max-width: 100%; height: auto; } .caption { color: #555; font-size: 12.5px; }
""".strip()


def _e(text: Any) -> str:
    return html.escape(str(text))


def _html_verdict(passed: bool, reason: str) -> str:
    return '<td class="ok">pass</td>' if passed else f'<td class="bad">FAIL: {_e(reason)}</td>'


def _html_banner(report: ParityReport) -> str:
    state = "pass" if report.passed else "fail"
    parts = [f'<header class="banner {state}"><h1>{state.upper()} · {_e(_label(report))}</h1>',
             f"<p><code>{_e(report.converted)}</code> vs <code>{_e(report.source)}</code></p>",
             f"<p>profile <b>{_e(report.profile.name)}</b> ({_e(report.profile.description)}); "
             f"gate <code>{_e(_gate_line(report))}</code>; worst rel_l2 {_num(report.worst_rel_l2)}</p>",
             *([f"<p>reference: {_e(_reference_text(report))}</p>"] if report.reference else []),
             f"<p>{_e(_devices(report))}</p>"]
    fails = report.failures()
    if fails:
        parts.append(f"<p>{len(fails)} failure(s); first: {_e(fails[0])}</p>")
    if report.first_divergent is not None:
        parts.append(f"<p>first diverging layer: <b><code>{_e(report.first_divergent)}</code></b></p>")
    return "\n".join(parts) + "</header>"


def _html_cases(report: ParityReport) -> str:
    top1, noise = _has_top1(report), _uses_reference(report)
    head = ["case", "output", "rel_l2", "max_abs", "max_rel", "cosine", *(["top-1"] if top1 else []),
            *(_NOISE_HEAD if noise else []), "verdict"]
    rows = []
    for case in report.cases:
        for out in case.outputs:
            m = out.metrics
            nums = [_num(m.rel_l2), _num(m.max_abs), _num(m.max_rel), _cos(m.cosine)]
            if top1:
                nums.append(_pct(m.topk_agreement.get(1)))
            if noise:
                nums.extend(_noise_cells(out))
            cells = "".join(f'<td class="n">{v}</td>' for v in nums)
            rows.append(f"<tr><td>{_e(case.label)}</td><td><code>{_e(out.name)}</code></td>{cells}"
                        f"{_html_verdict(out.passed, out.reason)}</tr>")
        if case.reason:
            blank = '<td class="n">—</td>' * (len(head) - 3)
            rows.append(f"<tr><td>{_e(case.label)}</td><td><i>(case)</i></td>{blank}"
                        f"{_html_verdict(False, case.reason)}</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<h2>Outputs</h2>\n<table><tr>{header}</tr>\n" + "\n".join(rows) + "\n</table>"


class _LogAxis:
    """Maps drift values to SVG y on a log10 axis spanning whole decades, floor `LOG_FLOOR`."""

    def __init__(self, values: list[float], top: float, height: float) -> None:
        logs = [math.log10(max(v, LOG_FLOOR)) for v in values if math.isfinite(v)] or [0.0]
        self.lo, self.hi = math.floor(min(logs)), math.ceil(max(logs))
        if self.hi == self.lo:
            self.hi += 1
        self.top, self.height = top, height

    def y(self, value: float | None) -> float:
        """Undefined or infinite drift sits on the top edge: off the scale, but visible."""
        if value is None or not math.isfinite(value):
            return self.top
        frac = (self.hi - math.log10(max(value, LOG_FLOOR))) / (self.hi - self.lo)
        return self.top + frac * self.height

    def decades(self) -> range:
        step = max(1, math.ceil((self.hi - self.lo) / 12))
        return range(self.lo, self.hi + 1, step)


_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 960, 400, 78, 24, 44, 58


def _svg_axes(axis: _LogAxis, xs: list[float], layers: list[LayerResult], stat: str) -> list[str]:
    right, bottom = _W - _RIGHT, _H - _BOTTOM
    out = [f'<rect x="{_LEFT}" y="{_TOP}" width="{right - _LEFT}" height="{bottom - _TOP}" fill="none" '
           'stroke="#999"/>']
    for d in axis.decades():
        y = axis.y(10.0 ** d)
        out.append(f'<line x1="{_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">1e{d}</text>')
    step = max(1, math.ceil(len(xs) / 20))
    for x, lay in list(zip(xs, layers))[::step]:
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 5}" stroke="#999"/>'
                   f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{lay.index}</text>')
    out.append(f'<text x="{(_LEFT + right) / 2}" y="{_H - 12}" text-anchor="middle">layers in execution order '
               "(hover a point for its name)</text>")
    mid = (_TOP + bottom) / 2
    out.append(f'<text transform="translate(18 {mid}) rotate(-90)" text-anchor="middle">accumulated drift '
               f"({_e(stat)}, log scale)</text>")
    return out


def _svg_legend() -> str:
    x = _W - _RIGHT - 330
    return (f'<g transform="translate({x} 20)"><circle cx="0" cy="0" r="4.5" fill="{PASS_COLOUR}"/>'
            '<text x="9" y="4">within tolerance</text>'
            f'<circle cx="120" cy="0" r="4.5" fill="{FAIL_COLOUR}"/>'
            '<text x="129" y="4">over tolerance</text>'
            '<line x1="232" x2="262" y1="0" y2="0" stroke="#444" stroke-dasharray="6 4"/>'
            '<text x="268" y="4">tolerance</text></g>')


def _svg_point(x: float, y: float, r: float, lay: LayerResult, stat: str) -> str:
    """A pass is a green dot, a fail a filled red dot; the tooltip names both sides of the match."""
    colour = PASS_COLOUR if lay.passed else FAIL_COLOUR
    tip = (f"#{lay.index} {lay.name} → {lay.target}: {stat} {_num(getattr(lay.metrics, stat))} "
           f"({'pass' if lay.passed else 'FAIL'})")
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}"><title>{_e(tip)}</title></circle>'


def _svg_first_marker(x: float, y: float, name: str) -> str:
    anchor, dx = ("end", -10) if x > _W / 2 else ("start", 10)
    return (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_H - _BOTTOM}" stroke="{FAIL_COLOUR}" '
            'stroke-dasharray="2 3"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{FAIL_COLOUR}" stroke-width="2"/>'
            f'<text x="{x + dx:.1f}" y="{_TOP + 14}" text-anchor="{anchor}" font-weight="bold" '
            f'fill="#8e1b1b">first diverging: {_e(name)}</text>')


def _drift_svg(report: ParityReport, loc: Localization) -> str:
    """Accumulated drift per layer on a log axis against the tolerance line: the shape of the curve tells
    a single bad layer (a jump) from slow accumulation (a ramp) at a glance."""
    stat, threshold = report.gate_stat, report.profile.threshold
    values = [getattr(lay.metrics, stat) for lay in loc.layers]
    axis = _LogAxis([v for v in values if v is not None] + [threshold], _TOP, _H - _BOTTOM - _TOP)
    width = (_W - _RIGHT - _LEFT) / max(1, len(loc.layers))
    xs = [_LEFT + (i + 0.5) * width for i in range(len(loc.layers))]
    ys = [axis.y(v) for v in values]
    radius = max(2.0, min(4.5, width / 3))
    parts = [f'<svg id="drift-plot" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
             f'viewBox="0 0 {_W} {_H}" font-size="12" font-family="system-ui, sans-serif" role="img">',
             f"<title>Per-layer drift ({_e(stat)}) for case {_e(loc.case)}</title>",
             *_svg_axes(axis, xs, loc.layers, stat), _svg_legend()]
    t = axis.y(threshold)
    parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{t:.1f}" y2="{t:.1f}" stroke="#444" '
                 f'stroke-dasharray="6 4"/><text x="{_W - _RIGHT - 4}" y="{t - 5:.1f}" text-anchor="end">'
                 f"tolerance {threshold:.3g}</text>")
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    parts.append(f'<polyline points="{points}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2.5"/>')
    parts += [_svg_point(x, y, radius, lay, stat) for x, y, lay in zip(xs, ys, loc.layers)]
    if (first := _first_layer(loc)) is not None:
        i = loc.layers.index(first)
        parts.append(_svg_first_marker(xs[i], ys[i], first.name))
    return "\n".join(parts) + "\n</svg>"


def _html_localization(report: ParityReport) -> str:
    loc = report.localization
    if loc is None:
        return ("<h2>Per-layer drift</h2>\n<p>No per-layer localization in this report: it runs when outputs "
                "drift past tolerance and the models' layers can be matched.</p>")
    notes = [f"Case {_e(loc.case)}, {len(loc.layers)} matched layer(s). Drift below {LOG_FLOOR:g} (including "
             f"exact zeros) is drawn at {LOG_FLOOR:g}, since a log scale has no zero; undefined or infinite "
             "drift is drawn on the top edge."]
    if loc.unmatched:
        notes.append(f"{len(loc.unmatched)} source layer(s) had no counterpart: "
                     + ", ".join(f"<code>{_e(n)}</code>" for n in loc.unmatched))
    if loc.note:
        notes.append(_e(loc.note))
    return ("<h2>Per-layer drift</h2>\n" + _drift_svg(report, loc) + "\n"
            + "".join(f'<p class="caption">{n}</p>' for n in notes))


def _html_extras(report: ParityReport) -> str:
    parts = []
    if report.generation is not None:
        cls = "ok" if report.generation.passed else "bad"
        parts.append(f'<h2>Generation</h2>\n<p class="{cls}">{_e(_generation_text(report.generation))}</p>')
    if report.baseline is not None:
        cls = "ok" if report.baseline.passed else "bad"
        items = "".join(f"<li>{_e(r)}</li>" for r in report.baseline.regressions)
        parts.append(f'<h2>Baseline</h2>\n<p class="{cls}">{_e(_baseline_text(report.baseline))}</p>'
                     + (f"<ul>{items}</ul>" if items else ""))
    return "\n".join(parts)


def _html_environment(report: ParityReport) -> str:
    rows = "".join(f"<tr><td><code>{_e(k)}</code></td><td>{_e(v)}</td></tr>"
                   for k, v in _flatten(report.environment))
    return f"<h2>Environment</h2>\n<table>{rows or '<tr><td>not recorded</td></tr>'}</table>"


def to_html(report: ParityReport) -> str:
    """One HTML file with everything inline (no scripts, fonts or stylesheets fetched), so it can be
    attached to a CI run or mailed and still open offline, years later."""
    title = f"porttax parity: {_label(report)} — {'PASS' if report.passed else 'FAIL'}"
    warnings = ""
    if report.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
        warnings = f'<h2>Warnings</h2>\n<div class="warn"><ul>{items}</ul></div>'
    body = [_html_banner(report), warnings, _html_cases(report), _html_localization(report),
            _html_extras(report), _html_environment(report)]
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n'
            f"<style>\n{_CSS}\n</style>\n</head>\n<body>\n" + "\n".join(p for p in body if p)
            + "\n</body>\n</html>\n")


# ---------------------------------------------------------------- terminal


def _rich_verdict(passed: bool, reason: str) -> Text:
    return Text("PASS", style="green") if passed else Text(f"FAIL {reason}", style="bold red")


def _rich_table(report: ParityReport) -> Table:
    top1, noise = _has_top1(report), _uses_reference(report)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ["case", "output", report.gate_stat, "max_abs", "cosine", *(["top-1"] if top1 else []),
                 *(_NOISE_HEAD if noise else [])]:
        table.add_column(name, justify="left" if name in ("case", "output") else "right")
    table.add_column("verdict", overflow="fold")
    for case in report.cases:
        for out in case.outputs:
            m = out.metrics
            extra = ([_pct(m.topk_agreement.get(1))] if top1 else []) + (_noise_cells(out) if noise else [])
            table.add_row(Text(case.label), Text(out.name), _num(_gate(report, m)), _num(m.max_abs),
                          _cos(m.cosine), *extra, _rich_verdict(out.passed, out.reason))
        if case.reason:
            table.add_row(Text(case.label), "(case)", *["—"] * (3 + top1 + 4 * noise),
                          _rich_verdict(False, case.reason))
    return table


def print_table(report: ParityReport, console: Console | None = None) -> None:
    """The report as a compact table on the terminal; rich drops colour by itself when stdout is a pipe
    or a CI log, so the same call serves both."""
    console = console or Console()
    state = Text("PASS", style="bold green") if report.passed else Text("FAIL", style="bold red")
    console.print(Text.assemble(state, f" [{report.profile.name}, {_gate_line(report)}] {_label(report)}: ",
                                _devices(report)))
    console.print(_rich_table(report))
    if report.reference is not None:
        console.print(Text(f"reference: {_reference_text(report)}", style="dim"))
    if divergence := _divergence(report):
        console.print(Text.assemble("first diverging layer: ", (divergence, "bold red")))
    if report.generation is not None:
        console.print(Text(f"generation: {_generation_text(report.generation)}",
                           style="green" if report.generation.passed else "red"))
    if report.baseline is not None:
        console.print(Text(f"baseline: {_baseline_text(report.baseline)}",
                           style="green" if report.baseline.passed else "red"))
        for regression in report.baseline.regressions:
            console.print(Text(f"  {regression}", style="red"))
    for warning in report.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))


# ---------------------------------------------------------------- files


def write_reports(
    report: ParityReport,
    *,
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    junit_path: str | os.PathLike[str] | None = None,
    html_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write each requested rendering; each file appears whole or not at all (a CI step that reads the
    JUnit file while a killed run was writing it must not see half a document). Returns the paths written."""
    renderers: list[tuple[str | os.PathLike[str] | None, Callable[[ParityReport], str]]] = [
        (json_path, to_json), (markdown_path, to_markdown), (junit_path, to_junit), (html_path, to_html)]
    written = []
    for path, render in renderers:
        if path is None:
            continue
        with atomic_output(path, force=True) as tmp:
            tmp.write_text(render(report), encoding="utf-8")
        written.append(Path(path))
    return written
