"""Render an `AuditReport` for the people and tools that read a migration audit: JSON for machines, CSV
for spreadsheets, Markdown for a pull request or a wiki page, and one self-contained HTML page.

Every renderer reads the report and nothing else, so an audit reads the same everywhere. Rows keep the
report's order (the audit's order), so the four renderings list models identically; the HTML page can
re-sort its table in the browser. Drift is always the worst relative L2 error ‖a−b‖/‖b‖; ratios are
converted / source, so above 1× the port costs more.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from porttax.audit.rows import SCHEMA_VERSION, STATUSES, AuditReport, AuditRow, WorkItem
from porttax.parity.render import strict_json_value  # one rule for non-finite floats in JSON

__all__ = ["CSV_COLUMNS", "DRIFT_TOLERANCE", "from_json", "to_csv", "to_html", "to_json", "to_markdown",
           "write_reports"]

DRIFT_TOLERANCE = 1e-5  # the fp32 profile's threshold: the drift chart's line unless the audit names a profile
LOG_FLOOR = 1e-12  # a log axis has no zero: drift below this (identical outputs) is drawn at it
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# ---------------------------------------------------------------- shared helpers


def _float(value: Any) -> float | None:
    """A number field as a float; None stays None. Accepts the "inf"/"-inf"/"nan" strings strict JSON uses,
    so a report rebuilt with `AuditReport.from_dict` from our own JSON renders like the original."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _NON_FINITE.get(value.strip().lower())
    return float(value)


def _sci(value: Any) -> str:
    """Drift in `%.2e`: two decimals are all a tolerance comparison needs, and inf/nan print as such."""
    v = _float(value)
    return "—" if v is None else f"{v:.2e}"


def _ratio(value: Any) -> str:
    v = _float(value)
    return "—" if v is None else f"{v:.2f}×"


def _pct(value: Any) -> str:
    v = _float(value)
    return "—" if v is None else f"{v:.1%}"


def _seconds(value: Any) -> str:
    v = _float(value)
    return "—" if v is None else f"{v:.3g} s"


def _hours(value: Any) -> str:
    """Up to two decimals, trailing zeros dropped: coefficients come in quarter hours, so 9.25 stays 9.25."""
    v = _float(value)
    if v is None:
        return "—"
    return f"{v:.2f}".rstrip("0").rstrip(".") if math.isfinite(v) else str(v)


def _work_text(items: Iterable[WorkItem]) -> str:
    """Manual work in one cell: "aten.foo ×2 (layer1.conv, layer2.conv); Bar ×1 (x)"."""
    parts = []
    for item in items:
        where = f" ({', '.join(item.where)})" if item.where else ""
        parts.append(f"{item.op} ×{item.count}{where}")
    return "; ".join(parts)


def _status_counts(report: AuditReport) -> dict[str, int]:
    """Counts per status in STATUSES order, then any status outside STATUSES, so none is lost."""
    counts = dict(report.summary()["by_status"])
    for row in report.rows:
        if row.status not in counts:
            counts[row.status] = sum(1 for r in report.rows if r.status == row.status)
    return counts


def _summary_text(report: AuditReport) -> str:
    """The one-paragraph summary, plain text; Markdown and HTML escape it their own way."""
    summary = report.summary()
    counts = ", ".join(f"{n} {status}" for status, n in _status_counts(report).items() if n)
    who = f" with porttax {report.porttax_version}" if report.porttax_version else ""
    when = f" on {report.created}" if report.created else ""
    text = f"Audited {summary['models']} model(s){who}{when}"
    text += f": {counts}." if counts else "."
    text += f" Estimated manual effort: {_hours(summary['effort_hours'])} hours."
    if report.rows:
        text += (f" {summary['cached']} of {summary['models']} came from the cache; "
                 f"{summary['jobs_run']} measured in this run.")
    if report.skipped:
        text += f" {len(report.skipped)} file(s) skipped as not models."
    return text


def _tolerance(report: AuditReport) -> tuple[float, str]:
    """The drift line: the threshold of the profile the audit ran with when it names a known rel_l2 profile,
    else the fp32 threshold 1e-5."""
    name = report.options.get("profile")
    if isinstance(name, str):
        from porttax.parity.profiles import PROFILES

        profile = PROFILES.get(name)
        if profile is not None and profile.stat == "rel_l2":
            return profile.threshold, profile.name
    return DRIFT_TOLERANCE, "fp32"


