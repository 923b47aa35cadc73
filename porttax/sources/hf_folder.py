"""Hugging Face checkpoint folders: `config.json` plus one `model.safetensors`, or shards named by
`model.safetensors.index.json`.

A folder from the Hub is a set of files that must agree with each other, and each is input from a
stranger: the index names shard files (which must stay inside the folder, symlinks included), every
tensor it lists must be in the shard it names and in no other, every shard passes the safetensors
header checks before it is read, and the config must describe the tensors (missing, unexpected and
mis-shaped keys are listed by name by the architecture's strict loader). Only safetensors folders are
read: `pytorch_model.bin` shards are pickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from porttax.errors import InputError
from porttax.sources import LoadOptions, SourceFormat, register_format
from porttax.sources.file_checks import check_safetensors, resolve_external_location

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"

# Hugging Face model_type -> porttax architecture whose config reads the same config.json
# (Mistral and Qwen2 are Llama variants: LlamaConfig.from_dict translates what differs)
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "llama"}

_HINT = "save the folder again with transformers' save_pretrained(safe_serialization=True)"


def is_hf_folder(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file() and (
        (p / INDEX).exists() or (p / SINGLE).exists() or any(p.glob("pytorch_model*.bin")))


def read_hf_folder(path: str | Path, arch: str | None = None,
                   stream: bool | None = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(architecture, config, state_dict) of a checked Hugging Face folder.

    `stream` (default: for checkpoints of 1 GiB and more, see porttax.lazy_weights) gives meta tensors
    that read their bytes from the shards when a converter asks, instead of loading every shard."""
    from safetensors.torch import load_file

    from porttax.lazy_weights import lazy_state, should_stream

    folder = Path(path)
    config = _read_json(folder / CONFIG, "config.json")
    if not isinstance(config, dict):
        raise InputError("config.json is not a JSON object", path=str(folder / CONFIG), hint=_HINT)
    if arch is None:
        model_type = config.get("model_type")
        arch = ARCHITECTURES.get(str(model_type))
        if arch is None and str(model_type).startswith("porttax-"):  # a folder porttax wrote for its own architecture
            from porttax import models

            arch = str(model_type).removeprefix("porttax-")
            arch = arch if arch in models.list_architectures() else None
        if arch is None:
            raise InputError(f"model_type {model_type!r} is not an architecture porttax knows "
                             f"({', '.join(sorted(ARCHITECTURES))})", path=str(folder / CONFIG),
                             hint="pass --arch NAME if the model is one of porttax's architectures under another name")
    state: dict[str, Any] = {}
    shards = _shards(folder)
    if stream is None:
        stream = should_stream(shards)
    for shard, names in shards.items():
        entries = check_safetensors(shard)
        tensors = lazy_state(shard, entries) if stream else load_file(str(shard))
        if names is not None:
            missing = sorted(set(names) - set(tensors))
            if missing:
                raise InputError(f"the index puts {_listing(missing)} in {shard.name}, which does not hold "
                                 "them", path=str(folder / INDEX), hint=_HINT)
            extra = sorted(set(tensors) - set(names))
            if extra:
                raise InputError(f"{shard.name} holds {_listing(extra)}, which the index does not list",
                                 path=str(folder / INDEX), hint=_HINT)
        state.update(tensors)  # the index maps each name to one shard, so no name arrives twice
    return arch, config, state


def _shards(folder: Path) -> dict[Path, list[str] | None]:
    """Shard file -> the tensor names the index assigns to it (None for a single unindexed file)."""
    index_path = folder / INDEX
    if not index_path.exists():
        if (folder / SINGLE).exists():
            return {_inside(folder, SINGLE, folder / SINGLE): None}
        raise InputError("the folder holds only pytorch_model*.bin weights, which are pickles", path=str(folder),
                         hint="convert them to safetensors first (transformers: save_pretrained(safe_serialization=True))")
    index = _read_json(index_path, INDEX)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise InputError("the index has no weight_map object of tensor name -> shard file", path=str(index_path),
                         hint=_HINT)
    shards: dict[Path, list[str]] = {}
    for tensor, shard_name in weight_map.items():
        shard = _inside(folder, shard_name, index_path)
        shards.setdefault(shard, []).append(tensor)
    return dict(shards)


def _inside(folder: Path, name: str, named_in: Path) -> Path:
    try:
        shard = resolve_external_location(folder, name)
    except ValueError as exc:
        raise InputError(f"shard {name!r} is not a file inside the folder: {exc}", path=str(named_in),
                         hint="shard names are plain file names next to the index") from None
    if not shard.is_file():
        raise InputError(f"shard {name!r} does not exist", path=str(named_in),
                         hint="the folder is incomplete: download every shard the index lists") from None
    return shard


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{what} is missing", path=str(path), hint=_HINT) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{what} is not valid JSON ({str(exc)[:200]})", path=str(path), hint=_HINT) from None


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} (+{len(names) - limit} more)" if len(names) > limit else shown


def load_hf_folder(path: Path, options: LoadOptions) -> Any:
    """The folder's checkpoint built into the architecture its config names (or `--arch`), and captured."""
    from porttax.sources.torch_source import from_state_dict

    arch, config, state = read_hf_folder(path, options.arch, stream=options.stream)
    return from_state_dict(state, path, options, arch=arch, config=options.config if options.config is not None
                           else config)


register_format(SourceFormat("hf_folder", "torch", "a Hugging Face checkpoint folder (config.json + safetensors)",
                             sniff=is_hf_folder, load=load_hf_folder))
