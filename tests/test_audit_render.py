"""The audit report renderers: JSON, CSV, Markdown and the self-contained HTML page (sorted in a real
headless Chromium).

The fixture is built by hand to hold every status, an awkward model name, drift that is missing, zero and
infinite, a cached row, manual work and skipped files; the tests check that the four renderings agree
on it row by row, not only that each looks plausible on its own.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_reports import _chromium  # one place that finds the browser

from porttax.audit.render import (
    CSV_COLUMNS,
    from_json,
    to_csv,
    to_html,
    to_json,
    to_markdown,
    write_reports,
)
from porttax.audit.rows import SCHEMA_VERSION, STATUSES, AuditReport, AuditRow, Measurements, RoadResult, WorkItem

WEIRD = 'we<ird & "name".onnx'
PIPE = "pipe|name.pt"
XSS = "<script>alert(1)</script>"


def _measured(conv: float, src_ms: float, conv_ms: float, src_mb: float, conv_mb: float) -> Measurements:
    return Measurements(conversion_seconds=conv, conversion_peak_rss_mb=812.5, source_latency_ms=src_ms,
                        converted_latency_ms=conv_ms, source_memory_mb=src_mb, converted_memory_mb=conv_mb,
                        source_load_seconds=0.4, converted_load_seconds=0.7, audit_seconds=conv + 3.0)


def audit_report() -> AuditReport:
    rows = [
        AuditRow("vision/resnet18.pt2", "pt2", "torch→keras", "converted", road="direct",
                 roads=[RoadResult("direct", "passed", 3.2e-7, 0, 11.0, chosen=True)],
                 layers_total=62, layers_covered=62, params_total=11_689_512, params_covered=11_689_512,
                 dtypes={"float32": 11_689_512}, drift_rel_l2=3.2e-7, drift_max_abs=1.1e-5, top1_agreement=1.0,
                 transposes_inserted=2, source_bytes=46_830_571, converted_bytes=46_912_004, effort_hours=0.0,
                 content_hash="sha256:aa01", measurements=_measured(4.25, 11.0, 13.2, 120.0, 150.0)),
        AuditRow("nlp/bert_tiny", "hf_folder", "torch→keras", "converted", road="onnx",
                 roads=[RoadResult("direct", "not converted", reason="aten.scaled_dot_product_attention"),
                        RoadResult("onnx", "passed", 8.1e-6, 14, 3.1, chosen=True)],
                 layers_total=40, layers_covered=40, params_total=4_385_920, params_covered=4_385_920,
                 drift_rel_l2=8.1e-6, drift_max_abs=2.2e-5, first_diverging_layer=None, transposes_inserted=14,
                 source_bytes=17_561_000, converted_bytes=17_600_128, effort_hours=0.5,
                 effort_terms={"op types": 0.5}, content_hash="sha256:bb02", cached=True,
                 measurements=_measured(0.137, 2.5, 3.1, 80.0, 72.0)),
        AuditRow(WEIRD, "onnx", "onnx→keras", "drifted", reason="no road held parity: worst 2.5e-3 > 1e-5",
                 road="onnx", roads=[RoadResult("onnx", "failed parity", 2.5e-3, 3, chosen=True)],
                 layers_total=10, layers_covered=9, params_total=1000, params_covered=990,
                 drift_rel_l2=0.0025, drift_max_abs=0.31, top1_agreement=0.875,
                 first_diverging_layer="blocks.1|attn", source_bytes=4096, converted_bytes=8192,
                 effort_hours=6.0, effort_terms={"drift investigation": 6.0}, content_hash="sha256:cc03",
                 measurements=_measured(1.5, 4.0, 2.0, 50.0, 50.0)),
        AuditRow(PIPE, "state_dict", "torch→keras", "unsupported",
                 reason="2 op type(s) without a road | see manual work",
                 layers_total=20, layers_covered=17, params_total=5000, params_covered=4200,
                 manual_work=[WorkItem("aten.foo", 2, ["layer1.conv", "layer2.conv"], "direct"),
                              WorkItem("Bar", 1, ["x"], "onnx")],
                 effort_hours=9.25, effort_terms={"op types": 8.0, "occurrences": 0.75, "base": 0.5},
                 content_hash="sha256:dd04", measurements=Measurements(source_latency_ms=1.0)),
        AuditRow("broken.safetensors", "safetensors", "torch→keras", "error",
                 reason=f"header is not JSON\nbyte 17: {XSS}", content_hash="sha256:ee05"),
        AuditRow("huge/llama.pt2", "pt2", "torch→keras", "timeout", reason="past the 600 s limit",
                 layers_total=300, layers_covered=280, content_hash="sha256:ff06",
                 measurements=Measurements(audit_seconds=600.0)),
        AuditRow("segv.onnx", "onnx", "onnx→keras", "crashed", reason="worker died with signal 11 (SIGSEGV)",
                 content_hash="sha256:0707"),
        AuditRow("exploding.keras", "keras", "keras→torch", "drifted", reason="converted output overflows to inf",
                 road="direct", roads=[RoadResult("direct", "failed parity", math.inf, chosen=True)],
                 layers_total=5, layers_covered=5, params_total=100, params_covered=100,
                 drift_rel_l2=math.inf, drift_max_abs=math.nan, first_diverging_layer="dense_2",
                 effort_hours=4.0, content_hash="sha256:0808",
                 measurements=_measured(0.9, 1.0, 0.5, 30.0, 31.0)),
        AuditRow("exact.h5", "h5", "keras→torch", "converted", road="direct", layers_total=3, layers_covered=3,
                 params_total=30, params_covered=30, drift_rel_l2=0.0, drift_max_abs=0.0, source_bytes=2048,
                 converted_bytes=1024, effort_hours=0.0, content_hash="sha256:0909", cached=True,
                 measurements=_measured(0.05, 0.2, 0.2, 10.0, 10.0)),
    ]
    return AuditReport(
        rows=rows,
        options={"to": "keras", "roads": ["direct", "onnx"], "seeds": [0, 1], "profile": "fp32", "jobs": 2},
        effort_formula="hours = 4 × op types + 0.25 × occurrences + 6 × drifted + 0.5 × base",
        effort_coefficients={"op_type": 4.0, "occurrence": 0.25, "drifted": 6.0, "base": 0.5},
        effort_source="porttax/audit/effort.toml",
        skipped=[{"path": "notes/readme.txt", "reason": "not a model file"},
                 {"path": "data|train.csv", "reason": "CSV & such: no weights"}],
        porttax_version="0.1.0", created="2025-01-02T03:04:05Z", jobs_run=7)


REPORT = audit_report()
MODELS = [row.model for row in REPORT.rows]
DRIFTS = [row.drift_rel_l2 for row in REPORT.rows]
DRIFT_DESC = (sorted((r for r in REPORT.rows if r.drift_rel_l2 is not None), key=lambda r: -r.drift_rel_l2)
              + [r for r in REPORT.rows if r.drift_rel_l2 is None])


def test_fixture_covers_what_the_tests_claim() -> None:
    assert set(STATUSES) <= {row.status for row in REPORT.rows} and len(REPORT.rows) >= 8
    assert None in DRIFTS and math.inf in DRIFTS and 0.0 in DRIFTS
    assert any(row.cached for row in REPORT.rows) and any(row.manual_work for row in REPORT.rows)
    assert REPORT.skipped and WEIRD in MODELS
    # the drift order the browser test expects: inf first, blanks last in audit order
    assert [r.model for r in DRIFT_DESC] == ["exploding.keras", WEIRD, "nlp/bert_tiny", "vision/resnet18.pt2",
                                             "exact.h5", PIPE, "broken.safetensors", "huge/llama.pt2", "segv.onnx"]


# ---------------------------------------------------------------- parsing helpers


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def _json_float(value: Any) -> float | None:
    """A JSON number field: None, a number, or one of the strings "inf"/"-inf"/"nan"."""
    return None if value is None else float(value)


def _same_float(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


class _Dom(HTMLParser):
    """Just what the tests read from a page: body attributes, the #errors text, table rows with their
    cells, and the rect.bar / rect.slot elements of each chart."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.body: dict[str, str] = {}
        self.errors: str | None = None
        self.rows: list[dict[str, Any]] = []
        self.bars: dict[str, list[dict[str, str]]] = {}
        self.slots: dict[str, list[dict[str, str]]] = {}
        self.external: list[str] = []
        self._in_errors = self._in_tbody = False
        self._chart: str | None = None
        self._cell: dict[str, Any] | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.external += [v for k, v in a.items() if k in ("src", "href") and v]
        if tag == "body":
            self.body = a
        elif tag == "pre" and a.get("id") == "errors":
            self._in_errors, self.errors = True, ""
        elif tag == "table" and a.get("id") == "models":
            self._in_table = True
        elif tag == "tbody" and getattr(self, "_in_table", False):
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.rows.append({"attrs": a, "cells": []})
        elif tag == "td" and self._in_tbody:
            self._cell = {"attrs": a, "text": ""}
            self.rows[-1]["cells"].append(self._cell)
        elif tag == "svg" and "chart" in a.get("class", "").split():
            self._chart = a["id"]
            self.bars[self._chart], self.slots[self._chart] = [], []
        elif tag == "rect" and self._chart is not None:
            classes = a.get("class", "").split()
            if "bar" in classes:
                self.bars[self._chart].append(a)
            elif "slot" in classes:
                self.slots[self._chart].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_errors = False
        elif tag == "tbody":
            self._in_tbody = self._in_table = False
        elif tag == "td":
            self._cell = None
        elif tag == "svg":
            self._chart = None

    def handle_data(self, data: str) -> None:
        if self._in_errors:
            self.errors = (self.errors or "") + data
        if self._cell is not None:
            self._cell["text"] += data

    def column(self, index: int) -> list[dict[str, Any]]:
        return [row["cells"][index] for row in self.rows]