# ---------------------------------------------------------------- JSON


def to_json(report: AuditReport) -> str:
    """The report as strict JSON (RFC 8259 has no Infinity/NaN, and an audit's drift is inf wherever a
    converted output blew up), so any parser, not only Python's lenient one, reads it."""
    return json.dumps(strict_json_value(report.to_dict()), indent=2, sort_keys=False, allow_nan=False) + "\n"


# Number fields that may hold "inf"/"-inf"/"nan" strings in our JSON; only these are turned back into
# floats, so a model or op that happens to be called "nan" stays a string.
_ROW_FLOATS = ("drift_rel_l2", "drift_max_abs", "drift_ratio", "top1_agreement", "effort_hours")
_ROAD_FLOATS = ("drift_rel_l2", "latency_ms")


def _unstrict(value: Any) -> Any:
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value


def from_json(text: str) -> AuditReport:
    """Read our JSON back into an `AuditReport`, with the non-finite number strings restored to floats
    (`AuditReport.from_dict` alone would leave drift "inf" as a string)."""
    data = json.loads(text)
    if not str(data.get("schema_version", "")).startswith(SCHEMA_VERSION.split(".")[0] + "."):
        raise ValueError(f"audit report schema {data.get('schema_version')!r}; this porttax reads "
                         f"{SCHEMA_VERSION.split('.')[0]}.x")
    effort = data.get("effort", {})
    effort["coefficients"] = {k: _unstrict(v) for k, v in effort.get("coefficients", {}).items()}
    for row in data.get("models", []):
        for key in _ROW_FLOATS:
            row[key] = _unstrict(row.get(key))
        row["effort_terms"] = {k: _unstrict(v) for k, v in row.get("effort_terms", {}).items()}
        row["measurements"] = {k: _unstrict(v) for k, v in row.get("measurements", {}).items()}
        for road in row.get("roads", []):
            for key in _ROAD_FLOATS:
                road[key] = _unstrict(road.get(key))
    return AuditReport.from_dict(data)


# ---------------------------------------------------------------- CSV


def _m(name: str) -> Callable[[AuditRow], Any]:
    return lambda row: getattr(row.measurements, name)


def _attr(name: str) -> Callable[[AuditRow], Any]:
    return lambda row: getattr(row, name)


# (column, getter): one flat row per model, measurements and derived ratios included.
_CSV: list[tuple[str, Callable[[AuditRow], Any]]] = [
    *((name, _attr(name)) for name in (
        "model", "format", "direction", "status", "reason", "road", "layer_coverage", "param_coverage",
        "layers_total", "layers_covered", "params_total", "params_covered", "drift_rel_l2", "drift_max_abs",
        "drift_ratio", "top1_agreement", "first_diverging_layer", "transposes_inserted", "source_bytes", "converted_bytes",
        "size_ratio")),
    ("latency_ratio", lambda row: row.measurements.latency_ratio),
    ("memory_ratio", lambda row: row.measurements.memory_ratio),
    *((name, _m(name)) for name in (
        "conversion_seconds", "conversion_peak_rss_mb", "source_latency_ms", "converted_latency_ms",
        "source_memory_mb", "converted_memory_mb")),
    ("manual_work", lambda row: _work_text(row.manual_work)),
    ("effort_hours", _attr("effort_hours")),
    ("cached", _attr("cached")),
    ("content_hash", _attr("content_hash")),
]
CSV_COLUMNS: tuple[str, ...] = tuple(name for name, _ in _CSV)


def _csv_cell(value: Any) -> str:
    """Floats as `repr` (the shortest text that reads back as the same float, exactly what the JSON holds),
    booleans as JSON spells them, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(report: AuditReport) -> str:
    """One row per model with flat columns, for a spreadsheet or pandas; the columns are `CSV_COLUMNS`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow([_csv_cell(get(row)) for _, get in _CSV])
    return buf.getvalue()


# ---------------------------------------------------------------- Markdown


