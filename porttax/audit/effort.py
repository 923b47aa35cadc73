"""The manual-work estimate in hours: a formula the report prints, with coefficients from a file a
team edits (`porttax/audit/effort.toml` is the default), so nobody has to trust a hidden number."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from porttax.errors import InputError

DEFAULT_FILE = Path(__file__).with_name("effort.toml")
KEYS = ("per_op_type", "per_occurrence", "parity_failure", "unreadable", "timeout")


@dataclass(frozen=True)
class EffortModel:
    coefficients: dict[str, float]
    source: str

    @property
    def formula(self) -> str:
        c = self.coefficients
        return (f"hours = {c['per_op_type']:g} × unsupported op types + {c['per_occurrence']:g} × their occurrences"
                f" + {c['parity_failure']:g} × [no road held parity]"
                f" + {c['unreadable']:g} × [file unreadable] + {c['timeout']:g} × [timed out]")

    def estimate(self, row: Any) -> tuple[float, dict[str, float]]:
        """(hours, term -> hours) for an AuditRow; terms that are zero are left out. Only what the row
        says deterministically enters (no latency), so the same fleet always gets the same estimate."""
        c = self.coefficients
        terms = {
            "unsupported op types": c["per_op_type"] * len({w.op for w in row.manual_work}),
            "occurrences": c["per_occurrence"] * sum(w.count for w in row.manual_work),
            "parity failure": c["parity_failure"] * (row.status == "drifted"),
            "unreadable": c["unreadable"] * (row.status == "error"),
            "timeout": c["timeout"] * (row.status == "timeout"),
        }
        terms = {k: float(v) for k, v in terms.items() if v}
        return sum(terms.values()), terms


def load_effort(path: str | Path | None = None) -> EffortModel:
    """Coefficients from `path` (TOML, an [effort] table), the defaults filling keys it leaves out."""
    with open(DEFAULT_FILE, "rb") as f:
        coefficients = {k: float(v) for k, v in tomllib.load(f)["effort"].items()}
    if path is None:
        return EffortModel(coefficients, str(DEFAULT_FILE))
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f).get("effort", {})
    except FileNotFoundError:
        raise InputError("no such effort file", path=str(path), hint=f"copy {DEFAULT_FILE} and edit it") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path=str(path)) from None
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise InputError(f"unknown effort coefficient(s) {', '.join(unknown)}", path=str(path),
                         hint=f"the [effort] table takes: {', '.join(KEYS)}")
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InputError(f"effort coefficient {key} must be a non-negative number, got {value!r}", path=str(path))
        coefficients[key] = float(value)
    return EffortModel(coefficients, str(path))
