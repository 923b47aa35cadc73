"""Open whatever the user points the parity suite at as a Runner, by sniffing the format.

Any side may be any format porttax reads: a torch module / ExportedProgram / `.pt2` / checkpoint with an
architecture / trusted pickle, a Keras model or `.keras` file, a SavedModel directory, an `.onnx` file, a
TF.js graph-model folder (`model.json`, run in Node.js).
A Keras model that must run on another backend or device runs in a worker process (Keras fixes its
backend at import).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from porttax.errors import InputError
from porttax.parity.runners import KerasRunner, OnnxRunner, Runner, SavedModelRunner, TorchRunner

DEVICES = ("cpu", "cuda")


@dataclass
class OpenOptions:
    """How to open torch checkpoints and where to run; the CLI's flags, as data."""

    arch: str | None = None
    config: Any = None
    trust_pickle: bool = False
    trust_code: bool = False  # a TorchScript archive (a program) on the torch side
    input_shapes: Sequence[Sequence[int]] | None = None
    input_dtypes: Sequence[str] | None = None
    example_inputs: Sequence[Any] | None = None
    device: str = "cpu"
    backend: str | None = None  # Keras backend for a converted .keras (default: this process's)


def cuda_available() -> bool:
    from porttax._frameworks import import_torch

    return bool(import_torch().cuda.is_available())


