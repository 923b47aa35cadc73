"""Weight-layout transforms that know their inverse.

A port is (source key, target path, transform). Because every transform can be inverted, one mapping
serves both directions, and a round-trip test (apply, then invert) proves it for every port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class Transform:
    def apply(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse(self) -> "Transform":
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def then(self, other: "Transform") -> "Transform":
        return Chain((self, other))

    def spec(self) -> dict[str, Any]:
        """A JSON-able description `transform_from_spec` rebuilds: artefacts keep their weight map."""
        return {"kind": type(self).__name__, **{k: _plain(v) for k, v in self.__dict__.items()}}


@dataclass(frozen=True)
class Identity(Transform):
    def apply(self, array: np.ndarray) -> np.ndarray:
        return array

    def inverse(self) -> Transform:
        return self

    def describe(self) -> str:
        return "identity"


@dataclass(frozen=True)
class Transpose(Transform):
    perm: tuple[int, ...]

    def apply(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(array, self.perm))

    def inverse(self) -> Transform:
        return Transpose(tuple(int(i) for i in np.argsort(self.perm)))

    def describe(self) -> str:
        return f"transpose{self.perm}"


@dataclass(frozen=True)
class Reshape(Transform):
    to_shape: tuple[int, ...]
    from_shape: tuple[int, ...]

    def apply(self, array: np.ndarray) -> np.ndarray:
        if tuple(array.shape) != self.from_shape:
            raise ValueError(f"reshape expects shape {self.from_shape}, got {tuple(array.shape)}")
        return array.reshape(self.to_shape)

    def inverse(self) -> Transform:
        return Reshape(self.from_shape, self.to_shape)

    def describe(self) -> str:
        return f"reshape{self.from_shape}->{self.to_shape}"


@dataclass(frozen=True)
class Chain(Transform):
    steps: tuple[Transform, ...]

    def apply(self, array: np.ndarray) -> np.ndarray:
        for step in self.steps:
            array = step.apply(array)
        return array

    def inverse(self) -> Transform:
        return Chain(tuple(s.inverse() for s in reversed(self.steps)))

    def describe(self) -> str:
        return " then ".join(s.describe() for s in self.steps)


@dataclass(frozen=True)
class GateReorder(Transform):
    """Permute the equal-sized gate blocks of a fused recurrent weight along `axis`.

    Recurrent layers stack their gates' weights in one tensor, and frameworks disagree on the order:
    torch's GRU stacks (reset, update, new) where Keras stacks (update, reset, candidate). Block `i`
    of the result is block `order[i]` of the input, so `GateReorder((1, 0, 2))` turns r|z|n into
    z|r|n. A wrong order still has the right shape, which is why it is a named, invertible step.
    """

    order: tuple[int, ...]
    axis: int = 0

    def apply(self, array: np.ndarray) -> np.ndarray:
        gates = len(self.order)
        if sorted(self.order) != list(range(gates)):
            raise ValueError(f"gate order {self.order} is not a permutation of 0..{gates - 1}")
        if array.shape[self.axis] % gates:
            raise ValueError(f"axis {self.axis} of shape {tuple(array.shape)} does not split into {gates} gates")
        blocks = np.split(array, gates, axis=self.axis)
        return np.ascontiguousarray(np.concatenate([blocks[i] for i in self.order], axis=self.axis))

    def inverse(self) -> Transform:
        return GateReorder(tuple(int(i) for i in np.argsort(self.order)), self.axis)

    def describe(self) -> str:
        return f"gate_reorder{self.order} on axis {self.axis}"


def _plain(value: Any) -> Any:
    if isinstance(value, Transform):
        return value.spec()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


_KINDS: dict[str, type[Transform]] = {t.__name__: t for t in (Identity, Transpose, Reshape, Chain, GateReorder)}


def transform_from_spec(spec: dict[str, Any]) -> Transform:
    """The transform `Transform.spec` described; a spec from a file is checked, not trusted."""
    if not isinstance(spec, dict) or spec.get("kind") not in _KINDS:
        raise ValueError(f"not a weight-layout transform: {spec!r}")
    kind = _KINDS[spec["kind"]]
    fields = {k: v for k, v in spec.items() if k != "kind"}
    if kind is Chain:
        return Chain(tuple(transform_from_spec(s) for s in fields.get("steps", [])))
    try:
        return kind(**{k: tuple(int(i) for i in v) if isinstance(v, list) else int(v) for k, v in fields.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad {spec['kind']} transform {spec!r}: {exc}") from None
