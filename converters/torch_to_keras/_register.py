from __future__ import annotations

from typing import Callable, Iterable

from porttax.converters.registry import REGISTRY


def torch_to_keras(*ops: str, version: int = 1) -> Callable[[Callable], Callable]:
    """Register a converter for ATen ops, named as `aten.<op>` (every overload) or `aten.<op>.<overload>`."""
    names: Iterable[str] = ops
    return REGISTRY.register("torch", "keras", names, version=version)
