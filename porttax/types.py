"""Framework-neutral core types.

Nothing here imports torch, TensorFlow or Keras: these types travel between the loaders, the
converters and the parity suite, and `import porttax` must stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from porttax.tax import PortingTax

Dim = int | str  # an int is a fixed size; a str names a symbolic dim ("batch", "seq")
Framework = Literal["torch", "keras", "tf", "onnx", "tflite", "tfjs", "executorch"]


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output.

    `value_range` bounds integer inputs (token ids must stay below the vocabulary size), so seeded
    parity inputs are always valid; it is `(low, high)` with `high` exclusive.
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    value_range: tuple[float, float] | None = None

    @property
    def is_integer(self) -> bool:
        return self.dtype.startswith(("int", "uint")) or self.dtype == "bool"

    def concrete_shape(self, sizes: dict[str, int] | None = None) -> tuple[int, ...]:
        """The shape with symbolic dims replaced by `sizes` (default 1 for batch-like dims, 8 else)."""
        sizes = sizes or {}
        out = []
        for d in self.shape:
            if isinstance(d, int):
                out.append(d)
            else:
                out.append(int(sizes.get(d, 1 if "batch" in d else 8)))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "value_range": list(self.value_range) if self.value_range else None,
        }


@dataclass
class Model:
    """A loaded model: which framework, the live object, and its signature."""

    framework: Framework
    obj: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec] = field(default_factory=list)
    source: str | None = None  # path or description of where it came from
    example_inputs: tuple[Any, ...] | None = None  # concrete tensors to trace with, when known

    def describe(self) -> str:
        sig = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.inputs)
        return f"{self.framework} model ({sig}) from {self.source or 'memory'}"


def as_specs(items: Sequence[TensorSpec | dict[str, Any]]) -> list[TensorSpec]:
    return [i if isinstance(i, TensorSpec) else TensorSpec(**i) for i in items]


def spec_dims(shape: Sequence[int | None], name: str) -> tuple[Dim, ...]:
    """A framework shape as spec dims: unknown axis 0 is "batch", other unknown axes are private to the input."""
    return tuple(d if d is not None else ("batch" if i == 0 else f"{name}.{i}") for i, d in enumerate(shape))


@dataclass(frozen=True)
class LoadOptions:
    """What a user can tell a loader about a file that does not say it itself (the CLI's flags)."""

    example_inputs: Sequence[Any] | None = None
    input_shapes: Sequence[Sequence[int]] | None = None
    input_dtypes: Sequence[str] | None = None
    arch: str | None = None
    config: Any = None
    trust_pickle: bool = False
    trust_code: bool = False
    stream: bool | None = None  # None: stream a checkpoint's weights when it is large (porttax.lazy_weights)
    # capture with every dim fixed to the example's size, instead of an open batch (and sequence)
    static: bool = False


@dataclass
class ConvertJob:
    """One `porttax.convert` call: what the user asked for, then what the pipeline loaded and built.

    It travels down to the target that writes the artefact, so a target's contract is one function of
    the job (see porttax.targets.Way) and a new option is one field here, not a parameter threaded
    through every target. `kind` is the source's family — "torch", "onnx" or "keras" — which picks the
    target's way; `src`, `model`, `log`, `layer_map` and `roads` are filled in as the pipeline gets
    that far (a target whose way reads the source itself finds them empty).
    """

    source: Any
    target: str = ""
    output: str | Path | None = None
    kind: str = ""
    load: LoadOptions = field(default_factory=LoadOptions)  # how to read the source
    parity: bool = True
    seeds: Sequence[int] = (0, 1, 2)
    profile: str = "fp32"
    reference: str = "auto"  # float64 reference for parity: auto, float64 or none (porttax.parity.reference)
    measure_latency: bool = True
    force: bool = False
    jit: bool = False
    channels_first: bool = False
    dtype: str | None = None
    max_shard_size: str | int | None = None
    weight_map_from: str | Path | None = None
    max_cache_len: int | None = None
    route: str = "fallback"  # porttax.routes: direct, then ONNX where direct lacks an op
    prefer: str = "fastest"
    quantize: str | None = None
    calibration: str | Path | None = None
    progress: Any = None  # porttax.progress.Progress
    t0: float = 0.0  # when loading started: conversion time counts from here
    src: Any = None  # the loaded source handle (TorchSource for the torch and onnx kinds)
    model: Any = None  # the Keras model the chosen road built
    log: Any = None  # MappingLog of whatever converted the source
    layer_map: Any = None
    roads: list[Road] = field(default_factory=list)

    def checks(self) -> dict[str, Any]:
        """The options every target's parity check and timing take, as keyword arguments."""
        return {"parity": self.parity, "seeds": self.seeds, "profile": self.profile, "reference": self.reference,
                "measure_latency": self.measure_latency, "force": self.force, "progress": self.progress}

    def with_roads(self, result: "ConversionResult") -> "ConversionResult":
        """`result` with the roads this job tried, for the report."""
        if self.roads:
            result.roads, result.roads_text = [r.to_dict() for r in self.roads], [r.line() for r in self.roads]
        return result


@dataclass
class ConversionResult:
    target: str
    output: Path | None
    keras_model: Any
    log: Any  # MappingLog
    parity: Any | None  # ParityReport
    tax: PortingTax
    source: Any  # TorchSource, or KerasSource on the Keras → torch road
    torch_module: Any = None  # the converted nn.Module (Keras → torch road)
    layer_map: Any = None  # which converted tensor carries each source layer's output (parity.taps)
    roads: list[dict[str, Any]] | None = None  # every road tried (porttax.routes), the chosen one marked
    roads_text: list[str] | None = None
    generation: dict[str, Any] | None = None  # greedy decoding through an LLM's decode signature

    @property
    def passed(self) -> bool:
        """True unless parity (or the generation check) ran and failed."""
        return (self.parity is None or bool(self.parity.passed)) and (
            self.generation is None or bool(self.generation["passed"]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.path or self.source.name,
            "source_format": self.source.origin,
            "source_capture": getattr(self.source, "capture", None),  # torch.export, or onnx for TorchScript
            "source_streamed": bool(getattr(self.source, "streamed_from_file", False)),
            "source_opset": getattr(self.source, "onnx_opset", None),  # ONNX sources: the file's, and any upgrade
            # ONNX sources: {input name in the converted model: the name in the file}, where they differ
            "source_input_names": {k: v for k, v in (getattr(self.source, "onnx_input_names", None) or {}).items()
                                   if k != v} or None,
            "inputs": [s.to_dict() for s in self.source.specs],  # named dims ("batch", "seq") are open
            # what the capture or the direct road could not keep open, and why
            "shape_notes": list(getattr(self.source, "capture_notes", None) or []),
            "target": self.target,
            "output": str(self.output) if self.output else None,
            "passed": self.passed,
            "porting_tax": self.tax.to_dict(),
            "parity": self.parity.to_dict() if self.parity is not None else None,
            "mapping": self.log.to_dict(),
            "roads": self.roads,
            "generation": self.generation,
        }


@dataclass
class Road:
    """One road tried: how far it got and what it cost."""

    road: str
    status: str = "not converted"  # "passed", "failed parity", "not converted"
    coverage: str = ""
    transposes: int | None = None
    drift_rel_l2: float | None = None
    # against the float64 reference: the converted error and its ratio to the source's own (None: fixed rule)
    drift_vs_reference: float | None = None
    drift_ratio: float | None = None
    latency_ms: float | None = None
    reason: str | None = None
    hops: list[dict[str, Any]] = field(default_factory=list)
    chosen: bool = False
    built: Any = None  # (model, log, layer_map) when converted

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("built", "error")}

    def line(self) -> str:
        mark = "*" if self.chosen else " "
        if self.built is None:
            return f"{mark} {self.road:<7} not converted: {self.reason}"
        drift = f"‖a−b‖/‖b‖ {self.drift_rel_l2:.2e}" if self.drift_rel_l2 is not None else "drift not checked"
        if self.drift_ratio is not None:
            drift += f" ({self.drift_ratio:.1f}x the source's own error vs float64)"
        latency = f", {self.latency_ms:.2f} ms" if self.latency_ms is not None else ""
        hops = "".join(f"; {h['hop']} {h['rel_l2']:.2e}" for h in self.hops)
        transposes = f", {self.transposes} transposes added" if self.transposes is not None else ""
        return f"{mark} {self.road:<7} {self.status}: {self.coverage} layers{transposes}, {drift}{latency}{hops}"
