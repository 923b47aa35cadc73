"""porttax.targets: one module per output — write it atomically, reload it as a user would, check it.

Each target module converts a loaded source to its format and proves the artefact with the parity
suite before it is moved into place (through `porttax.targets._check`), and registers itself here
with `register_target`: its name, the aliases `--to` accepts, the output suffixes that pick it when
`--to` is left out, and what it needs of `-o`. `porttax.convert` and the CLI read this registry
(`resolve`, `for_output`, `all_targets`); nothing else keeps a list of targets. Adding a target is
one module in this package that calls `register_target` (discovered by `load_all`), plus its test.

May import: the base, the sources, the converters and the parity suite. Never the orchestration
(`porttax.conversion`, `porttax.routes`, `porttax.inspection`, the CLI).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

from porttax.errors import InputError


@dataclass(frozen=True)
class Target:
    """What `convert` and the CLI need to know of one output format before any framework loads."""

    name: str  # the canonical `--to` value
    summary: str  # one line: what the user gets
    aliases: tuple[str, ...] = ()  # other `--to` spellings (compared without case, '-' or '_')
    suffixes: tuple[str, ...] = ()  # `-o` endings that pick this target when `--to` is absent
    output: str = "optional"  # "optional" (in memory without -o), "required", or "suffix" (required, with a suffix)
    output_hint: str = ""  # what to pass as -o, for the error when it is missing or wrong

    def check_output(self, output: str | Path | None) -> None:
        """Refuse a missing or misnamed `-o` before the slow part starts."""
        if self.output == "optional" and (output is None or not self.suffixes):
            return
        if output is None:
            raise InputError(f"--to {self.name} writes {self.summary}; give an output path", hint=self.output_hint)
        if self.output in ("suffix", "optional") and not any(str(output).lower().endswith(s) for s in self.suffixes):
            raise InputError(f"--to {self.name} writes {self.summary}, which must end in {' or '.join(self.suffixes)}",
                             path=str(output), hint=self.output_hint)


_TARGETS: dict[str, Target] = {}
_LOADED = False


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def register_target(target: Target) -> Target:
    """Add a target; a name, alias or suffix another target already owns raises (no silent overwrite)."""
    taken = {_key(n): t.name for t in _TARGETS.values() for n in (t.name, *t.aliases)}
    for spelling in (target.name, *target.aliases):
        if _key(spelling) in taken:
            raise ValueError(f"target {target.name!r}: {spelling!r} is already taken by {taken[_key(spelling)]!r}")
    owners = {s: t.name for t in _TARGETS.values() for s in t.suffixes}
    for suffix in target.suffixes:
        if suffix in owners:
            raise ValueError(f"target {target.name!r}: suffix {suffix!r} is already taken by {owners[suffix]!r}")
    _TARGETS[target.name] = target
    return target


def load_all() -> None:
    """Import every module of this package once, so each registers its target(s)."""
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True


def all_targets() -> list[Target]:
    """Every registered target, by name: registration order depends on which target modules something
    imported first, and `--help`, `porttax targets` and error hints must not."""
    load_all()
    return sorted(_TARGETS.values(), key=lambda t: t.name)


def resolve(to: str) -> Target:
    """The target `--to` names (any registered spelling), or a clear error listing them all."""
    load_all()
    for target in _TARGETS.values():
        if _key(to) in {_key(n) for n in (target.name, *target.aliases)}:
            return target
    raise InputError(f"unknown target {to!r}", hint=f"use one of: {', '.join(t.name for t in all_targets())}")


def for_output(output: str | Path) -> Target | None:
    """The target an output path's ending picks (longest suffix first: `.weights.h5` before `.h5`)."""
    load_all()
    name = str(output).lower()
    by_suffix = sorted(((s, t) for t in _TARGETS.values() for s in t.suffixes), key=lambda st: -len(st[0]))
    return next((t for s, t in by_suffix if name.endswith(s)), None)
