"""Per target: can porttax take this model there, and which ops stop it? (`porttax inspect`'s targets.)

Cheap checks come from what the converters themselves consult: the torch → Keras registry decides
`.keras`, SavedModel, `.tflite` and TF.js (they all start from the Keras model); ExecuTorch takes core
ATen ops, so an op outside that set after the core decompositions is one it cannot lower. What only
a target's own converter knows — TF Select (Flex) ops for LiteRT, ops without a TF.js kernel, an
edge-dialect lowering failure, the ONNX exporter's verdict — is tried with `--deep`, in memory or a
scratch folder, and nothing is kept.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porttax.errors import PorttaxError

MAX_WHERE = 5


@dataclass
class TargetCheck:
    """One target: yes, no (with the ops that stop it), or unknown until `--deep` tries it."""

    target: str  # "keras", "savedmodel", "onnx", "tflite", "executorch", "torch"
    via: str  # the road porttax takes there
    ok: bool | None  # None: not known without trying (--deep)
    unsupported: list[dict[str, Any]] = field(default_factory=list)  # {"op", "count", "where"}
    note: str = ""
    tried: bool = False  # --deep ran the target's own converter

    def line(self) -> str:
        verdict = {True: "yes", False: "NO", None: "unknown"}[self.ok]
        how = " (tried)" if self.tried else ""
        text = f"target {self.target:<11} {verdict}{how} via {self.via}"
        if self.note:
            text += f": {self.note}"
        ops = "; ".join(f"{u['op']} ×{u['count']} in {', '.join(u['where'])}" for u in self.unsupported[:8])
        return text + (f"\n  cannot take: {ops}" if ops else "")


def torch_targets(src: Any, program: Any, direct: Any, onnx_road: Any, *, deep: bool) -> list[TargetCheck]:
    """Targets of a PyTorch source; `direct` / `onnx_road` are inspect's RoadCoverage of the Keras roads."""
    keras_ok = direct.complete or onnx_road.complete
    missing = [{"op": o.op, "count": o.count, "where": o.where} for o in direct.unsupported]
    via = "direct road" if direct.complete or not onnx_road.complete else "onnx road"
    keras = TargetCheck("keras", via, True if keras_ok else False, [] if keras_ok else missing)
    checks = [keras, TargetCheck("savedmodel", via, keras.ok, keras.unsupported)]
    if deep:
        exported = not onnx_road.note.startswith("unknown")
        checks.append(TargetCheck("onnx", "torch.onnx.export", exported, note="" if exported else onnx_road.note,
                                  tried=True))
    else:
        checks.append(TargetCheck("onnx", "torch.onnx.export", None, note="--deep runs the exporter"))
    checks.extend(_tf_family(src, keras, deep))
    checks.append(_executorch(program, src, deep))
    return checks


def keras_targets(direct: Any) -> list[TargetCheck]:
    """Targets of a Keras source: torch by porttax's Keras → torch registry, ExecuTorch and ONNX after it."""
    missing = [{"op": o.op, "count": o.count, "where": o.where} for o in direct.unsupported]
    if not direct.complete:
        return [TargetCheck(t, via, False, missing) for t, via in
                (("torch", "direct road"), ("onnx", "torch road"), ("executorch", "torch road"))]
    return [TargetCheck("torch", "direct road", True),
            TargetCheck("onnx", "torch road, then torch.onnx.export", None, note="convert to run the exporter"),
            TargetCheck("executorch", "torch road, then the edge dialect", None, note="convert to run the lowering")]


def onnx_targets(direct: Any) -> list[TargetCheck]:
    """Targets of an ONNX source: torch by porttax's ONNX registry; the Keras family after it."""
    missing = [{"op": o.op, "count": o.count, "where": o.where} for o in direct.unsupported]
    checks = [TargetCheck("torch", "ONNX registry", direct.complete, [] if direct.complete else missing)]
    for target in ("keras", "savedmodel", "tflite", "tfjs", "executorch"):
        checks.append(TargetCheck(target, "torch road", False, missing) if not direct.complete else
                      TargetCheck(target, "torch road", None, note="inspect the .pt2 of `--to torch` for this target"))
    return checks


