"""Keras → the source's own checkpoint layout: `porttax convert llama.keras --to safetensors -o dir/`.

A `.keras` porttax converted from a checkpoint carries its weight map (porttax.targets.weight_map), so the
way back needs no converter at all: each Keras variable goes back through the inverse of its layout
transform, under its source key, in the dtype the checkpoint stored (bf16 stays bf16) unless
`--dtype` says otherwise. The folder is what transformers' `save_pretrained` writes: `config.json`
(the source's own, so transformers and porttax both read it) and `model.safetensors`, or shards of at
most `max_shard_bytes` with `model.safetensors.index.json`. Tensors are made and written one at a
time, so memory stays at the Keras model plus one tensor.

Parity then reads the folder back with porttax's architecture and runs it against the Keras model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from porttax.errors import InputError, UnsupportedError
from porttax.progress import QUIET, Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk

DEFAULT_SHARD_BYTES = 5 * 10**9  # transformers' default max_shard_size ("5GB")
FLOAT_DTYPES = ("float32", "bfloat16", "float16")
# porttax architectures Hugging Face knows under a model_type of its own
_HF_MODEL_TYPES = {"llama": ("llama", "LlamaForCausalLM")}


def is_folder_output(output: str | Path | None) -> bool:
    """`--to safetensors -o NAME` with no .safetensors suffix asks for a checkpoint folder."""
    return output is not None and Path(output).suffix != ".safetensors"


def parse_shard_size(text: str) -> int:
    """"5GB", "500MB", "100KB" or a byte count, as transformers' max_shard_size takes them."""
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    t = text.strip().upper()
    for unit in sorted(units, key=len, reverse=True):
        if t.endswith(unit) and t[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(t[: -len(unit)]) * units[unit])
    if t.isdigit():
        return int(t)
    raise InputError(f"--max-shard-size {text!r} is not a size", hint="use e.g. 5GB, 500MB or a byte count")


def convert_keras_to_checkpoint(source: Any, *, output: str | Path, dtype: str | None = None,
                                max_shard_bytes: int = DEFAULT_SHARD_BYTES, weight_map_from: str | Path | None = None,
                                trust_code: bool = False,
                                parity: bool = True, seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32", reference: str = "auto",
                                measure_latency: bool = True, force: bool = False,
                                progress: Progress | None = None) -> Any:
    from porttax._frameworks import import_keras, import_torch
    from porttax.types import ConversionResult
    from porttax.converters.mapping_log import MappingLog, WeightPort
    from porttax.sources.keras_source import load_keras_source
    from porttax.saving import atomic_output, check_output
    from porttax.targets.weight_map import read_keras_file

    progress = progress or QUIET
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise InputError(f"--dtype {dtype!r}: choose {', '.join(FLOAT_DTYPES)}")
    check_output(output, force)
    path = Path(source) if isinstance(source, (str, Path)) else None
    map_path = Path(weight_map_from) if weight_map_from is not None else path
    if map_path is not None and not map_path.exists():
        raise InputError("file not found", path=str(map_path), hint="--weight-map takes the .keras porttax wrote")
    weight_map = read_keras_file(map_path) if map_path is not None else None
    if weight_map is None:
        raise InputError("a checkpoint folder is written from a .keras that porttax converted from a PyTorch "
                         "checkpoint: only that file records each weight's source name and layout "
                         "(a copy saved again by Keras, e.g. after fine-tuning, no longer has it)",
                         path=str(map_path if map_path is not None else source),
                         hint="pass --weight-map ORIGINAL.keras (the file porttax wrote; the map names layers, "
                         "not values), or use -o weights.safetensors for the converted torch module's state_dict")
    if weight_map.arch is None:
        raise InputError(f"{map_path} was converted from a model without an architecture config "
                         f"({weight_map.source_name}), so there is no config.json to write beside the weights",
                         path=str(map_path), hint="convert from a checkpoint with --arch/--config or a Hugging Face "
                         "folder, or use -o weights.safetensors")
    import_torch()
    import_keras()
    t0 = time.perf_counter()
    progress.stage(f"loading {source}")
    src = load_keras_source(source, trust_code=trust_code)
    log = MappingLog()
    with atomic_output(output, force=force) as tmp:
        tmp.mkdir()
        progress.stage(f"writing {len(weight_map.entries)} tensors in the source's layout to {output}")
        written = write_checkpoint_folder(src.model, weight_map, tmp, dtype=dtype, max_shard_bytes=max_shard_bytes,
                                          progress=progress)
        for e in written:
            log.ports.append(WeightPort(e.source_key, e.target, f"inverse of {e.transform['kind'].lower()}",
                                        e.source_shape, e.source_shape))
        tax = PortingTax(layers_total=len(written), layers_mapped=len(written))
        tax.conversion_seconds = time.perf_counter() - t0
        tax.output_bytes = size_on_disk(tmp)
        tax.peak_rss_mb = peak_rss_mb()
        report = None
        if parity or measure_latency:
            from porttax.targets._check import run_parity, time_both

            runner = folder_runner(tmp, weight_map, [s.name for s in src.specs], name=Path(output).name)
            report = run_parity(src, runner, seeds, profile, progress, reference) if parity else None
            if measure_latency:
                time_both(src, runner, tax, progress)
    conv = ConversionResult("safetensors", Path(output), src.model, log, report, tax, src)
    if report is not None:
        from porttax.targets._check import fill_drift

        fill_drift(tax, report)
    return conv


