"""porttax.targets: one module per output — write it atomically, reload it as a user would, check it.

Each target module converts a loaded source to its format and proves the artefact with the parity
suite before it is moved into place (through `porttax.targets._check`), and registers itself here
with `register_target`: its name, the aliases `--to` accepts, the output suffixes that pick it when
`--to` is left out, what it needs of `-o`, and its *ways* — for each kind of source it takes
("torch", "onnx", "keras"), what the pipeline must hand it (`Way.needs`), the options it honours and
the function that writes and checks the artefact. `porttax.convert` is a pipeline over this registry
(`resolve` → `Target.admit` → load → build → `Way.write`) and the CLI reads it too; nothing else keeps
a list of targets or dispatches on a target's name. Adding a target is one module in this package
that calls `register_target` (discovered by `load_all`), plus its test.

May import: the base, the sources, the converters and the parity suite. Never the orchestration
(`porttax.conversion`, `porttax.routes`, `porttax.inspection`, the CLI).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from porttax.errors import InputError
from porttax.types import ConversionResult, ConvertJob

KIND_NAMES = {"torch": "a PyTorch source", "onnx": "an ONNX file", "keras": "a Keras source"}

# Options only some ways honour, with the value that means "not asked for" and the flag the CLI spells.
# Given to a way that does not list it, an option is refused by name rather than silently ignored.
OPTIONS: dict[str, tuple[Any, str]] = {
    "jit": (False, "--jit"), "channels_first": (False, "--channels-first"), "dtype": (None, "--dtype"),
    "max_shard_size": (None, "--max-shard-size"), "weight_map_from": (None, "--weight-map"),
    "max_cache_len": (None, "--max-cache-len"), "route": ("fallback", "--route"),
    "quantize": (None, "--quantize"), "calibration": (None, "--calibration"),
}

# What the pipeline hands a way (Way.needs): the source untouched, for a way that loads it itself;
# a loaded source (`job.src`); a loaded source whose whole exported program is in memory (a
# streamed checkpoint is read in full); or a Keras model built from it by the chosen road
# (`job.model`, `job.log`, `job.layer_map`, `job.roads`).
NEEDS = ("source", "loaded", "program", "keras")


@dataclass(frozen=True)
class Way:
    """How one target takes one kind of source."""

    write: Callable[[ConvertJob], ConversionResult]  # writes atomically, checks, prices; returns the result
    needs: str = "loaded"  # one of NEEDS
    options: tuple[str, ...] = ()  # keys of OPTIONS this way honours
    in_memory: bool = False  # without -o, the converted model is returned in memory (the Python API)


@dataclass(frozen=True)
class Target:
    """What `convert` and the CLI need to know of one output format before any framework loads."""

    name: str  # the canonical `--to` value
    summary: str  # one line: what the user gets
    aliases: tuple[str, ...] = ()  # other `--to` spellings (compared without case, '-' or '_')
    suffixes: tuple[str, ...] = ()  # `-o` endings that pick this target when `--to` is absent
    output: str = "optional"  # "optional" (in memory without -o), "required", or "suffix" (required, with a suffix)
    output_hint: str = ""  # what to pass as -o, for the error when it is missing or wrong
    ways: Mapping[str, Way] = field(default_factory=dict, compare=False)  # by source kind
    prepare: Callable[[ConvertJob], None] | None = field(default=None, compare=False)  # fast checks, tools
    refusal_hint: str = ""  # for a source kind the target has no way for

    def way(self, kind: str, source: Any = None) -> Way:
        """This target's way for `kind`, or a clear error naming the kinds it takes (and the source)."""
        if kind not in self.ways:
            takes = " or ".join(KIND_NAMES[k] for k in self.ways)
            raise InputError(f"--to {self.name} takes {takes}, not {KIND_NAMES.get(kind, kind)}",
                             path=str(source) if isinstance(source, (str, Path)) else None,
                             hint=self.refusal_hint or "porttax targets lists what each target takes")
        return self.ways[kind]

    def admit(self, job: ConvertJob) -> Way:
        """Refuse, before anything slow, a source kind, an option or an output this target cannot take;
        then run its own quick checks (`prepare`: an output folder's name, a tool it needs)."""
        way = self.way(job.kind, job.source)
        for option, (unset, flag) in OPTIONS.items():
            if option not in way.options and getattr(job, option) != unset:
                raise InputError(f"{flag} does not apply to --to {self.name} from {KIND_NAMES[job.kind]}",
                                 path=str(job.source) if isinstance(job.source, (str, Path)) else None,
                                 hint=f"{flag} applies to {_takers(option)}")
        if not (way.in_memory and job.output is None):
            self.check_output(job.output)
        if self.prepare is not None:
            self.prepare(job)
        return way

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


def _takers(option: str) -> str:
    """Which targets honour `option`, from which sources: for the error that refuses it elsewhere."""
    load_all()
    found = []
    for t in all_targets():
        kinds = [KIND_NAMES[k] for k, w in t.ways.items() if option in w.options]
        if kinds:
            found.append(f"--to {t.name} ({t.summary}) from {' or '.join(kinds)}")
    return "; ".join(found) or "no target"


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
