"""Reading PyTorch sources safely and turning them into an ExportedProgram with a known signature.

Safe by default: checkpoints are read with `torch.load(weights_only=True)`; a file that holds a pickled
Python object (a whole nn.Module) is refused unless the caller passes `trust_pickle=True`, because
unpickling runs code from the file.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from porttax._frameworks import import_torch
from porttax.errors import InputError, PorttaxError, UntrustedInputError, brief
from porttax.sources.file_checks import check_safetensors, check_zip
from porttax.types import TensorSpec

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


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
    streamed_from_file: bool = False  # weights read one at a time from the checkpoint (porttax.sources.lazy_weights)
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

    @property
    def name(self) -> str:
        if self.path:
            return Path(self.path).stem
        return type(self.module).__name__

    @property
    def streamed(self) -> bool:
        """Weights still in the checkpoint file (porttax.sources.lazy_weights), read when a converter needs them."""
        from porttax.sources.lazy_weights import is_streamed

        return isinstance(self.module, import_torch().nn.Module) and is_streamed(self.module)

    def runnable(self) -> Any:
        """The module to run as the reference; a streamed one reads all its weights first. In a
        half-precision conversion it runs in that dtype (a user's own module is copied first)."""
        from porttax.sources.lazy_weights import materialize

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



def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,224,224' or '1x3x224x224' → (1, 3, 224, 224)."""
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise InputError(f"--input-shape {text!r} is not a list of integers",
                         hint="write it like 1,3,224,224") from None
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"--input-shape {text!r} must have positive sizes")
    return shape


def example_from_shapes(shapes: Sequence[Sequence[int]], dtypes: Sequence[str] | None = None,
                        seed: int = 0) -> tuple[Any, ...]:
    torch = import_torch()
    gen = torch.Generator().manual_seed(seed)
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
        shape = tuple(dim_names.get(str(d), 0) if not isinstance(d, int) else d for d in val.shape)
        specs.append(TensorSpec(node.name, shape, dtype,
                                ranges.get(node.name, (0, 2) if not val.dtype.is_floating_point else None)))
    return specs


def _symbolic_dim_names(shapes: list[tuple[str, Any]]) -> dict[str, str]:
    """Readable names for the symbols of a dynamic export (torch keeps s0, s27, not the user's Dim names).

    A symbol first seen on axis 0 is "batch", on axis 1 "seq" (the sequence axis of token inputs);
    any other is "<input>.<axis>". A name already taken falls back to "<input>.<axis>".
    """
    names: dict[str, str] = {}
    for input_name, shape in shapes:
        for axis, d in enumerate(shape):
            if isinstance(d, int) or str(d) in names:
                continue
            name = {0: "batch", 1: "seq"}.get(axis, f"{input_name}.{axis}")
            names[str(d)] = name if name not in names.values() else f"{input_name}.{axis}"
    return names


def export_module(module: Any, example: tuple[Any, ...], path: str | None = None) -> Any:
    torch = import_torch()
    module = module.eval()
    try:
        with warnings.catch_warnings():
            # nn.RNN family re-assigns _flat_weights during export; torch warns, nothing is wrong.
            warnings.filterwarnings("ignore", message=".*_flat_weights.*")
            return torch.export.export(module, tuple(example))
    except Exception as exc:  # torch raises many types here; the message is what the user needs
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"torch.export could not capture the model: {first}", path=path,
                         hint="check the input shapes (--input-shape) and that forward() has no "
                         "data-dependent Python control flow") from exc


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
) -> TorchSource:
    """Load any PyTorch source porttax accepts; see README "Inputs" for the formats.

    A TorchScript archive is a program (see porttax.sources.torchscript): it loads with `trust_code` or
    `trust_pickle`, either of which says the user trusts code stored in the file.
    """
    torch = import_torch()
    if isinstance(source, torch.export.ExportedProgram):
        return TorchSource(source, source, specs_from_program(source), _example_of(source), "pt2")
    if isinstance(source, torch.nn.Module):
        example = _resolve_example(example_inputs, input_shapes, input_dtypes, None, None)
        if example is None:
            raise InputError("a live nn.Module needs example inputs to trace",
                             hint="pass example_inputs=(x,) or input_shapes=[(1, 3, 224, 224)]")
        program = export_module(source, example)
        return TorchSource(program, source.eval(), specs_from_program(program), example, "module")

    path = Path(source)
    if not path.exists():
        raise InputError("no such file or directory", path=str(path), hint="check the path and the working directory")
    if path.is_dir():
        from porttax.sources.hf_folder import is_hf_folder, read_hf_folder

        if is_hf_folder(path):
            arch_name, hf_config, state = read_hf_folder(path, arch, stream=stream)
            return _from_state_dict(state, path, arch_name, config if config is not None else hf_config,
                                    example_inputs, input_shapes, input_dtypes)
        raise InputError("a directory that is neither a SavedModel nor a Hugging Face checkpoint folder",
                         path=str(path), hint="pass a .pt2, .pt/.pth or .safetensors file, a SavedModel directory, "
                         "or a folder with config.json and model.safetensors (or its index)")
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        check_zip(path, what="torch.export archive")
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise InputError(f"not a readable torch.export archive ({type(exc).__name__}: {brief(exc)})",
                             path=str(path), hint="re-save it with torch.export.save(program, path)") from exc
        return TorchSource(program, program, specs_from_program(program), _example_of(program),
                           "pt2", str(path))
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        entries = check_safetensors(path)  # header, dtypes, spans: before the library maps a single byte
        from porttax.sources.lazy_weights import lazy_state, should_stream

        try:
            streaming = should_stream([path]) if stream is None else stream
            state = lazy_state(path, entries) if streaming else load_file(str(path))
        except Exception as exc:
            raise InputError(f"not a valid safetensors file ({brief(exc)})", path=str(path),
                             hint="re-save the tensors with safetensors' save_file") from exc
        return _from_state_dict(state, path, arch, config, example_inputs, input_shapes, input_dtypes)
    if suffix in TORCH_SUFFIXES:
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
        if is_torchscript(path):
            return _from_torchscript(path, example_inputs, input_shapes, input_dtypes, arch, config,
                                     trusted=trust_pickle or trust_code)
        try:
            obj = _load_weights_only(path, magic.startswith(b"PK"))
        except pickle.UnpicklingError as exc:
            if not trust_pickle:
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
            example = _resolve_example(example_inputs, input_shapes, input_dtypes, arch, config)
            if example is None:
                raise InputError("a pickled module does not record its input shapes", path=str(path),
                                 hint="pass --input-shape, e.g. --input-shape 1,3,224,224 (and "
                                 "--input-dtype int64 for token ids)")
            program = export_module(obj, example, str(path))
            return TorchSource(program, obj.eval(), specs_from_program(program), example, "pickle", str(path))
        if isinstance(obj, dict):
            state = obj.get("state_dict", obj) if isinstance(obj.get("state_dict"), dict) else obj
            return _from_state_dict(state, path, arch, config, example_inputs, input_shapes, input_dtypes)
        raise InputError(f"the file holds a {type(obj).__name__}, not a model or state_dict", path=str(path),
                         hint="save a state_dict (torch.save(model.state_dict(), path)) or an exported "
                         "program (torch.export.save)")
    raise InputError(f"unknown model file type {suffix!r}", path=str(path),
                     hint="porttax reads .pt2, .pt/.pth/.bin (state_dict, or a pickled module with "
                     "--trust-pickle), .safetensors, .keras, .h5 and SavedModel directories")


