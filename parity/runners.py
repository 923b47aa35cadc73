"""Runners: run one model on NumPy inputs and return its outputs as NumPy arrays, in order.

NumPy is the hub, so the parity suite compares any two frameworks without knowing either. The public
`run()` checks inputs against the runner's signature and names the offending input; `_run()` only does
the work (Polygraphy's infer/infer_impl split), so a bad input never becomes a traceback from inside a
framework. Frameworks are imported on first use through `porttax._frameworks`, which owns the import
order that keeps torch.export alive next to TensorFlow.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from porttax._frameworks import import_keras, import_tf, import_torch
from porttax.errors import InputError
from porttax.parity.reference import ReferenceUnavailable, default_dtype_float64, widen_array
from porttax.sources.savedmodel_checks import check_savedmodel_ops
from porttax.types import Framework, TensorSpec, spec_dims


class Runner(ABC):
    """One model, callable on `{input name: array}`; outputs come back as a list in model order.

    `specs` is the input signature when known; a runner built from names alone (`specs is None`)
    checks names only.
    """

    name: str
    framework: Framework
    input_names: list[str]
    specs: list[TensorSpec] | None = None
    output_names: list[str] | None = None  # from the signature, or filled in by the first run
    # a float64 reference (see float64()): it takes the same float32 cases and widens them itself
    widen_inputs: bool = False

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        check_names(inputs, self.input_names, self.describe())
        if self.specs is not None:
            validate_inputs(inputs, self.specs, self.describe())
        feed = {n: np.asarray(inputs[n]) for n in self.input_names}
        if self.widen_inputs:
            feed = {n: widen_array(a) for n, a in feed.items()}
        outputs = self._run(feed)
        return [np.asarray(o) for o in outputs]

    def float64(self) -> "Runner":
        """This model computing in float64, as the reference parity measures both sides against
        (porttax.parity.reference). Raises ReferenceUnavailable, saying why, where it cannot."""
        raise ReferenceUnavailable(f"{self.describe()} has no float64 form (porttax widens torch modules and "
                                   "programs, Keras models and ONNX graphs)")

    def float64_bytes(self) -> int | None:
        """Estimated bytes of a float64 copy of the model's weights (None: unknown)."""
        return None

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on checked inputs (ordered as `input_names`)."""

    def describe(self) -> str:
        return f"{self.framework}:{self.name}"

    @property
    def device_label(self) -> str:
        """Where the model runs ("cpu", "cuda:0"), as reports print it."""
        return "cpu"

    def capture(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Every module output the runner can expose, keyed by tap (see parity.taps), in the source layout.

        None when this model carries no layer map (it was not written by porttax), so a caller can say
        why localisation is unavailable instead of guessing.
        """
        return None


def check_names(inputs: Mapping[str, Any], names: Sequence[str], runner: str = "model") -> None:
    missing = [n for n in names if n not in inputs]
    extra = [n for n in inputs if n not in names]
    if missing or extra:
        raise InputError(
            f"{runner}: inputs do not match the signature "
            f"(missing: {missing or 'none'}, unexpected: {extra or 'none'})",
            hint=f"pass exactly these inputs: {list(names)}",
        )


def validate_inputs(inputs: Mapping[str, Any], specs: Sequence[TensorSpec], runner: str = "model") -> None:
    """Raise InputError unless `inputs` has exactly the spec'd names with matching dtype and shape.

    Symbolic dims accept any size, but one symbolic name must take one size across all inputs
    ("batch" is 2 everywhere), which catches inputs built for different batch or sequence sizes.
    """
    check_names(inputs, [s.name for s in specs], runner)
    bound: dict[str, tuple[int, str]] = {}
    for spec in specs:
        arr = np.asarray(inputs[spec.name])
        if arr.dtype.name != spec.dtype:
            raise InputError(f"{runner}: input {spec.name!r} has dtype {arr.dtype.name}, expected {spec.dtype}",
                             hint=f"cast it with .astype({spec.dtype!r})")
        if arr.ndim != len(spec.shape):
            raise InputError(f"{runner}: input {spec.name!r} has shape {list(arr.shape)}, expected rank "
                             f"{len(spec.shape)} {list(spec.shape)}")
        for axis, (dim, size) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(dim, int):
                if dim != size:
                    raise InputError(f"{runner}: input {spec.name!r} has size {size} on axis {axis}, expected {dim} "
                                     f"(shape {list(spec.shape)})")
            elif dim in bound and bound[dim][0] != size:
                other_size, other = bound[dim]
                raise InputError(f"{runner}: input {spec.name!r} has {dim}={size} on axis {axis}, but input "
                                 f"{other!r} has {dim}={other_size}")
            else:
                bound.setdefault(dim, (size, spec.name))


