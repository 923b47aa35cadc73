"""PyTorch (or Keras, or ONNX) → ExecuTorch `.pte`: the captured program, lowered to an edge program with
the XNNPACK delegate where it applies, checked in ExecuTorch's own runtime.

ExecuTorch is how a torch model ships to phones and microcontrollers: `torch.export` → edge dialect
(core ATen ops only) → XNNPACK takes the subgraphs it has kernels for (convolutions, linear layers,
elementwise ops, pooling), the portable kernels run the rest → one flatbuffer. The `.pte` is static-shaped
at the shapes it was captured with. It stores no input names, so porttax adds two constant methods,
`porttax_input_names` and `porttax_output_names` (JSON strings): parity can then feed it by name, and
any ExecuTorch runtime ignores methods it does not call.

Parity and latency run the written file in `executorch.runtime` on this process's CPU: the drift a
phone's XNNPACK gets, measured where the conversion ran.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from porttax._frameworks import require_executorch
from porttax.errors import InputError, UnsupportedError, brief
from porttax.layer_map import PTE_INPUT_NAMES as INPUT_NAMES, PTE_OUTPUT_NAMES as OUTPUT_NAMES
from porttax.progress import QUIET, Progress
from porttax.targets import Target, Way, register_target
from porttax.targets._from_keras import TorchFormat, convert_keras, input_names, static_example
from porttax.types import ConversionResult, ConvertJob
from porttax.tax import PortingTax, peak_rss_mb, size_on_disk, weight_bytes




@dataclass
class Lowered:
    """A lowered program: its flatbuffer, and how much of it the XNNPACK delegate took."""

    buffer: bytes
    delegated_ops: int  # ops inside XNNPACK subgraphs
    portable_ops: dict[str, int]  # op type → count, run by ExecuTorch's portable kernels

    def note(self) -> str:
        total = self.delegated_ops + sum(self.portable_ops.values())
        rest = ", ".join(f"{op} ×{n}" if n > 1 else op for op, n in sorted(self.portable_ops.items()))
        return (f"XNNPACK runs {self.delegated_ops} of {total} ops" +
                (f"; portable kernels run {rest}" if rest else ""))


def program_to_pte(program: Any, *, input_names: Sequence[str], output_names: Sequence[str] | None = None,
                   delegate: bool = True, name: str = "model") -> Lowered:
    """`program` as a .pte flatbuffer, XNNPACK-delegated where it applies (everything else: portable ops)."""
    require_executorch()
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    partitioners = []
    if delegate:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners.append(XnnpackPartitioner())
    constants = {INPUT_NAMES: json.dumps(list(input_names))}
    if output_names is not None:
        constants[OUTPUT_NAMES] = json.dumps(list(output_names))
    try:
        edge = to_edge_transform_and_lower(program, partitioner=partitioners, constant_methods=constants,
                                           compile_config=EdgeCompileConfig(_check_ir_validity=True))
        delegated, portable = _count_ops(edge.exported_program())
        return Lowered(bytes(edge.to_executorch().buffer), delegated, portable)
    except Exception as exc:  # exir raises its own types; the first line names the op it stopped at
        raise UnsupportedError(f"{name}: ExecuTorch could not lower the program: {brief(exc)}",
                               hint="the model uses an op the edge dialect or its kernels lack; "
                               "convert --to onnx or --to tflite instead") from exc


def _count_ops(edge_program: Any) -> tuple[int, dict[str, int]]:
    delegated, portable = 0, {}
    for node in edge_program.graph.nodes:
        if node.op != "call_function":
            continue
        target = str(node.target)
        if "executorch_call_delegate" in target:
            lowered = getattr(edge_program.graph_module, str(node.args[0].target), None)
            inner = getattr(lowered, "original_module", None)
            delegated += sum(1 for n in inner.graph.nodes if n.op == "call_function") if inner is not None else 1
        elif target != "<built-in function getitem>":
            op = target.split("aten.")[-1].split(".")[0] if "aten." in target else target
            portable[op] = portable.get(op, 0) + 1
    return delegated, portable


def fixed_example(src: Any) -> tuple[Any, ...]:
    """The source's example with each open batch axis cut to 1: a phone runs one input at a time, and
    a .pte cannot take another size (its other open dims keep the example's size)."""
    out = []
    for x, spec in zip(src.example, src.specs):
        for axis, d in enumerate(spec.shape):
            if isinstance(d, str) and "batch" in d and x.shape[axis] > 1:
                x = x.narrow(axis, 0, 1)
        out.append(x)
    return tuple(out)


def static_program(program: Any, example: Sequence[Any]) -> Any:
    """The program re-exported at the example's shapes: a .pte has no symbolic dimensions."""
    from porttax._frameworks import import_torch
    from porttax.torch_ir import is_open

    torch = import_torch()
    dims = [d for node in program.graph.nodes if node.op == "placeholder"
            for d in getattr(node.meta.get("val"), "shape", ())]
    if not any(is_open(d) for d in dims):
        return program
    return torch.export.export(program.module(), tuple(example), strict=False)


def convert_torch_to_executorch(src: Any, *, output: str | Path, parity: bool = True,
                                seeds: Sequence[int] = (0, 1, 2), profile: str = "fp32", reference: str = "auto",
                                measure_latency: bool = True, force: bool = False,
                                progress: Progress | None = None, t0: float | None = None) -> Any:
    """Write `src.program` as a `.pte`, then prove the written file against the source."""
    from porttax.targets import _check
    from porttax.types import ConversionResult
    from porttax.converters.mapping_log import MappingLog
    from porttax.parity.runners import ExecuTorchRunner
    from porttax.saving import atomic_output
    from porttax.sources.torch_program import specs_from_program

    progress = progress or QUIET
    t0 = time.perf_counter() if t0 is None else t0
    check_pte_path(output)
    require_executorch()
    aten = [n for n in src.program.graph.nodes if n.op == "call_function"]
    tax = PortingTax(layers_total=len(aten), layers_mapped=len(aten), ops_total=len(aten), ops_folded=0)
    with atomic_output(output, force=force) as tmp:
        progress.stage(f"lowering to ExecuTorch (edge dialect, XNNPACK) and writing {output}")
        program = static_program(src.program, fixed_example(src))
        if any(isinstance(d, str) for spec in src.specs for d in spec.shape):
            src.specs = specs_from_program(program)  # parity feeds the sizes the .pte was lowered at
            note = ("a .pte has fixed shapes: " + ", ".join(f"{s.name} {tuple(s.shape)}" for s in src.specs)
                    + " (choose them with --input-shape)")
            src.capture_notes.append(note)
            progress.stage(note)
        lowered = program_to_pte(program, input_names=[s.name for s in src.specs], name=src.name)
        tmp.write_bytes(lowered.buffer)
        tax.conversion_seconds = time.perf_counter() - t0
        tax.peak_rss_mb = peak_rss_mb()
        tax.output_bytes = size_on_disk(tmp)
        tax.runtime_note = lowered.note()
        runner = ExecuTorchRunner(tmp, name=f"{src.name}.pte")
        tax.load_ms = runner.load_ms
        report = _check.run_parity(src, runner, seeds, profile, progress, reference) if parity else None
        if measure_latency:
            _check.time_both(src, runner, tax, progress)
    if report is not None:
        _check.fill_drift(tax, report)
    tax.source_weight_bytes = weight_bytes(src.program)
    return ConversionResult("executorch", Path(output), None, MappingLog(), report, tax, src)


def check_pte_path(output: str | Path | None) -> None:
    if output is None or Path(output).suffix.lower() != ".pte":
        raise InputError("an ExecuTorch program is written to a .pte file", path=str(output) if output else None,
                         hint="pass -o model.pte")


def _prepare(job: ConvertJob) -> None:
    check_pte_path(job.output)
    require_executorch()  # the runtime is an optional extra: say so before the slow part


def _from_torch(job: ConvertJob) -> ConversionResult:
    return convert_torch_to_executorch(job.src, output=job.output, t0=job.t0, **job.checks())


def _write_from_keras(module: Any, result: Any, src: Any, path: Path) -> Any:
    """Keras → torch module → torch.export at the sizes parity feeds (a `.pte` is static) → ExecuTorch."""
    from porttax._frameworks import import_torch

    program = import_torch().export.export(module, static_example(result))
    lowered = program_to_pte(program, input_names=input_names(src), output_names=result.output_names, name=src.name)
    path.write_bytes(lowered.buffer)
    return lowered


def _reload(path: Path, module: Any, src: Any, result: Any) -> Any:
    from porttax.parity.runners import ExecuTorchRunner

    return ExecuTorchRunner(path, name=f"{src.name}.pte")


def _from_keras(job: ConvertJob) -> ConversionResult:
    return convert_keras(job, TorchFormat(".pte", _write_from_keras, _reload))


register_target(Target(
    "executorch", "an ExecuTorch program (.pte, XNNPACK-delegated)", aliases=("pte",), suffixes=(".pte",),
    output="suffix", output_hint="pass -o model.pte", prepare=_prepare,
    ways={"torch": Way(_from_torch, needs="program"), "onnx": Way(_from_torch, needs="program"),
          "keras": Way(_from_keras, needs="source", options=("channels_first",), in_memory=True)}))
