"""What each direct road converts, measured against the frameworks' own op lists.

The lists come from the installed frameworks, never from a hand-kept table: PyTorch's core ATen IR (the
ops `torch.export` decomposes to, tagged `torch.Tag.core`), the layer classes `keras.layers` exports, and
ONNX's default-domain operator schemas. Each entry is looked up in the converter registry the roads use,
so this table cannot drift from the code, and a framework release that adds an op shows up here as a new
"refused" row. What an inference converter cannot mean is out of scope, each with its reason; the rules
are below, short on purpose.

`porttax inspect --coverage` prints it; docs/coverage.md is its Markdown, regenerated with
`porttax inspect --coverage --markdown > docs/coverage.md` and checked against the code by the test suite.
"""

from __future__ import annotations

import inspect as _inspect
from dataclasses import asdict, dataclass, field
from typing import Any

CONVERTS, REFUSED, OUT_OF_SCOPE = "converts", "refused", "out of scope"

# ---- what is out of scope, and why -----------------------------------------------------------------

_RANDOM = "random without a seed contract: no converted model can reproduce torch's generator"
ATEN_OUT_OF_SCOPE = {
    "rand": _RANDOM, "randn": _RANDOM, "randperm": _RANDOM,
    "_local_scalar_dense": "`.item()`: reads a value into Python, where the exported program turns it into guards",
    "sym_storage_offset": "memory-layout query: a Keras tensor has no storage offset",
    "sym_stride": "memory-layout query: a Keras tensor has no strides",
}
_BACKWARD = "training: the gradient of another op"

_FOREIGN = "runs another framework's code, not a Keras layer graph"
KERAS_OUT_OF_SCOPE = {
    "Layer": "the base class: a subclass converts by its own class, or by the layers it calls",
    "Wrapper": "the base class of Bidirectional and TimeDistributed, which convert by their own classes",
    "Lambda": "an arbitrary Python function, not a layer graph porttax can read",
    "TFSMLayer": "wraps a TensorFlow SavedModel: convert that SavedModel itself",
    "TorchModuleWrapper": "only exists on Keras' torch backend, around a module that already is PyTorch",
    "JaxLayer": _FOREIGN, "FlaxLayer": _FOREIGN,
    "StringLookup": "string tensors", "TextVectorization": "string tensors",
    "Hashing": "FarmHash of the values' string form, a TensorFlow string kernel",
    "HashedCrossing": "FarmHash of the values' string form, a TensorFlow string kernel",
    "MaxNumBoundingBoxes": "bounding-box dictionaries of a preprocessing pipeline, not model tensors",
}

_STRINGS = "string tensors"
_OPTIONAL = "optional types"
_RANDOM_ONNX = "random without a seed contract: no converted model can reproduce onnxruntime's generator"
ONNX_OUT_OF_SCOPE = {
    "StringConcat": _STRINGS, "StringNormalizer": _STRINGS, "StringSplit": _STRINGS, "RegexFullMatch": _STRINGS,
    "ImageDecoder": "decodes encoded image bytes (a file format, not a tensor op)",
    "Optional": _OPTIONAL, "OptionalGetElement": _OPTIONAL, "OptionalHasElement": _OPTIONAL,
    "Bernoulli": _RANDOM_ONNX, "Multinomial": _RANDOM_ONNX, "RandomNormal": _RANDOM_ONNX,
    "RandomNormalLike": _RANDOM_ONNX, "RandomUniform": _RANDOM_ONNX, "RandomUniformLike": _RANDOM_ONNX,
}


@dataclass(frozen=True)
class CoverageRow:
    op: str  # as the source framework names it: `aten.topk`, `Conv2D`, `Resize`
    status: str  # CONVERTS, REFUSED or OUT_OF_SCOPE
    converter: str = ""  # family.function of the converter, or "driver" where the driver handles the op
    note: str = ""  # why it is out of scope; for core ATen, the battery samples that check it