def _from_torchscript(path: Path, example_inputs: Any, input_shapes: Any, input_dtypes: Any, arch: str | None,
                      config: Any, *, trusted: bool) -> TorchSource:
    from porttax.sources import torchscript

    if not trusted:
        raise UntrustedInputError(
            "this is a TorchScript archive (torch.jit.save): a program whose stored code runs when it is "
            "loaded and called, so porttax refuses it by default", path=str(path),
            hint="if you trust where the file came from, pass --trust-code (trust_code=True); safer: "
            "export the original model with torch.export.save (.pt2) or save its state_dict")
    example = _resolve_example(example_inputs, input_shapes, input_dtypes, arch, config)
    if example is None:
        raise InputError("a TorchScript archive does not record its input shapes", path=str(path),
                         hint="pass --input-shape, e.g. --input-shape 1,3,224,224 (and --input-dtype int64 "
                         "for token ids)")
    script = torchscript.load_script(path)
    program, road = torchscript.capture(script, example, str(path))
    src = TorchSource(program, script, specs_from_program(program), tuple(example), "torchscript", str(path))
    src.capture = road
    return src


def _load_weights_only(path: Path, is_zip: bool) -> Any:
    """`torch.load(weights_only=True)`; a large zip checkpoint (see porttax.sources.lazy_weights.should_stream)
    is mapped instead of read, and a state_dict in it comes back as meta tensors that point at their
    bytes in the file, so its weights stream into the converter like a safetensors checkpoint's."""
    from porttax.sources.lazy_weights import lazy_torch_state, should_stream

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


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def _example_of(program: Any) -> tuple[Any, ...]:
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
    return torch.zeros(tuple(int(d) for d in val.shape), dtype=val.dtype)


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


def _resolve_example(example_inputs: Sequence[Any] | None, input_shapes: Sequence[Sequence[int]] | None,
                     input_dtypes: Sequence[str] | None, arch: str | None,
                     config: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if example_inputs is not None:
        return tuple(example_inputs)
    if input_shapes:
        if arch and not input_dtypes:  # the architecture knows its inputs' dtypes (token ids are int64)
            from porttax import models

            input_dtypes = [s.dtype for s in models.input_specs(arch, _read_config(config))]
        return example_from_shapes(input_shapes, input_dtypes)
    if arch:
        from porttax import models

        return tuple(models.example_inputs(arch, _read_config(config), batch=1, seq=16))
    return None


def _from_state_dict(state: dict[str, Any], path: Path, arch: str | None, config: Any,
                     example_inputs: Any, input_shapes: Any, input_dtypes: Any) -> TorchSource:
    from porttax import models

    cfg = _read_config(config)
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
    from porttax.sources.lazy_weights import lazy_of

    lazy = any(lazy_of(v) is not None for v in state.values())
    stored = {key: (lazy_of(v).torch_dtype if lazy_of(v) is not None else str(v.dtype).removeprefix("torch."))
              for key, v in state.items() if hasattr(v, "dtype")}
    try:
        module = models.load_state_dict_model(arch, cfg, state, lazy=lazy)
    except PorttaxError as exc:
        raise exc.at(str(path)) from None
    example = _resolve_example(example_inputs, input_shapes, input_dtypes, arch, cfg)
    program = export_module(module, example, str(path))
    return TorchSource(program, module, specs_from_program(program), example, "state_dict", str(path),
                       streamed_from_file=lazy, arch=arch, config=cfg, checkpoint_dtypes=stored)
