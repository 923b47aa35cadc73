"""What happened to every source layer during a conversion.

Coverage and the porting tax are computed from this log, never estimated.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["mapped", "folded", "unsupported"]


@dataclass
class WeightPort:
    source_key: str | None  # state_dict key in the source; None for a constant computed at conversion
    target: str  # "<layer name>/<variable name>"
    transform: str  # description of the layout transform applied
    shape: tuple[int, ...] = ()  # as the target holds it
    source_shape: tuple[int, ...] = ()  # as the source holds it (before the transform)


@dataclass
class LayerRecord:
    """One source layer (module path) and what it became."""

    source: str  # module path, "" for the top level
    source_type: str
    ops: list[str] = field(default_factory=list)
    converters: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # Keras layer names
    status: Status = "mapped"
    folded_ops: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "source_type": self.source_type,
            "status": self.status,
            "ops": self.ops,
            "converters": sorted(set(self.converters)),
            "targets": self.targets,
            "folded_ops": self.folded_ops,
        }


@dataclass
class MappingLog:
    layers: "OrderedDict[str, LayerRecord]" = field(default_factory=OrderedDict)
    ports: list[WeightPort] = field(default_factory=list)
    transposes_inserted: int = 0  # layout transposes porttax added (NCHW <-> NHWC)
    source_transposes: int = 0  # transposes the source model itself computes
    reshapes_for_layout: int = 0
    unsupported: list[dict[str, str]] = field(default_factory=list)
    # the Transform object behind each port, by port target: weights-only conversion replays them
    transforms: dict[str, Any] = field(default_factory=dict, repr=False)
    # under store-narrow weights (porttax.dtype_policy): layers kept in float32 because a weight the
    # converter derived is not exact in the checkpoint's dtype, and weights that were rounded anyway
    # (assigned after their layer was built), which make the conversion start again in float32
    widened_layers: list[str] = field(default_factory=list)
    rounded_weights: list[str] = field(default_factory=list)

    def layer(self, path: str, type_name: str) -> LayerRecord:
        if path not in self.layers:
            self.layers[path] = LayerRecord(path, type_name)
        return self.layers[path]

    @property
    def layers_total(self) -> int:
        return len(self.layers)

    @property
    def layers_mapped(self) -> int:
        return sum(1 for r in self.layers.values() if r.status != "unsupported")

    @property
    def ops_total(self) -> int:
        return sum(len(r.ops) for r in self.layers.values())

    @property
    def ops_folded(self) -> int:
        return sum(r.folded_ops for r in self.layers.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers_total": self.layers_total,
            "layers_mapped": self.layers_mapped,
            "ops_total": self.ops_total,
            "ops_folded_to_constants": self.ops_folded,
            "transposes_inserted": self.transposes_inserted,
            "source_transposes": self.source_transposes,
            "layout_reshapes": self.reshapes_for_layout,
            "weights_ported": len(self.ports),
            "unsupported": self.unsupported,
            "widened_layers": self.widened_layers,
            "layers": [r.to_dict() for r in self.layers.values()],
            "ports": [p.__dict__ | {"shape": list(p.shape), "source_shape": list(p.source_shape)} for p in self.ports],
        }
