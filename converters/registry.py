"""The converter registry.

Converters are keyed by (source framework, target framework, op, version). Registering the same key
twice raises: a silent overwrite (nobuco's bug class) would make the model a user gets depend on
import order. The registry is also the only coverage table: `coverage()` reads it, so the list of
supported ops can never drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class ConverterKey:
    source: str
    target: str
    op: str
    version: int = 1


@dataclass(frozen=True)
class Converter:
    key: ConverterKey
    fn: Callable
    family: str  # the module that defines it, e.g. "conv"

    @property
    def name(self) -> str:
        return f"{self.family}.{self.fn.__name__}"


class DuplicateConverterError(RuntimeError):
    pass


class Registry:
    def __init__(self) -> None:
        self._converters: dict[ConverterKey, Converter] = {}

    def register(
        self, source: str, target: str, ops: str | Iterable[str], *, version: int = 1
    ) -> Callable[[Callable], Callable]:
        names = [ops] if isinstance(ops, str) else list(ops)

        def decorate(fn: Callable) -> Callable:
            family = fn.__module__.rsplit(".", 1)[-1]
            keys = [ConverterKey(source, target, op, version) for op in names]
            # Check every key before adding any, so a refused registration leaves no trace.
            for key in keys:
                if key in self._converters:
                    other = self._converters[key]
                    raise DuplicateConverterError(
                        f"converter for {key.op} ({source}->{target}, v{version}) registered twice: "
                        f"{other.name} and {family}.{fn.__name__}"
                    )
            for key in keys:
                self._converters[key] = Converter(key, fn, family)
            return fn

        return decorate

    def lookup(self, source: str, target: str, op: str, version: int | None = None) -> Converter | None:
        """The converter for `op`, the highest version not above `version`."""
        best: Converter | None = None
        for key, conv in self._converters.items():
            if (key.source, key.target, key.op) != (source, target, op):
                continue
            if version is not None and key.version > version:
                continue
            if best is None or key.version > best.key.version:
                best = conv
        return best

    def coverage(self, source: str, target: str) -> list[Converter]:
        return sorted(
            (c for k, c in self._converters.items() if (k.source, k.target) == (source, target)),
            key=lambda c: (c.family, c.key.op),
        )

    def __len__(self) -> int:
        return len(self._converters)


REGISTRY = Registry()
