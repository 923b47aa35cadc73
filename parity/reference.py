"""The float64 reference: the source model run once more in float64, so a drift can be judged against
the error the source already makes in its own dtype.

A deep float32 network is itself 1e-5–1e-4 away from its exact result; a converted model that is as
far from the float64 result as the source is has lost nothing, whatever it differs from the source by.
This module widens a model (torch graph, Keras model, ONNX graph) to float64 and says, in words, why
it cannot when it cannot; the runners wrap the widened model (`Runner.float64()`), and
`open_reference` decides whether to try at all. Integer tensors stay integers; only float32 (and
half-precision) values and the dtype arguments that create them are widened.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from porttax.errors import InputError

REFERENCES = ("auto", "float64", "none")
_FLOATS = ("float16", "bfloat16", "float32")
# A float64 copy must fit beside everything already loaded: 8 bytes per value, plus activations.
_HEADROOM = 0.6  # of the memory available now


class ReferenceUnavailable(Exception):
    """The source cannot run in float64; the message says why, for the report."""


def check_reference_mode(mode: str) -> str:
    if mode not in REFERENCES:
        raise InputError(f"unknown reference {mode!r}; valid: {', '.join(REFERENCES)}",
                         hint="auto runs the source in float64 where it can; none keeps the fixed rule")
    return mode


def open_reference(source: Any, mode: str = "auto") -> tuple[Any, str]:
    """(a float64 runner of `source` or None, a note saying what was decided and why).

    "auto" tries where the estimated float64 copy fits in memory; "float64" tries whatever the
    estimate; "none" does not try. A failure is never an error: the fixed rule judges instead, and the
    note says so.
    """
    check_reference_mode(mode)
    if mode == "none":
        return None, "no float64 reference (--reference none): the fixed tolerance judges every output"
    try:
        if mode == "auto":
            need = getattr(source, "float64_bytes", lambda: None)()
            free = available_memory()
            if need is not None and free is not None and need > _HEADROOM * free:
                raise ReferenceUnavailable(f"a float64 copy needs ~{need / 2**30:.1f} GiB and "
                                           f"{free / 2**30:.1f} GiB is available (--reference float64 tries anyway)")
        wide = source.float64()
        runtime = getattr(wide, "float64_runtime", "")
        return wide, ("float64 reference: the source widened to float64, run on every case"
                      + (f", on {runtime}" if runtime else ""))
    except ReferenceUnavailable as exc:
        return None, f"no float64 reference ({exc}); the fixed tolerance judges every output"


def available_memory() -> int | None:
    """Bytes of memory available now (Linux MemAvailable, else free pages), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def widen_array(array: Any) -> Any:
    """A float32/half input as float64; anything else (token ids, masks) unchanged."""
    import numpy as np

    arr = np.asarray(array)
    return arr.astype(np.float64) if arr.dtype.name in _FLOATS else arr


# --- torch -------------------------------------------------------------------------------------------


def widen_torch_graph(gm: Any) -> Any:
    """A copy of an fx GraphModule (an exported program's module) computing in float64.

    Parameters, buffers and constant tensors are cast, and every float32 dtype argument in the graph
    (`ones(dtype=…)`, `.to(float32)`, metadata asserts) becomes float64, so an explicit upcast in the
    model stays an upcast instead of dropping the reference back to float32.
    """
    from porttax._frameworks import import_torch

    torch = import_torch()
    from torch.fx.node import map_aggregate

    wide = copy.deepcopy(gm)
    _cast_tensors(wide, torch)
    narrow = (torch.float32, torch.float16, torch.bfloat16)

    def widen_arg(a: Any) -> Any:
        return torch.float64 if isinstance(a, torch.dtype) and a in narrow else a

    for node in wide.graph.nodes:
        node.args = map_aggregate(node.args, widen_arg)
        node.kwargs = map_aggregate(node.kwargs, widen_arg)
        if node.op == "get_attr":
            owner, _, attr = node.target.rpartition(".")
            holder = wide.get_submodule(owner) if owner else wide
            value = getattr(holder, attr, None)
            if isinstance(value, torch.Tensor) and value.dtype in narrow:
                setattr(holder, attr, value.double())
    wide.recompile()
    return wide