def write_checkpoint_folder(model: Any, weight_map: Any, folder: Path, *, dtype: str | None = None,
                            max_shard_bytes: int = DEFAULT_SHARD_BYTES, progress: Progress = QUIET) -> list[Any]:
    """config.json plus the weights, one tensor in memory at a time; returns the entries written."""
    from porttax.sources.safetensors_file import write_safetensors_lazily

    entries = _checked_entries(weight_map)
    variables = _variables(model, entries)
    done = [0]

    def make(entry: Any, out_dtype: str) -> Any:
        from porttax._frameworks import import_torch
        from porttax.converters.transforms import transform_from_spec

        torch = import_torch()
        held = np.asarray(variables[entry.target].numpy())
        array = np.ascontiguousarray(transform_from_spec(entry.transform).inverse().apply(held))
        if tuple(array.shape) != entry.source_shape:
            raise UnsupportedError(f"{entry.target} comes back as {tuple(array.shape)}, but {entry.source_key} "
                                   f"was {entry.source_shape} in the source")
        done[0] += 1
        progress.step(done[0], len(entries), entry.source_key)
        if array.dtype.name == "bfloat16":  # a bf16 Keras model: NumPy holds it as ml_dtypes' type
            return torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16).to(getattr(torch, out_dtype))
        return torch.from_numpy(array).to(getattr(torch, out_dtype))

    from porttax.sources.safetensors_file import LazyEntry

    lazy = [LazyEntry(e.source_key, _out_dtype(e.dtype, dtype), e.source_shape,
                      lambda e=e: make(e, _out_dtype(e.dtype, dtype))) for e in entries]
    shards = _shards(lazy, max_shard_bytes)
    if len(shards) == 1:
        write_safetensors_lazily(shards[0], folder / "model.safetensors", {"format": "pt"})
    else:
        index: dict[str, str] = {}
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors_lazily(shard, folder / name, {"format": "pt"})
            index.update({e.name: name for e in shard})
        total = sum(e.nbytes for e in lazy)
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": dict(sorted(index.items()))}, indent=2))
    (folder / "config.json").write_text(json.dumps(_config(weight_map, dtype, entries), indent=2))
    return entries


def folder_runner(folder: Path, weight_map: Any, input_names: list[str], *, name: str) -> Any:
    """The written folder as porttax reads any checkpoint folder, built into the source architecture."""
    from porttax import models
    from porttax.sources.hf_folder import read_hf_folder
    from porttax.parity import TorchRunner

    arch, config, state = read_hf_folder(folder, weight_map.arch, stream=False)
    module = models.load_state_dict_model(arch, config, state)
    return TorchRunner(module, input_names, name=name)


def _checked_entries(weight_map: Any) -> list[Any]:
    """The entries to write: the checkpoint's own keys when the source was a checkpoint (a tied weight
    it left out stays out), and every checkpoint key must have one."""
    entries = weight_map.entries
    if weight_map.checkpoint_keys is not None:
        keys = set(weight_map.checkpoint_keys)
        named = []
        for e in entries:
            name = next((n for n in (e.source_key, *e.aliases) if n in keys), None)
            if name is not None:
                named.append(dataclasses.replace(e, source_key=name))
        entries = named
        missing = sorted(keys - {e.source_key for e in entries})
        if missing:
            raise UnsupportedError(f"checkpoint tensors with no Keras variable: {', '.join(missing[:8])}"
                                   + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""),
                                   hint="the model folded them into constants; convert with --to keras again")
    return entries


def _variables(model: Any, entries: list[Any]) -> dict[str, Any]:
    """Each entry's Keras variable, found by layer and variable name; every one must be there."""
    by_target: dict[str, Any] = {}
    for layer in model.layers:
        for var in layer.weights:
            by_target.setdefault(f"{layer.name}/{var.name}", var)
    missing = [e.target for e in entries if e.target not in by_target]
    if missing:
        raise InputError(f"the Keras model has no variable {', '.join(missing[:5])} that its weight map names",
                         hint="the model was edited after conversion; keep layer names, or use -o weights.safetensors")
    return {e.target: by_target[e.target] for e in entries}


def _out_dtype(stored: str, wanted: str | None) -> str:
    return wanted if wanted is not None and stored in FLOAT_DTYPES else stored


def _shards(entries: list[Any], limit: int) -> list[list[Any]]:
    """Entries in order, cut into shards of at most `limit` bytes (a larger tensor gets its own)."""
    shards: list[list[Any]] = [[]]
    size = 0
    for e in entries:
        if shards[-1] and size + e.nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += e.nbytes
    return shards


def _config(weight_map: Any, dtype: str | None, entries: list[Any]) -> dict[str, Any]:
    """The source's config, marked with the dtype written; a porttax-only config gets the model_type
    Hugging Face (or porttax) reads it by."""
    config = dict(weight_map.config or {})
    if "model_type" not in config:
        model_type, cls = _HF_MODEL_TYPES.get(weight_map.arch, (f"porttax-{weight_map.arch}", None))
        config = {"model_type": model_type, **({"architectures": [cls]} if cls else {}), **config}
    if dtype is not None:
        for key in ("torch_dtype", "dtype"):
            if key in config:
                config[key] = dtype
        config.setdefault("torch_dtype" if "dtype" not in config else "dtype", dtype)
    return config