def _md(text: Any) -> str:
    """Plain text safe inside a table cell: no stray HTML, no column-breaking pipes or newlines."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_code(text: Any) -> str:
    """A code span that survives any content: the fence is longer than any backtick run inside, and GitHub
    tables still need pipes escaped inside code spans."""
    text = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _coverage(row: AuditRow) -> str:
    if row.layer_coverage is None and row.param_coverage is None:
        return "—"
    return f"{_pct(row.layer_coverage)} / {_pct(row.param_coverage)}"


def _conversion(row: AuditRow) -> str:
    text = _seconds(row.measurements.conversion_seconds)
    return f"{text} (cached)" if row.cached and text != "—" else text


_MD_HEAD = ["model", "direction", "status", "road", "coverage layers / params", "drift ‖a−b‖/‖b‖",
            "first diverging layer", "speed", "memory", "size", "conversion", "effort h"]


def _md_table_row(row: AuditRow) -> str:
    cells = [_md_code(row.model), _md(row.direction), _md(row.status), _md(row.road or "—"), _coverage(row),
             _sci(row.drift_rel_l2),
             _md_code(row.first_diverging_layer) if row.first_diverging_layer else "—",
             _ratio(row.measurements.latency_ratio), _ratio(row.measurements.memory_ratio),
             _ratio(row.size_ratio), _conversion(row), _hours(row.effort_hours)]
    return "| " + " | ".join(cells) + " |"


def _md_manual_work(report: AuditReport) -> list[str]:
    rows = [(row, item) for row in report.rows for item in row.manual_work]
    if not rows:
        return ["No manual work: every layer of every readable model has a road."]
    lines = ["| model | op | count | road | where |", "|---|---|---:|---|---|"]
    for row, item in rows:
        where = ", ".join(_md_code(w) for w in item.where) or "—"
        lines.append(f"| {_md_code(row.model)} | {_md_code(item.op)} | {item.count} | {_md(item.road or '—')} "
                     f"| {where} |")
    return lines


def _md_effort(report: AuditReport) -> list[str]:
    lines = [f"Formula: {_md_code(report.effort_formula)}" if report.effort_formula else
             "Formula: not recorded.", ""]
    if report.effort_coefficients:
        lines += ["| coefficient | value |", "|---|---:|",
                  *(f"| {_md_code(k)} | {v!r} |" for k, v in report.effort_coefficients.items()), ""]
    lines.append(f"Coefficients from {_md_code(report.effort_source)}." if report.effort_source else
                 "Coefficients: source not recorded.")
    terms = [row for row in report.rows if row.effort_terms]
    if terms:
        lines += ["", "| model | hours | terms |", "|---|---:|---|"]
        for row in terms:
            parts = " + ".join(f"{_md(k)} {_hours(v)}" for k, v in row.effort_terms.items())
            lines.append(f"| {_md_code(row.model)} | {_hours(row.effort_hours)} | {parts} |")
    return lines


def to_markdown(report: AuditReport) -> str:
    """A readable audit for a pull request or wiki: the summary, the porting-tax table, then what a person
    has to do (manual work, failures) and how the effort figure was reached."""
    lines = [f"# porttax audit: {len(report.rows)} model(s)", "", _md(_summary_text(report)), "",
             "## Porting tax", ""]
    if report.rows:
        lines += ["| " + " | ".join(_MD_HEAD) + " |", "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
                  *(_md_table_row(row) for row in report.rows), "",
                  "Drift is the worst ‖a−b‖/‖b‖ over cases and outputs; speed, memory and size are converted / "
                  "source (above 1× the port costs more). Measurements of cached models come from the run "
                  "that cached them."]
    else:
        lines.append("No models.")
    lines += ["", "## Manual work", "", *_md_manual_work(report)]
    failed = [row for row in report.rows if row.status != "converted"]
    if failed:
        lines += ["", "## Not converted", "",
                  *(f"- {_md_code(row.model)} — **{_md(row.status)}**: {_md(row.reason or 'no reason recorded')}"
                    for row in failed)]
    lines += ["", "## Effort estimate", "", *_md_effort(report)]
    if report.skipped:
        lines += ["", "## Skipped files", "",
                  *(f"- {_md_code(s.get('path', '?'))}: {_md(s.get('reason', ''))}" for s in report.skipped)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HTML

_STATUS_COLOURS = {"converted": ("#e3f4e5", "#1b5e20"), "drifted": ("#fff4d6", "#7a5200"),
                   "unsupported": ("#ece7f6", "#4a2c82"), "error": ("#fbe3e0", "#8e1b1b"),
                   "timeout": ("#fde8d4", "#8a3d00"), "crashed": ("#f3d0d0", "#5c0b0b")}
BAR_OK, BAR_BAD, BAR_FAST, BAR_SLOW = "#2ca02c", "#d62728", "#2ca02c", "#ff7f0e"

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
max-width: 1400px; padding: 0 16px; color: #1d1d1d; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 28px 0 8px; }
table { border-collapse: collapse; } th, td { padding: 4px 8px; border-bottom: 1px solid #ddd;
text-align: left; vertical-align: top; } td.n { text-align: right; font-variant-numeric: tabular-nums;
white-space: nowrap; }
#models th { cursor: pointer; user-select: none; white-space: nowrap; background: #f6f6f6; position: sticky;
top: 0; } #models th[aria-sort=ascending]::after { content: " ▲"; }
#models th[aria-sort=descending]::after { content: " ▼"; }
code { font: 12.5px ui-monospace, Menlo, Consolas, monospace; background: #f3f3f3; padding: 0 3px; }
td.st { font-weight: 600; } .reason { font-weight: 400; font-size: 12.5px; min-width: 16em; max-width: 34em; }
.scroll { overflow-x: auto; }
.summary { background: #f6f8fa; border-left: 4px solid #888; padding: 8px 14px; }
svg.chart { max-width: 100%; height: auto; font: 12px system-ui, sans-serif; }
.caption { color: #555; font-size: 12.5px; } #errors:empty { display: none; }
#errors { background: #fbe3e0; color: #8e1b1b; padding: 8px; white-space: pre-wrap; }
""".strip() + "\n" + "\n".join(
    f"td.st-{status} {{ background: {bg}; color: {fg}; }}" for status, (bg, fg) in _STATUS_COLOURS.items())

