"""A converted model's way back to its source checkpoint: which source tensor every Keras variable
holds, through which layout transform, and how the checkpoint stored it.

When porttax converts a PyTorch checkpoint, each weight's port is known exactly (source key, Keras
variable, transform, stored dtype), so the `.keras` keeps that list as `porttax/weight_map.json` in
its zip, beside the layer map; Keras ignores the entry. `porttax convert model.keras --to safetensors
-o folder/` (porttax.targets.checkpoint) reads it to write the weights back under their source names,
in their source layout and dtype. The map names places, not values, so it stays true after the Keras
model is fine-tuned: that is the point of exporting back.

A map is written only when every port names a tensor of the captured program (the direct road);
the ONNX road names ONNX initializers, which are not checkpoint keys.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from porttax.errors import InputError

KERAS_ENTRY = "porttax/weight_map.json"
VERSION = 1


@dataclass
class WeightEntry:
    source_key: str
    target: str  # "<Keras layer name>/<variable name>"
    transform: dict[str, Any]  # converters.transforms spec: source layout -> Keras layout
    source_shape: tuple[int, ...]
    dtype: str  # as the source stored it (torch's name: "bfloat16", "float32", ...)
    aliases: tuple[str, ...] = ()  # other names of the same tensor (tied weights): a checkpoint keeps one


@dataclass
class WeightMap:
    entries: list[WeightEntry]
    source_name: str = ""
    arch: str | None = None  # porttax.models architecture, when the source was a checkpoint
    config: dict[str, Any] | None = None  # the source's config (a Hugging Face config.json as read)
    checkpoint_keys: list[str] | None = None  # every tensor the source checkpoint held, None if not a checkpoint

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, "source_name": self.source_name, "arch": self.arch,
                           "config": self.config, "checkpoint_keys": self.checkpoint_keys,
                           "entries": [e.__dict__ | {"source_shape": list(e.source_shape), "aliases": list(e.aliases)}
                                       for e in self.entries]},
                          indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> "WeightMap":
        try:
            data = json.loads(text)
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')} (this porttax reads {VERSION})")
            entries = [WeightEntry(str(e["source_key"]), str(e["target"]), dict(e["transform"]),
                                   tuple(int(d) for d in e["source_shape"]), str(e["dtype"]),
                                   tuple(str(a) for a in e.get("aliases", ()))) for e in data["entries"]]
            return cls(entries, str(data.get("source_name", "")), data.get("arch"), data.get("config"),
                       data.get("checkpoint_keys"))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"porttax's weight map in this file is unreadable: {exc}", path=where,
                             hint="convert the source model again with this porttax") from None


def from_conversion(log: Any, src: Any) -> WeightMap | None:
    """The map of a torch → Keras conversion, or None when a port names no tensor of the source."""
    program = src.program
    held = {**dict(program.state_dict), **dict(getattr(program, "constants", {}) or {})}
    stored = getattr(src, "checkpoint_dtypes", None) or {}
    aliases = _aliases(src.module)
    entries, seen = [], set()
    for port in log.ports:
        if port.source_key is None:
            continue  # a constant computed at conversion: nothing to write back
        if port.source_key not in held:
            return None
        if port.source_key in seen:
            continue  # a tied weight: the first place holds it
        seen.add(port.source_key)
        spec = log.transforms[port.target].spec()
        names = aliases.get(port.source_key, ())
        dtype = next((stored[n] for n in (port.source_key, *names) if n in stored),
                     str(getattr(held[port.source_key], "dtype", "float32")).removeprefix("torch."))
        entries.append(WeightEntry(port.source_key, port.target, spec, tuple(port.source_shape), dtype, names))
    if not entries:
        return None
    config = src.config if isinstance(src.config, dict) else None
    return WeightMap(entries, src.name, src.arch, config, sorted(stored) if stored else None)


def _aliases(module: Any) -> dict[str, tuple[str, ...]]:
    """Every parameter/buffer name → the other names of the same tensor (tied embeddings and heads)."""
    from porttax._frameworks import import_torch

    if not isinstance(module, import_torch().nn.Module):
        return {}
    by_tensor: dict[int, list[str]] = {}
    for name, t in [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]:
        by_tensor.setdefault(id(t), []).append(name)
    return {n: tuple(m for m in names if m != n) for names in by_tensor.values() if len(names) > 1 for n in names}


def add_to_keras_file(path: str | Path, weight_map: WeightMap) -> None:
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(KERAS_ENTRY, weight_map.to_json())


def read_keras_file(path: str | Path) -> WeightMap | None:
    """The map a `.keras` porttax wrote carries; None for any other file."""
    p = Path(path)
    if p.suffix != ".keras" or not zipfile.is_zipfile(p):
        return None
    with zipfile.ZipFile(p) as z:
        if KERAS_ENTRY not in z.namelist():
            return None
        return WeightMap.from_json(z.read(KERAS_ENTRY).decode("utf-8"), str(p))
