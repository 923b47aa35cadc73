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
            "inputs": [s.to_dict() for s in self.source.specs],
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
        latency = f", {self.latency_ms:.2f} ms" if self.latency_ms is not None else ""
        hops = "".join(f"; {h['hop']} {h['rel_l2']:.2e}" for h in self.hops)
        transposes = f", {self.transposes} transposes added" if self.transposes is not None else ""
        return f"{mark} {self.road:<7} {self.status}: {self.coverage} layers{transposes}, {drift}{latency}{hops}"
