"""Convolutional LSTMs: ConvLSTM1D, ConvLSTM2D, ConvLSTM3D.

Each becomes the `ConvLSTM` module below, named after the Keras layer: an LSTM whose input and state
transforms are convolutions. Keras' cell computes, at every step,

    i, f, c̃, o = split(conv(x_t, kernel) + bias + conv(h, recurrent_kernel))      (gate order i, f, c, o)
    c = σ(f)·c + σ(i)·act(c̃);   h = σ(o)·act(c)

with σ the recurrent activation. The module keeps that order: `input_conv` holds the kernel (with the
layer's strides, dilation and padding) and the bias, `recurrent_conv` the recurrent kernel (stride 1,
"same" padding, no dilation, as Keras' `recurrent_conv`), both as plain torch convolutions whose 4·filters
output channels are the four gates. The input convolution runs once over every step (time folded into
the batch); only the recurrent one is in the time loop. Kernels move once: Keras (k..., in, 4·filters) is
torch's (4·filters, in, k...).

Layouts: torch convolutions are channels-first, so a channels_last input (batch, time, *spatial, channels)
is read as (batch, time, channels, *spatial) and the outputs stay held that way (context.TVal's `perm`):
a stack of ConvLSTMs runs without transposes between them.

"same" padding pads as TensorFlow does (the odd cell at the end): symmetric cases use the convolution's own
`padding`, the others an explicit `F.pad` in the module. `go_backwards` reads the sequence from the end
and returns outputs in that processing order, as Keras does; `initial_state=[h, c]` is passed through.

Refused: `stateful=True`, masks reaching the layer, and activations porttax has no torch equivalent for.
"""

from __future__ import annotations

from typing import Any, Sequence

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.activation import activation_module, activation_name
from porttax.converters.keras_to_torch.context import LayerCall, Perm, TVal, channels_first
from porttax.converters.keras_to_torch.conv import flat_pads, same_pads
from porttax.converters.keras_to_torch.recurrent import _refuse_masks, _refuse_stateful
from porttax.converters.transforms import Identity, Transpose

