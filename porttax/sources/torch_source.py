"""Reading PyTorch sources safely and turning them into an ExportedProgram with a known signature.

Safe by default: checkpoints are read with `torch.load(weights_only=True)`; a file that holds a pickled
Python object (a whole nn.Module) is refused unless the caller passes `trust_pickle=True`, because
unpickling runs code from the file.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Sequence

from porttax._frameworks import import_torch
from porttax.errors import InputError, PorttaxError, UntrustedInputError, brief
from porttax.sources import LoadOptions, SourceFormat, register_format, sniff
from porttax.sources.file_checks import check_zip
from porttax.sources.torch_program import TorchSource, capture_module, inference_mode, specs_from_program
from porttax.torch_ir import size_hints

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def parse_shape(text: str) -> tuple[int | str, ...]:
    """'1,3,224,224' or '1x3x224x224' → (1, 3, 224, 224); a name is a symbolic dim: 'batch,3,224,224'
    → ("batch", 3, 224, 224), captured open so the converted model takes any size there."""
    parts = text.split(",") if "," in text else text.split("x")
    shape: list[int | str] = []
    for p in (p.strip() for p in parts):
        if not p:
            continue
        if p.isidentifier():
            shape.append(p)
            continue
        try:
            shape.append(int(p))
        except ValueError:
            raise InputError(f"--input-shape {text!r}: {p!r} is neither a size nor a dim name",
                             hint="write it like 1,3,224,224, or batch,3,224,224 for an open batch") from None
    if not shape or any(isinstance(d, int) and d <= 0 for d in shape):
        raise InputError(f"--input-shape {text!r} must have positive sizes")
    return tuple(shape)


def example_size(name: str) -> int:
    """The example's size for a symbolic dim: 2 for a batch, 16 else. Never 1: torch.export fixes a dim
    whose example size is 0 or 1."""
    return 2 if "batch" in name else 16


def open_axes_of(shapes: Sequence[Sequence[int | str]]) -> list[dict[int, str]]:
    return [{axis: d for axis, d in enumerate(shape) if isinstance(d, str)} for shape in shapes]


def example_from_shapes(shapes: Sequence[Sequence[int | str]], dtypes: Sequence[str] | None = None,
                        seed: int = 0) -> tuple[Any, ...]:
    torch = import_torch()
    gen = torch.Generator().manual_seed(seed)
    shapes = [tuple(example_size(d) if isinstance(d, str) else d for d in shape) for shape in shapes]
    out = []
    for i, shape in enumerate(shapes):
        dtype = (dtypes[i] if dtypes and i < len(dtypes) else (dtypes[-1] if dtypes else "float32"))
        tdtype = getattr(torch, dtype, None)
        if tdtype is None:
            raise InputError(f"unknown input dtype {dtype!r}", hint="use float32, int64, int32 or bool")
        if tdtype.is_floating_point:
            out.append(torch.randn(tuple(shape), generator=gen).to(tdtype))
        else:
            out.append(torch.randint(0, 2, tuple(shape), generator=gen).to(tdtype))
    return tuple(out)


def load_torch_source(
    source: Any,
    *,
    example_inputs: Sequence[Any] | None = None,
    input_shapes: Sequence[Sequence[int]] | None = None,
    input_dtypes: Sequence[str] | None = None,
    arch: str | None = None,
    config: dict[str, Any] | str | Path | None = None,
    trust_pickle: bool = False,
    trust_code: bool = False,
    stream: bool | None = None,
    static: bool = False,
) -> TorchSource:
    """Load any PyTorch source porttax accepts: a live module or program, or a file of a registered
    torch-kind format (porttax.sources.sniff; docs/convert.md lists them).

    A TorchScript archive is a program (see porttax.sources.torchscript): it loads with `trust_code` or
    `trust_pickle`, either of which says the user trusts code stored in the file.
    """
    torch = import_torch()
    options = LoadOptions(example_inputs=example_inputs, input_shapes=input_shapes, input_dtypes=input_dtypes,
                          arch=arch, config=config, trust_pickle=trust_pickle, trust_code=trust_code, stream=stream,
                          static=static)
    if isinstance(source, torch.export.ExportedProgram):
        return TorchSource(source, source, specs_from_program(source), example_of(source), "pt2")
    if isinstance(source, torch.nn.Module):
        example = resolve_example(options)
        if example is None:
            raise InputError("a live nn.Module needs example inputs to trace",
                             hint="pass example_inputs=(x,) or input_shapes=[(1, 3, 224, 224)]")
        program, notes = capture_module(source, example, None, open_axes(options))
        return TorchSource(program, inference_mode(source), specs_from_program(program), example, "module",
                           capture_notes=notes)

    path = Path(source)
    if not path.exists():
        raise InputError("no such file or directory", path=str(path), hint="check the path and the working directory")
    fmt = sniff(path)
    if fmt is not None and fmt.kind in ("torch", "onnx"):  # an ONNX file arrives as a torch module
        return fmt.load(path, options)
    if path.is_dir():
        raise InputError("a directory that is neither a SavedModel nor a Hugging Face checkpoint folder",
                         path=str(path), hint="pass a .pt2, .pt/.pth or .safetensors file, a SavedModel directory, "
                         "or a folder with config.json and model.safetensors (or its index)")
    raise InputError(f"unknown model file type {path.suffix.lower()!r}", path=str(path),
                     hint="porttax reads .pt2, .pt/.pth/.bin (state_dict, or a pickled module with "
                     "--trust-pickle), .safetensors, .keras, .h5 and SavedModel directories")


def _load_checkpoint(path: Path, options: LoadOptions) -> TorchSource:
    """A `torch.save` file: a state_dict (with an architecture), or — trusted only — a pickled module."""
    torch = import_torch()
    with open(path, "rb") as f:
        magic = f.read(4)
    if zipfile.is_zipfile(path):
        check_zip(path, what="PyTorch checkpoint")
    elif magic.startswith(b"PK"):
        raise InputError("a truncated or corrupt zip archive (no central directory)", path=str(path),
                         hint="the download or copy was cut short: fetch the file again")
    elif not magic.startswith(b"\x80"):  # torch.save writes a zip, or (legacy) a pickle: protocol byte
        raise InputError("not a PyTorch checkpoint (neither a zip archive nor a pickle)", path=str(path),
                         hint="porttax reads torch.save / torch.export.save output, and .safetensors")
    try:
        obj = _load_weights_only(path, magic.startswith(b"PK"))
    except pickle.UnpicklingError as exc:
        if not options.trust_pickle:
            raise UntrustedInputError(
                "this file is a pickled Python object (for example a whole nn.Module); loading it "
                "would run code stored in the file, so porttax refuses by default", path=str(path),
                hint="if you trust where the file came from, pass --trust-pickle "
                "(trust_pickle=True); safer: save the model with torch.export.save (.pt2) or save "
                "its state_dict and pass --arch/--config") from exc
        obj = _load_trusted(path)
    except Exception as exc:
        raise InputError(f"not a readable PyTorch file ({type(exc).__name__}: {brief(exc)})",
                         path=str(path), hint="re-save it with torch.save(model.state_dict(), path) or "
                         "torch.export.save") from exc
    if isinstance(obj, torch.nn.Module):
        example = resolve_example(options)
        if example is None:
            raise InputError("a pickled module does not record its input shapes", path=str(path),
                             hint="pass --input-shape, e.g. --input-shape 1,3,224,224 (and "
                             "--input-dtype int64 for token ids)")
        program, notes = capture_module(obj, example, str(path), open_axes(options))
        return TorchSource(program, inference_mode(obj), specs_from_program(program), example, "pickle", str(path),
                           capture_notes=notes)
    if isinstance(obj, dict):
        state = obj.get("state_dict", obj) if isinstance(obj.get("state_dict"), dict) else obj
        return from_state_dict(state, path, options)
    raise InputError(f"the file holds a {type(obj).__name__}, not a model or state_dict", path=str(path),
                     hint="save a state_dict (torch.save(model.state_dict(), path)) or an exported "
                     "program (torch.export.save)")


def _load_weights_only(path: Path, is_zip: bool) -> Any:
    """`torch.load(weights_only=True)`; a large zip checkpoint (see porttax.lazy_weights.should_stream)
    is mapped instead of read, and a state_dict in it comes back as meta tensors that point at their
    bytes in the file, so its weights stream into the converter like a safetensors checkpoint's."""
    from porttax.lazy_weights import lazy_torch_state, should_stream

    torch = import_torch()
    if not (is_zip and should_stream([path])):
        return torch.load(str(path), map_location="cpu", weights_only=True)
    obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) else obj
    if isinstance(state, dict):
        lazy = lazy_torch_state(path, state)
        if lazy is not None:
            return lazy
    return torch.load(str(path), map_location="cpu", weights_only=True)  # read whole after all


