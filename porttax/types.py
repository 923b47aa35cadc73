"""Framework-neutral core types.

Nothing here imports torch, TensorFlow or Keras: these types travel between the loaders, the
converters and the parity suite, and `import porttax` must stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

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