@dataclass
class RoadCoverage:
    road: str  # "torch → keras"
    op_set: str  # "core ATen IR (torch 2.14.1)"
    rows: list[CoverageRow] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.rows)

    @property
    def in_scope(self) -> int:
        return len(self.rows) - self.count(OUT_OF_SCOPE)

    @property
    def share(self) -> float:
        return self.count(CONVERTS) / self.in_scope if self.in_scope else 1.0

    def summary(self) -> str:
        return (f"{self.road}: {self.count(CONVERTS)} of {self.in_scope} in-scope {self.op_set} convert "
                f"({100 * self.share:.1f}%); {self.count(OUT_OF_SCOPE)} out of scope")

    def to_dict(self) -> dict[str, Any]:
        return {"road": self.road, "op_set": self.op_set, "converts": self.count(CONVERTS),
                "in_scope": self.in_scope, "out_of_scope": self.count(OUT_OF_SCOPE), "share": self.share,
                "rows": [asdict(r) for r in self.rows]}


# ---- the three roads ------------------------------------------------------------------------------


def core_aten_ops(torch: Any) -> dict[str, list[str]]:
    """{op name: its core-tagged overload names} for every op in torch.ops.aten."""
    core: dict[str, list[str]] = {}
    for name in dir(torch.ops.aten):
        try:
            packet = getattr(torch.ops.aten, name)
            overloads = packet.overloads()
        except (AttributeError, RuntimeError):
            continue
        for overload in overloads:
            if torch.Tag.core in getattr(packet, overload).tags:
                core.setdefault(name, []).append(overload)
    return core


def torch_to_keras() -> RoadCoverage:
    """Core ATen against the torch → Keras registry; each converting op names the battery samples checking it."""
    from porttax._frameworks import import_torch

    torch = import_torch()
    import porttax.converters.torch_to_keras  # noqa: F401  (registers the converters)
    from porttax.converters.registry import REGISTRY
    from porttax.converters.torch_to_keras.driver import HANDLED_BY_DRIVER
    from porttax.converters.torch_to_keras.samples import SAMPLES

    sampled: dict[str, list[str]] = {}
    for sample in SAMPLES:
        for key in sample.ops:
            parts = key.split(".")
            sampled.setdefault(".".join(parts[:2]), []).append(sample.name)
    road = RoadCoverage("torch → keras", f"core ATen ops (torch {torch.__version__.split('+')[0]})")
    for name, overloads in sorted(core_aten_ops(torch).items()):
        key = f"aten.{name}"
        conv = next((c for c in (REGISTRY.lookup("torch", "keras", k) for k in
                                 [key, *(f"{key}.{o}" for o in overloads)]) if c is not None), None)
        if conv is not None:
            samples = sampled.get(key, [])
            road.rows.append(CoverageRow(key, CONVERTS, conv.name, _samples_note(samples)))
        elif key in HANDLED_BY_DRIVER:
            road.rows.append(CoverageRow(key, CONVERTS, "driver", "a size or an assertion, read at conversion"))
        elif name.endswith("_backward"):
            road.rows.append(CoverageRow(key, OUT_OF_SCOPE, note=_BACKWARD))
        elif name in ATEN_OUT_OF_SCOPE:
            road.rows.append(CoverageRow(key, OUT_OF_SCOPE, note=ATEN_OUT_OF_SCOPE[name]))
        else:
            road.rows.append(CoverageRow(key, REFUSED))
    return road


def _samples_note(samples: list[str]) -> str:
    if not samples:
        return "no battery sample"
    shown = ", ".join(samples[:3])
    return f"{len(samples)} samples: {shown}{', …' if len(samples) > 3 else ''}" if len(samples) > 1 else shown


def keras_layer_classes(keras: Any) -> dict[str, type]:
    """{class name: class} of every layer class `keras.layers` exports (aliases counted once)."""
    out: dict[str, type] = {}
    for obj in vars(keras.layers).values():
        if _inspect.isclass(obj) and issubclass(obj, keras.layers.Layer):
            out.setdefault(obj.__name__, obj)
    return out