torch = import_torch()
nn = torch.nn
F = torch.nn.functional

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvLSTM(nn.Module):
    """Keras' ConvLSTM cell stepped over time.

    `forward(x, hx=None)` takes x as (batch, time, channels, *spatial) and hx as (h, c), each
    (batch, filters, *spatial_out); it returns the outputs (batch, time, filters, *spatial_out) in processing
    order and the final (h, c).
    """

    def __init__(self, rank: int, in_channels: int, filters: int, kernel_size: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int], input_pads: Sequence[tuple[int, int]], use_bias: bool, activation: nn.Module,
                 recurrent_activation: nn.Module) -> None:
        super().__init__()
        self.filters = filters
        kernel_size = tuple(int(k) for k in kernel_size)
        conv = _CONV[rank]
        in_padding, self.input_pads = _split_pads(input_pads)
        self.input_conv = conv(in_channels, 4 * filters, kernel_size, stride=tuple(stride), dilation=tuple(dilation),
                               padding=in_padding, bias=use_bias)
        # Keras' recurrent_conv: stride 1, "same", no dilation, so the state keeps its size
        rec_padding, self.recurrent_pads = _split_pads([((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size])
        self.recurrent_conv = conv(filters, 4 * filters, kernel_size, padding=rec_padding, bias=False)
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    def forward(self, x: Any, hx: Any = None) -> Any:
        batch, steps = x.shape[0], x.shape[1]
        folded = x.flatten(0, 1)
        if self.input_pads is not None:
            folded = F.pad(folded, self.input_pads)
        projected = self.input_conv(folded).unflatten(0, (batch, steps))  # every step's input gates at once
        if hx is None:
            h = c = projected.new_zeros((batch, self.filters, *projected.shape[3:]))
        else:
            h, c = hx
        outputs = []
        for t in range(steps):
            state = h if self.recurrent_pads is None else F.pad(h, self.recurrent_pads)
            i, f, g, o = (projected[:, t] + self.recurrent_conv(state)).chunk(4, dim=1)
            c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
            h = self.recurrent_activation(o) * self.activation(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h, c)

    def extra_repr(self) -> str:
        return f"filters={self.filters}, input_pads={self.input_pads}, recurrent_pads={self.recurrent_pads}"


def _split_pads(pairs: Sequence[tuple[int, int]]) -> tuple[tuple[int, ...], list[int] | None]:
    """(the conv's own symmetric padding, an explicit F.pad list or None) for (before, after) pads per dim."""
    if all(before == after for before, after in pairs):
        return tuple(int(before) for before, _ in pairs), None
    return (0,) * len(pairs), flat_pads(pairs)


def _input_pads(call: LayerCall, cell: Any) -> list[tuple[int, int]]:
    rank = len(cell.kernel_size)
    if cell.padding == "valid":
        return [(0, 0)] * rank
    if cell.padding != "same":
        raise call.unsupported(f"padding {cell.padding!r}", hint="use 'same' or 'valid'")
    pairs = [same_pads(int(n), int(k), int(s), int(d))
             for n, k, s, d in zip(cell.spatial_dims, cell.kernel_size, cell.strides, cell.dilation_rate)]
    return [p for p in pairs if p is not None]


def _activation(call: LayerCall, fn: Any, rank: int, perm: Perm) -> Any:
    """The activation as a module on one step's (batch, filters, *spatial) value, held in `perm`."""
    v = TVal(shape=(None,) * (rank + 2), perm=perm)
    return activation_module(activation_name(fn), v, call.ctx, f"Keras layer {call.name!r} ({call.kind})")


def _make_module(call: LayerCall, cell: Any, step_perm: Perm) -> ConvLSTM:
    rank = int(cell.rank)
    return ConvLSTM(rank, int(cell.kernel.shape[-2]), int(cell.filters), cell.kernel_size, cell.strides,
                    cell.dilation_rate, _input_pads(call, cell), bool(cell.use_bias),
                    _activation(call, cell.activation, rank, step_perm),
                    _activation(call, cell.recurrent_activation, rank, step_perm))


def _port(call: LayerCall, cell: Any, module: ConvLSTM) -> None:
    rank = int(cell.rank)
    to_torch = Transpose((rank + 1, rank, *range(rank)))  # Keras (k..., in, out) → torch (out, in, k...)
    call.port(cell.kernel, module.input_conv, "weight", to_torch, suffix="input_conv")
    call.port(cell.recurrent_kernel, module.recurrent_conv, "weight", to_torch, suffix="recurrent_conv")
    if cell.use_bias:
        call.port(cell.bias, module.input_conv, "bias", Identity(), suffix="input_conv")


def _initial_state(call: LayerCall, state_perm: Perm) -> Any:
    """`initial_state=[h, c]` as the module's (h, c), each held channels-first; None when not given."""
    given = call.kwargs.get("initial_state", call.args[1] if len(call.args) > 1 else None)
    if given is None:
        return None
    items = list(given) if isinstance(given, (list, tuple)) else [given]
    if len(items) != 2:
        raise call.unsupported(f"initial_state with {len(items)} tensors; a ConvLSTM takes [h, c]")
    return tuple(call.ctx.as_operand(call.ctx.in_layout(v, state_perm)) if isinstance(v, TVal)
                 else call.ctx.as_operand(v) for v in items)


@keras_to_torch("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
def conv_lstm(call: LayerCall) -> list[TVal]:
    layer = call.layer
    cell = layer.cell
    _refuse_masks(call)
    _refuse_stateful(call, layer, "the layer")
    if not cell.built:
        raise call.unsupported("the layer has no weights yet", hint="build the model (call it once) first")
    rank = int(cell.rank)
    last = cell.data_format == "channels_last"
    # (batch, time, *spatial, ch) → (batch, time, ch, *spatial); one step / a state: channels_first(rank + 2)
    seq_perm = (0, 1, rank + 2, *range(2, rank + 2)) if last else None
    state_perm = channels_first(rank + 2) if last else None
    x = call.ctx.in_layout(call.x, seq_perm)
    module = call.module() or _make_module(call, cell, state_perm)
    _port(call, cell, module)
    run = call.add_module(module)
    if layer.go_backwards:
        x = x.flip(1)
    hx = _initial_state(call, state_perm)
    out = run(x) if hx is None else run(x, hx)
    finals = out[1]
    states = [finals[0], finals[1]] if layer.return_state else []
    first = out[0] if layer.return_sequences else (states[0] if states else finals[0])
    perms = [seq_perm if layer.return_sequences else state_perm] + [state_perm] * len(states)
    return [call.result(o, perm, index=i) for i, (o, perm) in enumerate(zip([first] + states, perms))]