def natural_key(key: str) -> list[Any]:
    """Sort key that puts output_2 before output_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


# --- torch -------------------------------------------------------------------------------------------


def _flatten_torch(obj: Any, prefix: str, names: list[str], arrays: list[np.ndarray]) -> None:
    """Depth-first flatten of tensors in tuples/lists/dicts (HF ModelOutput is a dict); None is skipped."""
    torch = import_torch()
    if obj is None:
        return
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds every bf16 value exactly
            t = t.float()
        names.append(prefix)
        arrays.append(t.numpy())
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten_torch(value, f"{prefix}.{key}" if prefix else str(key), names, arrays)
    elif isinstance(obj, (tuple, list)):
        for i, value in enumerate(obj):
            _flatten_torch(value, f"{prefix}.{i}" if prefix else f"output_{i}", names, arrays)
    elif isinstance(obj, (int, float, bool, np.ndarray, np.generic)):
        names.append(prefix)
        arrays.append(np.asarray(obj))
    else:
        raise InputError(f"torch model returned {type(obj).__name__} at {prefix or 'top level'}; "
                         "expected tensors in tuples, lists or dicts")


class TorchRunner(Runner):
    """A `torch.nn.Module` or `torch.export.ExportedProgram`, called positionally in `input_names` order.

    Modules run in eval mode under no_grad. An ExportedProgram's module cannot be switched to eval (its
    mode was fixed at export), so it runs as exported. Output names are dict / ModelOutput keys, dotted
    for nesting ("hidden_states.0"), and output_<i> for plain tuple positions.
    """

    framework: Framework = "torch"

    def __init__(
        self,
        module_or_exported_program: Any,
        input_names: Sequence[str],
        *,
        specs: Sequence[TensorSpec] | None = None,
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        torch = import_torch()
        obj = module_or_exported_program
        self.program = obj if isinstance(obj, torch.export.ExportedProgram) else None
        if isinstance(obj, torch.export.ExportedProgram):
            self.module = obj.module()
        elif isinstance(obj, torch.nn.Module):
            from porttax.sources.torch_program import inference_mode

            self.module = inference_mode(obj)  # ExportedProgram.module() refuses eval(): it is one already
        else:
            raise InputError(f"TorchRunner needs an nn.Module or ExportedProgram, got {type(obj).__name__}")
        self.name = name or type(obj).__name__
        self.device = device
        if device:
            self.module = self.module.to(device)
        self.input_names = [input_names] if isinstance(input_names, str) else list(input_names)
        self.specs = _order_specs(self.input_names, specs, self.describe())
        # a module cast to bfloat16/float16 (a half-precision conversion's reference) computes in that
        # dtype; its float inputs, float32 in the signature, are cast to it as the converted model casts them
        half = next((p.dtype for p in self.module.parameters() if p.is_floating_point()), None)
        self._half = half if half in (torch.bfloat16, torch.float16) else None

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = import_torch()
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names]
        if self._half is not None:
            args = [a.to(self._half) if a.is_floating_point() else a for a in args]
        if self.device:
            args = [a.to(self.device) for a in args]
        with torch.no_grad(), (default_dtype_float64() if self.widen_inputs else contextlib.nullcontext()):
            out = self.module(*args)
        names: list[str] = []
        arrays: list[np.ndarray] = []
        _flatten_torch(out, "output_0" if isinstance(out, torch.Tensor) else "", names, arrays)
        self.output_names = names
        return arrays

    def capture(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Module outputs from the exported graph, run node by node (a module is exported first)."""
        from porttax.parity.taps import capture_torch

        torch = import_torch()
        check_names(inputs, self.input_names, self.describe())
        args = tuple(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names)
        if self.widen_inputs:
            args = tuple(a.double() if a.is_floating_point() else a for a in args)
        elif self._half is not None:
            args = tuple(a.to(self._half) if a.is_floating_point() else a for a in args)
        program = self.program
        if program is None:  # an eager module (a float64 copy of one exports in float64)
            program = torch.export.export(self.module, args)
            values, _ = capture_torch(program, list(args))
        else:  # the program as exported; a float64 reference widens the same decomposed graph
            values, _ = capture_torch(program, list(args), widen=self.widen_inputs)
        return values

    def float64(self) -> Runner:
        """A float64 copy: an exported program's graph widened (its dtype arguments included), an
        eager module cast with `.double()` and run with float64 as torch's default dtype."""
        from porttax.parity.reference import widen_torch_graph, widen_torch_module

        torch = import_torch()
        if self.device:
            raise ReferenceUnavailable(f"the float64 reference runs on the CPU; this source runs on {self.device}")
        if isinstance(self.module, torch.jit.ScriptModule):
            raise ReferenceUnavailable("a TorchScript module's graph fixes its dtypes")
        wide = copy.copy(self)
        wide.module = (widen_torch_graph(self.module) if isinstance(self.module, torch.fx.GraphModule)
                       else widen_torch_module(self.module))
        wide.widen_inputs = True
        wide._half = None
        wide.name = f"{self.name} (float64)"
        return wide

    def float64_bytes(self) -> int | None:
        from porttax.parity.reference import torch_float64_bytes

        return torch_float64_bytes(self.module)

    @property
    def device_label(self) -> str:
        return str(self.device or "cpu")