def open_runner(model: Any, options: OpenOptions | None = None) -> Runner:
    """A Runner for `model` (an object or a path), checked to exist before any framework loads."""
    opts = options or OpenOptions()
    if opts.device not in DEVICES:
        raise InputError(f"unknown device {opts.device!r}; valid: {', '.join(DEVICES)}")
    if isinstance(model, Runner):
        return model
    if not isinstance(model, (str, Path)):
        return _open_object(model, opts)
    path = Path(model)
    if not path.exists():
        raise InputError("no such model file or directory", path=str(path))
    if path.is_dir():
        from porttax.sources.hf_folder import is_hf_folder

        if is_hf_folder(path):  # config.json + safetensors: the checkpoint, built in porttax's architecture
            return _torch_runner(path, opts)
        if (path / "model.json").is_file() and not (path / "saved_model.pb").is_file():
            if opts.device == "cuda":
                raise InputError("porttax runs TF.js graph models in Node.js on TF.js's CPU backend", path=str(path))
            from porttax.parity.runners import TfjsRunner

            return TfjsRunner(path)
        if not (path / "saved_model.pb").is_file():
            raise InputError("a directory must be a SavedModel, a TF.js graph model or a Hugging Face "
                             "checkpoint folder (no saved_model.pb, model.json or config.json with "
                             "safetensors here)", path=str(path))
        if opts.device == "cuda":
            raise InputError("porttax runs SavedModels with this process's TensorFlow, which is CPU-only here",
                             path=str(path), hint="check the .keras file on CUDA instead (--backend torch or jax)")
        return SavedModelRunner(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _keras_runner(path, opts)
    if suffix == ".tflite":
        if opts.device == "cuda":
            raise InputError("porttax runs .tflite models in the LiteRT interpreter on the CPU", path=str(path))
        from porttax.parity.runners import TfLiteRunner

        return TfLiteRunner(path)
    if suffix == ".pte":
        if opts.device == "cuda":
            raise InputError("porttax runs .pte programs in ExecuTorch's runtime on the CPU", path=str(path))
        from porttax.parity.runners import ExecuTorchRunner

        return ExecuTorchRunner(path)
    if suffix == ".onnx":
        if opts.device == "cuda":
            raise InputError("porttax runs ONNX on onnxruntime's CPU provider only", path=str(path))
        return OnnxRunner(path)
    from porttax.sources import sniff

    fmt = sniff(path)
    if fmt is not None and fmt.kind == "torch":  # a registered PyTorch-family format
        return _torch_runner(path, opts)
    raise InputError(f"cannot tell the model format from {suffix or 'a missing extension'!r}", path=str(path),
                     hint="use .pt2/.pt/.pth/.safetensors (PyTorch), .keras, .onnx, .tflite, .pte, or a SavedModel directory")


def open_pair(source: Any, converted: Any, options: OpenOptions | None = None,
              converted_options: OpenOptions | None = None) -> tuple[Runner, Runner]:
    src = open_runner(source, options)
    conv = open_runner(converted, converted_options or options)
    src = _align_onnx_names(src, conv)
    if getattr(conv, "layer_map_from_keras", False) and hasattr(src, "layer_map"):
        # A .pt2 from the Keras → torch road says which Keras layer output each module output is; that
        # map, not one the Keras file may carry from an earlier torch → Keras conversion, pairs these two.
        src.layer_map = conv.layer_map
    return src, conv


def _align_onnx_names(src: Runner, conv: Runner) -> Runner:
    """An ONNX source whose input names are not identifiers (`input.1`, `0`, `onnx::Conv_3`), checked
    against the model porttax converted from it, whose inputs are (`input_1`, `_0`, `onnx_conv_3`): the
    ONNX runner takes the converted model's names. Paired by position, only where the names match
    once case and punctuation are set aside (or there is one input each)."""
    import re

    if not isinstance(src, OnnxRunner) or list(conv.input_names) == list(src.input_names):
        return src
    if set(src.input_names) & set(conv.input_names) or len(src.input_names) != len(conv.input_names):
        return src

    def norm(name: str) -> str:
        return re.sub(r"[^0-9a-z]", "", name.lower())

    pairs = list(zip(conv.input_names, src.input_names))
    if len(pairs) == 1 or all(norm(a).startswith(norm(b)) or norm(b).startswith(norm(a)) for a, b in pairs):
        return OnnxRunner(src.path, name=src.name, rename=dict(pairs))
    return src


def _open_object(obj: Any, opts: OpenOptions) -> Runner:
    module = type(obj).__module__
    if module.startswith("torch") or _is_torch(obj):
        return _torch_runner(obj, opts)
    if module.startswith("keras"):
        return KerasRunner(obj)
    raise InputError(f"cannot check parity of a {type(obj).__name__}",
                     hint="pass a torch module, ExportedProgram, Keras model or a model path")


def _is_torch(obj: Any) -> bool:
    from porttax._frameworks import import_torch

    torch = import_torch()
    return isinstance(obj, (torch.nn.Module, torch.export.ExportedProgram))


def _torch_runner(model: Any, opts: OpenOptions) -> Runner:
    from porttax.sources.torch_source import load_torch_source

    if opts.device == "cuda" and not cuda_available():
        raise InputError("--device cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)",
                         hint="run on a machine with an NVIDIA GPU, or use --device cpu")
    src = load_torch_source(model, example_inputs=opts.example_inputs, input_shapes=opts.input_shapes,
                            input_dtypes=opts.input_dtypes, arch=opts.arch, config=opts.config,
                            trust_pickle=opts.trust_pickle, trust_code=opts.trust_code)
    runnable = src.program if src.origin == "pt2" else src.runnable()
    device = "cuda" if opts.device == "cuda" else None
    runner = TorchRunner(runnable, [s.name for s in src.specs], specs=src.specs, device=device, name=src.name)
    if src.origin == "pt2" and src.path:
        layer_map = _pt2_layer_map(Path(src.path))
        if layer_map is not None:
            runner.layer_map = layer_map  # type: ignore[attr-defined]
            runner.layer_map_from_keras = True  # type: ignore[attr-defined]
    return runner


def _pt2_layer_map(path: Path) -> Any:
    """The layer map a `.pt2` from porttax's Keras → torch road carries (None for any other .pt2)."""
    import zipfile

    from porttax.layer_map import PT2_ENTRY, LayerMap

    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("extra/" + PT2_ENTRY)), None)
            return LayerMap.from_json(z.read(name).decode()) if name else None
    except (zipfile.BadZipFile, ValueError, KeyError):
        return None


def _keras_runner(path: Path, opts: OpenOptions) -> Runner:
    from porttax.parity.worker import BACKENDS, WorkerRunner

    here = os.environ.get("KERAS_BACKEND", "tensorflow")
    backend = opts.backend or here
    if backend not in BACKENDS:
        raise InputError(f"unknown Keras backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == here and opts.device == "cpu":
        return KerasRunner(path, compiled=True)
    # Another backend, or a GPU: a worker process with its own Keras. Its signature comes from the file.
    local = KerasRunner(path) if here == "tensorflow" or backend == here else None
    names = local.input_names if local is not None else _keras_input_names(path)
    runner = WorkerRunner(path, names, backend, specs=local.specs if local else None, device=opts.device)
    runner.layer_map = local.layer_map if local is not None else None
    return runner


def _keras_input_names(path: Path) -> list[str]:
    import json
    import zipfile

    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
    layers = config.get("config", {}).get("input_layers", [])
    if layers and isinstance(layers[0], str):
        layers = [layers]
    return [entry[0] for entry in layers]