_HTML_KEYS = ["model", "format", "direction", "status", "road", "layer_coverage", "param_coverage",
              "drift_rel_l2", "first_diverging_layer", "latency_ratio", "memory_ratio", "size_ratio",
              "conversion_seconds", "effort_hours"]
DRIFT_COL = _HTML_KEYS.index("drift_rel_l2")


def _md_cells(line: str) -> list[str]:
    """A Markdown table row's cells, split on unescaped pipes."""
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]


def _md_text(cell: str) -> str:
    """Undo the renderer's escaping: a code span's fence, escaped pipes, HTML entities outside code."""
    if cell.startswith("`"):
        fence = re.match(r"`+", cell).group()
        inner = cell[len(fence):-len(fence)]
        return (inner[1:-1] if inner.startswith(" ") and inner.endswith(" ") and inner.strip() else inner) \
            .replace("\\|", "|")
    return html.unescape(cell.replace("\\|", "|"))


def _md_table(md: str) -> list[list[str]]:
    lines = md.split("## Porting tax\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert lines[1].startswith("|---")
    return [_md_cells(line) for line in lines[2:]]


# ---------------------------------------------------------------- JSON


def test_json_is_strict_and_round_trips() -> None:
    text = to_json(REPORT)
    assert text.endswith("}\n")
    data = json.loads(text, parse_constant=_reject_constant)
    assert data["schema_version"] == SCHEMA_VERSION == "1.1"
    assert [m["model"] for m in data["models"]] == MODELS
    worst = data["models"][MODELS.index("exploding.keras")]
    assert worst["drift_rel_l2"] == "inf" and worst["drift_max_abs"] == "nan"
    assert worst["roads"][0]["drift_rel_l2"] == "inf"
    assert data["summary"] == {"models": 9, "by_status": {"converted": 3, "drifted": 2, "unsupported": 1, "error": 1,
                                                          "timeout": 1, "crashed": 1},
                               "effort_hours": 19.75, "cached": 2, "jobs_run": 7}
    assert data["models"][0]["measurements"]["latency_ratio"] == 13.2 / 11.0
    # from_dict keeps what it is given, so the JSON it renders back is the same JSON
    assert json.loads(to_json(AuditReport.from_dict(data)), parse_constant=_reject_constant) == data
    # from_json restores the non-finite floats, so the report itself comes back
    back = from_json(text)
    assert back.rows[MODELS.index("exploding.keras")].drift_rel_l2 == math.inf
    assert math.isnan(back.rows[MODELS.index("exploding.keras")].drift_max_abs)
    assert to_json(back) == text and to_csv(back) == to_csv(REPORT) and to_html(back) == to_html(REPORT)


def test_from_json_refuses_another_major_version() -> None:
    data = json.loads(to_json(REPORT))
    data["schema_version"] = "2.0"
    with pytest.raises(ValueError, match="schema"):
        from_json(json.dumps(data))


# ---------------------------------------------------------------- the renderings agree


def test_csv_columns_and_exact_numbers() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(REPORT))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    data = json.loads(to_json(REPORT), parse_constant=_reject_constant)
    assert [r["model"] for r in rows] == MODELS
    for got, want in zip(rows, data["models"]):
        assert got["status"] == want["status"]
        for key in ("drift_rel_l2", "drift_max_abs", "layer_coverage", "size_ratio", "effort_hours"):
            cell = got[key]
            assert _same_float(float(cell) if cell else None, _json_float(want[key])), (got["model"], key)
        for key in ("conversion_seconds", "latency_ratio", "memory_ratio"):
            cell = got[key]
            assert _same_float(float(cell) if cell else None, _json_float(want["measurements"][key]))
    weird = rows[MODELS.index(PIPE)]
    assert weird["manual_work"] == "aten.foo ×2 (layer1.conv, layer2.conv); Bar ×1 (x)"
    assert weird["drift_rel_l2"] == "" and weird["road"] == "" and weird["cached"] == "false"
    assert rows[MODELS.index("exploding.keras")]["drift_rel_l2"] == "inf"
    assert rows[MODELS.index("nlp/bert_tiny")]["cached"] == "true"
    assert rows[MODELS.index("broken.safetensors")]["reason"] == f"header is not JSON\nbyte 17: {XSS}"
    assert rows[0]["params_total"] == "11689512" and rows[0]["conversion_seconds"] == "4.25"


