"""TorchScript archives (`torch.jit.save`) as a source: captured into the same ExportedProgram every
other PyTorch source becomes, so the converters, parity and localisation need nothing new.

A TorchScript archive is a program, not data: `torch.jit.load` unpickles its constants and compiles
the code stored in it, and calling the module runs that code. PyTorch's own security policy says to
treat one like an executable from its author, and `torch.jit.load` has no safe mode; so porttax opens
one only with a trust flag (see SECURITY.md).

Capture, in order:
1. torch.export's TorchScript converter (`TS2EPConverter`) turns the TorchScript graph into an
   ExportedProgram. porttax re-exports it with static shapes, gives the inputs the names of the
   script's `forward` arguments, and recovers each op's module path from the parameters it reads (the
   converter drops the module stack), so Keras layers carry the source's module names as usual.
2. Where that converter cannot take the graph (it refuses loops over lists of tensors, for example),
   the TorchScript ONNX exporter writes ONNX, and porttax's ONNX → torch registry turns it into the
   program: the ONNX road. Both failures are reported when neither works.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from porttax._frameworks import import_torch
from porttax.errors import InputError, PorttaxError, UnsupportedError, brief
from porttax.sources import LoadOptions, SourceFormat, register_format


def load_script(path: Path) -> Any:
    """`torch.jit.load` on CPU; the caller has checked the zip and the user's trust."""
    torch = import_torch()
    try:
        with _quiet():  # torch deprecates TorchScript and says so on every load
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise InputError(f"not a loadable TorchScript archive ({type(exc).__name__}: {brief(exc)})",
                         path=str(path), hint="re-save it with torch.jit.save, or export the original model "
                         "with torch.export.save (.pt2)") from exc


def input_names(script: Any) -> list[str]:
    """The names of the script's `forward` arguments (after self): the converted model's input names."""
    try:
        args = script.forward.schema.arguments[1:]
    except (AttributeError, RuntimeError):
        return []
    return [a.name for a in args]


def capture(script: Any, example: Sequence[Any], path: str | None = None,
            open_axes: Sequence[dict[int, str]] | None = None) -> tuple[Any, str]:
    """(ExportedProgram, how it was captured: "torch.export" or "onnx") for a loaded ScriptModule;
    `open_axes` (per input {axis: name}) stay symbolic where torch.export can keep them so."""
    names = input_names(script)[: len(example)]
    try:
        if open_axes and any(open_axes):
            try:
                return via_ts2ep(script, example, names, open_axes), "torch.export"
            except PorttaxError:
                pass  # captured with fixed shapes below
        return via_ts2ep(script, example, names), "torch.export"
    except PorttaxError as ts2ep_error:
        try:
            return via_onnx(script, example, names), "onnx"
        except PorttaxError as onnx_error:
            raise UnsupportedError(
                "neither road can capture this TorchScript module:\n"
                f"  - torch.export's TorchScript converter: {ts2ep_error.message}\n"
                f"  - the ONNX road: {onnx_error.message}", path=path,
                hint="export the original Python model with torch.export.save (.pt2), or save its "
                "state_dict and pass --arch") from None


def via_ts2ep(script: Any, example: Sequence[Any], names: Sequence[str],
              open_axes: Sequence[dict[int, str]] | None = None) -> Any:
    torch = import_torch()
    from torch._export.converter import TS2EPConverter  # torch's own; private, so any failure is caught

    example = tuple(example)
    try:
        with _quiet():
            dynamic = TS2EPConverter(script, example).convert()
            # the converter marks every dimension dynamic; porttax keeps open only the axes asked for
            shapes = tuple({a: torch.export.Dim.AUTO for a in axes} for axes in open_axes) if open_axes else None
            program = torch.export.export(dynamic.module(), example, dynamic_shapes=shapes, strict=False)
    except Exception as exc:
        raise UnsupportedError(brief(exc)) from exc
    _rename_inputs(program, names)
    _recover_module_paths(program, script)
    return program


def via_onnx(script: Any, example: Sequence[Any], names: Sequence[str]) -> Any:
    from porttax.sources.onnx_source import load_onnx_source

    with tempfile.TemporaryDirectory(prefix="porttax-torchscript-") as folder:
        path = Path(folder) / "torchscript.onnx"
        export_script_onnx(script, example, path, names)
        try:
            src, _ = load_onnx_source(path, [tuple(t.shape) for t in example])
        except PorttaxError as exc:
            raise UnsupportedError(exc.message.replace(str(path), path.name)) from None
    return src.program


