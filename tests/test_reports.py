"""The parity report renderers: JSON, Markdown, JUnit XML, HTML (with its drift plot) and the terminal table.

Reports are built from real `compare()` results on NumPy arrays and real tolerance profiles, so the
numbers rendered are the numbers a parity run would produce, inf max_rel included.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import xmlschema
from PIL import Image
from rich.console import Console

from porttax.parity.metrics import compare
from porttax.parity.profiles import get_profile, verdict
from porttax.parity.render import (
    FAIL_COLOUR,
    LINE_COLOUR,
    print_table,
    to_html,
    to_json,
    to_junit,
    to_markdown,
    write_reports,
)
from porttax.parity.report import (
    SCHEMA_VERSION,
    BaselineResult,
    CaseResult,
    GenerationResult,
    LayerResult,
    Localization,
    OutputResult,
    ParityReport,
    environment,
)

XSD = Path(__file__).parent / "data" / "junit.xsd"
PROFILE = get_profile("fp32")
LAYERS = ["embed", "blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp", "blocks.2.attn",
          "blocks.2.mlp", "norm", "lm_head"]
FIRST = "blocks.1.attn"  # the 4th layer: the first whose drift passes tolerance
WARNING = "TF32 matmuls were on for the converted model although profile fp32 was asked for"


def _array(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _output(name: str, expected: np.ndarray, actual: np.ndarray) -> OutputResult:
    metrics = compare(actual, expected)
    ok, why = verdict(metrics, PROFILE)
    return OutputResult(name, metrics, ok, why)


def _noisy(x: np.ndarray, scale: float, seed: int) -> np.ndarray:
    return x + scale * np.random.default_rng(seed + 100).standard_normal(x.shape).astype(x.dtype)


def _passing_case(seed: int) -> CaseResult:
    logits, hidden = _array(seed, (4, 10)), _array(seed + 50, (4, 16))
    return CaseResult(f"seed={seed}", [_output("logits", logits, _noisy(logits, 1e-7, seed)),
                                       _output("hidden", hidden, hidden.copy())], seed=seed)


def _failing_case(seed: int) -> CaseResult:
    """logits drift by 1e-2; hidden is 0 at one position where the converted model says 10: max_rel is inf."""
    logits, hidden = _array(seed, (4, 10)), _array(seed + 50, (4, 16))
    hidden[0, 0] = 0.0
    converted_hidden = hidden.copy()
    converted_hidden[0, 0] = 10.0  # 10 / float64 tiny overflows to inf
    return CaseResult(f"seed={seed}", [_output("logits", logits, _noisy(logits, 1e-2, seed)),
                                       _output("hidden", hidden, converted_hidden)], seed=seed)


def _short_case() -> CaseResult:
    logits = _array(7, (4, 10))
    return CaseResult("case2", [_output("logits", logits, logits.copy())],
                      reason="source gave 2 output(s), converted gave 1")


def _localization() -> Localization:
    """Nine layers; drift is 0 at the embedding, tiny up to the 3rd layer, then jumps and grows."""
    scales = [0.0, 1e-8, 3e-8, 2e-3, 4e-3, 8e-3, 1.5e-2, 3e-2, 6e-2]
    layers = []
    for i, (name, scale) in enumerate(zip(LAYERS, scales)):
        out = _output(name, (x := _array(200 + i, (2, 8, 32))), _noisy(x, scale, i))
        layers.append(LayerResult(name, name.replace(".", "-"), i, out.metrics, out.passed, out.reason))
    return Localization("seed=1", layers, first_divergent=FIRST)


def _generation() -> GenerationResult:
    source = [[5, 9, 2, 7, 7, 1, 3, 8], [4, 4, 6, 0, 2, 2, 9, 1]]
    converted = [[5, 9, 2, 7, 7, 6, 6, 8], [4, 4, 6, 0, 2, 2, 9, 1]]
    return GenerationResult(steps=8, prompt_length=5, source_tokens=source, converted_tokens=converted,
                            first_divergent_step=5)


def _baseline() -> BaselineResult:
    return BaselineResult("baseline.json", margin=2.0, passed=False, compared=4,
                          regressions=["seed=1 / logits: rel_l2 1e-07 -> 0.0101"])


def passing_report() -> ParityReport:
    cases = [_passing_case(0), _passing_case(1)]
    return ParityReport(source="torch:tiny_mlp.pt2", converted="keras:tiny_mlp.keras", profile=PROFILE,
                        cases=cases, passed=all(c.passed for c in cases), environment=environment(),
                        model="tiny_mlp")


def failing_report(*, localize: bool = True) -> ParityReport:
    cases = [_passing_case(0), _failing_case(1), _short_case()]
    return ParityReport(source="torch:llama_tiny.pt2", converted="keras:llama_tiny.keras", profile=PROFILE,
                        cases=cases, passed=False, environment=environment(), source_device="cpu",
                        converted_device="cuda:0", warnings=[WARNING],
                        localization=_localization() if localize else None, generation=_generation(),
                        baseline=_baseline(), model="llama_tiny")


def test_fixture_reports_are_what_the_tests_claim() -> None:
    """Guard the fixtures: the failing one really fails where the assertions below expect."""
    ok, bad = passing_report(), failing_report()
    assert ok.passed and all(o.passed for c in ok.cases for o in c.outputs)
    assert [o.passed for o in bad.cases[1].outputs] == [False, False]
    assert math.isinf(bad.cases[1].outputs[1].metrics.max_rel)
    layers = bad.localization.layers
    assert [lay.passed for lay in layers] == [True] * 3 + [False] * 6
    assert layers[0].metrics.rel_l2 == 0.0


# ---------------------------------------------------------------- JSON


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def test_json_is_strict_even_with_inf_max_rel() -> None:
    report = failing_report()
    data = json.loads(to_json(report), parse_constant=_reject_constant)
    assert data["schema_version"] == SCHEMA_VERSION == "1.2"
    assert data["cases"][1]["outputs"][1]["metrics"]["max_rel"] == "inf"
    assert data["first_divergent"] == FIRST
    assert data["localization"]["layers"][3]["name"] == FIRST
    assert data["generation"]["first_divergent_step"] == 5
    assert data["baseline"]["regressions"] == report.baseline.regressions
    assert data["passed"] is False and data["cross_device"] is True


def test_json_keeps_finite_values_as_numbers() -> None:
    report = passing_report()
    data = json.loads(to_json(report), parse_constant=_reject_constant)
    metrics = data["cases"][0]["outputs"][0]["metrics"]
    assert metrics["rel_l2"] == report.cases[0].outputs[0].metrics.rel_l2
    assert metrics["topk_agreement"] == {"1": 1.0}
    assert data["localization"] is None and data["profile"]["threshold"] == 1e-5


# ---------------------------------------------------------------- Markdown


def test_markdown_failing_report_names_the_first_diverging_layer() -> None:
    md = to_markdown(failing_report())
    assert md.startswith("### ❌ FAIL")
    assert "`fp32`" in md and "rel_l2 ≤ 1e-05" in md
    assert f"**First diverging layer: `{FIRST}`**" in md
    assert f"| **`{FIRST}`** |" in md  # bold in the layer table too
    assert "(cross-device)" in md and "cuda:0" in md
    assert f"> - {WARNING}" in md
    assert "| seed=1 | `logits` |" in md and "❌ rel_l2" in md
    assert "*(case)*" in md and "source gave 2 output(s), converted gave 1" in md
    assert "tokens diverge at step 5" in md and "agreement 87.5%" in md
    assert "- seed=1 / logits: rel_l2 1e-07 -&gt; 0.0101" in md
    assert "<summary>Environment</summary>" in md and "| `numpy` |" in md


def test_markdown_layer_table_shows_a_window_around_the_divergence() -> None:
    md = to_markdown(failing_report())
    for name in LAYERS[:8]:  # 3 agreeing layers before, then the first 5 failing
        assert f"`{name}`" in md
    assert "lm_head" not in md  # the 6th failing layer is left out


def test_markdown_passing_report_is_short() -> None:
    md = to_markdown(passing_report())
    assert md.startswith("### ✅ PASS") and "tiny_mlp" in md
    assert "<summary>2 case(s), 4 output(s), all within tolerance</summary>" in md
    assert "First diverging" not in md and "Warnings" not in md
    visible = re.sub(r"<details>.*?</details>", "", md, flags=re.S)
    assert len(visible.splitlines()) < 12


# ---------------------------------------------------------------- JUnit


@pytest.fixture(scope="module")
def junit_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(XSD)


def _testcases(xml: str) -> list[ET.Element]:
    return list(ET.fromstring(xml).iter("testcase"))


def test_junit_validates_and_counts(junit_schema: xmlschema.XMLSchema) -> None:
    report = failing_report()
    xml = to_junit(report)
    junit_schema.validate(xml)
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    cases = _testcases(xml)
    # 5 outputs, 1 case-level failure, generation, baseline
    assert len(cases) == sum(len(c.outputs) for c in report.cases) + 3 == 8
    failed = [tc.get("name") for tc in cases if tc.find("failure") is not None]
    assert failed == ["seed=1 / logits", "seed=1 / hidden", "case2 / (case)", "generation", "baseline"]
    for node in (root, suite):
        assert (node.get("tests"), node.get("failures"), node.get("errors"), node.get("skipped")) == \
               ("8", "5", "0", "0")
        assert float(node.get("time")) == sum(float(tc.get("time")) for tc in cases)
    assert {tc.get("classname") for tc in cases} == {"llama_tiny"}


def test_junit_failure_carries_reason_metrics_and_first_layer() -> None:
    xml = to_junit(failing_report())
    root = ET.fromstring(xml)
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["first_divergent"] == FIRST and props["profile"] == "fp32" and props["schema_version"] == "1.2"
    logits = next(tc for tc in root.iter("testcase") if tc.get("name") == "seed=1 / logits")
    failure = logits.find("failure")
    assert failure.get("type") == "parity" and failure.get("message").startswith("rel_l2 ")
    assert "max_abs" in failure.text and "cosine" in failure.text
    assert f"first diverging layer: {FIRST}" in failure.text
    generation = next(tc for tc in root.iter("testcase") if tc.get("name") == "generation")
    assert "row 0: source [5, 9, 2, 7, 7, 1, 3, 8]" in generation.find("failure").text


def test_junit_many_reports_and_awkward_names(junit_schema: xmlschema.XMLSchema) -> None:
    odd = passing_report()
    odd.model = 'tiny <"mlp"> & co'
    odd.cases[0].outputs[0].name = "out\x01put<1>"
    xml = to_junit([odd, failing_report()])
    junit_schema.validate(xml)
    root = ET.fromstring(xml)
    assert [s.get("name") for s in root.findall("testsuite")] == ['tiny <"mlp"> & co', "llama_tiny"]
    assert (root.get("tests"), root.get("failures")) == ("12", "5")
    assert _testcases(xml)[0].get("name") == "seed=0 / out?put<1>"  # control character replaced, rest kept


def test_junit_schema_rejects_a_testcase_without_name(junit_schema: xmlschema.XMLSchema) -> None:
    root = ET.fromstring(to_junit(passing_report()))
    del next(root.iter("testcase")).attrib["name"]
    assert not junit_schema.is_valid(ET.tostring(root, encoding="unicode"))


# ---------------------------------------------------------------- HTML


def test_html_is_self_contained_with_a_drift_plot() -> None:
    page = to_html(failing_report())
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert page.count('id="drift-plot"') == 1
    assert f"first diverging: {FIRST}" in page
    assert f"<title>#3 {FIRST} → blocks-1-attn: rel_l2" in page  # tooltips name both sides
    assert "tolerance 1e-05" in page and "1e-12" in page  # the threshold line; the floor is stated
    assert WARNING in page and "FAIL · llama_tiny" in page


def test_html_without_localization_says_so() -> None:
    page = to_html(failing_report(localize=False))
    assert "drift-plot" not in page and "No per-layer localization" in page
    assert LINE_COLOUR not in page and FAIL_COLOUR not in page


def test_html_escapes_names() -> None:
    report = passing_report()
    report.cases[0].outputs[0].name = "<img src=x onerror=alert(1)>"
    page = to_html(report)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_undefined_metrics_and_a_clean_localization() -> None:
    """A shape mismatch leaves distances undefined; every renderer shows a dash instead of failing."""
    report = passing_report()
    wrong = _output("logits", _array(0, (4, 10)), _array(0, (4, 9)))
    report.cases[0].outputs[0] = wrong
    report.passed = False
    layers = _localization().layers[:3] + [LayerResult("head", "head", 3, wrong.metrics, False, wrong.reason)]
    report.localization = Localization("seed=0", layers[:3], first_divergent=None)
    md = to_markdown(report)
    assert "| seed=0 | `logits` | — | — | — |" in md and "❌ shape [4, 9] != expected [4, 10]" in md
    assert "no layer exceeds tolerance" in md and "First diverging" not in md
    report.localization = Localization("seed=0", layers, first_divergent="head")
    page = to_html(report)
    assert "first diverging: head" in page and "rel_l2 — (FAIL)" in page  # drawn on the top edge
    assert json.loads(to_json(report), parse_constant=_reject_constant)["worst_rel_l2"] == "inf"
    junit_text = to_junit(report)
    assert "first diverging layer: head (converted as head, case seed=0): rel_l2 —" in junit_text


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no chromium binary found (tried chromium, chromium-browser, google-chrome): install one with "
                "`apt-get install -y chromium`, or run scripts/setup.sh, which does so where apt-get exists")


def _screenshot(page: str, tmp_path: Path, stem: str) -> np.ndarray:
    html_file, png = tmp_path / f"{stem}.html", tmp_path / f"{stem}.png"
    html_file.write_text(page, encoding="utf-8")
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", f"--user-data-dir={tmp_path / f'profile-{stem}'}", f"--screenshot={png}",
           "--window-size=1280,2000", html_file.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.exists(), f"chromium wrote no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}"
    with Image.open(png) as img:
        return np.asarray(img.convert("RGB")).astype(int)


def _pixels_like(image: np.ndarray, colour: str, tol: int = 12) -> int:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.all(np.abs(image - rgb) <= tol, axis=-1).sum())


@pytest.mark.slow
def test_html_drift_plot_renders_in_headless_chromium(tmp_path: Path) -> None:
    with_plot = _screenshot(to_html(failing_report()), tmp_path, "with-plot")
    control = _screenshot(to_html(failing_report(localize=False)), tmp_path, "control")
    assert _pixels_like(with_plot, LINE_COLOUR) > 500  # the drift polyline, ~850 px long
    assert _pixels_like(with_plot, FAIL_COLOUR) > 150  # six failing points and the first-layer marker
    assert _pixels_like(control, LINE_COLOUR) == 0
    assert _pixels_like(control, FAIL_COLOUR) == 0


# ---------------------------------------------------------------- terminal and files


def test_print_table_rows_first_layer_and_warnings() -> None:
    buf = io.StringIO()
    print_table(failing_report(), Console(file=buf, width=160))
    text = buf.getvalue()
    assert "\x1b[" not in text  # not a terminal: plain text
    assert text.startswith("FAIL [fp32, rel_l2 ≤ 1e-05] llama_tiny")
    row = next(line for line in text.splitlines() if line.startswith("seed=1") and "logits" in line)
    assert "FAIL rel_l2" in row and "> 1e-05 (fp32)" in row
    assert "case2" in text and "(case)" in text and "source gave 2 output(s)" in text
    assert f"first diverging layer: {FIRST} (converted as blocks-1-attn, case seed=1): rel_l2 " in text
    assert "generation: greedy decoding" in text and "tokens diverge at step 5" in text
    assert f"warning: {WARNING}" in text


def test_print_table_colours_verdicts_on_a_terminal() -> None:
    console = Console(record=True, force_terminal=True, color_system="standard", width=160)
    print_table(passing_report(), console)
    ansi = console.export_text(styles=True, clear=False)
    assert len(re.findall(r"\x1b\[32mPASS *\x1b\[0m", ansi)) == 4  # green verdicts, padding included
    assert console.export_text().count("PASS") == 5  # headline and four rows


def test_print_table_default_console_on_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(passing_report())
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "seed=0" in out and "hidden" in out


def test_write_reports_writes_each_file_whole(tmp_path: Path) -> None:
    report = failing_report()
    (tmp_path / "parity.xml").write_text("old")
    paths = write_reports(report, json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md",
                          junit_path=tmp_path / "parity.xml", html_path=tmp_path / "sub" / "r.html")
    assert paths == [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "parity.xml", tmp_path / "sub" / "r.html"]
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == to_json(report)
    assert (tmp_path / "parity.xml").read_text(encoding="utf-8") == to_junit(report)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["parity.xml", "r.html", "r.json", "r.md"]
    assert write_reports(report) == []
