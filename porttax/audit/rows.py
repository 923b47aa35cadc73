"""What an audit records per model, and the audit as a whole: the data every report renders.

Fields split in two on purpose. Everything outside `Measurements` is a deterministic function of the
model file, porttax's version and the audit options (coverage, drift, manual work, effort), so two
audits of the same fleet agree on it, whichever executor ran them. `Measurements` holds what a clock
or a memory counter says (latency, peak memory, conversion time), which no two runs repeat exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

# Bump the major part when a field changes meaning or disappears, the minor part when fields are added.
# docs/audit-report.md documents every field of this version.
SCHEMA_VERSION = "1.1"  # 1.1: drift_ratio (the float64 reference, docs/audit-report.md)

# A model's verdict, worst last. `converted`: a road converted it and parity passed. `drifted`: it
# converted, but no road held parity. `unsupported`: no road can take it without manual work (ops named
# in manual_work). `error`: porttax could not read it (corrupt, wrong options: the reason says which).
# `timeout`: past the per-model time limit. `crashed`: the worker died (a porttax or framework bug).
STATUSES = ("converted", "drifted", "unsupported", "error", "timeout", "crashed")


@dataclass
class WorkItem:
    """One piece of manual work: an op or layer type no road converts, how often and where it occurs."""

    op: str
    count: int
    where: list[str] = field(default_factory=list)  # module paths / layer names / node names, first few
    road: str = ""  # the road that lacks it ("direct", "onnx", ...)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorkItem":
        return cls(**d)


@dataclass
class RoadResult:
    """One road tried for one model."""

    road: str  # "direct", "onnx", "onnx2tf"
    status: str  # "passed", "failed parity", "not converted"
    drift_rel_l2: float | None = None
    transposes: int | None = None
    latency_ms: float | None = None  # a measurement; compared across runs, ignore it
    reason: str | None = None
    chosen: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RoadResult":
        return cls(**d)


@dataclass
class Measurements:
    """Clock and memory readings (they vary run to run; everything else in a row does not)."""

    conversion_seconds: float | None = None  # load + convert + write, parity and timing excluded
    conversion_peak_rss_mb: float | None = None  # peak RSS of the process that converted
    source_latency_ms: float | None = None  # median CPU latency, same process, same inputs
    converted_latency_ms: float | None = None
    source_memory_mb: float | None = None  # peak RSS growth to load and run the model, own process
    converted_memory_mb: float | None = None
    source_load_seconds: float | None = None
    converted_load_seconds: float | None = None
    audit_seconds: float | None = None  # wall time of this model's whole audit

    @property
    def latency_ratio(self) -> float | None:
        if self.source_latency_ms and self.converted_latency_ms:
            return self.converted_latency_ms / self.source_latency_ms
        return None

    @property
    def memory_ratio(self) -> float | None:
        if self.source_memory_mb and self.converted_memory_mb:
            return self.converted_memory_mb / self.source_memory_mb
        return None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurements":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"latency_ratio": self.latency_ratio, "memory_ratio": self.memory_ratio}


@dataclass
class AuditRow:
    """One model's porting tax."""

    model: str  # path as given, relative to the audited folder when there is one
    format: str  # "pt2", "state_dict", "safetensors", "hf_folder", "pickle", "torchscript", "keras", "h5",
    #              "savedmodel", "onnx", or "unknown"
    direction: str  # "torch→keras", "torch→savedmodel", "keras→torch", "onnx→keras", ...
    status: str  # one of STATUSES
    reason: str | None = None  # why it is not "converted", in one line
    road: str | None = None  # the road whose output the row describes
    roads: list[RoadResult] = field(default_factory=list)
    layers_total: int | None = None
    layers_covered: int | None = None  # layers every op of which some road converts
    params_total: int | None = None
    params_covered: int | None = None  # parameters held by covered layers
    dtypes: dict[str, int] = field(default_factory=dict)  # parameter count per dtype
    drift_rel_l2: float | None = None  # worst ‖a−b‖/‖b‖ over cases and outputs
    drift_max_abs: float | None = None
    # the converted model's error against the float64 reference over the source's own (None: fixed rule)
    drift_ratio: float | None = None
    top1_agreement: float | None = None  # for logits-like outputs
    first_diverging_layer: str | None = None
    transposes_inserted: int | None = None
    source_bytes: int | None = None
    converted_bytes: int | None = None
    manual_work: list[WorkItem] = field(default_factory=list)
    # parity of the kept road on other devices (`--device cuda`): device -> {status, profile, drift_rel_l2,
    # reason, precision (the modes in force, e.g. TF32 flags), warnings}; CPU parity is the row itself
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    effort_hours: float | None = None
    effort_terms: dict[str, float] = field(default_factory=dict)  # term name -> hours, summing to effort_hours
    content_hash: str = ""
    cached: bool = False  # read from the cache, not measured in this run
    measurements: Measurements = field(default_factory=Measurements)

    @property
    def layer_coverage(self) -> float | None:
        return self.layers_covered / self.layers_total if self.layers_total and self.layers_covered is not None else None

    @property
    def param_coverage(self) -> float | None:
        return self.params_covered / self.params_total if self.params_total and self.params_covered is not None else None

    @property
    def size_ratio(self) -> float | None:
        return self.converted_bytes / self.source_bytes if self.source_bytes and self.converted_bytes else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["measurements"] = self.measurements.to_dict()
        d |= {"layer_coverage": self.layer_coverage, "param_coverage": self.param_coverage,
              "size_ratio": self.size_ratio}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditRow":
        known = {f.name for f in dataclasses.fields(cls)}  # derived values and fields of other versions dropped
        fields = {k: v for k, v in d.items() if k in known}
        fields["roads"] = [RoadResult.from_dict(r) for r in d.get("roads", [])]
        fields["manual_work"] = [WorkItem.from_dict(w) for w in d.get("manual_work", [])]
        fields["measurements"] = Measurements.from_dict(d.get("measurements", {}))
        return cls(**fields)


