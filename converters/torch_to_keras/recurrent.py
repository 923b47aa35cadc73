"""Recurrent layers: `nn.LSTM`, `nn.GRU` and `nn.RNN` become Keras `LSTM`, `GRU` and `SimpleRNN`.

`torch.export` keeps each of these modules whole: one `aten.lstm.input` / `aten.gru.input` /
`aten.rnn_tanh.input` / `aten.rnn_relu.input` node carries every layer and direction, with the
weights as one flat list (w_ih, w_hh[, b_ih, b_hh] per layer, direction-minor) and returns
(output, h_n[, c_n]). One torch op therefore becomes one Keras layer per (layer, direction), each
named after the module (`rnn` alone, or `rnn-l0`, `rnn-l0_reverse`, `rnn-l1`, … when stacked or
bidirectional, mirroring torch's own `weight_ih_l0_reverse` suffixes), so drift can be localised
to one of them.

The cell equations match exactly once the weights are laid out right:
- LSTM: Keras' gate order i, f, c, o is torch's i, f, g, o, so kernels only transpose; Keras has one
  bias where torch has two, and the sum b_ih + b_hh is what both add to the gate pre-activations.
- GRU: torch stacks r, z, n and Keras z, r, h, so kernels go through `GateReorder((1, 0, 2))`.
  Keras' `reset_after=True` applies the reset gate after the recurrent matmul and keeps the
  recurrent bias inside it, which is torch's formula (`n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`);
  its (2, 3·units) bias holds b_ih and b_hh as rows.
- RNN: `SimpleRNN` with the same activation; one bias, b_ih + b_hh.

A reverse direction is a Keras layer with `go_backwards=True`, whose output sequence is in
processing order; flipping it along time gives torch's per-step reverse output, and its final
state is torch's (the state after reading step 0). Time-major input (`batch_first=False`) is kept
as a layout permutation of the batch-major tensor Keras needs, so stacked time-major RNNs never
transpose in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from porttax.converters.mapping_log import WeightPort
from porttax.converters.torch_to_keras._register import torch_to_keras
from porttax.converters.torch_to_keras.context import Call, Val, const_to_numpy, live_val
from porttax.converters.transforms import GateReorder, Identity, Transform, Transpose
from porttax.torch_ir import size_hints

# A time-major (time, batch, features) torch value held batch-major, as Keras' RNN layers want it.
TIME_MAJOR = (1, 0, 2)

# torch GRU gates r|z|n → Keras z|r|h; LSTM gates already agree (i|f|g|o = i|f|c|o).
_GRU_GATES = GateReorder((1, 0, 2), axis=0)


@dataclass(frozen=True)
class _Kind:
    """What differs between the four ops: the Keras layer, its gates, states and bias layout."""

    layer: str  # keras.layers class name
    gates: Transform  # torch → Keras gate order, on the gate axis (0) of torch's weights
    states: int  # 2 for LSTM (h, c), 1 otherwise
    two_biases: bool  # Keras keeps b_ih and b_hh apart as rows of a (2, n) bias (GRU reset_after)
    activation: str | None = None  # SimpleRNN only


_LSTM = _Kind("LSTM", Identity(), states=2, two_biases=False)
_GRU = _Kind("GRU", _GRU_GATES, states=1, two_biases=True)
_RNN_TANH = _Kind("SimpleRNN", Identity(), states=1, two_biases=False, activation="tanh")
_RNN_RELU = _Kind("SimpleRNN", Identity(), states=1, two_biases=False, activation="relu")


@torch_to_keras("aten.lstm.input")
def lstm(call: Call) -> list[Val]:
    return _recurrent(call, _LSTM)


@torch_to_keras("aten.gru.input")
def gru(call: Call) -> list[Val]:
    return _recurrent(call, _GRU)


@torch_to_keras("aten.rnn_tanh.input")
def rnn_tanh(call: Call) -> list[Val]:
    return _recurrent(call, _RNN_TANH)


@torch_to_keras("aten.rnn_relu.input")
def rnn_relu(call: Call) -> list[Val]:
    return _recurrent(call, _RNN_RELU)


def _recurrent(call: Call, kind: _Kind) -> list[Val]:
    ctx = call.ctx
    ops = ctx.ops
    has_biases = bool(call.args["has_biases"])
    num_layers = int(call.args["num_layers"])
    dirs = 2 if call.args["bidirectional"] else 1
    batch_first = bool(call.args["batch_first"])
    params = call.val("params")
    _check(call, kind, params, has_biases, num_layers, dirs)

    metas = call.node.meta["val"]
    out_shape = size_hints(metas[0].shape)
    state_shape = size_hints(metas[1].shape)  # (num_layers * dirs, batch, hidden)
    units = state_shape[-1]
    x = ctx.in_layout(call.val("input"), None if batch_first else TIME_MAJOR)
    initial = _initial_states(call, kind, state_shape, anchor=x)
    per = 4 if has_biases else 2
    finals: list[list[Any]] = []  # per (layer, direction): the Keras final states, h first
    for k in range(num_layers):
        seqs = []
        for d in range(dirs):
            index = k * dirs + d
            weights = params[index * per:(index + 1) * per]
            suffix = "" if num_layers == 1 and dirs == 1 else f"-l{k}" + ("_reverse" if d else "")
            layer = _make_layer(ctx.keras, kind, units, has_biases, go_backwards=d == 1,
                                name=call.layer_name(suffix))
            init = [state[index] for state in initial] if initial is not None else None
            seq, *states = layer(x, initial_state=init) if init is not None else layer(x)
            ctx.track(layer)
            _port_weights(call, kind, layer, weights)
            seqs.append(ops.flip(seq, axis=1) if d else seq)
            finals.append(states)
        x = seqs[0] if dirs == 1 else ops.concatenate(seqs, axis=-1)

    results = [live_val(x, out_shape, None if batch_first else TIME_MAJOR)]
    for i in range(kind.states):  # h_n (and c_n): torch stacks them layer-major, direction-minor
        results.append(live_val(ops.stack([f[i] for f in finals], axis=0), state_shape))
    return results


def _check(call: Call, kind: _Kind, params: list[Any], has_biases: bool, num_layers: int, dirs: int) -> None:
    """Refuse what Keras' layers cannot compute exactly, saying what to change."""
    per = 4 if has_biases else 2
    if kind.layer == "LSTM" and len(params) == num_layers * dirs * (per + 1):
        raise call.unsupported(
            "LSTM with proj_size > 0 (a projected hidden state) has no Keras LSTM equivalent",
            hint="use proj_size=0, or follow the LSTM with a Linear layer and retrain",
        )
    if len(params) != num_layers * dirs * per:
        raise call.unsupported(
            f"expected {num_layers * dirs * per} weight tensors for {num_layers} layer(s) x {dirs} "
            f"direction(s), got {len(params)}",
            hint="open an issue with the model",
        )
    if call.args["train"] and float(call.args["dropout"]) > 0 and num_layers > 1:
        raise call.unsupported(
            f"inter-layer dropout ({call.args['dropout']}) in training mode is random; the converted "
            "model would not compute the same function",
            hint="export the model in eval mode (model.eval()) before converting",
        )
    for p in params:
        if isinstance(p, Val) and p.live:
            raise call.unsupported("recurrent weights computed from the model inputs",
                                   hint="keep the weights as parameters of the module")