# Registered first, in <head>, so an error anywhere later on the page is shown (and a headless test sees it).
_JS_ERRORS = """
window.onerror = function (message, source, line) {
  var pre = document.getElementById("errors");
  var text = message + (line ? " (line " + line + ")" : "") + "\\n";
  if (pre) { pre.textContent += text; } else { window.__errors = (window.__errors || "") + text; }
};
""".strip()

# Sorting reads each cell's data-v: a number (or inf/-inf/nan) in numeric columns, text otherwise, "" when
# blank. Blanks go last in both directions; NaN ranks above +inf (worse than any drift); ties keep the
# audit's order. `#sort=<key>` or `#sort=<key>:desc` in the address applies a sort on load.
_JS_TABLE = """
(function () {
  var pre = document.getElementById("errors");
  if (window.__errors) { pre.textContent += window.__errors; }
  var table = document.getElementById("models");
  var heads = table.tHead.rows[0].cells;
  var tbody = table.tBodies[0];
  function number(raw) {
    if (raw === "inf") { return Infinity; }
    if (raw === "-inf") { return -Infinity; }
    if (raw === "nan") { return NaN; }
    return Number(raw);
  }
  function compareNumbers(a, b) {
    if (isNaN(a) || isNaN(b)) { return (isNaN(a) ? 1 : 0) - (isNaN(b) ? 1 : 0); }
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  function sortBy(key, desc) {
    var col = -1;
    for (var i = 0; i < heads.length; i++) { if (heads[i].dataset.key === key) { col = i; } }
    if (col < 0) { throw new Error("no column to sort by: " + key); }
    var numeric = heads[col].dataset.type === "num";
    var rows = Array.prototype.map.call(tbody.rows, function (tr) {
      var raw = tr.cells[col].dataset.v;
      return {tr: tr, blank: raw === "", v: numeric ? number(raw) : raw.toLowerCase(), n: Number(tr.dataset.index)};
    });
    rows.sort(function (a, b) {
      if (a.blank || b.blank) { return a.blank === b.blank ? a.n - b.n : (a.blank ? 1 : -1); }
      var c = numeric ? compareNumbers(a.v, b.v) : (a.v < b.v ? -1 : (a.v > b.v ? 1 : 0));
      return (desc ? -c : c) || a.n - b.n;
    });
    rows.forEach(function (r) { tbody.appendChild(r.tr); });
    for (var j = 0; j < heads.length; j++) {
      if (j === col) { heads[j].setAttribute("aria-sort", desc ? "descending" : "ascending"); }
      else { heads[j].removeAttribute("aria-sort"); }
    }
    table.dataset.sort = key + (desc ? ":desc" : "");
  }
  function fromHash() {
    var m = /^#sort=([A-Za-z0-9_]+)(:desc|:asc)?$/.exec(location.hash);
    if (!m) { return; }
    try { sortBy(m[1], m[2] === ":desc"); } catch (e) { pre.textContent += "sort: " + e.message + "\\n"; }
  }
  Array.prototype.forEach.call(heads, function (th) {
    th.addEventListener("click", function () {
      var desc = th.getAttribute("aria-sort") === "ascending";
      sortBy(th.dataset.key, desc);
      try { history.replaceState(null, "", "#sort=" + th.dataset.key + (desc ? ":desc" : "")); } catch (e) {}
    });
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.body.dataset.ready = "1";
})();
""".strip()


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _data_v(value: Any, kind: str) -> str:
    """A cell's sort key: numbers as `repr` (exact, and "inf"/"nan" for non-finite), text as is, None as ""."""
    if kind == "num":
        number = _float(value)
        return "" if number is None else repr(number)
    return _e("" if value is None else value)


