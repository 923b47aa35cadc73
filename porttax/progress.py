"""Progress on stderr: a redrawn bar on a terminal, a few milestone lines in logs, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_pct = -1
        self._t0 = time.perf_counter()

    def stage(self, message: str) -> None:
        if self.enabled:
            self._end_bar()
            print(f"porttax: {message}", file=self.stream, flush=True)

    def step(self, done: int, total: int, what: str = "") -> None:
        """Report `done` of `total`; redraws in place on a terminal, prints every 25% otherwise."""
        if not self.enabled or total <= 0:
            return
        pct = int(100 * done / total)
        if self.tty:
            width = 28
            filled = int(width * done / total)
            bar = "█" * filled + "·" * (width - filled)
            print(f"\r  {bar} {done}/{total} {what[:40]:<40}", end="", file=self.stream, flush=True)
            self._last_pct = pct
            if done == total:
                print(file=self.stream, flush=True)
        elif pct // 25 > self._last_pct // 25 or done == total:
            self._last_pct = pct
            print(f"  {done}/{total} ({pct}%)", file=self.stream, flush=True)

    def _end_bar(self) -> None:
        if self.tty and 0 <= self._last_pct < 100:
            print(file=self.stream, flush=True)
        self._last_pct = -1


QUIET = Progress(enabled=False)