def _order_specs(names: list[str], specs: Sequence[TensorSpec] | None, runner: str) -> list[TensorSpec] | None:
    if specs is None:
        return None
    by_name = {s.name: s for s in specs}
    if sorted(by_name) != sorted(names):
        raise InputError(f"{runner}: input_names {names} do not match the specs {list(by_name)}")
    return [by_name[n] for n in names]


class ChannelsFirstAdapter(Runner):
    """A model with a channels-first interface (`--channels-first`), fed and read in channels-last.

    Parity compares against a Keras model that speaks NHWC; this moves every rank ≥ 4 input to NCHW
    on the way in and every rank ≥ 4 output back on the way out, so both sides see the same cases.
    """

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.name = inner.name
        self.framework = inner.framework
        self.input_names = inner.input_names
        self.specs = inner.specs

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        moved = {k: (np.ascontiguousarray(np.moveaxis(v, -1, 1)) if v.ndim >= 4 else v) for k, v in inputs.items()}
        outs = self.inner._run(moved)
        self.output_names = self.inner.output_names
        return [np.moveaxis(o, 1, -1) if o.ndim >= 4 else o for o in outs]

    @property
    def device_label(self) -> str:
        return self.inner.device_label


# --- keras -------------------------------------------------------------------------------------------


def load_keras_model(path: str | Path) -> Any:
    """A `.keras` file, loaded with safe_mode=True (no Lambda layers or other code from the file)."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory, not a .keras file", path=str(path),
                         hint="read a SavedModel with SavedModelRunner")
    if not path.is_file():
        raise InputError("no such model file", path=str(path))
    if path.suffix != ".keras":
        raise InputError(f"expected a .keras file, got {path.suffix or 'no extension'}", path=str(path))
    from porttax.sources.keras_source import load_keras_file

    return load_keras_file(path)


class KerasRunner(Runner):
    """A Keras 3 model (or `.keras` path) called on its inputs in signature order, with training=False.

    `compiled=True` wraps the call in a tf.function on the TensorFlow backend (faster for repeated
    cases); on other backends it has no effect.
    """

    framework: Framework = "keras"

    def __init__(
        self,
        model_or_path: Any,
        input_names: Sequence[str] | None = None,
        *,
        compiled: bool = False,
        name: str | None = None,
        layer_map: Any = None,
    ) -> None:
        from porttax.layer_map import read_keras_file

        keras = import_keras()
        self.layer_map = layer_map
        if isinstance(model_or_path, (str, Path)):
            self.model = load_keras_model(model_or_path)
            self.name = name or Path(model_or_path).name
            if self.layer_map is None:
                self.layer_map = read_keras_file(model_or_path)
        else:
            self.model = model_or_path
            self.name = name or getattr(model_or_path, "name", type(model_or_path).__name__)
        self._tap_model: Any = None
        self._structure, self.input_names, self.specs = self._signature(input_names)
        self._call = self._plain_call
        if compiled and keras.config.backend() == "tensorflow":
            tf = import_tf()
            traced = tf.function(self._plain_call, reduce_retracing=True)
            # Tensors go in, as SavedModelRunner feeds its signature: a tf.function handed NumPy arrays
            # converts and type-checks them inside every call, 0.1 ms, most of a small model's time.
            self._call = lambda args: traced([tf.constant(a) for a in args])

    def _signature(self, input_names: Sequence[str] | None) -> tuple[str, list[str], list[TensorSpec] | None]:
        """How the model takes its inputs ("dict", "list" or "single"), their names, and specs if known."""
        try:
            struct = self.model.input
        except (AttributeError, ValueError):  # subclassed model that was never built on symbolic inputs
            struct = None
        functional = getattr(self.model, "_functional", None)  # a Sequential loaded from a file keeps its graph here
        if struct is None and functional is not None:
            struct = functional.input
        if struct is None:
            if not input_names:
                raise InputError(f"keras:{self.name}: model has no symbolic inputs; pass input_names")
            names = list(input_names)
            return ("single" if len(names) == 1 else "list"), names, None
        if isinstance(struct, dict):
            kind, pairs = "dict", list(struct.items())
        elif isinstance(struct, (list, tuple)):
            kind, pairs = "list", [(t.name, t) for t in struct]
        else:
            kind, pairs = "single", [(struct.name, struct)]
        names = [n for n, _ in pairs]
        if input_names is not None:  # caller renames (e.g. auto-named Sequential inputs)
            if len(input_names) != len(names):
                raise InputError(f"keras:{self.name}: {len(input_names)} input_names for {len(names)} inputs")
            names = list(input_names)
        specs = [TensorSpec(n, spec_dims(t.shape, n), str(t.dtype)) for n, (_, t) in zip(names, pairs)]
        if kind == "dict":
            self._dict_keys = [k for k, _ in pairs]
        return kind, names, specs

    def _feed(self, args: list[Any]) -> Any:
        """Positional inputs in the structure the model was built with (dict, single tensor or list)."""
        if self._structure == "dict":
            return dict(zip(self._dict_keys, args))
        return args[0] if self._structure == "single" else list(args)

    def _plain_call(self, args: list[Any]) -> Any:
        return self.model(self._feed(args), training=False)

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        keras = import_keras()
        out = self._call([inputs[n] for n in self.input_names])
        if isinstance(out, Mapping):
            names, values = [str(k) for k in out], list(out.values())
        elif isinstance(out, (list, tuple)):
            values = keras.tree.flatten(out)
            names = [f"output_{i}" for i in range(len(values))]
        else:
            names, values = ["output_0"], [out]
        self.output_names = names
        return [keras.ops.convert_to_numpy(v) for v in values]

    def float64(self) -> Runner:
        """The model rebuilt from its config under float64, weights widened (same layer names, so
        its layer map still matches)."""
        from porttax.parity.reference import widen_keras_model

        wide = KerasRunner(widen_keras_model(self.model), self.input_names, name=f"{self.name} (float64)",
                           layer_map=self.layer_map)
        wide.specs = self.specs  # it takes the same float32 cases and widens them
        wide.widen_inputs = True
        return wide

    def float64_bytes(self) -> int | None:
        return int(sum(int(np.prod(w.shape)) for w in self.model.weights) * 8 * 1.25)

    def capture(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Tap outputs through a second functional model sharing this one's layers (no copy of weights)."""
        from porttax.parity.taps import tap_tensors, to_source_layout

        if self.layer_map is None:
            return None
        keras = import_keras()
        check_names(inputs, self.input_names, self.describe())
        if self._tap_model is None:
            outputs = tap_tensors(self.model, self.layer_map.taps)
            self._tap_model = keras.Model(self.model.inputs, outputs, name=f"{self.model.name}_taps") if outputs else False
        values: dict[str, np.ndarray] = {}
        if self._tap_model:
            feed = self._feed([np.asarray(inputs[n]) for n in self.input_names])
            raw = self._tap_model(feed, training=False)
            perms = {t.key: t.perm for t in self.layer_map.taps}
            values = {k: to_source_layout(keras.ops.convert_to_numpy(v), perms[k]) for k, v in raw.items()}
        values.update(self.layer_map.consts)
        return values