@dataclass
class AuditReport:
    """A whole audit: options, the effort formula used, one row per model, and what was skipped."""

    rows: list[AuditRow]
    options: dict[str, Any] = field(default_factory=dict)  # to, roads, seeds, profile, executor, jobs, ...
    effort_formula: str = ""  # e.g. "hours = 4 × op types + 0.25 × occurrences + ..."
    effort_coefficients: dict[str, float] = field(default_factory=dict)
    effort_source: str = ""  # the coefficients file
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}: files not taken as models
    porttax_version: str = ""
    created: str = ""  # ISO 8601, UTC
    jobs_run: int = 0  # models measured in this run (the rest came from the cache)

    def summary(self) -> dict[str, Any]:
        by_status = {s: sum(1 for r in self.rows if r.status == s) for s in STATUSES}
        hours = [r.effort_hours for r in self.rows if r.effort_hours is not None]
        return {"models": len(self.rows), "by_status": by_status, "effort_hours": sum(hours),
                "cached": sum(1 for r in self.rows if r.cached), "jobs_run": self.jobs_run}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "porttax_version": self.porttax_version,
            "created": self.created,
            "options": self.options,
            "effort": {"formula": self.effort_formula, "coefficients": self.effort_coefficients,
                       "source": self.effort_source},
            "summary": self.summary(),
            "models": [r.to_dict() for r in self.rows],
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditReport":
        effort = d.get("effort", {})
        return cls(rows=[AuditRow.from_dict(r) for r in d.get("models", [])], options=d.get("options", {}),
                   effort_formula=effort.get("formula", ""), effort_coefficients=effort.get("coefficients", {}),
                   effort_source=effort.get("source", ""), skipped=d.get("skipped", []),
                   porttax_version=d.get("porttax_version", ""), created=d.get("created", ""),
                   jobs_run=d.get("summary", {}).get("jobs_run", 0))
