from __future__ import annotations

from typing import Callable

from porttax.converters.registry import REGISTRY


def keras_to_torch(*names: str, version: int = 1) -> Callable[[Callable], Callable]:
    """Register a converter for Keras layers by class name (`"Dense"`), or `keras.ops` operations as
    `"ops.<ClassName>"` (`"ops.Einsum"`). The function takes a `LayerCall` and returns a `TVal`
    (or a list of them, one per output)."""
    return REGISTRY.register("keras", "torch", names, version=version)