# --- TensorFlow SavedModel ---------------------------------------------------------------------------


class SavedModelRunner(Runner):
    """A TF SavedModel signature, called with inputs by name.

    Outputs come back sorted by output key in natural order (output_0, output_1, ..., output_10), the
    order Keras `model.export` numbers them in.
    """

    framework: Framework = "tf"

    def __init__(self, path: str | Path, signature: str = "serving_default", *, name: str | None = None) -> None:
        tf = import_tf()
        path = Path(path)
        if not (path / "saved_model.pb").is_file():
            raise InputError("not a SavedModel directory (no saved_model.pb)", path=str(path))
        check_savedmodel_ops(path)  # its functions run below; refuse file I/O before any of them can
        try:
            self._loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise InputError(f"cannot load SavedModel: {exc}", path=str(path)) from exc
        if signature not in self._loaded.signatures:
            raise InputError(f"no signature {signature!r}; available: {sorted(self._loaded.signatures)}",
                             path=str(path))
        self.name = name or path.name
        self._fn = self._loaded.signatures[signature]
        _, kwargs = self._fn.structured_input_signature
        self.input_names = list(kwargs)
        self.specs = [TensorSpec(n, spec_dims(s.shape.as_list(), n), s.dtype.name) for n, s in kwargs.items()]
        self.output_names = sorted(self._fn.structured_outputs, key=natural_key)
        from porttax.layer_map import MAP_SIGNATURE, SIGNATURE, LayerMap, read_savedmodel

        self.layer_map = read_savedmodel(path) if SIGNATURE in self._loaded.signatures else None
        if self.layer_map is None and SIGNATURE in self._loaded.signatures and MAP_SIGNATURE in self._loaded.signatures:
            # saved again by TensorFlow: assets.extra is gone, the map signature is not
            text = self._loaded.signatures[MAP_SIGNATURE]()["layer_map"].numpy().decode()
            self.layer_map = LayerMap.from_json(text)

    @property
    def loaded(self) -> Any:
        """The loaded SavedModel (`tf.saved_model.load`), for its other signatures."""
        return self._loaded

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        tf = import_tf()
        out = self._fn(**{n: tf.constant(a) for n, a in inputs.items()})
        return [out[k].numpy() for k in self.output_names]

    def capture(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Tap outputs from the `porttax_layers` signature porttax writes beside `serving_default`."""
        from porttax.layer_map import SIGNATURE
        from porttax.parity.taps import to_source_layout

        if self.layer_map is None:
            return None
        tf = import_tf()
        check_names(inputs, self.input_names, self.describe())
        raw = self._loaded.signatures[SIGNATURE](**{n: tf.constant(inputs[n]) for n in self.input_names})
        values = {t.key: to_source_layout(raw[t.output].numpy(), t.perm)
                  for t in self.layer_map.taps if t.kind == "tensor" and t.output in raw}
        values.update(self.layer_map.consts)
        return values


# --- ONNX (onnxruntime) ------------------------------------------------------------------------------

_ONNX_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(bfloat16)": "bfloat16"}


class OnnxRunner(Runner):
    """An ONNX file on onnxruntime's CPU provider.

    The session is created with `allow_spinning=0`: onnxruntime's worker threads otherwise spin between
    runs and steal a core from whatever runs next (the other model, in a parity check or a benchmark).
    External-data files must sit inside the model's folder.
    """

    framework: Framework = "onnx"

    def __init__(self, path: str | Path, *, name: str | None = None, rename: Mapping[str, str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise InputError("no such ONNX file", path=str(path))
        # {name this runner takes: the ONNX input name}: the converted model's inputs are Python
        # identifiers (`input_1` for the legacy exporter's `input.1`), and parity feeds both sides one case
        self._onnx_names = {k: v for k, v in (rename or {}).items() if k != v}
        from porttax.parity.onnx_safety import check_external_data

        check_external_data(path)
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise InputError(f"onnxruntime cannot load the model: {exc}", path=str(path)) from exc
        self.name = name or path.name
        self.path = path
        self._evaluator: Any = None
        exposed = {v: k for k, v in self._onnx_names.items()}
        self.input_names = [exposed.get(i.name, i.name) for i in self._session.get_inputs()]
        self.specs = [TensorSpec(exposed.get(i.name, i.name),
                                 spec_dims([d if isinstance(d, int) else None for d in i.shape], i.name),
                                 _ONNX_TYPES.get(i.type, "float32")) for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        inputs = {self._onnx_names.get(k, k): v for k, v in inputs.items()}
        if self._evaluator is not None:
            return [np.asarray(o) for o in self._evaluator.run(self.output_names, inputs)]
        try:
            return list(self._session.run(self.output_names, inputs))
        except Exception as exc:  # onnxruntime's own Fail/InvalidArgument: a graph it loads but cannot run
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise InputError(f"onnxruntime cannot run the model: {first}", path=str(self.path),
                             hint="the ONNX file is inconsistent (a node's shapes disagree); re-export it, "
                                  "or convert without the ONNX road") from exc

    def float64(self) -> Runner:
        """The graph widened to float64, on onnxruntime where it has float64 kernels for every op, else
        on `onnx.reference` (NumPy: slower, but it has them all)."""
        import onnx
        import onnxruntime as ort

        from porttax.parity.reference import widen_onnx

        try:
            wide_proto = widen_onnx(onnx.load(str(self.path)))
        except Exception as exc:  # a graph onnx cannot read back whole (external data past 2 GB)
            raise ReferenceUnavailable(f"the ONNX graph cannot be widened: {type(exc).__name__}: {exc}") from exc
        wide = copy.copy(self)
        wide.name, wide.widen_inputs = f"{self.name} (float64)", True
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            wide._session = ort.InferenceSession(wide_proto.SerializeToString(), options,
                                                 providers=["CPUExecutionProvider"])
            wide.float64_runtime = "onnxruntime"
            return wide
        except Exception as ort_error:  # onnxruntime lacks float64 kernels for Conv, pooling, ...
            first = str(ort_error).splitlines()[0][:160]
        try:
            from onnx.reference import ReferenceEvaluator

            wide._evaluator = ReferenceEvaluator(wide_proto)
            wide.float64_runtime = f"onnx.reference (onnxruntime has no float64 kernel: {first})"
        except Exception as exc:
            raise ReferenceUnavailable(f"neither onnxruntime ({first}) nor onnx.reference runs the graph in "
                                       f"float64 ({type(exc).__name__}: {exc})") from exc
        return wide

    def float64_bytes(self) -> int | None:
        """Widening holds the float32 graph loaded whole (its external data included), the float64 copy
        (twice that) and the runtime's own copy of it (twice again): about five times the weights. The
        external-data files count: a 10 MB `.onnx` beside a 2 GB `.onnx.data` is a 2 GB model."""
        import onnx

        weights = self.path.stat().st_size
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception:  # a file onnxruntime loaded but onnx cannot parse: no estimate
            return None
        locations = {entry.value for t in proto.graph.initializer for entry in t.external_data
                     if entry.key == "location"}
        for location in locations:
            data = self.path.parent / location
            if data.is_file():
                weights += data.stat().st_size
        return int(weights * 5)


class TfLiteRunner(Runner):
    """A `.tflite` model in the LiteRT interpreter (`ai-edge-litert`), called through its signature.

    The interpreter is what a phone runs, so drift measured here is the drift users get. Outputs come
    back in the natural order of their signature names (output_0, output_1, ...), as porttax's
    SavedModels number them; the interpreter runs on this process's thread count.
    """

    framework: Framework = "tflite"
    fixed_shapes = True  # a .tflite is checked at the sizes its tensors were allocated at (run_parity)

    def __init__(self, path: str | Path, signature: str = "serving_default", *, name: str | None = None,
                 threads: int | None = None) -> None:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:
            raise InputError("running .tflite models needs the LiteRT interpreter",
                             hint="pip install ai-edge-litert (porttax's test and tflite extras install it)") from None
        path = Path(path)
        if not path.is_file():
            raise InputError("no such .tflite file", path=str(path))
        # The runtime may refuse a graph (XNNPACK, at prepare time) or abort the process (a kernel's
        # check failing): try it in a child process first, and run here only what ran there.
        self.delegate = probe_tflite(path, signature)
        t0 = time.perf_counter()
        self._open(path, signature, threads, delegates=self.delegate == "xnnpack")
        self.load_ms = (time.perf_counter() - t0) * 1000  # file to ready-to-run, as an app would load it
        details = self._runner.get_input_details()
        signatures = self._interpreter.get_signature_list()
        self.name = name or path.name
        self.input_names = list(signatures[signature]["inputs"])
        self.specs = [TensorSpec(n, spec_dims([int(d) for d in details[n]["shape"]], n), np.dtype(details[n]["dtype"]).name)
                      for n in self.input_names]
        self.output_names = sorted(signatures[signature]["outputs"], key=natural_key)

    def _open(self, path: Path, signature: str, threads: int | None, *, delegates: bool) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1,
                                            experimental_op_resolver_type=resolver)
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError with its own text
            raise InputError(f"the LiteRT interpreter cannot load the model: {exc}", path=str(path)) from exc
        signatures = self._interpreter.get_signature_list()
        if signature not in signatures:
            raise InputError(f"no signature {signature!r}; available: {sorted(signatures)}", path=str(path))
        self._runner = self._interpreter.get_signature_runner(signature)

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self._runner(**inputs)
        return [np.array(out[k]) for k in self.output_names]


_PROBE = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
resolver = OpResolverType.AUTO if sys.argv[3] == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
runner = Interpreter(model_path=sys.argv[1], experimental_op_resolver_type=resolver).get_signature_runner(sys.argv[2])
runner(**{n: np.zeros(d["shape"], d["dtype"]) for n, d in runner.get_input_details().items()})
"""


def probe_tflite(path: Path, signature: str = "serving_default") -> str:
    """Which LiteRT kernels run the model: "xnnpack" (the default delegate) or "builtin" (XNNPACK
    refused it). Each try runs in a child process, because some kernels abort instead of raising."""
    import subprocess
    import sys

    failures = []
    for kernels in ("xnnpack", "builtin"):
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path), signature, kernels], capture_output=True,
                              text=True, timeout=600)
        if done.returncode == 0:
            return kernels
        lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("INFO")]
        how = f"exit {done.returncode}" if done.returncode > 0 else f"killed by signal {-done.returncode}"
        failures.append(f"{kernels}: {lines[-1][:200] if lines else how}")
    raise InputError("the LiteRT runtime cannot run this model (" + "; ".join(failures) + ")", path=str(path),
                     hint="for a quantised model, try --quantize dynamic; report the model if a float one fails")


