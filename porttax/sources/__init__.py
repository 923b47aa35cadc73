"""porttax.sources: one module per input format — how to recognise it, check it safely, and load it.

A source module turns a file into a model handle the converters read: a `TorchSource` for
PyTorch-family inputs (`.pt2`, checkpoints with an architecture, trusted pickles, TorchScript,
Hugging Face folders, ONNX files, which arrive as a torch module), a `KerasSource` for Keras-family
inputs (`.keras`, `.h5`, SavedModels). Each format registers itself here with `register_format`: its
name (as reports and `porttax inspect` spell it), its kind ("torch", "onnx" or "keras": which way of
a target it takes), a `sniff` that recognises it from the path and a few bytes without loading it,
and a `load`. `sniff` and `kind_of` are what `porttax.convert`, `porttax inspect`, `porttax audit`
and `porttax parity` ask; nothing else keeps a list of formats. Adding a format is one module in this
package that calls `register_format` (discovered by `load_all`), plus its test. The safety checks
every loader runs before a framework sees the bytes (zip and pickle inspection, SavedModel op
allow-lists) live here too.

May import: the base (`porttax.errors`, `porttax.types`, `porttax._frameworks`, `porttax.saving`,
`porttax.layer_map`, `porttax.torch_ir`, `porttax.progress`), `porttax.models` and the converters.
Never: targets, parity or the orchestration (`porttax.conversion`, `porttax.routes`, the CLI).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from porttax.types import LoadOptions

__all__ = ["KINDS", "LoadOptions", "SourceFormat", "all_formats", "kind_of", "load_all", "register_format", "sniff"]

KINDS = ("torch", "onnx", "keras")


@dataclass(frozen=True)
class SourceFormat:
    """One input format: how to recognise it and how to load it."""

    name: str  # as reports and `porttax inspect` name it
    kind: str  # one of KINDS
    summary: str
    sniff: Callable[[Path], bool]  # from the path's name and a few bytes: never a framework, never a pickle
    load: Callable[[Path, LoadOptions], Any]  # → TorchSource (torch, onnx) or KerasSource (keras)
    specific: bool = False  # asked before the others: a format that is a special case of another's files


_FORMATS: dict[str, SourceFormat] = {}
_LOADED = False


def register_format(fmt: SourceFormat) -> SourceFormat:
    """Add a format; a name another format already owns raises (no silent overwrite)."""
    if fmt.kind not in KINDS:
        raise ValueError(f"source format {fmt.name!r}: kind {fmt.kind!r} is not one of {KINDS}")
    if fmt.name in _FORMATS:
        raise ValueError(f"source format {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt
    return fmt


def load_all() -> None:
    """Import every module of this package once, so each registers its format(s)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def all_formats() -> list[SourceFormat]:
    """Every registered format, by name (not by whichever module happened to be imported first)."""
    load_all()
    return sorted(_FORMATS.values(), key=lambda f: f.name)


def sniff(path: str | Path) -> SourceFormat | None:
    """The format of a model path, or None: special cases first (TorchScript before any .pt)."""
    p = Path(path)
    for fmt in sorted(all_formats(), key=lambda f: not f.specific):
        try:
            if fmt.sniff(p):
                return fmt
        except OSError:  # unreadable: the loader says so with the path
            continue
    return None


def kind_of(source: Any) -> str:
    """"keras", "onnx" or "torch" for a path or a live model object (a torch module or program by default,
    so that the torch loader names what it cannot read)."""
    if isinstance(source, (str, Path)):
        fmt = sniff(source)
        return fmt.kind if fmt is not None else "torch"
    import sys

    keras = sys.modules.get("keras")  # no Keras object can exist before Keras is imported: don't import it
    return "keras" if keras is not None and isinstance(source, keras.Model) else "torch"
