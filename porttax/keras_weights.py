"""Weights-only conversion: a checkpoint → a Keras `.weights.h5` for porttax's Keras model of it,
written tensor by tensor, so memory stays near the largest tensor whatever the model's size.

Building the Keras model would hold every weight; this never does. porttax converts a *skeleton* —
the same architecture with every width cut to a few units and the same number of layers — which has
the same layers, in the same order, with the same variables as the full model. Each skeleton
variable is filled with its own index and saved with Keras' `save_weights`, which tells where Keras
puts every variable in the file. Then each checkpoint tensor is read from its safetensors file
(porttax.lazy_weights), put through the same layout transform the converter used for it, and written
to that place at its real size; the groups and attributes Keras reads come from the skeleton's file.

The result loads with `model.load_weights(path)` into the Keras model `porttax convert --to keras`
makes of the same checkpoint (tests/test_streaming.py checks that it equals that model's own weights).
Weights-only output has no parity check of its own: no model runs here.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from porttax.errors import InputError, UnsupportedError
from porttax.progress import QUIET, Progress
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk

SUFFIX = ".weights.h5"


def check_weights_path(output: str | Path | None) -> None:
    if output is None or not str(output).endswith(SUFFIX):
        raise InputError("Keras weights are written to a .weights.h5 file", path=str(output) if output else None,
                         hint="pass -o model.weights.h5")


def skeleton_config(arch: str, config: Any) -> Any:
    """The architecture's config with every width cut down and its depth, heads and options kept."""
    from porttax import models

    _, cfg = models.resolve(arch, config)
    if type(cfg).__name__ != "LlamaConfig":
        raise UnsupportedError(f"weights-only conversion knows how to shrink Llama-family configs, not {arch!r}",
                               hint="use --to keras (the whole model) for this architecture")
    return dataclasses.replace(cfg, hidden_size=2 * cfg.num_attention_heads, head_dim=2, intermediate_size=4,
                               vocab_size=8, max_position_embeddings=min(cfg.max_position_embeddings, 64))


def convert_to_keras_weights(source: Any, *, output: str | Path, arch: str | None = None, config: Any = None,
                             force: bool = False, progress: Progress | None = None) -> Any:
    from porttax import models
    from porttax._frameworks import import_keras, import_torch
    from porttax.conversion import ConversionResult
    from porttax.converters.torch_to_keras.driver import convert_exported_program
    from porttax.lazy_weights import lazy_of
    from porttax.loading import export_module, load_torch_source
    from porttax.saving import atomic_output, check_output

    progress = progress or QUIET
    check_weights_path(output)
    check_output(output, force)
    t0 = time.perf_counter()
    import_torch()
    import_keras()
    progress.stage(f"reading {source} (streamed: weights stay in the file)")
    src = load_torch_source(source, arch=arch, config=config, stream=True)
    if not src.streamed_from_file or src.arch is None:
        raise InputError("weights-only conversion reads a safetensors checkpoint (a Hugging Face folder, or a "
                         ".safetensors file with --arch)", path=str(source), hint="use --to keras for other sources")
    skeleton = models.build_model(src.arch, skeleton_config(src.arch, src.config), seed=0).eval()
    progress.stage("converting the architecture's skeleton (every width cut down) to learn the weight layout")
    example = models.example_inputs(src.arch, skeleton_config(src.arch, src.config), batch=1, seq=4)
    built = convert_exported_program(export_module(skeleton, example), name=src.name)
    log = built.log
    layout, skeleton_file = _variable_places(built.model)
    lazies = {key: lazy_of(t) for key, t in src.program.state_dict.items()}
    plan = []
    for port in log.ports:
        lazy = lazies.get(port.source_key or "")
        if lazy is None or port.target not in layout:
            raise UnsupportedError(f"weight {port.source_key or port.target} has no streamed tensor or no place in "
                                   "the weights file", hint="use --to keras (the whole model)")
        plan.append((layout.pop(port.target), lazy, _shape_free(log.transforms[port.target], port.target)))
    if layout:
        raise UnsupportedError(f"Keras variables with no checkpoint tensor: {', '.join(sorted(layout)[:8])}",
                               hint="use --to keras (the whole model)")
    tax = PortingTax(layers_total=log.layers_total, layers_mapped=log.layers_mapped, ops_total=log.ops_total)
    with atomic_output(output, force=force) as tmp:
        progress.stage(f"writing {len(plan)} tensors to {output}")
        _write(skeleton_file, plan, tmp, progress)
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
    return ConversionResult("keras-weights", Path(output), None, log, None, tax, src)


def _variable_places(model: Any) -> tuple[dict[str, str], bytes]:
    """Port target ("layer/var") → dataset path in Keras' weights file, found by marking each variable;
    and the skeleton's weights file itself (its groups and attributes are the ones Keras reads)."""
    import h5py

    marked = {}
    for i, var in enumerate(model.weights):
        var.assign(np.full(tuple(var.shape), i, dtype=var.dtype))
        marked[i] = var.path
    with tempfile.TemporaryDirectory(prefix="porttax-weights-") as tmp:
        path = Path(tmp) / f"skeleton{SUFFIX}"
        model.save_weights(str(path))
        places: dict[str, str] = {}
        with h5py.File(path, "r") as f:
            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and obj.size:
                    places[marked[int(np.asarray(obj).reshape(-1)[0])]] = name
            f.visititems(visit)
        return places, path.read_bytes()


def _shape_free(transform: Any, where: str) -> Any:
    """The transform, if it works at any size (identity, transposes); a reshape with sizes fixed on the
    skeleton would not."""
    from porttax.converters.transforms import Chain, Identity, Transpose

    parts = transform.steps if isinstance(transform, Chain) else (transform,)
    if not all(isinstance(p, (Identity, Transpose)) for p in parts):
        raise UnsupportedError(f"{where}: the layout transform ({transform.describe()}) depends on the skeleton's sizes",
                               hint="use --to keras (the whole model)")
    return transform


def _write(skeleton_file: bytes, plan: list[tuple[str, Any, Any]], path: Path, progress: Progress) -> None:
    """The skeleton file's groups and attributes, with every dataset at its real size and values."""
    import io

    import h5py

    skeleton = h5py.File(io.BytesIO(skeleton_file), "r")
    real = {place: (lazy, transform) for place, lazy, transform in plan}
    with skeleton, h5py.File(path, "w") as out:
        for key, value in skeleton.attrs.items():
            out.attrs[key] = value
        done = 0

        def copy(name: str, obj: Any) -> None:
            nonlocal done
            if isinstance(obj, h5py.Group):
                group = out.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
                return
            if name not in real:
                raise UnsupportedError(f"the skeleton's weights file has {name}, which no checkpoint tensor fills")
            lazy, transform = real[name]
            array = np.ascontiguousarray(transform.apply(lazy.numpy_float().astype(np.float32, copy=False)))
            out.create_dataset(name, data=array)
            del array
            done += 1
            progress.step(done, len(real), name)

        skeleton.visititems(copy)