def _initial_states(call: Call, kind: _Kind, state_shape: tuple[int, ...], anchor: Any) -> list[Any] | None:
    """The initial states as Keras tensors of shape (num_layers * dirs, batch, hidden) — one per
    state kind (h, then c for LSTM) — or None when they are all zero, Keras' own default.

    A constant non-zero state (a learned h0 parameter) is made live by adding it to zeros derived
    from the live input `anchor`, so it travels through the functional graph (and a saved file)
    like any other tensor; `zeros_like` keeps NaN or Inf in the input from leaking into it.
    """
    ctx = call.ctx
    raw = call.val("hx")
    vals = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if len(vals) != kind.states:
        raise call.unsupported(f"expected {kind.states} initial state tensor(s), got {len(vals)}")
    if all(not v.live and not np.any(const_to_numpy(v.const)) for v in vals):
        return None
    out = []
    for v in vals:
        if v.live:
            out.append(ctx.torch_layout(v))
            continue
        const = np.asarray(const_to_numpy(v.const), dtype=np.float32)
        zeros = ctx.ops.zeros_like(ctx.ops.sum(anchor, keepdims=True))  # (1, 1, 1)
        out.append(ctx.ops.add(zeros, np.broadcast_to(const, state_shape)))
    return out


def _make_layer(keras: Any, kind: _Kind, units: int, use_bias: bool, *, go_backwards: bool, name: str) -> Any:
    common = dict(units=units, use_bias=use_bias, return_sequences=True, return_state=True,
                  go_backwards=go_backwards, name=name,
                  # every variable is assigned from the source: skip the (orthogonal: costly) initialisers
                  kernel_initializer="zeros", recurrent_initializer="zeros")
    if kind.layer == "LSTM":
        return keras.layers.LSTM(activation="tanh", recurrent_activation="sigmoid", **common)
    if kind.layer == "GRU":
        return keras.layers.GRU(activation="tanh", recurrent_activation="sigmoid", reset_after=True, **common)
    return keras.layers.SimpleRNN(activation=kind.activation, **common)


def _port_weights(call: Call, kind: _Kind, layer: Any, weights: list[Val]) -> None:
    """kernel = w_ihᵀ and recurrent_kernel = w_hhᵀ (gates reordered first); the biases per `kind`."""
    ctx = call.ctx
    kernel = kind.gates.then(Transpose((1, 0)))
    ctx.set_weight(layer, "kernel", weights[0], kernel)
    ctx.set_weight(layer, "recurrent_kernel", weights[1], kernel)
    if len(weights) == 2:
        return
    b_ih, b_hh = weights[2], weights[3]
    ih = kind.gates.apply(np.asarray(const_to_numpy(b_ih.const), np.float32))
    hh = kind.gates.apply(np.asarray(const_to_numpy(b_hh.const), np.float32))
    gates = "" if isinstance(kind.gates, Identity) else f"{kind.gates.describe()} then "
    if kind.two_biases:
        _set_combined(call, layer, "bias", np.stack([ih, hh]), [
            (b_ih.param, f"{gates}row 0 of (2, n)"),
            (b_hh.param, f"{gates}row 1 of (2, n)"),
        ])
    else:
        _set_combined(call, layer, "bias", ih + hh, [
            (b_ih.param, f"{gates}summed with {b_hh.param}"),
            (b_hh.param, f"{gates}summed with {b_ih.param}"),
        ])


def _set_combined(call: Call, layer: Any, var_name: str, array: np.ndarray,
                  sources: list[tuple[str | None, str]]) -> None:
    """Assign a Keras variable built from two source tensors, logging one port per source.

    `Context.set_weight` moves one tensor through one transform; here Keras fuses torch's two
    biases into one variable, so the value is assigned (with its shape check) through it and its
    port is re-logged under each real state_dict key, so coverage still sees every parameter.
    """
    ctx = call.ctx
    ctx.set_weight(layer, var_name, Val(const=array), Identity())
    port = ctx.log.ports.pop()
    for key, how in sources:
        ctx.log.ports.append(WeightPort(key, port.target, how, port.shape))
