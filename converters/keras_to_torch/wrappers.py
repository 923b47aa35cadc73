"""Wrapper layers: TimeDistributed and SpectralNormalization. Both reuse the converter of the layer they
wrap, so the torch module under the wrapper's name is the one that layer would become on its own
(`td` → `nn.Linear` for `TimeDistributed(Dense)`), and its state_dict reads like that layer's.

TimeDistributed applies its layer to every time step alone. Keras loops (or vectorises) over the steps;
the same function is the inner layer run once on (batch·time, ...) with time folded into the batch, and
the result unfolded. The fold works on the value as held: a (batch, time, channels, h, w) value held
channels-first per step (as a TimeDistributed(Conv2D) leaves it) folds without a transpose, and so a
chain of TimeDistributed convolutions runs in torch's layout throughout.

SpectralNormalization, at inference, is exactly its inner layer: Keras' `call(training=False)` runs the
wrapped layer with its kernel as stored. The normalisation (kernel / σ, σ from the stored power-iteration
vector `vector_u`) happens only in training calls, which write the normalised kernel back into the inner
layer's variable, so the stored kernel already is what inference uses. Dividing it by σ again at
conversion would compute something Keras does not; porttax ports it as stored (`vector_u` is training
state and is not ported). Keras casts the wrapped layer's output to the input's dtype, and so does the
converted model.

Refused: a wrapped layer with no converter (named, with what to do), a TimeDistributed whose inner
converter gives several outputs or a constant (nothing to unfold per step), and masks reaching a
TimeDistributed (Keras passes them per step to the inner layer; porttax does not carry masks).
"""

from __future__ import annotations

from typing import Any

from porttax._frameworks import import_keras
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, Perm, TVal, is_identity, live
from porttax.errors import UnsupportedError


def _inner_call(call: LayerCall, inner: Any, args: tuple[Any, ...], outputs: list[Any]) -> LayerCall:
    """The LayerCall the inner layer's converter sees: the wrapper's module path, so the wrapper's name
    is the torch module's name."""
    return LayerCall(inner, args, {}, outputs, call.ctx, call.path)


def _run_inner(call: LayerCall, inner: Any, x: TVal, outputs: list[Any]) -> list[TVal]:
    """Convert `inner` on `x` with its own converter, or walk it when it is a whole model."""
    keras = import_keras()
    if isinstance(inner, keras.Model):
        return _run_inner_model(call, inner, x)
    conv = call.ctx.driver.lookup(inner)
    if conv is None:
        raise call.unsupported(
            f"the wrapped layer {inner.name!r} ({type(inner).__name__}) has no Keras→torch converter",
            hint="wrap a built-in Keras layer, or register a converter for it with "
            "porttax.converters.register_keras_to_torch",
        )
    try:
        result = conv.fn(_inner_call(call, inner, (x,), outputs))
    except UnsupportedError as exc:
        raise call.unsupported(f"its wrapped layer cannot be converted: {exc.message}", hint=exc.hint) from exc
    return result if isinstance(result, list) else [result]


def _run_inner_model(call: LayerCall, inner: Any, x: TVal) -> list[TVal]:
    """A whole Keras model inside a wrapper (a per-frame CNN in a TimeDistributed): its layers are walked
    as a nested model is, under the wrapper's module path."""
    driver = call.ctx.driver
    missing = driver.find_unsupported(inner)
    if missing:
        names = ", ".join(f"{m['layer']} ({m['op']})" for m in missing)
        raise call.unsupported(f"layers of its wrapped model have no Keras→torch converter: {names}",
                               hint="replace them with built-in Keras layers, or register converters for them")
    graph = driver.functional_view(inner)
    if len(graph.inputs) != 1:
        raise call.unsupported(f"its wrapped model takes {len(graph.inputs)} inputs; a wrapper passes one")
    saved = call.ctx.prefix
    call.ctx.prefix = call.path
    try:
        return driver.run_graph(graph, [x], call.ctx, None, 0, {"done": 0})
    finally:
        call.ctx.prefix = saved


# ---- TimeDistributed ---------------------------------------------------------------------------------------
def _fold(call: LayerCall, v: TVal) -> tuple[TVal, Any]:
    """(batch, time, ...) → (batch·time, ...), on the value as held when batch and time lead its layout;
    also the number of steps (an int, or read off the input at run time when Keras leaves it open)."""
    perm = None if is_identity(v.perm) else tuple(v.perm)
    if perm is not None and perm[:2] != (0, 1):
        perm = None  # time is not next to batch in this layout; fold the Keras layout
    held = call.ctx.in_layout(v, perm)
    inner_perm = None if perm is None else (0, *(p - 1 for p in perm[2:]))
    steps = v.shape[1] if v.shape[1] is not None else held.size(1)
    batch = v.shape[0] * v.shape[1] if v.shape[0] is not None and v.shape[1] is not None else None
    return live(held.flatten(0, 1), (batch, *v.shape[2:]), inner_perm, v.dtype), steps


def _unfold(call: LayerCall, r: TVal, steps: Any) -> TVal:
    """(batch·time, ...) → (batch, time, ...), keeping the inner result's layout when batch leads it."""
    perm = None if is_identity(r.perm) else tuple(r.perm)
    if perm is not None and perm[0] != 0:
        perm = None
    held = call.ctx.in_layout(r, perm)
    outer_perm: Perm = None if perm is None else (0, 1, *(p + 1 for p in perm[1:]))
    return call.result(held.unflatten(0, (-1, steps)), outer_perm)


def _step_output(call: LayerCall) -> Any:
    """A symbolic stand-in for the inner layer's output (its converter reads shapes and dtypes from it)."""
    keras = import_keras()
    shape = call.out_shape()
    batch = shape[0] * shape[1] if shape[0] is not None and shape[1] is not None else None
    return keras.KerasTensor((batch, *shape[2:]), dtype=call.out_dtype())


@keras_to_torch("TimeDistributed")
def time_distributed(call: LayerCall) -> TVal:
    layer = call.layer
    mask = call.kwargs.get("mask", call.args[2] if len(call.args) > 2 else None)
    if mask is not None:
        raise call.unsupported("a mask reaches this TimeDistributed (Keras hands it to the wrapped layer at every "
                               "step); porttax does not carry masks to PyTorch yet",
                               hint="convert a copy without the mask if padding is handled another way")
    folded, steps = _fold(call, call.x)
    results = _run_inner(call, layer.layer, folded, [_step_output(call)])
    if len(results) != 1 or not isinstance(results[0], TVal) or not results[0].live:
        raise call.unsupported(
            f"its wrapped layer {layer.layer.name!r} converts to {len(results)} output(s) or a constant, not one "
            "tensor per step", hint="wrap a layer with one output",
        )
    return _unfold(call, results[0], steps)


# ---- SpectralNormalization ---------------------------------------------------------------------------------
@keras_to_torch("SpectralNormalization")
def spectral_normalization(call: LayerCall) -> TVal:
    layer = call.layer
    results = _run_inner(call, layer.layer, call.x, list(call.outputs))
    out = results[0]
    want = call.x.dtype
    if out.live and out.dtype != want:
        # Keras' call ends in `ops.cast(output, inputs.dtype)`: around an Embedding (int ids in) it returns
        # the vectors truncated to ints, though its symbolic output says float32. Torch does the same.
        cast = call.ctx.in_layout(out, out.perm).to(getattr(call.ctx.torch, want))
        return live(cast, call.out_shape(), out.perm, want)
    return out