# (key, header, kind, value, display): key matches the CSV column; kind "num" sorts numerically.
_HtmlColumn = tuple[str, str, str, Callable[[AuditRow], Any], Callable[[AuditRow], str]]
_HTML_COLUMNS: list[_HtmlColumn] = [
    ("model", "model", "text", _attr("model"), lambda r: f"<code>{_e(r.model)}</code>"),
    ("format", "format", "text", _attr("format"), lambda r: _e(r.format)),
    ("direction", "direction", "text", _attr("direction"), lambda r: _e(r.direction)),
    ("status", "status", "num", lambda r: STATUSES.index(r.status) if r.status in STATUSES else len(STATUSES),
     lambda r: _e(r.status)),
    ("road", "road", "text", lambda r: r.road or "", lambda r: _e(r.road or "—")),
    ("layer_coverage", "layers", "num", _attr("layer_coverage"), lambda r: _pct(r.layer_coverage)),
    ("param_coverage", "params", "num", _attr("param_coverage"), lambda r: _pct(r.param_coverage)),
    ("drift_rel_l2", "drift ‖a−b‖/‖b‖", "num", _attr("drift_rel_l2"), lambda r: _sci(r.drift_rel_l2)),
    ("drift_ratio", "× source's own error", "num", _attr("drift_ratio"), lambda r: _ratio(r.drift_ratio)),
    ("first_diverging_layer", "first diverging layer", "text", lambda r: r.first_diverging_layer or "",
     lambda r: f"<code>{_e(r.first_diverging_layer)}</code>" if r.first_diverging_layer else "—"),
    ("latency_ratio", "speed", "num", lambda r: r.measurements.latency_ratio,
     lambda r: _ratio(r.measurements.latency_ratio)),
    ("memory_ratio", "memory", "num", lambda r: r.measurements.memory_ratio,
     lambda r: _ratio(r.measurements.memory_ratio)),
    ("size_ratio", "size", "num", _attr("size_ratio"), lambda r: _ratio(r.size_ratio)),
    ("conversion_seconds", "conversion", "num", _m("conversion_seconds"), lambda r: _e(_conversion(r))),
    ("effort_hours", "effort h", "num", _attr("effort_hours"), lambda r: _hours(r.effort_hours)),
]


def _roads_title(row: AuditRow) -> str:
    """Every road tried, for the road cell's tooltip: which one was chosen and why the others were not."""
    parts = []
    for road in row.roads:
        text = f"{road.road}: {road.status}"
        if road.drift_rel_l2 is not None:
            text += f", drift {_sci(road.drift_rel_l2)}"
        if road.reason:
            text += f" ({road.reason})"
        parts.append(("* " if road.chosen else "") + text)
    return "\n".join(parts)


def _html_row(index: int, row: AuditRow) -> str:
    cells = []
    for key, _, kind, value, display in _HTML_COLUMNS:
        cls = ' class="n"' if kind == "num" and key != "status" else ""
        attrs = f' data-v="{_data_v(value(row), kind)}"'
        inner = display(row)
        if key == "status":
            status_cls = f"st-{row.status}" if row.status in STATUSES else "st-other"
            cls = f' class="st {status_cls}"'
            if row.reason:
                attrs += f' title="{_e(row.reason)}"'
                if row.status != "converted":
                    inner += f'<div class="reason">{_e(row.reason)}</div>'
        elif key == "road" and row.roads:
            attrs += f' title="{_e(_roads_title(row))}"'
        cells.append(f"<td{cls}{attrs}>{inner}</td>")
    return (f'<tr data-index="{index}" data-model="{_e(row.model)}" data-status="{_e(row.status)}">'
            + "".join(cells) + "</tr>")