def test_markdown_table_agrees_with_json() -> None:
    md = to_markdown(REPORT)
    table = _md_table(md)
    assert all(len(cells) == 12 for cells in table)  # no pipe in a name or layer broke a row
    assert [_md_text(c[0]) for c in table] == MODELS
    assert [_md_text(c[2]) for c in table] == [row.status for row in REPORT.rows]
    for cells, drift in zip(table, DRIFTS):
        assert cells[5] == ("—" if drift is None else f"{drift:.2e}")
        if drift is not None:
            assert float(cells[5]) == float(f"{drift:.2e}")
    weird = table[MODELS.index(WEIRD)]
    assert _md_text(weird[6]) == "blocks.1|attn" and weird[7] == "0.50×" and weird[10] == "1.5 s"
    assert table[MODELS.index("nlp/bert_tiny")][10] == "0.137 s (cached)"
    assert table[0][4] == "100.0% / 100.0%" and table[MODELS.index(PIPE)][4] == "85.0% / 84.0%"


def test_markdown_sections_and_escaping() -> None:
    md = to_markdown(REPORT)
    assert md.startswith("# porttax audit: 9 model(s)\n")
    summary = md.split("\n\n")[1]
    assert "Audited 9 model(s) with porttax 0.1.0" in summary
    assert "3 converted, 2 drifted, 1 unsupported, 1 error, 1 timeout, 1 crashed" in summary
    assert "19.75 hours" in summary and "2 of 9 came from the cache; 7 measured in this run" in summary
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings == ["Porting tax", "Manual work", "Not converted", "Effort estimate", "Skipped files"]
    assert "| `pipe\\|name.pt` | `aten.foo` | 2 | direct | `layer1.conv`, `layer2.conv` |" in md
    assert "| `pipe\\|name.pt` | `Bar` | 1 | onnx | `x` |" in md
    assert "- `pipe\\|name.pt` — **unsupported**: 2 op type(s) without a road \\| see manual work" in md
    # the newline in a reason stays on one line, and its HTML is shown, not run
    assert ("- `broken.safetensors` — **error**: header is not JSON byte 17: "
            "&lt;script&gt;alert(1)&lt;/script&gt;") in md
    assert XSS not in md
    assert f"Formula: `{REPORT.effort_formula}`" in md and "| `occurrence` | 0.25 |" in md
    assert "Coefficients from `porttax/audit/effort.toml`." in md
    assert "| `pipe\\|name.pt` | 9.25 | op types 8 + occurrences 0.75 + base 0.5 |" in md
    assert "- `data\\|train.csv`: CSV &amp; such: no weights" in md
    not_converted = md.split("## Not converted\n\n")[1].split("\n\n")[0].splitlines()
    assert len(not_converted) == sum(row.status != "converted" for row in REPORT.rows)


