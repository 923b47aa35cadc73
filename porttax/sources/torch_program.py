"""The handle every PyTorch-family source loads into: a `torch.export` program, the module to run, its inputs.

`.pt2` files, checkpoints with an architecture, trusted pickles, TorchScript archives, Hugging Face
folders and ONNX files all end as a `TorchSource` (see `porttax.sources.torch_source` and its
siblings); the converters read the program, parity runs the module.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from porttax._frameworks import import_torch
from porttax.errors import InputError
from porttax.torch_ir import is_open, size_hints
from porttax.types import TensorSpec


@dataclass
class TorchSource:
    """A PyTorch model ready to convert: the captured program, a runnable module and its inputs."""

    program: Any  # torch.export.ExportedProgram
    module: Any  # what parity runs as the source: the user's nn.Module, or the ExportedProgram
    specs: list[TensorSpec]
    example: tuple[Any, ...]
    origin: str  # "module", "pt2", "pickle", "state_dict", "torchscript", "onnx"
    path: str | None = None
    capture: str = "torch.export"  # how the program was made: "torch.export", or "onnx" (the ONNX road)
    import_log: Any = None  # MappingLog of the conversion that made the module (an ONNX file's)
    # an ONNX source's opset: {"file_opset": 9, "converted_at": 13, "upgraded_by": ...}, or {"file_opset": 17}
    onnx_opset: dict[str, Any] | None = None
    # an ONNX source's input names: {the converted model's identifier: the name in the file}
    onnx_input_names: dict[str, str] | None = None
    streamed_from_file: bool = False  # weights read one at a time from the checkpoint (porttax.lazy_weights)
    arch: str | None = None  # a state_dict source's architecture and config (porttax.models)
    config: dict[str, Any] | None = None
    # a checkpoint source's tensors as stored (key -> dtype name, "bfloat16" included), before porttax
    # widened them: what an export back to the checkpoint's layout restores
    checkpoint_dtypes: dict[str, str] | None = None
    # the float dtype of the conversion (porttax.conversion: a bf16 checkpoint stays bf16); the
    # reference module runs in it too, so parity compares like with like
    float_dtype: str = "float32"
    # the dtype its Keras variables store: a half-precision checkpoint's own (porttax.dtype_policy)
    weight_dtype: str = "float32"
    # what the capture could not keep open, one line each ("input_ids axis 1 (seq) stays 16: ...")
    capture_notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        if self.path:
            return Path(self.path).stem
        return type(self.module).__name__

    @property
    def streamed(self) -> bool:
        """Weights still in the checkpoint file (porttax.lazy_weights), read when a converter needs them."""
        from porttax.lazy_weights import is_streamed

        return isinstance(self.module, import_torch().nn.Module) and is_streamed(self.module)

    def runnable(self) -> Any:
        """The module to run as the reference; a streamed one reads all its weights first. In a
        half-precision conversion it runs in that dtype (a user's own module is copied first)."""
        from porttax.lazy_weights import materialize

        if self.streamed:
            materialize(self.module)
        torch = import_torch()
        wanted = getattr(torch, self.float_dtype)
        if isinstance(self.module, torch.nn.Module) and any(
                p.is_floating_point() and p.dtype != wanted for p in self.module.parameters()):
            if self.origin == "module":
                import copy

                self.module = copy.deepcopy(self.module)
            self.module = self.module.to(wanted)
        return self.module



def specs_from_program(program: Any) -> list[TensorSpec]:
    """Input specs from the exported graph, with valid ranges for integer inputs.

    An integer input that indexes an embedding table gets [0, num_embeddings), so seeded parity
    inputs are always valid token ids.
    """
    from torch.export.graph_signature import InputKind

    user = [s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    ranges: dict[str, tuple[int, int]] = {}
    params = {s.arg.name: s.target for s in program.graph_signature.input_specs
              if s.kind in (InputKind.PARAMETER, InputKind.BUFFER)}
    for node in program.graph.nodes:
        if node.op == "call_function" and "embedding" in str(node.target) and len(node.args) >= 2:
            weight, ids = node.args[0], node.args[1]
            if getattr(ids, "name", None) in user and getattr(weight, "name", None) in params:
                ranges[ids.name] = (0, int(program.state_dict[params[weight.name]].shape[0]))
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    dim_names = _symbolic_dim_names([(n.name, n.meta["val"].shape) for n in placeholders])
    specs = []
    for node in placeholders:
        val = node.meta["val"]
        dtype = str(val.dtype).replace("torch.", "")
        shape = tuple(dim_names.get(str(d), 0) if is_open(d) else size_hints((d,))[0] for d in val.shape)
        specs.append(TensorSpec(node.name, shape, dtype,
                                ranges.get(node.name, (0, 2) if not val.dtype.is_floating_point else None)))
    return specs


def dim_bounds(program: Any) -> dict[str, tuple[int, int]]:
    """{spec dim name: (lowest, highest) size} of a dynamic export's open dims, from its range constraints,
    so parity sweeps stay inside the sizes the source was captured for."""
    from torch.export.graph_signature import InputKind

    user = {s.arg.name for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT}
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    names = _symbolic_dim_names([(n.name, n.meta["val"].shape) for n in placeholders])
    out = {}
    for symbol, bounds in getattr(program, "range_constraints", {}).items():
        name = names.get(str(symbol))
        if name is None:
            continue
        # torch.export reports a lower bound of 2 for every open dim (sizes 0 and 1 are what it specialises
        # on while capturing), yet the program runs at size 1: only a higher bound is the model's own
        low = _finite(bounds.lower, 1)
        out[name] = (1 if low <= 2 else low, _finite(bounds.upper, 2 ** 31))
    return out


def _finite(bound: Any, default: int) -> int:
    """A range bound as an int; torch's unbounded ends (sympy's oo, torch's int_oo) as `default`."""
    try:
        return int(bound)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return default


def _symbolic_dim_names(shapes: list[tuple[str, Any]]) -> dict[str, str]:
    """Readable names for the symbols of a dynamic export (torch keeps s0, s27, not the user's Dim names).

    A symbol first seen on axis 0 is "batch", on axis 1 "seq" (the sequence axis of token inputs);
    any other is "<input>.<axis>". A name already taken falls back to "<input>.<axis>".
    """
    names: dict[str, str] = {}
    for input_name, shape in shapes:
        for axis, d in enumerate(shape):
            if not is_open(d) or str(d) in names:
                continue
            name = {0: "batch", 1: "seq"}.get(axis, f"{input_name}.{axis}")
            names[str(d)] = name if name not in names.values() else f"{input_name}.{axis}"
    return names


def inference_mode(module: Any) -> Any:
    """`module.eval()`, for any module a user holds: the module `ExportedProgram.module()` returns
    refuses `eval()` (it is already an inference graph when exported that way), so it stays as it is."""
    try:
        return module.eval()
    except NotImplementedError:
        return module


def export_module(module: Any, example: tuple[Any, ...], path: str | None = None) -> Any:
    """The module captured at the example's shapes (every dim fixed)."""
    return _export(module, example, path, None)


OpenAxes = Sequence[Mapping[int, str]]  # per input: {axis: the symbolic dim's name}


def capture_module(module: Any, example: tuple[Any, ...], path: str | None = None,
                   open_axes: OpenAxes | None = None) -> tuple[Any, list[str]]:
    """The module captured with `open_axes` symbolic (torch.export's Dim.AUTO), and a note for each
    axis that stayed fixed: the capture failing with it open (then everything is fixed, and why), or
    torch finding that the model's code needs that one size (a reshape to a literal, say).

    Dim.AUTO rather than named Dims: torch then fixes what the code pins instead of refusing the whole
    capture, and relates sizes the code relates (one batch symbol for ids and mask)."""
    if not open_axes or not any(open_axes):
        return export_module(module, example, path), []
    torch = import_torch()
    dynamic = tuple({axis: torch.export.Dim.AUTO for axis in axes} for axes in open_axes)
    try:
        program = _export(module, example, path, dynamic)
    except InputError as exc:
        names = sorted({name for axes in open_axes for name in axes.values()})
        note = (f"could not capture with {', '.join(names)} open ({exc.args[0].removeprefix('torch.export could not ')}"
                "); captured with the example's fixed shapes")
        return export_module(module, example, path), [note]
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"
                    and n.name in program.graph_signature.user_inputs]
    notes = []
    for node, axes, tensor in zip(placeholders, open_axes, example):
        shape = node.meta["val"].shape
        for axis, name in axes.items():
            if not is_open(shape[axis]):
                notes.append(f"input {node.name} axis {axis} ({name}) stays {int(tensor.shape[axis])}: the captured "
                             "code pins that size (a shape computed from it, a reshape to a literal)")
    return program, notes


def _export(module: Any, example: tuple[Any, ...], path: str | None, dynamic: Any) -> Any:
    torch = import_torch()
    module = inference_mode(module)
    try:
        with warnings.catch_warnings():
            # nn.RNN family re-assigns _flat_weights during export; torch warns, nothing is wrong.
            warnings.filterwarnings("ignore", message=".*_flat_weights.*")
            return torch.export.export(module, tuple(example), dynamic_shapes=dynamic)
    except Exception as exc:  # torch raises many types here; the message is what the user needs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"torch.export could not capture the model: {first}", path=path,
                         hint="check the input shapes (--input-shape) and that forward() has no "
                         "data-dependent Python control flow") from exc