# ExecuTorch's ScalarType codes for the dtypes a model's inputs and outputs take
_EXECUTORCH_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                      7: "float64", 11: "bool"}


class ExecuTorchRunner(Runner):
    """A `.pte` program in ExecuTorch's runtime (`executorch.runtime`), its `forward` method.

    Input names come from the `porttax_input_names` constant method porttax writes into the program
    (see porttax.targets.executorch); a `.pte` from elsewhere gets input_0, input_1, ... Shapes and dtypes
    come from the method's metadata: a `.pte` is static-shaped.
    """

    fixed_shapes = True  # checked at the sizes it was lowered at (porttax.targets._check.run_parity)

    framework: Framework = "executorch"

    def __init__(self, path: str | Path, *, name: str | None = None, input_names: Sequence[str] | None = None) -> None:
        import json

        from porttax._frameworks import require_executorch
        from porttax.layer_map import PTE_INPUT_NAMES as INPUT_NAMES, PTE_OUTPUT_NAMES as OUTPUT_NAMES

        require_executorch()
        from executorch.runtime import Runtime

        path = Path(path)
        if not path.is_file():
            raise InputError("no such .pte file", path=str(path))
        t0 = time.perf_counter()
        try:
            program = Runtime.get().load_program(str(path))
            self._method = program.load_method("forward")
        except Exception as exc:  # the runtime raises RuntimeError with its own status text
            raise InputError(f"the ExecuTorch runtime cannot load the program: {exc}", path=str(path),
                             hint="re-export it with porttax convert --to executorch") from exc
        self.load_ms = (time.perf_counter() - t0) * 1000
        meta = program.metadata("forward")
        names: list[str] = list(input_names or [])
        if not names and INPUT_NAMES in program.method_names:
            names = json.loads(program.load_method(INPUT_NAMES).execute([])[0])
        count = meta.num_inputs()
        if len(names) != count:
            names = [f"input_{i}" for i in range(count)]
        self.input_names = names
        self.specs = []
        for i, n in enumerate(names):
            tensor = meta.input_tensor_meta(i)
            dtype = _EXECUTORCH_DTYPES.get(int(tensor.dtype()))
            if dtype is None:
                raise InputError(f"input {n!r} has ExecuTorch dtype code {tensor.dtype()}, which porttax does not feed",
                                 path=str(path))
            self.specs.append(TensorSpec(n, tuple(int(d) for d in tensor.sizes()), dtype))
        if OUTPUT_NAMES in program.method_names:
            self.output_names = json.loads(program.load_method(OUTPUT_NAMES).execute([])[0])
        self.name = name or path.name

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = import_torch()
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names]
        outputs = self._method.execute(args)
        return [np.array(o.detach().numpy() if hasattr(o, "detach") else o) for o in outputs]