def test_html_agrees_with_json() -> None:
    dom = _Dom(to_html(REPORT))
    assert [r["attrs"]["data-model"] for r in dom.rows] == MODELS
    assert [r["attrs"]["data-status"] for r in dom.rows] == [row.status for row in REPORT.rows]
    assert [html.unescape(c["attrs"]["data-v"]) for c in dom.column(0)] == MODELS
    for cell, drift in zip(dom.column(DRIFT_COL), DRIFTS):
        assert cell["text"] == ("—" if drift is None else f"{drift:.2e}")
        assert _same_float(float(cell["attrs"]["data-v"]) if cell["attrs"]["data-v"] else None, drift)
    for row, cell in zip(REPORT.rows, dom.column(_HTML_KEYS.index("status"))):
        assert f"st-{row.status}" in cell["attrs"]["class"]
        assert cell["text"].startswith(row.status)
        if row.status != "converted":  # the reason shows, and is the tooltip
            assert row.reason.replace("\n", " ") in cell["text"].replace("\n", " ")
            assert cell["attrs"]["title"] == row.reason
    with_drift = [r.model for r in REPORT.rows if r.drift_rel_l2 is not None]
    assert [b["data-model"] for b in dom.bars["drift-chart"]] == with_drift
    assert [s["data-model"] for s in dom.slots["drift-chart"]] == [m for m in MODELS if m not in with_drift]
    with_ratio = [r.model for r in REPORT.rows if r.measurements.latency_ratio is not None]
    assert [b["data-model"] for b in dom.bars["speed-chart"]] == with_ratio
    assert [float(b["data-value"]) for b in dom.bars["speed-chart"]] == \
           [r.measurements.latency_ratio for r in REPORT.rows if r.measurements.latency_ratio is not None]


