"""`porttax inspect`: what a model is made of and which road converts each part, without converting.

Coverage comes from the converter registries through the same scans the converters use to refuse a
model up front (`scan_ops`, `scan_layers`, `find_unsupported`), so inspect can never promise a layer the
conversion then refuses. A PyTorch source is captured with `torch.export` (that is how porttax reads
it); nothing is converted, written or run. `deep=True` also exports a PyTorch source to ONNX in a
scratch folder to price the ONNX road, which costs an export.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError

MAX_WHERE = 5  # locations listed per op; the count says how many there are in all


@dataclass
class OpCount:
    """One op or layer type: how often it occurs, where, and which roads convert it."""

    op: str
    count: int
    where: list[str] = field(default_factory=list)
    roads: dict[str, bool] = field(default_factory=dict)


@dataclass
class RoadCoverage:
    """How much of the model one road converts, by the registries."""

    road: str  # "direct", "onnx"
    target: str  # "keras", "torch"
    layers_total: int = 0
    layers_covered: int = 0
    params_total: int = 0
    params_covered: int = 0
    unsupported: list[OpCount] = field(default_factory=list)
    note: str = ""

    @property
    def complete(self) -> bool:
        return not self.unsupported and not self.note.startswith("unknown")


@dataclass
class Inspection:
    path: str
    format: str  # see porttax.audit.rows.AuditRow.format
    framework: str  # "torch", "keras", "onnx"
    inputs: list[dict[str, Any]]
    params_total: int
    dtypes: dict[str, int]  # parameter count per dtype
    layer_types: dict[str, int]  # layer / module class -> how many layers of it
    ops: list[OpCount]
    roads: list[RoadCoverage]
    seconds: float = 0.0
    targets: list[Any] = field(default_factory=list)  # porttax.targets.inspect.TargetCheck, per target

    def road(self, name: str) -> RoadCoverage | None:
        return next((r for r in self.roads if r.road == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for r, road in zip(d["roads"], self.roads):
            r["complete"] = road.complete
        return d

    def lines(self) -> list[str]:
        sig = ", ".join(f"{s['name']}{s['shape']}:{s['dtype']}" for s in self.inputs)
        dtypes = ", ".join(f"{k} {v:,}" for k, v in self.dtypes.items()) or "none"
        out = [f"{self.path}: {self.format} ({self.framework}), inputs {sig}",
               f"parameters  {self.params_total:,} ({dtypes})",
               f"layers      {sum(self.layer_types.values())} of {len(self.layer_types)} types: "
               + ", ".join(f"{k} ×{v}" for k, v in list(self.layer_types.items())[:12])
               + (" …" if len(self.layer_types) > 12 else "")]
        for road in self.roads:
            if road.note.startswith("unknown"):
                out.append(f"road {road.road:<7} → {road.target}: {road.note}")
                continue
            cov = f"{road.layers_covered}/{road.layers_total} layers"
            if road.params_total:
                cov += f", {100 * road.params_covered / road.params_total:.1f}% of parameters"
            verdict = "covers everything" if road.complete else (road.note or f"{len(road.unsupported)} op type(s) missing")
            out.append(f"road {road.road:<7} → {road.target}: {cov}; {verdict}")
            for op in road.unsupported:
                where = ", ".join(op.where) + (" …" if op.count > len(op.where) else "")
                out.append(f"  unsupported {op.op} ×{op.count} in {where}")
        width = max((len(o.op) for o in self.ops), default=10)
        out.append(f"ops ({len(self.ops)} types, {sum(o.count for o in self.ops)} calls):")
        for op in self.ops:
            marks = " ".join(f"{r}:{'yes' if ok else 'NO'}" for r, ok in op.roads.items())
            out.append(f"  {op.op:<{width}} ×{op.count:<4} {marks}")
        out.extend(t.line() for t in self.targets)
        out.append(f"inspected in {self.seconds:.1f} s (nothing kept)")
        return out


def sniff_format(path: Path) -> str:
    """The format of a model path, from its name and a few bytes: never loads it (porttax.sources.sniff).
    A `.keras` file says "keras"; a torch.save file "state_dict" until loading shows it holds a module."""
    from porttax import sources

    fmt = sources.sniff(path)
    return fmt.name if fmt is not None else "unknown"


def inspect_model(
    source: str | Path,
    *,
    arch: str | None = None,
    config: Any = None,
    trust_pickle: bool = False,
    trust_code: bool = False,
    input_shapes: Sequence[Sequence[int]] | None = None,
    input_dtypes: Sequence[str] | None = None,
    deep: bool = False,
) -> Inspection:
    """Layers, parameters, dtypes and per-road coverage of a model file, without converting it."""
    t0 = time.perf_counter()
    path = Path(source)
    if not path.exists():
        raise InputError("no such model file or directory", path=str(path))
    fmt = sniff_format(path)
    if fmt in ("keras", "h5", "savedmodel"):
        result = _inspect_keras(path, fmt, trust_code)
    elif fmt == "onnx":
        result = _inspect_onnx(path)
    else:
        result = _inspect_torch(path, fmt, arch=arch, config=config, trust_pickle=trust_pickle,
                                trust_code=trust_code, input_shapes=input_shapes, input_dtypes=input_dtypes, deep=deep)
    result.seconds = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------- PyTorch


def _inspect_torch(path: Path, fmt: str, *, deep: bool, **load: Any) -> Inspection:
    from porttax._frameworks import import_torch
    from porttax.converters.torch_to_keras.driver import scan_ops
    from porttax.torch_ir import decompose
    from porttax.sources.torch_source import load_torch_source

    import_torch()
    import porttax.converters.torch_to_keras  # noqa: F401  (registers converters)

    src = load_torch_source(path, **load)
    if fmt == "state_dict" and src.origin == "pickle":
        fmt = "pickle"
    ep = decompose(src.program)
    scanned = scan_ops(ep)
    layers: "OrderedDict[str, str]" = OrderedDict((u.module, u.module_type) for u in scanned)
    uses = [u for u in scanned if u.needs_converter]

    # parameters belong to the module of the first op that reads them
    param_of = {s.arg.name: s.target for s in ep.graph_signature.input_specs if s.kind.name in ("PARAMETER", "BUFFER")}
    module_params: Counter[str] = Counter()
    dtypes: Counter[str] = Counter()
    owned: set[str] = set()
    stored = ep.state_dict  # parameters and persistent buffers (BatchNorm statistics): what a checkpoint holds
    for use in uses:
        for arg in use.node.all_input_nodes:
            target = param_of.get(arg.name)
            if target is None or target in owned or target not in stored:
                continue
            owned.add(target)
            module_params[use.module] += stored[target].numel()
    for tensor in stored.values():
        dtypes[str(tensor.dtype).replace("torch.", "")] += tensor.numel()
    params_total = sum(dtypes.values())

    counts: dict[str, OpCount] = {}
    broken: set[str] = set()
    for use in uses:
        if not use.live:
            continue  # folded to a constant at conversion: no converter needed
        entry = counts.setdefault(use.op, OpCount(use.op, 0, roads={"direct": use.converter is not None}))
        entry.count += 1
        if use.module not in entry.where and len(entry.where) < MAX_WHERE:
            entry.where.append(use.module or "<top level>")
        if use.converter is None:
            broken.add(use.module)
    direct = RoadCoverage("direct", "keras", layers_total=len(layers),
                          layers_covered=sum(1 for m in layers if m not in broken), params_total=params_total,
                          params_covered=params_total - sum(module_params[m] for m in broken),
                          unsupported=[o for o in counts.values() if not o.roads["direct"]])
    onnx_road = _torch_onnx_road(src, layers, params_total) if deep else RoadCoverage(
        "onnx", "keras", note="unknown until torch.onnx.export runs (porttax inspect --deep, or the audit, tries it)")
    if deep:
        for entry in counts.values():
            entry.roads["onnx"] = onnx_road.complete
    type_counts = Counter(short_type(t) for m, t in layers.items())
    from porttax.targets.inspect import torch_targets

    return Inspection(str(path), fmt, "torch", [s.to_dict() for s in src.specs], params_total, dict(dtypes),
                      dict(type_counts.most_common()), sorted(counts.values(), key=lambda o: -o.count),
                      [direct, onnx_road], targets=torch_targets(src, src.program, direct, onnx_road, deep=deep))


def _torch_onnx_road(src: Any, layers: dict[str, str], params_total: int) -> RoadCoverage:
    """Export to ONNX in a scratch folder and check its ops against the ONNX → torch registry."""
    import onnx

    from porttax.errors import PorttaxError
    from porttax.targets.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="porttax-inspect-") as tmp:
        try:
            model = export_onnx(src.program, src.example, Path(tmp) / "model.onnx", name=src.name)
        except PorttaxError as exc:  # the exporter's own failure is this road's verdict
            return RoadCoverage("onnx", "keras", note=f"unknown: {exc.message}")
    from porttax.converters.onnx_to_torch.driver import find_unsupported

    missing = find_unsupported(model)
    unsupported = [OpCount(op, len(nodes), nodes[:MAX_WHERE], {"onnx": False}) for op, nodes in sorted(missing.items())]
    covered = len(layers) if not missing else 0
    return RoadCoverage("onnx", "keras", layers_total=len(layers), layers_covered=covered, params_total=params_total,
                        params_covered=params_total if not missing else 0, unsupported=unsupported,
                        note="" if not missing else "the exported graph has ops porttax's ONNX registry lacks")


def short_type(type_name: str) -> str:
    """'torch.nn.modules.conv.Conv2d' → 'Conv2d'; keeps user classes recognisable but short."""
    return type_name.rsplit(".", 1)[-1] if type_name else type_name


# ---------------------------------------------------------------- Keras


def _inspect_keras(path: Path, fmt: str, trust_code: bool) -> Inspection:
    from porttax.converters.keras_to_torch.driver import scan_layers
    from porttax.sources.keras_source import load_keras_source

    src = load_keras_source(path, trust_code=trust_code)
    uses = scan_layers(src.model)
    dtypes: Counter[str] = Counter()
    counts: dict[str, OpCount] = {}
    params_total = params_covered = 0
    for use in uses:
        n = 0
        for w in getattr(use.layer, "weights", []):
            size = math.prod(int(d) for d in w.shape)
            dtypes[str(w.dtype)] += size
            n += size
        params_total += n
        ok = use.converter is not None
        params_covered += n if ok else 0
        entry = counts.setdefault(use.op, OpCount(use.op, 0, roads={"direct": ok}))
        entry.count += 1
        if len(entry.where) < MAX_WHERE:
            entry.where.append(use.where)
    road = RoadCoverage("direct", "torch", layers_total=len(uses),
                        layers_covered=sum(1 for u in uses if u.converter is not None), params_total=params_total,
                        params_covered=params_covered, unsupported=[o for o in counts.values() if not o.roads["direct"]])
    from porttax.targets.inspect import keras_targets

    return Inspection(str(path), fmt, "keras", [s.to_dict() for s in src.specs], params_total, dict(dtypes),
                      dict(Counter(u.op for u in uses).most_common()), sorted(counts.values(), key=lambda o: -o.count),
                      [road], targets=keras_targets(road))


# ---------------------------------------------------------------- ONNX


def _inspect_onnx(path: Path) -> Inspection:
    import numpy as np
    import onnx

    from porttax.converters.onnx_to_torch.driver import find_unsupported
    from porttax.sources.file_checks import check_onnx_external_data

    check_onnx_external_data(path)  # before the protobuf parser sees more than the model itself
    model = onnx.load(str(path), load_external_data=False)
    from porttax.converters.onnx_to_torch.driver import upgrade_opset

    model, _ = upgrade_opset(model, path.name)  # the ops as porttax will convert them
    missing = find_unsupported(model)
    sizes = {t.name: (int(np.prod(t.dims)) if len(t.dims) else 1, onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name)
             for t in model.graph.initializer}
    dtypes: Counter[str] = Counter()
    for n, dt in sizes.values():
        dtypes[dt] += n
    params_total = sum(n for n, _ in sizes.values())
    counts: dict[str, OpCount] = {}
    owned: set[str] = set()
    params_covered = 0
    nodes = [n for n in model.graph.node if n.op_type != "Constant"]
    for node in nodes:
        op = f"{node.domain + '.' if node.domain else ''}{node.op_type}"
        ok = op not in missing
        entry = counts.setdefault(op, OpCount(op, 0, roads={"direct": ok}))
        entry.count += 1
        if len(entry.where) < MAX_WHERE:
            entry.where.append(node.name or node.output[0])
        for name in node.input:
            if name in sizes and name not in owned:
                owned.add(name)
                params_covered += sizes[name][0] if ok else 0
    road = RoadCoverage("direct", "torch", layers_total=len(nodes),
                        layers_covered=sum(1 for n in nodes if f"{n.domain + '.' if n.domain else ''}{n.op_type}" not in missing),
                        params_total=params_total, params_covered=params_covered,
                        unsupported=[o for o in counts.values() if not o.roads["direct"]])
    inputs = _onnx_inputs(model)
    from porttax.targets.inspect import onnx_targets

    return Inspection(str(path), "onnx", "onnx", inputs, params_total, dict(dtypes),
                      dict(Counter(o.op for o in counts.values() for _ in range(o.count)).most_common()),
                      sorted(counts.values(), key=lambda o: -o.count), [road], targets=onnx_targets(road))


def _onnx_inputs(model: Any) -> list[dict[str, Any]]:
    import onnx

    init = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in init:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        out.append({"name": vi.name, "shape": shape,
                    "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "?"})
    return out
