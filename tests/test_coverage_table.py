"""The coverage table: generated from the registries against the frameworks' own op lists, and docs/coverage.md
is exactly that table, so the documented coverage can never drift from the code."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from conftest import run_cli

from porttax.operator_sets import coverage

TABLES = coverage.coverage()  # once for the module: reading torch's op list takes a few seconds

DOC = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"
REGENERATE = "regenerate it: .venv/bin/porttax inspect --coverage --markdown > docs/coverage.md"


def _rows(text: str) -> tuple[list[str], dict[tuple[str, str], str]]:
    """(the road headings, {(road, op): table row}) of a coverage Markdown."""
    headings, rows, road = [], {}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            road = line[3:].split(":")[0]
            headings.append(line)
        elif line.startswith("| `"):
            rows[(road, line.split("`")[1])] = line
    return headings, rows


def test_docs_table_is_the_generated_table() -> None:
    want = coverage.markdown(TABLES)
    have = DOC.read_text()
    want_heads, want_rows = _rows(want)
    have_heads, have_rows = _rows(have)
    if want_heads == have_heads:  # the frameworks it was generated with: every line must agree
        assert have == want, f"docs/coverage.md does not match the converters; {REGENERATE}"
        return
    # Another framework release than the table's: each op both lists must still read the same, and what
    # the release added or removed is said (it shows as a refused row in `porttax inspect --coverage`).
    stale = [k for k in set(want_rows) & set(have_rows) if want_rows[k] != have_rows[k]]
    assert not stale, f"docs/coverage.md disagrees with the converters on {sorted(stale)[:10]}; {REGENERATE}"
    changed = sorted(set(want_rows) ^ set(have_rows))
    warnings.warn(f"docs/coverage.md was generated for {have_heads}, installed are {want_heads}: "
                  f"{len(changed)} ops differ ({changed[:10]}); {REGENERATE}")


def test_rows_follow_the_registries() -> None:
    """Out-of-scope rows carry their reason; a converting row names its converter, refused rows none."""
    for table in TABLES:
        assert table.rows, table.road
        for row in table.rows:
            if row.status == coverage.OUT_OF_SCOPE:
                assert row.note and not row.converter, row
            elif row.status == coverage.CONVERTS:
                assert row.converter, row
            else:
                assert row.status == coverage.REFUSED and not row.converter, row
        assert len({r.op for r in table.rows}) == len(table.rows), f"{table.road}: an op listed twice"


def test_out_of_scope_names_exist_in_the_op_lists() -> None:
    """An out-of-scope entry for an op the framework no longer has would hide nothing but mislead."""
    listed = {t.road: {r.op for r in t.rows} for t in TABLES}
    assert {f"aten.{n}" for n in coverage.ATEN_OUT_OF_SCOPE} <= listed["torch → keras"]
    assert set(coverage.KERAS_OUT_OF_SCOPE) <= listed["keras → torch"]
    assert set(coverage.ONNX_OUT_OF_SCOPE) <= listed["onnx → torch"]


def test_cli_prints_the_table_and_refuses_a_model_with_it(tmp_path: Path) -> None:
    proc = run_cli("inspect", "--coverage", "--road", "onnx-torch", "--json")
    assert proc.returncode == 0, proc.stderr
    (table,) = json.loads(proc.stdout)
    assert table["road"] == "onnx → torch" and table["in_scope"] + table["out_of_scope"] == len(table["rows"])
    text = run_cli("inspect", "--coverage", "--road", "torch-keras")
    assert text.returncode == 0 and re.search(r"torch → keras: \d+ of \d+ in-scope core ATen", text.stdout)
    both = run_cli("inspect", str(tmp_path / "m.onnx"), "--coverage")
    assert both.returncode == 2 and "--coverage describes the converters" in both.stderr
    neither = run_cli("inspect")
    assert neither.returncode == 2 and "--coverage" in neither.stderr