def widen_torch_module(module: Any) -> Any:
    """A float64 copy of an eager module (the fallback where the module cannot be exported)."""
    from porttax._frameworks import import_torch

    torch = import_torch()
    wide = copy.deepcopy(module)
    _cast_tensors(wide, torch)
    return wide


def _cast_tensors(module: Any, torch: Any) -> None:
    try:
        module.double()  # floating parameters and buffers only; integer buffers stay integers
    except Exception as exc:  # a ScriptModule or custom module may refuse
        raise ReferenceUnavailable(f"the torch module cannot be cast to float64: {type(exc).__name__}: {exc}") from exc
    for name, value in list(vars(module).items()):  # plain tensor attributes (constants) are not buffers
        if isinstance(value, torch.Tensor) and value.dtype in (torch.float32, torch.float16, torch.bfloat16):
            setattr(module, name, value.double())


def torch_float64_bytes(module: Any) -> int:
    """Bytes a float64 copy of `module`'s floating tensors takes (activations come on top)."""
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            total += t.numel() * 8
    return int(total * 1.25)


class default_dtype_float64:
    """torch's default dtype set to float64 for a block: factory calls without a dtype then make float64."""

    def __enter__(self) -> None:
        from porttax._frameworks import import_torch

        self._torch = import_torch()
        self._before = self._torch.get_default_dtype()
        self._torch.set_default_dtype(self._torch.float64)

    def __exit__(self, *exc: Any) -> None:
        self._torch.set_default_dtype(self._before)


# --- Keras -------------------------------------------------------------------------------------------


def widen_keras_model(model: Any) -> Any:
    """The same Keras model rebuilt from its config under float64, with its weights widened."""
    from porttax._frameworks import import_keras

    keras = import_keras()
    try:
        config = keras.saving.serialize_keras_object(model)
        wide = keras.saving.deserialize_keras_object(_widen_config(config))
        wide.set_weights([widen_array(w) for w in model.get_weights()])
    except Exception as exc:  # a layer whose config or build does not take float64
        raise ReferenceUnavailable(f"the Keras model cannot be rebuilt in float64: {type(exc).__name__}: "
                                   f"{str(exc)[:200]}") from exc
    return wide


def _widen_config(obj: Any) -> Any:
    """Every float32/half dtype (a plain name or a DTypePolicy) in a serialized Keras config as float64."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key == "dtype" and isinstance(value, str) and value in (*_FLOATS, "mixed_float16", "mixed_bfloat16"):
                out[key] = "float64"
            elif key == "dtype" and isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                out[key] = {**value, "config": {**value.get("config", {}), "name": "float64"}}
            else:
                out[key] = _widen_config(value)
        return out
    if isinstance(obj, list):
        return [_widen_config(v) for v in obj]
    return obj


# --- ONNX --------------------------------------------------------------------------------------------


def widen_onnx(model: Any) -> Any:
    """A copy of an ONNX ModelProto whose float32/half tensors, casts and constants are float64."""
    import onnx
    from onnx import TensorProto, numpy_helper

    narrow = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    wide = copy.deepcopy(model)

    def widen_tensor(t: Any) -> None:
        if t.data_type in narrow:
            arr = numpy_helper.to_array(t).astype("float64")
            t.CopyFrom(numpy_helper.from_array(arr, t.name))

    def widen_type(vi: Any) -> None:
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is not None and tt.elem_type in narrow:
            tt.elem_type = TensorProto.DOUBLE

    def widen_graph(g: Any) -> None:
        for t in g.initializer:
            widen_tensor(t)
        for vi in (*g.input, *g.output, *g.value_info):
            widen_type(vi)
        for node in g.node:
            for attr in node.attribute:
                if attr.name in ("to", "dtype") and attr.type == onnx.AttributeProto.INT and attr.i in narrow:
                    attr.i = TensorProto.DOUBLE
                if attr.type == onnx.AttributeProto.TENSOR:
                    widen_tensor(attr.t)
                if attr.type == onnx.AttributeProto.GRAPH:
                    widen_graph(attr.g)
                for sub in attr.graphs:
                    widen_graph(sub)

    widen_graph(wide.graph)
    return wide
