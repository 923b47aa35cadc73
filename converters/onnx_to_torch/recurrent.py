"""Recurrent ops: LSTM → nn.LSTM, GRU → nn.GRU, RNN → nn.RNN, with ONNX's gate order mapped to torch's
(LSTM i o f c → i f g o, GRU z r h → r z n), directions (reverse runs the forward layer on the time-flipped
sequence), both layouts and initial states.

What torch's layers cannot compute — GRU with linear_before_reset=0 (ONNX's default: the reset gate
multiplies the hidden state before the recurrent weights), LSTM peepholes or input_forget, non-default
activations (with their alpha/beta), clip — runs as the ONNX equations unrolled over the (static) time
steps. Per-row sequence_lens shorter than the sequence are refused.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall
from porttax.converters.onnx_to_torch.layers import _param, scope_path

_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_TORCH_ORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}  # ONNX gate blocks in torch's order
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
# activation -> (function of x, alpha, beta; default alpha; default beta)
_ACTIVATIONS = {
    "Sigmoid": (lambda x, a, b: torch.sigmoid(x), None, None),
    "Tanh": (lambda x, a, b: torch.tanh(x), None, None),
    "Relu": (lambda x, a, b: torch.relu(x), None, None),
    "HardSigmoid": (lambda x, a, b: torch.clamp(a * x + b, 0.0, 1.0), 0.2, 0.5),
    "LeakyRelu": (lambda x, a, b: F.leaky_relu(x, a), 0.01, None),
    "ThresholdedRelu": (lambda x, a, b: F.threshold(x, a, 0.0), 1.0, None),
    "ScaledTanh": (lambda x, a, b: a * torch.tanh(b * x), 1.0, 1.0),
    "Affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "Elu": (lambda x, a, b: F.elu(x, a), 1.0, None),
    "Softsign": (lambda x, a, b: F.softsign(x), None, None),
    "Softplus": (lambda x, a, b: F.softplus(x), None, None),
}


def _activations(call: OnnxCall, directions: int) -> list[tuple[str, float | None, float | None]]:
    """(name, alpha, beta) per activation slot and direction; alphas and betas are consumed in order by
    the activations that take one (onnxruntime's reading of the spec)."""
    names = call.attrs.get("activations") or _DEFAULT_ACTIVATIONS[call.op] * directions
    alphas, betas = list(call.attrs.get("activation_alpha", [])), list(call.attrs.get("activation_beta", []))
    out = []
    for name in names:
        canonical = next((k for k in _ACTIVATIONS if k.lower() == name.lower()), None)
        if canonical is None:
            raise call.unsupported(f"activation {name!r}")
        _, alpha, beta = _ACTIVATIONS[canonical]
        alpha = float(alphas.pop(0)) if alpha is not None and alphas else alpha
        beta = float(betas.pop(0)) if beta is not None and betas else beta
        out.append((canonical, alpha, beta))
    if len(out) == len(_DEFAULT_ACTIVATIONS[call.op]) and directions == 2:
        out = out * 2
    return out


def _act(spec: tuple[str, float | None, float | None], x: torch.Tensor) -> torch.Tensor:
    name, alpha, beta = spec
    return _ACTIVATIONS[name][0](x, alpha, beta)


# ---------------------------------------------------------------- the ONNX equations, unrolled


def _lstm_steps(x, w, r, b, h, c, p, acts, clip, input_forget):
    f_act, g_act, h_act = acts
    hidden = r.shape[1]
    bias = b[: 4 * hidden] + b[4 * hidden:]
    p_i, p_o, p_f = (p[:hidden], p[hidden:2 * hidden], p[2 * hidden:]) if p is not None else (0, 0, 0)
    ys = []
    for t in range(x.shape[0]):
        gates = x[t] @ w.T + h @ r.T + bias
        if clip is not None:
            gates = torch.clamp(gates, -clip, clip)
        i, o, f, g = gates.chunk(4, -1)
        i = _act(f_act, i + p_i * c)
        f = 1 - i if input_forget else _act(f_act, f + p_f * c)
        c = f * c + i * _act(g_act, g)
        o = _act(f_act, o + p_o * c)
        h = o * _act(h_act, c)
        ys.append(h)
    return torch.stack(ys), h, c


def _gru_steps(x, w, r, b, h, acts, clip, linear_before_reset):
    f_act, g_act = acts
    hidden = r.shape[1]
    wb, rb = b[: 3 * hidden], b[3 * hidden:]
    w_zr, w_h = w[: 2 * hidden], w[2 * hidden:]
    r_zr, r_h = r[: 2 * hidden], r[2 * hidden:]
    ys = []
    for t in range(x.shape[0]):
        zr = x[t] @ w_zr.T + h @ r_zr.T + wb[: 2 * hidden] + rb[: 2 * hidden]
        if clip is not None:
            zr = torch.clamp(zr, -clip, clip)
        z, reset = _act(f_act, zr[..., :hidden]), _act(f_act, zr[..., hidden:])
        if linear_before_reset:
            pre = x[t] @ w_h.T + wb[2 * hidden:] + reset * (h @ r_h.T + rb[2 * hidden:])
        else:
            pre = x[t] @ w_h.T + (reset * h) @ r_h.T + wb[2 * hidden:] + rb[2 * hidden:]
        if clip is not None:
            pre = torch.clamp(pre, -clip, clip)
        h = (1 - z) * _act(g_act, pre) + z * h
        ys.append(h)
    return torch.stack(ys), h


def _rnn_steps(x, w, r, b, h, acts, clip):
    hidden = r.shape[1]
    bias = b[:hidden] + b[hidden:]
    ys = []
    for t in range(x.shape[0]):
        pre = x[t] @ w.T + h @ r.T + bias
        if clip is not None:
            pre = torch.clamp(pre, -clip, clip)
        h = _act(acts[0], pre)
        ys.append(h)
    return torch.stack(ys), h


def onnx_recurrent(op: str, x, w, r, b, h0, c0, p, *, reverse: list[bool], acts, clip, input_forget=False,
                   linear_before_reset=False, layout=0):
    """ONNX LSTM / GRU / RNN computed as the spec writes it, one direction after the other. Returns
    (Y, Y_h) or (Y, Y_h, Y_c) in ONNX's layout."""
    if layout:
        x = x.transpose(0, 1)
        h0 = h0.transpose(0, 1) if h0 is not None else None
        c0 = c0.transpose(0, 1) if c0 is not None else None
    dirs, hidden = w.shape[0], r.shape[2]
    zeros = x.new_zeros(dirs, x.shape[1], hidden)
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0
    b = x.new_zeros(dirs, 2 * w.shape[1]) if b is None else b
    per_dir = len(acts) // dirs
    ys, hs, cs = [], [], []
    for d in range(dirs):
        seq = torch.flip(x, (0,)) if reverse[d] else x
        own = acts[d * per_dir:(d + 1) * per_dir]
        if op == "LSTM":
            y, h, c = _lstm_steps(seq, w[d], r[d], b[d], h0[d], c0[d], None if p is None else p[d], own, clip,
                                  input_forget)
            cs.append(c)
        elif op == "GRU":
            y, h = _gru_steps(seq, w[d], r[d], b[d], h0[d], own, clip, linear_before_reset)
        else:
            y, h = _rnn_steps(seq, w[d], r[d], b[d], h0[d], own, clip)
        ys.append(torch.flip(y, (0,)) if reverse[d] else y)
        hs.append(h)
    y, y_h = torch.stack(ys, 1), torch.stack(hs)
    out = [y, y_h] + ([torch.stack(cs)] if op == "LSTM" else [])
    if layout:
        out = [out[0].permute(2, 0, 1, 3)] + [s.transpose(0, 1) for s in out[1:]]
    return tuple(out)


# ---------------------------------------------------------------- torch's layers


def rnn_input(x: torch.Tensor, reverse_only: bool, layout: int) -> torch.Tensor:
    """The sequence as torch's layer takes it: time first, time-flipped for a reverse-only direction."""
    x = x.transpose(0, 1) if layout else x
    return torch.flip(x, (0,)) if reverse_only else x


def rnn_state(h0: torch.Tensor | None, c0: torch.Tensor | None, layout: int, lstm: bool):
    """ONNX's initial states (zeros where absent) as torch's layer takes them."""
    if layout:
        h0 = h0.transpose(0, 1).contiguous() if h0 is not None else None
        c0 = c0.transpose(0, 1).contiguous() if c0 is not None else None
    if not lstm:
        return h0
    if h0 is None and c0 is None:
        return None
    return (h0 if h0 is not None else torch.zeros_like(c0), c0 if c0 is not None else torch.zeros_like(h0))


def rnn_outputs(result, reverse_only: bool, layout: int, lstm: bool):
    """torch's (output, state) as ONNX's Y (T, dirs, B, H), Y_h (dirs, B, H)[, Y_c], or their batch-first
    forms for layout=1."""
    y, state = result
    states = list(state) if lstm else [state]
    if reverse_only:
        y = torch.flip(y, (0,))
    dirs = states[0].shape[0]
    y = y.reshape(y.shape[0], y.shape[1], dirs, -1).permute(0, 2, 1, 3)
    if layout:
        return (y.permute(2, 0, 1, 3), *[s.transpose(0, 1) for s in states])
    return (y, *states)


def _torch_layer(call: OnnxCall, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, bidirectional: bool) -> nn.Module:
    gates, hidden = _GATES[call.op], r.shape[2]
    order = _TORCH_ORDER[call.op]

    def reorder(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[k * hidden:(k + 1) * hidden] for k in order])

    if call.op == "LSTM":
        layer = nn.LSTM(w.shape[2], hidden, bidirectional=bidirectional, bias=b is not None)
    elif call.op == "GRU":
        layer = nn.GRU(w.shape[2], hidden, bidirectional=bidirectional, bias=b is not None)
    else:
        nonlinearity = "relu" if _activations(call, 2 if bidirectional else 1)[0][0] == "Relu" else "tanh"
        layer = nn.RNN(w.shape[2], hidden, nonlinearity=nonlinearity, bidirectional=bidirectional, bias=b is not None)
    for d, suffix in enumerate(["", "_reverse"][: 2 if bidirectional else 1]):
        setattr(layer, f"weight_ih_l0{suffix}", _param(reorder(w[d])))
        setattr(layer, f"weight_hh_l0{suffix}", _param(reorder(r[d])))
        if b is not None:
            setattr(layer, f"bias_ih_l0{suffix}", _param(reorder(b[d, : gates * hidden])))
            setattr(layer, f"bias_hh_l0{suffix}", _param(reorder(b[d, gates * hidden:])))
    return layer


