"""The `.keras` target: Keras' own zip, with porttax's layer map (and the way back to a checkpoint) inside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from porttax.targets import Target, register_target


register_target(Target("keras", "a Keras 3 model file (.keras; in memory without -o)", suffixes=(".keras",),
                       output_hint="use -o model.keras, or --to savedmodel for a directory"))


def write_keras(model: object, path: Path, layer_map: object | None = None) -> None:
    """`model.save` plus porttax's layer map inside the same zip, so localisation needs no sidecar file."""
    from porttax.dtype_policy import plain_policies

    with plain_policies(model):  # a file any Keras loads: see porttax.dtype_policy
        model.save(path)  # type: ignore[attr-defined]
    if layer_map is not None:
        from porttax.layer_map import add_to_keras_file

        add_to_keras_file(path, layer_map)  # type: ignore[arg-type]


def add_weight_map(path: Path, log: Any, src: Any) -> None:
    """The way back to the source checkpoint's layout, inside the .keras (see porttax.targets.weight_map)."""
    from porttax.targets.weight_map import add_to_keras_file, from_conversion

    weight_map = from_conversion(log, src) if getattr(src, "program", None) is not None else None
    if weight_map is not None:
        add_to_keras_file(path, weight_map)