def _load_trusted(path: Path) -> Any:
    torch = import_torch()
    return torch.load(str(path), map_location="cpu", weights_only=False)


def example_of(program: Any) -> tuple[Any, ...]:
    example = getattr(program, "example_inputs", None)
    if example:
        args, kwargs = example
        if not kwargs:
            return tuple(args)
    user_inputs = {s.name for s in specs_from_program(program)}
    return tuple(_zeros_like_meta(node) for node in program.graph.nodes
                 if node.op == "placeholder" and node.name in user_inputs)


def _zeros_like_meta(node: Any) -> Any:
    torch = import_torch()
    val = node.meta["val"]
    return torch.zeros(size_hints(val.shape), dtype=val.dtype)


def _read_config(config: dict[str, Any] | str | Path | None) -> dict[str, Any] | None:
    if config is None or isinstance(config, dict):
        return config
    p = Path(config)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError("config file not found", path=str(p), hint="check the --config path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"config is not valid JSON ({exc})", path=str(p),
                         hint="--config takes a JSON object such as {\"hidden_size\": 64}") from None


def resolve_example(options: LoadOptions, arch: str | None = None, config: Any = None) -> tuple[Any, ...] | None:
    """Example inputs for capture: given ones, ones of `--input-shape`, or the architecture's own
    (`arch`/`config` default to the options'; a checkpoint may name its architecture in a sidecar)."""
    example_inputs, input_shapes, input_dtypes = options.example_inputs, options.input_shapes, options.input_dtypes
    arch = arch if arch is not None else options.arch
    config = _read_config(config if config is not None else options.config)
    if example_inputs is not None:
        return tuple(example_inputs)
    if input_shapes:
        if arch and not input_dtypes:  # the architecture knows its inputs' dtypes (token ids are int64)
            from porttax import models

            input_dtypes = [s.dtype for s in models.input_specs(arch, config)]
        return example_from_shapes(input_shapes, input_dtypes)
    if arch:
        from porttax import models

        return tuple(models.example_inputs(arch, config, batch=1 if options.static else 2, seq=16))
    return None