def _fits_torch(call: OnnxCall, acts, directions: int) -> bool:
    """Whether nn.LSTM/GRU/RNN computes this node exactly."""
    names = [a[0] for a in acts]
    if call.attrs.get("clip") is not None:
        return False
    if call.op == "LSTM":
        peepholes = call.has(7) and np.any(call.const(7) != 0)
        return names == _DEFAULT_ACTIVATIONS["LSTM"] * directions and not peepholes and not call.attrs.get(
            "input_forget", 0)
    if call.op == "GRU":
        return names == _DEFAULT_ACTIVATIONS["GRU"] * directions and bool(call.attrs.get("linear_before_reset", 0))
    return len(set(names)) == 1 and names[0] in ("Tanh", "Relu")


def _check_lengths(call: OnnxCall, steps: int) -> None:
    if not call.has(4):
        return
    lengths = call.const(4)
    if np.any(lengths != steps):
        raise call.unsupported(f"sequence_lens {lengths.tolist()} shorter than the sequence ({steps} steps): padded "
                               "batches are not converted", hint="convert with every sequence at full length")


@onnx_to_torch("LSTM", "GRU", "RNN", since=14)
def recurrent(call: OnnxCall):
    w, r = call.const(1), call.const(2)
    b = call.const(3) if call.has(3) else None
    direction = call.attrs.get("direction", "forward")
    directions = 2 if direction == "bidirectional" else 1
    layout = int(call.attrs.get("layout", 0))
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static input shape")
    _check_lengths(call, shape[1 if layout else 0])
    acts = _activations(call, directions)
    h0 = call.value(5) if call.has(5) else None
    c0 = call.value(6) if call.op == "LSTM" and call.has(6) else None
    outputs = 3 if call.op == "LSTM" else 2
    if _fits_torch(call, acts, directions):
        layer = _torch_layer(call, w, r, b, direction == "bidirectional")
        path = scope_path(call.node) or (call.node.name or call.op.lower()).replace("/", ".").strip(".")
        name = call.ctx.add_module(path, layer)
        reverse_only, lstm = direction == "reverse", call.op == "LSTM"
        x = call.call(rnn_input, call.value(0), reverse_only, layout)
        result = call.ctx.graph.call_module(name, (x, call.call(rnn_state, h0, c0, layout, lstm)))
        return call.unpack(call.call(rnn_outputs, result, reverse_only, layout, lstm), outputs)
    clip = call.attrs.get("clip")
    p = call.ctx.tensor(call.const(7), call.node.input[7]) if call.op == "LSTM" and call.has(7) else None
    reverse = [direction == "reverse"] if directions == 1 else [False, True]
    y = call.call(onnx_recurrent, call.op, call.value(0), call.tensor(1), call.tensor(2),
                  call.tensor(3) if call.has(3) else None, h0, c0, p, reverse=reverse, acts=acts,
                  clip=None if clip is None else float(clip), input_forget=bool(call.attrs.get("input_forget", 0)),
                  linear_before_reset=bool(call.attrs.get("linear_before_reset", 0)), layout=layout)
    return call.unpack(y, outputs)
