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
from porttax.targets import Target, Way, register_target
from porttax.types import ConversionResult, ConvertJob
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
    """Plan in a child process (it needs torch and Keras), write here (it needs neither): this process
    holds no framework, so its memory is the interpreter, h5py and the tensor in hand."""
    import json
    import subprocess
    import sys

    from porttax.types import ConversionResult
    from porttax.converters.mapping_log import MappingLog, WeightPort
    from porttax.errors import PorttaxError
    from porttax.lazy_weights import LazyTensor
    from porttax.saving import atomic_output, check_output
    from porttax.types import TensorSpec

    progress = progress or QUIET
    check_weights_path(output)
    check_output(output, force)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="porttax-weights-") as tmp:
        progress.stage("learning the weight layout from a skeleton of the architecture (widths cut down), "
                       "in a child process")
        cmd = [sys.executable, "-m", "porttax.targets.keras_weights", str(source), tmp, json.dumps(config) if isinstance(
            config, dict) else (str(config) if config is not None else ""), arch or ""]
        done = subprocess.run(cmd, capture_output=True, text=True)
        plan_file = Path(tmp) / "plan.json"
        if not plan_file.is_file():
            raise PorttaxError(f"the layout step failed (exit {done.returncode}): {done.stderr.strip()[-800:]}",
                               path=str(source))
        plan = json.loads(plan_file.read_text())
        if "error" in plan:
            kind = UnsupportedError if plan["error"]["kind"] == "UnsupportedError" else InputError
            raise kind(plan["error"]["message"], path=plan["error"]["path"], hint=plan["error"]["hint"])
        log = MappingLog()
        tensors = []
        for t in plan["tensors"]:
            lazy = LazyTensor(t["path"], t["source_key"], t["dtype"], tuple(t["shape"]), t["offset"], t["nbytes"])
            tensors.append((t["place"], lazy, [tuple(p) for p in t["transposes"]]))
            log.ports.append(WeightPort(t["source_key"], t["target"], t["transform"], tuple(t["shape"])))
        tax = PortingTax(layers_total=plan["layers_total"], layers_mapped=plan["layers_mapped"],
                         ops_total=plan["ops_total"])
        with atomic_output(output, force=force) as out:
            progress.stage(f"writing {len(tensors)} tensors to {output}")
            _write((Path(tmp) / f"skeleton{SUFFIX}").read_bytes(), tensors, out, progress)
            tax.conversion_seconds = time.perf_counter() - t0
            tax.peak_rss_mb = peak_rss_mb()
            tax.output_bytes = size_on_disk(out)
    specs = [TensorSpec(d["name"], tuple(d["shape"]), d["dtype"], tuple(d["value_range"]) if d.get("value_range")
                        else None) for d in plan["specs"]]
    src = WeightsSource(str(source), specs)
    return ConversionResult("keras-weights", Path(output), None, log, None, tax, src)


@dataclasses.dataclass
class WeightsSource:
    """What the report says about the source of a weights-only conversion."""

    path: str
    specs: list[Any]
    origin: str = "state_dict"
    capture: str = "torch.export"
    streamed_from_file: bool = True

    @property
    def name(self) -> str:
        return Path(self.path).stem