def _html_table(report: AuditReport) -> str:
    head = "".join(f'<th data-key="{key}" data-type="{kind}" title="sort by {_e(label)}">{_e(label)}</th>'
                   for key, label, kind, _, _ in _HTML_COLUMNS)
    body = "\n".join(_html_row(i, row) for i, row in enumerate(report.rows))
    return (f'<div class="scroll"><table id="models">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n'
            "</table></div>\n"
            '<p class="caption">Click a header to sort (again to reverse); blanks sort last. Speed, memory and '
            "size are converted / source: above 1× the port costs more. Hover the road for every road tried.</p>")


class _BarChart:
    """A horizontal bar chart, one row per model, on a log x axis: drawn in Python so the page shows it
    without running any script, and a test can count its bars."""

    ROW, LEFT, RIGHT, TOP, BOTTOM, WIDTH = 22, 250, 90, 34, 40, 960

    def __init__(self, lo: float, hi: float, n: int) -> None:
        self.lo, self.hi = math.log10(lo), math.log10(hi)
        self.height = self.TOP + max(1, n) * self.ROW + self.BOTTOM
        self.right = self.WIDTH - self.RIGHT

    def x(self, value: float) -> float:
        """Clamped to the plot: off-scale values (inf included) end on an edge."""
        if math.isnan(value) or value == math.inf:
            return self.right
        frac = (math.log10(max(value, 10.0 ** self.lo)) - self.lo) / (self.hi - self.lo)
        return self.LEFT + min(1.0, max(0.0, frac)) * (self.right - self.LEFT)

    def y(self, i: int) -> float:
        return self.TOP + i * self.ROW

    def open(self, chart_id: str, title: str) -> list[str]:
        return [f'<svg class="chart" id="{chart_id}" width="{self.WIDTH}" height="{self.height}" '
                f'viewBox="0 0 {self.WIDTH} {self.height}" role="img">', f"<title>{_e(title)}</title>",
                f'<rect x="{self.LEFT}" y="{self.TOP}" width="{self.right - self.LEFT}" '
                f'height="{self.height - self.TOP - self.BOTTOM}" fill="none" stroke="#ccc"/>']

    def tick(self, value: float, label: str) -> str:
        x = self.x(value)
        bottom = self.height - self.BOTTOM
        return (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.TOP}" y2="{bottom}" stroke="#eee"/>'
                f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" fill="#555">{_e(label)}</text>')

    def marker(self, value: float, label: str) -> str:
        x = self.x(value)
        return (f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{self.TOP - 6}" '
                f'y2="{self.height - self.BOTTOM + 4}" stroke="#333" stroke-width="1.5" stroke-dasharray="6 4"/>'
                f'<text x="{x:.1f}" y="{self.TOP - 10}" text-anchor="middle" font-weight="600">{_e(label)}</text>')

    def label(self, i: int, model: str) -> str:
        short = model if len(model) <= 36 else model[:17] + "…" + model[-18:]
        y = self.y(i) + self.ROW / 2 + 4
        return (f'<text x="{self.LEFT - 8}" y="{y:.1f}" text-anchor="end"><title>{_e(model)}</title>'
                f"{_e(short)}</text>")

    def bar(self, i: int, model: str, value: float, start: float, colour: str, text: str, tip: str) -> str:
        x0, x1 = sorted((start, self.x(value)))
        if x1 - x0 < 2:  # exactly at the origin: still visible
            x1 = x0 + 2
        y = self.y(i) + 4
        return (f'<rect class="bar" data-model="{_e(model)}" data-value="{_e(_csv_cell(value))}" x="{x0:.1f}" '
                f'y="{y:.1f}" width="{x1 - x0:.1f}" height="{self.ROW - 8}" fill="{colour}">'
                f"<title>{_e(tip)}</title></rect>"
                f'<text x="{max(x1, start) + 4:.1f}" y="{y + self.ROW / 2:.1f}" fill="#333">{_e(text)}</text>')

    def empty(self, i: int, model: str, text: str) -> str:
        y = self.y(i) + 4
        return (f'<rect class="slot" data-model="{_e(model)}" x="{self.LEFT}" y="{y:.1f}" '
                f'width="{self.right - self.LEFT}" height="{self.ROW - 8}" fill="none" stroke="#ccc" '
                f'stroke-dasharray="3 3"/><text x="{self.LEFT + 6}" y="{y + self.ROW / 2:.1f}" fill="#777" '
                f'font-style="italic">{_e(text)}</text>')