def test_html_is_self_contained_and_escaped() -> None:
    page = to_html(REPORT)
    assert not re.search(r"https?://", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert _Dom(page).external == []
    assert WEIRD not in page and "we&lt;ird &amp; &quot;name&quot;.onnx" in page
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 2  # the renderer's own two, nothing from the report
    assert page.count('<svg class="chart" id="drift-chart"') == 1 and page.count('id="speed-chart"') == 1
    assert "tolerance 1e-05 (fp32)" in page and "1× (same speed)" in page
    assert "no drift measured (unsupported)" in page
    assert REPORT.effort_formula in html.unescape(page)
    assert "porttax/audit/effort.toml" in page and "data|train.csv" in page


def test_empty_report_renders_everywhere() -> None:
    empty = AuditReport(rows=[])
    assert json.loads(to_json(empty))["models"] == []
    assert to_csv(empty) == ",".join(CSV_COLUMNS) + "\n"
    assert "No models." in to_markdown(empty) and "Formula: not recorded." in to_markdown(empty)
    dom = _Dom(to_html(empty))
    assert dom.rows == [] and dom.bars == {"drift-chart": [], "speed-chart": []}


# ---------------------------------------------------------------- headless Chromium


def _browser_dom(page: str, tmp_path: Path, fragment: str, stem: str) -> _Dom:
    """Load the page in headless Chromium, let its scripts run, and parse the DOM it ends with."""
    html_file = tmp_path / f"{stem}.html"
    html_file.write_text(page, encoding="utf-8")
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / f'profile-{stem}'}", "--virtual-time-budget=5000", "--dump-dom",
           html_file.as_uri() + fragment]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "</html>" in done.stdout, \
        f"chromium failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
    return _Dom(done.stdout)


