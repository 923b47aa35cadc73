"""ONNX files as a source: checked as untrusted input, converted to a readable torch module by
porttax's own op registry (converters/onnx_to_torch), then captured with `torch.export` so every
road that starts from PyTorch (Keras, SavedModel, `.pt2`) starts from it too. Parity on those roads
uses the ONNX file itself in onnxruntime as the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from porttax.errors import InputError, PorttaxError, brief
from porttax.sources import LoadOptions, SourceFormat, register_format


def is_onnx_source(source: Any) -> bool:
    return isinstance(source, (str, Path)) and Path(source).suffix.lower() == ".onnx"


def load_onnx_source(path: str | Path, input_shapes: Sequence[Sequence[int]] | None = None,
                     static: bool = False) -> tuple[Any, Any]:
    """(TorchSource, MappingLog) for an `.onnx` file.

    Symbolic input dims are fixed to `input_shapes` (one shape per graph input) when given. Otherwise
    they are tried open: the graph is converted at example sizes (2 for a leading batch dim, 16 for any
    other) and captured with those axes symbolic; where the converted module pins a size (shape
    arithmetic the ONNX graph does on a dim folds at conversion), that axis stays fixed, said in the
    capture notes, and a pinned batch is converted again at 1. `static` fixes a symbolic batch to 1 and
    needs `input_shapes` for any other symbolic dim, as before. onnxruntime, the parity reference, runs
    the original graph at whatever sizes the case has.
    """
    if input_shapes is None and not static:
        src, log = _load_onnx(path, None, open_dims=True)
        pinned_batch = any("(batch) stays" in n for n in src.capture_notes)
        if not pinned_batch:
            return src, log
        fixed, log = _load_onnx(path, None, open_dims=False, tolerate_symbolic=True)
        fixed.capture_notes = [n.replace("(batch) stays 2", "(batch) stays 1") for n in src.capture_notes]
        return fixed, log
    return _load_onnx(path, input_shapes, open_dims=False)


def _load_onnx(path: str | Path, input_shapes: Sequence[Sequence[int]] | None, *, open_dims: bool,
               tolerate_symbolic: bool = False) -> tuple[Any, Any]:
    import onnx

    from porttax._frameworks import import_torch
    from porttax.converters.onnx_to_torch.driver import convert_onnx_model
    from porttax.sources.file_checks import check_onnx_external_data
    from porttax.sources.torch_program import TorchSource, capture_module, specs_from_program

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path=str(path), hint="check the path")
    check_onnx_external_data(path)  # before onnx follows a single external-data location
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise InputError(f"not a readable ONNX model: {brief(exc)}", path=str(path),
                         hint="re-export the model") from exc
    torch = import_torch()
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    if input_shapes is not None and len(input_shapes) != len(graph_inputs):
        raise InputError(f"{len(input_shapes)} --input-shape given for {len(graph_inputs)} ONNX inputs "
                         f"({', '.join(i.name for i in graph_inputs)})", path=str(path),
                         hint="give one --input-shape per input, in order")
    example, fixed, open_axes = [], False, []
    for n, inp in enumerate(graph_inputs):
        t = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        open_axes.append({axis: ("batch" if axis == 0 else d.dim_param or f"{inp.name}.{axis}")
                          for axis, d in enumerate(t.shape.dim) if dims[axis] is None} if open_dims else {})
        if open_dims:  # example sizes for the open dims (never 1: torch.export fixes a dim of size 1)
            dims = [d if d is not None else (2 if axis == 0 else 16) for axis, d in enumerate(dims)]
        if input_shapes is not None:
            if any(isinstance(v, str) for v in input_shapes[n]):
                raise InputError(f"--input-shape {list(input_shapes[n])}: an ONNX source is converted at fixed sizes, "
                                 "so every dim needs a number", path=str(path),
                                 hint="give sizes, e.g. --input-shape 1,3,224,224")
            want = [int(v) for v in input_shapes[n]]
            if len(want) != len(dims) or any(d is not None and d != w for d, w in zip(dims, want)):
                raise InputError(f"--input-shape {want} does not fit input {inp.name!r} "
                                 f"{[d.dim_param or d.dim_value for d in t.shape.dim]}", path=str(path),
                                 hint="keep the fixed dimensions and choose sizes for the symbolic ones")
            dims = want
        elif dims and dims[0] is None:
            dims[0] = 1
        if tolerate_symbolic:
            dims = [d if d is not None else 16 for d in dims]
        if any(d is None for d in dims):
            raise InputError(f"input {inp.name!r} has symbolic dimensions {[d.dim_param or d.dim_value for d in t.shape.dim]}; "
                             "the converted model is static-shaped", path=str(path),
                             hint="choose sizes with --input-shape (one per input), e.g. --input-shape 1,128")
        for d, size in zip(t.shape.dim, dims):
            if not d.HasField("dim_value"):
                d.dim_value = size  # shape inference then sees concrete sizes everywhere
                fixed = True
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        example.append(torch.zeros(dims, dtype=getattr(torch, str(dtype))))
    if fixed:
        del model.graph.value_info[:]  # inferred for symbolic sizes; inferred again for the fixed ones
        for out in model.graph.output:
            out.type.tensor_type.ClearField("shape")
    try:
        conversion = convert_onnx_model(model, name=path.stem)
    except PorttaxError as exc:
        raise exc.at(str(path)) from None
    program, notes = capture_module(conversion.module, tuple(example), str(path), open_axes if open_dims else None)
    src = TorchSource(program, conversion.module, specs_from_program(program), tuple(example), "onnx", str(path),
                      capture_notes=notes)
    from porttax.converters.onnx_to_torch.driver import opset_of

    src.onnx_opset = conversion.upgrade or {"file_opset": opset_of(model)}
    onnx_names = [i.name for i in model.graph.input if i.name not in initializers]
    if len(src.specs) != len(onnx_names):
        raise InputError(f"the converted module takes {len(src.specs)} inputs, the ONNX graph {len(onnx_names)} "
                         f"({', '.join(onnx_names)})", path=str(path))
    # The torch module's inputs are Python identifiers (torch.fx makes `input.1` `input_1`, `0` `_0`);
    # the converted model keeps them, and the map back to the file's names is kept and reported.
    src.onnx_input_names = {s.name: n for s, n in zip(src.specs, onnx_names)}
    return src, conversion.log


def _load_path(path: Path, options: LoadOptions) -> Any:
    src, log = load_onnx_source(path, options.input_shapes, static=options.static)
    src.import_log = log  # the ONNX → torch mapping, for the report of a conversion that starts here
    return src


register_format(SourceFormat("onnx", "onnx", "an ONNX model file (.onnx), converted to a torch module on load",
                             sniff=is_onnx_source, load=_load_path))