class TfjsRunner(Runner):
    """A TensorFlow.js graph model folder (`model.json` + weight shards), run in Node.js on TF.js's
    pure-JavaScript CPU backend, called through its signature (see porttax.tfjs.node).

    One Node process per runner holds the loaded model for every run, so latency is the model's, not
    Node's start-up (a run's timing includes the sub-millisecond pipe transfer). Outputs come back in
    the natural order of their signature keys (output_0, output_1, ...), as porttax's SavedModels
    number them, in the dtype the signature declares (TF.js computes int64 as int32). `close()` ends
    the process; it also ends when the runner is collected or Python exits.
    """

    framework: Framework = "tfjs"

    def __init__(self, path: str | Path, *, name: str | None = None, progress: Any = None) -> None:
        from porttax.tfjs.env import node_runtime
        from porttax.tfjs.node import GraphModelProcess, read_graph_model

        path = Path(path)
        signature = read_graph_model(path)
        runtime = node_runtime(progress)
        self.name = name or path.name
        self.input_names = [t.key for t in signature.inputs]
        # an input of unknown rank leaves names as all that can be checked
        known = all(t.shape is not None for t in signature.inputs)
        self.specs = [TensorSpec(t.key, spec_dims(list(t.shape or ()), t.key), t.dtype)
                      for t in signature.inputs] if known else None
        outputs = sorted(signature.outputs, key=lambda t: natural_key(t.key))
        self.output_names = [t.key for t in outputs]
        self._output_dtypes = [t.dtype for t in outputs]
        t0 = time.perf_counter()
        self._process = GraphModelProcess(path, runtime)
        self.load_ms = (time.perf_counter() - t0) * 1000  # Node start-up, the tfjs packages and the weights
        hello = self._process.hello
        self.runtime_note = f"Node.js {runtime.version}, TF.js {hello.get('tfjs')} {hello.get('backend')} backend"

    def _run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        outs = self._process.run([(n, inputs[n]) for n in self.input_names], self.output_names)
        return [o.astype(dtype, copy=False) for o, dtype in zip(outs, self._output_dtypes)]

    def close(self) -> None:
        self._process.close()