def _assert_page_ran(dom: _Dom) -> None:
    assert dom.body.get("data-ready") == "1"
    assert dom.errors == ""
    assert len(dom.rows) == len(REPORT.rows)
    assert len(dom.bars["drift-chart"]) == sum(r.drift_rel_l2 is not None for r in REPORT.rows)
    assert len(dom.bars["speed-chart"]) == sum(r.measurements.latency_ratio is not None for r in REPORT.rows)


@pytest.mark.slow
@pytest.mark.parametrize(("fragment", "expected"), [
    ("", MODELS),
    ("#sort=drift_rel_l2:desc", [r.model for r in DRIFT_DESC]),
    ("#sort=latency_ratio", [r.model for r in sorted((r for r in REPORT.rows if r.measurements.latency_ratio),
                                                     key=lambda r: r.measurements.latency_ratio)]
     + [r.model for r in REPORT.rows if r.measurements.latency_ratio is None]),
    ("#sort=model:desc", sorted(MODELS, key=str.lower, reverse=True)),
], ids=["original", "drift-desc", "speed-asc", "model-desc"])
def test_html_sorts_in_headless_chromium(tmp_path: Path, fragment: str, expected: list[str]) -> None:
    dom = _browser_dom(to_html(REPORT), tmp_path, fragment, "audit")
    _assert_page_ran(dom)
    assert [r["attrs"]["data-model"] for r in dom.rows] == expected
    if fragment.startswith("#sort=drift"):
        values = [c["attrs"]["data-v"] for c in dom.column(DRIFT_COL)]
        numbers = [float(v) for v in values if v]
        assert numbers == sorted(numbers, reverse=True) and values[len(numbers):] == [""] * (len(values) - len(numbers))


@pytest.mark.slow
def test_page_errors_reach_the_errors_element(tmp_path: Path) -> None:
    """Guard the guard: a script error and a bad sort key do show up in #errors, so `errors == ""` above
    means something."""
    page = to_html(REPORT).replace("</body>", "<script>throw new Error('boom from test')</script>\n</body>")
    dom = _browser_dom(page, tmp_path, "#sort=no_such_column", "broken")
    assert dom.body.get("data-ready") == "1"  # the table script still finished
    assert "boom from test" in dom.errors and "no column to sort by: no_such_column" in dom.errors
    assert [r["attrs"]["data-model"] for r in dom.rows] == MODELS


# ---------------------------------------------------------------- files


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_write_reports_writes_each_file_whole(tmp_path: Path) -> None:
    (tmp_path / "audit.json").write_text("old")
    paths = write_reports(REPORT, json_path=tmp_path / "audit.json", markdown_path=str(tmp_path / "audit.md"),
                          csv_path=tmp_path / "out" / "audit.csv", html_path=tmp_path / "out" / "deep" / "audit.html")
    assert paths == [tmp_path / "audit.json", tmp_path / "audit.md", tmp_path / "out" / "audit.csv",
                     tmp_path / "out" / "deep" / "audit.html"]
    assert (tmp_path / "audit.json").read_text(encoding="utf-8") == to_json(REPORT)
    assert (tmp_path / "audit.md").read_text(encoding="utf-8") == to_markdown(REPORT)
    assert (tmp_path / "out" / "audit.csv").read_bytes() == to_csv(REPORT).encode()
    assert (tmp_path / "out" / "deep" / "audit.html").read_text(encoding="utf-8") == to_html(REPORT)
    assert _files(tmp_path) == ["audit.json", "audit.md", "out/audit.csv", "out/deep/audit.html"]
    mode = (tmp_path / "audit.md").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # like any file the user writes, not mkstemp's private 0600
    assert write_reports(REPORT) == []


def test_write_reports_failure_keeps_the_old_file_and_no_temporary(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "audit.json"
    target.write_text("old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_reports(REPORT, json_path=target)
    assert target.read_text() == "old" and _files(tmp_path) == ["audit.json"]