def export_script_onnx(script: Any, example: Sequence[Any], path: Path, names: Sequence[str]) -> None:
    """The TorchScript ONNX exporter (`dynamo=False`), the one that reads ScriptModules natively."""
    torch = import_torch()
    try:
        with _quiet():
            torch.onnx.export(script, tuple(example), str(path), dynamo=False,
                              input_names=list(names) or None, opset_version=17)
    except Exception as exc:
        raise UnsupportedError(f"torch.onnx.export failed: {brief(exc)}") from exc


def _rename_inputs(program: Any, names: Sequence[str]) -> None:
    """Give user inputs the script's argument names (re-export calls them x_1, args_0 ...)."""
    from torch.export.graph_signature import InputKind, TensorArgument

    user = [s for s in program.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    if len(user) != len(names) or len(set(names)) != len(names):
        return
    taken = {n.name for n in program.graph.nodes} - {s.arg.name for s in user}
    if taken & set(names):
        return
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    for spec, new in zip(user, names):
        node = nodes[spec.arg.name]
        node.name = node.target = new
        spec.arg = TensorArgument(name=new)
    for entry in program.module_call_graph:  # decompositions re-trace from the recorded argument names
        if entry.fqn == "" and entry.signature is not None:
            entry.signature.forward_arg_names = list(names)
    program.graph_module.recompile()


def _recover_module_paths(program: Any, script: Any) -> None:
    """Set `nn_module_stack` on every op that reads a parameter or buffer of a submodule, from the
    tensor's dotted name ("layer1.0.conv1.weight" → module "layer1.0.conv1", its TorchScript class)."""
    from torch.export.graph_signature import InputKind

    owners = {s.arg.name: s.target for s in program.graph_signature.input_specs
              if s.kind in (InputKind.PARAMETER, InputKind.BUFFER) and s.target}
    modules = dict(script.named_modules())
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        reads = [owners[a.name] for a in node.args if hasattr(a, "name") and a.name in owners]
        paths = {r.rsplit(".", 1)[0] for r in reads if "." in r}
        if len(paths) != 1:
            continue  # a top-level op, or one that mixes tensors of several modules
        module_path = paths.pop()
        kind = getattr(modules.get(module_path), "original_name", "Module")
        node.meta["nn_module_stack"] = {module_path: (module_path, kind)}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TS2EP and the exporters warn and log at length about things that are fine here."""
    loggers = [logging.getLogger(n) for n in ("torch._export", "torch.export", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def is_torchscript(path: Path) -> bool:
    """A zip with TorchScript's `constants.pkl` and `code/` members: read from the directory, not loaded."""
    import zipfile

    if path.is_dir() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_torchscript(path: Path, options: LoadOptions) -> Any:
    """Open a TorchScript archive only on the user's word (`--trust-code` or `--trust-pickle`), then
    capture it into a program (see the module docstring)."""
    from porttax.errors import UntrustedInputError
    from porttax.sources.file_checks import check_zip
    from porttax.sources.torch_program import TorchSource, specs_from_program
    from porttax.sources.torch_source import open_axes, resolve_example

    check_zip(path, what="PyTorch checkpoint")
    if not (options.trust_code or options.trust_pickle):
        raise UntrustedInputError(
            "this is a TorchScript archive (torch.jit.save): a program whose stored code runs when it is "
            "loaded and called, so porttax refuses it by default", path=str(path),
            hint="if you trust where the file came from, pass --trust-code (trust_code=True); safer: "
            "export the original model with torch.export.save (.pt2) or save its state_dict")
    example = resolve_example(options)
    if example is None:
        raise InputError("a TorchScript archive does not record its input shapes", path=str(path),
                         hint="pass --input-shape, e.g. --input-shape 1,3,224,224 (and --input-dtype int64 "
                         "for token ids)")
    script = load_script(path)
    program, road = capture(script, example, str(path), open_axes(options))
    src = TorchSource(program, script, specs_from_program(program), tuple(example), "torchscript", str(path))
    src.capture = road
    return src


def _sniff(path: Path) -> bool:
    from porttax.sources.torch_source import TORCH_SUFFIXES

    return path.suffix.lower() in TORCH_SUFFIXES and is_torchscript(path)


register_format(SourceFormat("torchscript", "torch", "a TorchScript archive (torch.jit.save), with --trust-code",
                             sniff=_sniff, load=load_torchscript, specific=True))