def keras_to_torch() -> RoadCoverage:
    """`keras.layers` against the Keras → torch registry (the driver's own lookup, subclasses included)."""
    from porttax._frameworks import import_keras, import_torch

    import_torch()
    keras = import_keras()
    import porttax.converters.keras_to_torch.families  # noqa: F401  (registers the converters)
    from porttax.converters.keras_to_torch.driver import converter_for_class

    road = RoadCoverage("keras → torch", f"keras.layers classes (Keras {keras.__version__})")
    for name, cls in sorted(keras_layer_classes(keras).items()):
        conv = converter_for_class(cls)
        if conv is not None:
            road.rows.append(CoverageRow(name, CONVERTS, conv.name))
        elif name == "InputLayer":
            road.rows.append(CoverageRow(name, CONVERTS, "driver", "the model's inputs"))
        elif name in KERAS_OUT_OF_SCOPE:
            road.rows.append(CoverageRow(name, OUT_OF_SCOPE, note=KERAS_OUT_OF_SCOPE[name]))
        else:
            road.rows.append(CoverageRow(name, REFUSED))
    return road


def onnx_to_torch() -> RoadCoverage:
    """ONNX's default-domain operators (newest schemas) against the ONNX → torch registry."""
    import onnx
    import onnx.defs

    from porttax._frameworks import import_torch

    import_torch()
    import porttax.converters.onnx_to_torch.families  # noqa: F401  (registers the converters)
    from porttax.converters.registry import REGISTRY

    names = sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain in ("", "ai.onnx")})
    road = RoadCoverage("onnx → torch", f"default-domain ONNX operators (onnx {onnx.__version__})")
    for name in names:
        conv = REGISTRY.lookup("onnx", "torch", name)
        if conv is not None:
            road.rows.append(CoverageRow(name, CONVERTS, conv.name))
        elif name == "Constant":
            road.rows.append(CoverageRow(name, CONVERTS, "driver", "folded at conversion"))
        elif name in ONNX_OUT_OF_SCOPE:
            road.rows.append(CoverageRow(name, OUT_OF_SCOPE, note=ONNX_OUT_OF_SCOPE[name]))
        else:
            road.rows.append(CoverageRow(name, REFUSED))
    return road


ROADS = {"torch-keras": torch_to_keras, "keras-torch": keras_to_torch, "onnx-torch": onnx_to_torch}


def coverage(roads: list[str] | None = None) -> list[RoadCoverage]:
    """The coverage of each road named (keys of ROADS), all of them by default."""
    return [ROADS[r]() for r in (roads or list(ROADS))]


# ---- rendering -----------------------------------------------------------------------------------


def lines(tables: list[RoadCoverage]) -> list[str]:
    """For a terminal: each road's summary, then what it refuses and what is out of scope."""
    out: list[str] = []
    for t in tables:
        out.append(t.summary())
        refused = [r.op for r in t.rows if r.status == REFUSED]
        if refused:
            out.append(f"  refused ({len(refused)}): " + ", ".join(refused))
        for r in t.rows:
            if r.status == OUT_OF_SCOPE:
                out.append(f"  out of scope: {r.op} — {r.note}")
    return out


def markdown(tables: list[RoadCoverage]) -> str:
    """docs/coverage.md: every row of every road."""
    out = ["# What the direct roads convert", "",
           "Generated by `porttax inspect --coverage --markdown > docs/coverage.md` from the converter registries",
           "and the installed frameworks' own op lists; the test suite fails when it no longer matches the code.",
           "The Keras and SavedModel roads from ONNX go through the torch module, so they take what `onnx → torch`",
           "takes and then what `torch → keras` takes; `bench/onnx_conformance.py` measures each road on ONNX's",
           "own node tests.", ""]
    for t in tables:
        out.append(f"- {t.summary()}")
    for t in tables:
        out += ["", f"## {t.road}: {t.op_set}", "", "| op | status | converter | note |", "| --- | --- | --- | --- |"]
        out += [f"| `{r.op}` | {r.status} | {r.converter and f'`{r.converter}`'} | {r.note} |" for r in t.rows]
    return "\n".join(out) + "\n"