def open_axes(options: LoadOptions, arch: str | None = None, config: Any = None) -> list[dict[int, str]] | None:
    """Which input axes the capture keeps symbolic: the named dims of `--input-shape`, else the
    architecture's batch and sequence axes; none with `--static` or with example inputs given."""
    if options.static or options.example_inputs is not None:
        return None
    if options.input_shapes:
        return open_axes_of(options.input_shapes)
    arch = arch if arch is not None else options.arch
    if arch:
        from porttax import models

        return open_axes_of([s.shape for s in models.input_specs(arch, _read_config(config if config is not None
                                                                                      else options.config))])
    return None


def from_state_dict(state: dict[str, Any], path: Path, options: LoadOptions, *, arch: str | None = None,
                    config: Any = None) -> TorchSource:
    """A state_dict built into its architecture (`arch`/`config`, else the options', else a sidecar
    `.json` beside the file) and captured: the way every weights-only format becomes a program."""
    from porttax import models

    arch = arch if arch is not None else options.arch
    cfg = _read_config(config if config is not None else options.config)
    if arch is None:
        sidecar = models.sidecar_path(path)
        if sidecar.exists() and cfg is None:
            cfg = _read_config(sidecar)
        if cfg and "arch" in cfg:
            arch = cfg["arch"]
    if arch is None:
        raise InputError(
            "this file holds only weights (a state_dict); porttax needs the architecture too", path=str(path),
            hint=f"pass --arch NAME [--config FILE]; known architectures: {', '.join(models.list_architectures())} "
            f"(presets: {', '.join(models.list_presets())})")
    if cfg is not None:
        cfg = {k: v for k, v in cfg.items() if k != "arch"}
    from porttax.lazy_weights import lazy_of

    lazy = any(lazy_of(v) is not None for v in state.values())
    stored = {key: (lazy_of(v).torch_dtype if lazy_of(v) is not None else str(v.dtype).removeprefix("torch."))
              for key, v in state.items() if hasattr(v, "dtype")}
    try:
        module = models.load_state_dict_model(arch, cfg, state, lazy=lazy)
    except PorttaxError as exc:
        raise exc.at(str(path)) from None
    example = resolve_example(options, arch, cfg)
    program, notes = capture_module(module, example, str(path), open_axes(options, arch, cfg))
    return TorchSource(program, module, specs_from_program(program), example, "state_dict", str(path),
                       streamed_from_file=lazy, arch=arch, config=cfg, checkpoint_dtypes=stored, capture_notes=notes)


register_format(SourceFormat(
    "state_dict", "torch", "a torch.save checkpoint (.pt, .pth, .bin, .ckpt): a state_dict with --arch, or a "
    "pickled module with --trust-pickle", sniff=lambda p: p.suffix.lower() in TORCH_SUFFIXES and not p.is_dir(),
    load=_load_checkpoint))
