"""Progress on stderr: a live bar on a terminal, a few milestone lines in logs, nothing with --quiet.

The terminal bar is `rich`'s (a dependency already): it sizes itself to the terminal, shows the time
left, and redraws without tearing. In a log (CI, a pipe) a redrawn bar is noise, so there porttax
prints one line per quarter of the work instead — `rich` would print nothing at all until the end.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_pct = -1
        self._bar: Any = None  # a running rich.progress.Progress, on a terminal
        self._task: Any = None

    def stage(self, message: str) -> None:
        if self.enabled:
            self._end_bar()
            print(f"porttax: {message}", file=self.stream, flush=True)

    def step(self, done: int, total: int, what: str = "") -> None:
        """Report `done` of `total`: a live bar on a terminal, a line at every 25% otherwise."""
        if not self.enabled or total <= 0:
            return
        if self.tty:
            self._draw(done, total, what)
            return
        pct = int(100 * done / total)
        if pct // 25 > self._last_pct // 25 or done == total:
            self._last_pct = pct
            print(f"  {done}/{total} ({pct}%)", file=self.stream, flush=True)

    def _draw(self, done: int, total: int, what: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                       TimeRemainingColumn)

            self._bar = Bar(TextColumn("  "), BarColumn(bar_width=28), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.description}"), console=Console(file=self.stream))
            self._bar.start()
            self._task = self._bar.add_task(what[:40], total=total)
        self._bar.update(self._task, completed=done, total=total, description=what[:40])
        if done >= total:
            self._end_bar()

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._last_pct = -1


QUIET = Progress(enabled=False)