def _drift_chart(report: AuditReport) -> str:
    """Worst drift per model against the tolerance: which ports are exact, which are off and by how much."""
    tolerance, profile = _tolerance(report)
    drifts = [_float(row.drift_rel_l2) for row in report.rows]
    finite = [max(v, LOG_FLOOR) for v in drifts if v is not None and math.isfinite(v)] + [tolerance]
    lo, hi = math.floor(math.log10(min(finite))), math.ceil(math.log10(max(finite)))
    hi = max(hi, lo + 1)
    chart = _BarChart(10.0 ** lo, 10.0 ** hi, len(report.rows))
    parts = chart.open("drift-chart", "Worst drift ‖a−b‖/‖b‖ per model, log scale")
    step = max(1, math.ceil((hi - lo) / 12))
    parts += [chart.tick(10.0 ** d, f"1e{d}") for d in range(lo, hi + 1, step)]
    for i, (row, value) in enumerate(zip(report.rows, drifts)):
        parts.append(chart.label(i, row.model))
        if value is None:
            parts.append(chart.empty(i, row.model, f"no drift measured ({row.status})"))
            continue
        bad = not value <= tolerance  # nan counts as over tolerance
        tip = f"{row.model}: drift {_sci(value)} ({row.status})"
        parts.append(chart.bar(i, row.model, value, chart.LEFT, BAR_BAD if bad else BAR_OK, _sci(value), tip))
    parts.append(chart.marker(tolerance, f"tolerance {tolerance:g} ({profile})"))
    mid = (chart.LEFT + chart.right) / 2
    parts.append(f'<text x="{mid}" y="{chart.height - 6}" text-anchor="middle">worst ‖a−b‖/‖b‖ over cases and '
                 f"outputs (log scale; below {LOG_FLOOR:g} drawn at the left edge, inf at the right)</text>")
    return "\n".join(parts) + "\n</svg>"


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks between lo and hi (both > 0)."""
    ticks = []
    for d in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        ticks += [m * 10.0 ** d for m in (1, 2, 5) if lo <= m * 10.0 ** d <= hi]
    return ticks


def _speed_chart(report: AuditReport) -> str:
    """Converted / source latency per model, diverging from 1× on a log axis, so 2× slower and 2× faster
    are the same length."""
    ratios = [_float(row.measurements.latency_ratio) for row in report.rows]
    finite = [v for v in ratios if v is not None and 0 < v < math.inf]
    span = max([2.0] + [max(v, 1 / v) * 1.15 for v in finite])
    span = 10.0 ** (math.ceil(math.log10(span) * 4) / 4) if span > 2.0 else span  # up to a quarter decade
    chart = _BarChart(1 / span, span, len(report.rows))
    parts = chart.open("speed-chart", "Converted / source latency per model, log scale")
    parts += [chart.tick(t, f"{t:g}×") for t in _nice_ticks(1 / span, span)]
    one = chart.x(1.0)
    for i, (row, value) in enumerate(zip(report.rows, ratios)):
        parts.append(chart.label(i, row.model))
        if value is None or not value > 0:
            parts.append(chart.empty(i, row.model, f"no latency measured ({row.status})"))
            continue
        tip = (f"{row.model}: {_ratio(value)} (converted {_float(row.measurements.converted_latency_ms):.3g} ms, "
               f"source {_float(row.measurements.source_latency_ms):.3g} ms)")
        parts.append(chart.bar(i, row.model, value, one, BAR_SLOW if value > 1 else BAR_FAST, _ratio(value), tip))
    parts.append(chart.marker(1.0, "1× (same speed)"))
    mid = (chart.LEFT + chart.right) / 2
    parts.append(f'<text x="{mid}" y="{chart.height - 6}" text-anchor="middle">converted / source median CPU '
                 "latency (log scale; right of 1× the port is slower)</text>")
    return "\n".join(parts) + "\n</svg>"


def _html_summary(report: AuditReport) -> str:
    meta = [("schema", SCHEMA_VERSION), *((k, json.dumps(strict_json_value(v), ensure_ascii=False))
                                          for k, v in report.options.items())]
    rows = "".join(f"<tr><td><code>{_e(k)}</code></td><td>{_e(v)}</td></tr>" for k, v in meta)
    return (f'<p class="summary">{_e(_summary_text(report))}</p>\n'
            f"<details><summary>Audit options</summary><table>{rows}</table></details>")


def _html_manual_work(report: AuditReport) -> str:
    rows = [(row, item) for row in report.rows for item in row.manual_work]
    if not rows:
        return "<h2>Manual work</h2>\n<p>No manual work: every layer of every readable model has a road.</p>"
    body = "".join(f"<tr><td><code>{_e(row.model)}</code></td><td><code>{_e(item.op)}</code></td>"
                   f'<td class="n">{item.count}</td><td>{_e(item.road or "—")}</td>'
                   f"<td>{', '.join(f'<code>{_e(w)}</code>' for w in item.where) or '—'}</td></tr>"
                   for row, item in rows)
    return ("<h2>Manual work</h2>\n<table><thead><tr><th>model</th><th>op</th><th>count</th><th>road</th>"
            f"<th>where</th></tr></thead><tbody>{body}</tbody></table>")


def _html_effort(report: AuditReport) -> str:
    parts = ["<h2>Effort estimate</h2>",
             f"<p>Formula: <code>{_e(report.effort_formula)}</code></p>" if report.effort_formula
             else "<p>Formula: not recorded.</p>"]
    if report.effort_coefficients:
        rows = "".join(f'<tr><td><code>{_e(k)}</code></td><td class="n">{_e(repr(v))}</td></tr>'
                       for k, v in report.effort_coefficients.items())
        parts.append(f"<table><thead><tr><th>coefficient</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>")
    parts.append(f"<p>Coefficients from <code>{_e(report.effort_source)}</code>.</p>" if report.effort_source
                 else "<p>Coefficients: source not recorded.</p>")
    return "\n".join(parts)


def _html_skipped(report: AuditReport) -> str:
    if not report.skipped:
        return ""
    items = "".join(f"<li><code>{_e(s.get('path', '?'))}</code>: {_e(s.get('reason', ''))}</li>"
                    for s in report.skipped)
    return f"<h2>Skipped files</h2>\n<ul>{items}</ul>"


def to_html(report: AuditReport) -> str:
    """One HTML file with everything inline (no scripts, fonts or stylesheets fetched, and a content policy
    that forbids fetching any), so it opens offline, attached to a CI run or mailed, years later. The charts
    are SVG drawn here; the script only sorts the table."""
    title = f"porttax audit: {len(report.rows)} model(s)"
    csp = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
    body = [f"<h1>{_e(title)}</h1>", _html_summary(report), '<pre id="errors"></pre>',
            "<h2>Porting tax</h2>", _html_table(report),
            "<h2>Drift</h2>", _drift_chart(report), "<h2>Speed</h2>", _speed_chart(report),
            _html_manual_work(report), _html_effort(report), _html_skipped(report)]
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{_e(title)}</title>\n'
            f"<style>\n{_CSS}\n</style>\n<script>\n{_JS_ERRORS}\n</script>\n</head>\n<body>\n"
            + "\n".join(p for p in body if p)
            + f"\n<script>\n{_JS_TABLE}\n</script>\n</body>\n</html>\n")


# ---------------------------------------------------------------- files


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to a hidden temporary sibling, then rename it over `path`: a reader sees the old file or
    the new one, never half of one. The temporary file is removed on any failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_reports(
    report: AuditReport,
    *,
    json_path: str | os.PathLike[str] | None = None,
    markdown_path: str | os.PathLike[str] | None = None,
    csv_path: str | os.PathLike[str] | None = None,
    html_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write each requested rendering, each file whole or not at all (a dashboard polling the JSON while
    an audit rewrites it must never read half a document). Everything is rendered before anything is
    written, so a rendering failure leaves the old reports as they were. Returns the paths written."""
    renderers: list[tuple[str | os.PathLike[str] | None, Callable[[AuditReport], str]]] = [
        (json_path, to_json), (markdown_path, to_markdown), (csv_path, to_csv), (html_path, to_html)]
    texts = [(Path(path), render(report)) for path, render in renderers if path is not None]
    for path, text in texts:
        _write_atomic(path, text)
    return [path for path, _ in texts]