def _tf_family(src: Any, keras: TargetCheck, deep: bool) -> list[TargetCheck]:
    """LiteRT and TF.js, both converted from the SavedModel: with --deep, one SavedModel in a scratch
    folder goes through TF's TFLite converter and the tensorflowjs converter (in its own environment,
    created on first use), and each names the ops it cannot take."""
    tflite_via, tfjs_via = "SavedModel, TFLite builtins", "SavedModel, tensorflowjs converter"
    if not keras.ok:
        return [TargetCheck(t, via, False, keras.unsupported, note="the Keras model cannot be built")
                for t, via in (("tflite", tflite_via), ("tfjs", tfjs_via))]
    if not deep:
        return [TargetCheck("tflite", tflite_via, None,
                            note="TF Select (Flex) ops show only in TF's converter: --deep runs it"),
                TargetCheck("tfjs", tfjs_via, None, note="ops without a TF.js kernel show in its converter: --deep "
                            "runs it")]
    from porttax.converters.torch_to_keras.driver import convert_exported_program
    from porttax.targets.savedmodel import write_savedmodel
    from porttax.targets.tflite import savedmodel_to_tflite
    from porttax.targets.tfjs import savedmodel_to_tfjs

    checks = []
    with tempfile.TemporaryDirectory(prefix="porttax-inspect-tf-") as tmp:
        savedmodel = Path(tmp) / "sm"
        try:
            write_savedmodel(convert_exported_program(src.program, name=src.name).model, savedmodel)
        except PorttaxError as exc:
            return [TargetCheck(t, via, False, note=exc.message, tried=True)
                    for t, via in (("tflite", tflite_via), ("tfjs", tfjs_via))]
        for target, via, attempt in (
                ("tflite", tflite_via, lambda: savedmodel_to_tflite(savedmodel, src.name,
                                                                    input_names=[s.name for s in src.specs])),
                ("tfjs", tfjs_via, lambda: savedmodel_to_tfjs(savedmodel, Path(tmp) / "web", src.name))):
            try:
                attempt()
            except PorttaxError as exc:
                checks.append(TargetCheck(target, via, False, note=exc.message, tried=True))
            else:
                checks.append(TargetCheck(target, via, True, tried=True))
    return checks


def _executorch(program: Any, src: Any, deep: bool) -> TargetCheck:
    from porttax._frameworks import import_torch

    torch = import_torch()
    from torch._decomp import core_aten_decompositions

    via = "edge dialect, XNNPACK"
    core = program.run_decompositions(core_aten_decompositions())
    counts: Counter[str] = Counter()
    where: dict[str, list[str]] = {}
    for node in core.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        if torch.Tag.core in target.tags or "assert" in str(target):
            continue
        op = str(target.overloadpacket)
        counts[op] += 1
        stack = node.meta.get("nn_module_stack") or {}
        module = (list(stack.values())[-1][0] if stack else "") or "<top level>"
        if len(where.setdefault(op, [])) < MAX_WHERE and module not in where[op]:
            where[op].append(module)
    if counts:
        return TargetCheck("executorch", via, False,
                           [{"op": op, "count": n, "where": where[op]} for op, n in counts.most_common()],
                           note="ops outside core ATen, which the edge dialect does not take")
    if not deep:
        return TargetCheck("executorch", via, True, note="core ATen only (--deep lowers it)")
    from porttax.targets.executorch import program_to_pte, require_executorch, static_program

    try:
        require_executorch()
        lowered = program_to_pte(static_program(program, src.example), input_names=[s.name for s in src.specs],
                                 name=src.name)
    except PorttaxError as exc:
        return TargetCheck("executorch", via, False, note=exc.message, tried=True)
    return TargetCheck("executorch", via, True, note=lowered.note(), tried=True)