def plan(source: str, workdir: Path, config: Any, arch: str | None) -> dict[str, Any]:
    """The child's half: load the checkpoint streamed, convert the skeleton, find every variable's place
    in Keras' weights file and the transform its tensor takes; the skeleton's weights file goes to
    `workdir` beside the plan."""
    from porttax import models
    from porttax._frameworks import import_keras, import_torch
    from porttax.converters.torch_to_keras.driver import convert_exported_program
    from porttax.lazy_weights import lazy_of
    from porttax.sources.torch_source import load_torch_source
    from porttax.sources.torch_program import export_module

    import_torch()
    import_keras()
    src = load_torch_source(source, arch=arch, config=config, stream=True)
    if not src.streamed_from_file or src.arch is None:
        raise InputError("weights-only conversion reads a safetensors checkpoint (a Hugging Face folder, or a "
                         ".safetensors file with --arch)", path=str(source), hint="use --to keras for other sources")
    small = skeleton_config(src.arch, src.config)
    skeleton = models.build_model(src.arch, small, seed=0).eval()
    built = convert_exported_program(export_module(skeleton, models.example_inputs(src.arch, small, batch=1, seq=4)),
                                     name=src.name)
    log = built.log
    places, skeleton_file = _variable_places(built.model)
    (workdir / f"skeleton{SUFFIX}").write_bytes(skeleton_file)
    lazies = {key: lazy_of(t) for key, t in src.program.state_dict.items()}
    tensors = []
    for port in log.ports:
        lazy = lazies.get(port.source_key or "")
        if lazy is None or port.target not in places:
            raise UnsupportedError(f"weight {port.source_key or port.target} has no streamed tensor or no place in "
                                   "the weights file", hint="use --to keras (the whole model)")
        tensors.append({"place": places.pop(port.target), "source_key": lazy.name, "path": lazy.path,
                        "dtype": lazy.dtype, "shape": list(lazy.shape), "offset": lazy.offset, "nbytes": lazy.nbytes,
                        "target": port.target, "transform": port.transform,
                        "transposes": _transposes(log.transforms[port.target], port.target)})
    if places:
        raise UnsupportedError(f"Keras variables with no checkpoint tensor: {', '.join(sorted(places)[:8])}",
                               hint="use --to keras (the whole model)")
    return {"tensors": tensors, "layers_total": log.layers_total, "layers_mapped": log.layers_mapped,
            "ops_total": log.ops_total, "specs": [s.to_dict() for s in src.specs]}


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


def _transposes(transform: Any, where: str) -> list[list[int]]:
    """The transform as axis permutations, if it works at any size (identity, transposes); a reshape
    with sizes fixed on the skeleton would not."""
    from porttax.converters.transforms import Chain, Identity, Transpose

    parts = transform.steps if isinstance(transform, Chain) else (transform,)
    if not all(isinstance(p, (Identity, Transpose)) for p in parts):
        raise UnsupportedError(f"{where}: the layout transform ({transform.describe()}) depends on the skeleton's sizes",
                               hint="use --to keras (the whole model)")
    return [list(p.perm) for p in parts if isinstance(p, Transpose)]


def _write(skeleton_file: bytes, plan: list[tuple[str, Any, list[tuple[int, ...]]]], path: Path,
           progress: Progress) -> None:
    """The skeleton file's groups and attributes, with every dataset at its real size and values."""
    import io

    import h5py

    skeleton = h5py.File(io.BytesIO(skeleton_file), "r")
    real = {place: (lazy, perms) for place, lazy, perms in plan}
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
            lazy, perms = real[name]
            # a half-precision checkpoint keeps its dtype, bf16 written the way Keras writes it
            # (2-byte opaque values marked dtype=bfloat16); Keras casts on loading where it must
            array = lazy.numpy_float(keep=True)
            for perm in perms:
                array = np.transpose(array, perm)
            array = np.ascontiguousarray(array)
            dataset = out.create_dataset(name, data=array)
            if lazy.torch_dtype == "bfloat16":
                dataset.attrs["dtype"] = "bfloat16"
            del array
            done += 1
            progress.step(done, len(real), name)

        skeleton.visititems(copy)


def _main(argv: list[str]) -> int:
    """`python -m porttax.targets.keras_weights SOURCE WORKDIR CONFIG ARCH`: the planning child."""
    import json

    from porttax.errors import PorttaxError

    source, workdir, config, arch = argv
    cfg: Any = json.loads(config) if config.startswith("{") else (config or None)
    try:
        result = plan(source, Path(workdir), cfg, arch or None)
    except PorttaxError as exc:
        result = {"error": {"kind": type(exc).__name__, "message": exc.message, "path": exc.path, "hint": exc.hint}}
    (Path(workdir) / "plan.json").write_text(json.dumps(result))
    return 0


def _prepare(job: ConvertJob) -> None:
    if job.parity:
        job.progress.stage("weights only: no model is built, so no parity check runs (convert --to keras for one)")


def _write_job(job: ConvertJob) -> ConversionResult:  # weights only, streamed: no model is built, so nothing runs
    return convert_to_keras_weights(job.source, output=job.output, arch=job.load.arch, config=job.load.config,
                                    force=job.force, progress=job.progress)


register_target(Target(
    "keras-weights", "Keras weights (.weights.h5) streamed from a checkpoint, no model built", aliases=("weights",),
    suffixes=(".weights.h5",), output="required", output_hint="pass -o model.weights.h5", prepare=_prepare,
    ways={"torch": Way(_write_job, needs="source")}))


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
