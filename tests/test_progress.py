"""Progress: rich's live bar on a terminal, quarter milestones in a log, nothing when disabled."""

from __future__ import annotations

import io

from porttax.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_bar_that_ends_before_the_next_stage() -> None:
    out = Terminal()
    progress = Progress(stream=out)
    progress.stage("converting")
    for done in range(1, 41):
        progress.step(done, 40, f"layer_{done}")
    progress.stage("checking parity")
    text = out.getvalue()
    assert text.startswith("porttax: converting\n") and text.rstrip().endswith("porttax: checking parity")
    assert "40/40" in text and "layer_40" in text and "━" in text  # rich's bar, redrawn in place
    assert text.count("\n") == 3  # one line per stage, one for the finished bar


def test_a_log_gets_a_line_per_quarter_and_quiet_gets_nothing() -> None:
    log = io.StringIO()
    progress = Progress(stream=log)
    for done in range(1, 101):
        progress.step(done, 100)
    lines = log.getvalue().splitlines()
    assert lines == ["  1/100 (1%)", "  25/100 (25%)", "  50/100 (50%)", "  75/100 (75%)", "  100/100 (100%)"]
    quiet = io.StringIO()
    silent = Progress(enabled=False, stream=quiet)
    silent.stage("x")
    silent.step(1, 1)
    assert quiet.getvalue() == ""
