"""Recurrent layers: LSTM, GRU, SimpleRNN (and `keras.layers.RNN` over one of their cells), Bidirectional.

With their default activations these become the torch modules a person would write, batch-first:
- LSTM → `nn.LSTM`. Keras' gate order i, f, c, o is torch's i, f, g, o, so kernels only transpose.
  Keras has one bias where torch has two that are added together: b_ih = bias, b_hh = 0.
- GRU (reset_after=True, Keras' default) → `nn.GRU`. Keras stacks the gates z, r, h and torch r, z, n,
  so kernels go through `GateReorder((1, 0, 2))`; the (2, 3·units) bias holds b_ih and b_hh as rows.
  Both apply the reset gate after the recurrent matmul, with the recurrent bias inside it.
- SimpleRNN with tanh or relu → `nn.RNN(nonlinearity=...)`; b_ih = bias, b_hh = 0.

What `torch.nn` cannot compute — GRU with reset_after=False (the reset gate multiplies the state
*before* the recurrent matmul) and any other activation pair — becomes one of the small loop modules
below (`KerasLSTM`, `KerasGRU`, `KerasSimpleRNN`): Keras' own cell equations, stepped over time,
with the weights kept in Keras' layout. They share nn.LSTM's calling convention (batch-first input,
states as (1, batch, units)), so the converter treats every module alike. `torch.export` unrolls
their loop for the sequence length it is given.

`go_backwards=True` reads the sequence from the end and returns its outputs in that processing
order, which is the torch module run on the time-flipped input. A `Bidirectional` layer whose two
directions map to the same torch module becomes one module with `bidirectional=True` (its reverse
outputs are already aligned with the forward ones, as Keras aligns them); otherwise each direction
is converted on its own, under the Keras sublayer names (`forward_gru`, `backward_gru`).

`keras.layers.RNN` over a `StackedRNNCells` (or a list of cells) becomes one torch module per cell,
`<layer>.cells.<i>`, run one after the other over the whole sequence (see `_run_stack`). A cell called on
its own (`h, states = cell(x, states)`, one time step) becomes the same module run on a length-one
sequence, so LSTMCell, GRUCell, SimpleRNNCell and StackedRNNCells are converters of their own.

Refused: `stateful=True` (the state lives between calls), masks (skipped time steps), cells other than
Keras' three built-in ones (and stacks of them), and activations porttax has no torch equivalent for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from porttax._frameworks import import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.activation import activation_module, activation_name
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.mapping_log import WeightPort
from porttax.converters.transforms import GateReorder, Identity, Transform, Transpose

torch = import_torch()
nn = torch.nn

# Keras GRU gates z|r|h → torch r|z|n, on the gate axis of torch's (3·units, features) weights.
_GRU_GATES = GateReorder((1, 0, 2), axis=0)
_CELLS = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}


# ---- loop modules for what torch.nn does not compute -------------------------------------------------
class KerasLSTM(nn.Module):
    """Keras' LSTM cell with any activations (nn.LSTM hard-codes tanh and sigmoid), stepped over time.

    Weights keep Keras' layout and gate order: kernel (input, 4·units) and recurrent_kernel
    (units, 4·units) stacking i|f|c|o, one bias. Called like nn.LSTM(batch_first=True).
    """

    def __init__(self, input_size: int, units: int, use_bias: bool, activation: nn.Module,
                 recurrent_activation: nn.Module) -> None:
        super().__init__()
        self.units = units
        self.kernel = nn.Parameter(torch.zeros(input_size, 4 * units))
        self.recurrent_kernel = nn.Parameter(torch.zeros(units, 4 * units))
        self.bias = nn.Parameter(torch.zeros(4 * units)) if use_bias else None
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    def forward(self, x: Any, hx: Any = None) -> Any:
        if hx is None:
            h = c = x.new_zeros(x.shape[0], self.units)
        else:
            h, c = hx[0][0], hx[1][0]
        projected = x @ self.kernel
        if self.bias is not None:
            projected = projected + self.bias
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (projected[:, t] + h @ self.recurrent_kernel).chunk(4, dim=-1)
            c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
            h = self.recurrent_activation(o) * self.activation(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h.unsqueeze(0), c.unsqueeze(0))


class KerasGRU(nn.Module):
    """Keras' GRU cell, stepped over time. Needed for `reset_after=False`, where the reset gate scales the
    state before the recurrent matmul (`tanh(W x + U (r * h))`, nn.GRU has only `r * (U h)`), and for
    activations other than tanh/sigmoid.

    Weights keep Keras' layout and gate order: kernel (input, 3·units) and recurrent_kernel
    (units, 3·units) stacking z|r|h; bias (3·units,), or (2, 3·units) input and recurrent rows when
    reset_after. Called like nn.GRU(batch_first=True).
    """

    def __init__(self, input_size: int, units: int, use_bias: bool, reset_after: bool, activation: nn.Module,
                 recurrent_activation: nn.Module) -> None:
        super().__init__()
        self.units = units
        self.reset_after = reset_after
        self.kernel = nn.Parameter(torch.zeros(input_size, 3 * units))
        self.recurrent_kernel = nn.Parameter(torch.zeros(units, 3 * units))
        bias_shape = (2, 3 * units) if reset_after else (3 * units,)
        self.bias = nn.Parameter(torch.zeros(bias_shape)) if use_bias else None
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    def forward(self, x: Any, hx: Any = None) -> Any:
        h = x.new_zeros(x.shape[0], self.units) if hx is None else hx[0]
        projected = x @ self.kernel
        recurrent_bias = None
        if self.bias is not None:
            input_bias = self.bias[0] if self.reset_after else self.bias
            recurrent_bias = self.bias[1] if self.reset_after else None
            projected = projected + input_bias
        n = self.units
        outputs = []
        for t in range(x.shape[1]):
            x_z, x_r, x_h = projected[:, t].chunk(3, dim=-1)
            if self.reset_after:
                inner = h @ self.recurrent_kernel
                if recurrent_bias is not None:
                    inner = inner + recurrent_bias
                h_z, h_r, h_h = inner.chunk(3, dim=-1)
                z = self.recurrent_activation(x_z + h_z)
                r = self.recurrent_activation(x_r + h_r)
                candidate = self.activation(x_h + r * h_h)
            else:
                h_z, h_r = (h @ self.recurrent_kernel[:, : 2 * n]).chunk(2, dim=-1)
                z = self.recurrent_activation(x_z + h_z)
                r = self.recurrent_activation(x_r + h_r)
                candidate = self.activation(x_h + (r * h) @ self.recurrent_kernel[:, 2 * n:])
            h = z * h + (1 - z) * candidate
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


class KerasSimpleRNN(nn.Module):
    """Keras' SimpleRNN cell, `h = activation(x W + b + h U)`, for activations nn.RNN lacks (it has tanh
    and relu only). Weights keep Keras' layout. Called like nn.RNN(batch_first=True)."""

    def __init__(self, input_size: int, units: int, use_bias: bool, activation: nn.Module) -> None:
        super().__init__()
        self.units = units
        self.kernel = nn.Parameter(torch.zeros(input_size, units))
        self.recurrent_kernel = nn.Parameter(torch.zeros(units, units))
        self.bias = nn.Parameter(torch.zeros(units)) if use_bias else None
        self.activation = activation

    def forward(self, x: Any, hx: Any = None) -> Any:
        h = x.new_zeros(x.shape[0], self.units) if hx is None else hx[0]
        projected = x @ self.kernel
        if self.bias is not None:
            projected = projected + self.bias
        outputs = []
        for t in range(x.shape[1]):
            h = self.activation(projected[:, t] + h @ self.recurrent_kernel)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


# ---- what one Keras RNN layer is -------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    cell: Any  # the Keras cell (an RNN layer's `cell`, one of a StackedRNNCells' cells, or a cell called directly)
    kind: str  # "LSTM", "GRU" or "SimpleRNN"
    units: int
    input_size: int
    use_bias: bool
    activation: str
    recurrent_activation: str | None  # None for SimpleRNN
    reset_after: bool
    go_backwards: bool

    @property
    def states(self) -> int:
        return 2 if self.kind == "LSTM" else 1

    @property
    def builtin(self) -> bool:
        """Whether nn.LSTM / nn.GRU / nn.RNN computes exactly what this layer computes."""
        if self.kind == "SimpleRNN":
            return self.activation in ("tanh", "relu")
        default = self.activation == "tanh" and self.recurrent_activation == "sigmoid"
        return default and (self.kind == "LSTM" or self.reset_after)

    def same_module(self, other: "_Spec") -> bool:
        """Whether `other` (a Bidirectional's backward layer) fits the same torch module as this one."""
        return (self.builtin and other.builtin and self.kind == other.kind and self.units == other.units
                and self.input_size == other.input_size and self.use_bias == other.use_bias
                and self.activation == other.activation)


def _spec(call: LayerCall, layer: Any) -> _Spec:
    """Read a Keras RNN layer, refusing what its torch counterpart would not compute exactly."""
    where = "the layer" if layer is call.layer else f"its sublayer {layer.name!r}"
    _refuse_stateful(call, layer, where)
    return _cell_spec(call, layer.cell, f"the recurrent cell of {where}", bool(layer.go_backwards))


def _refuse_stateful(call: LayerCall, layer: Any, where: str) -> None:
    if layer.stateful:
        raise call.unsupported(
            f"{where} is stateful (its state carries over from one call to the next), which a torch module "
            "that starts from the given initial state on every call does not model",
            hint="convert a copy built with stateful=False and pass the carried state as initial_state",
        )


def _is_keras(obj: Any, name: str) -> bool:
    """Whether `obj` is Keras' own `name` class (a same-named class from elsewhere may compute something else)."""
    return type(obj).__name__ == name and type(obj).__module__.startswith("keras.src.")


def _cell_spec(call: LayerCall, cell: Any, where: str, go_backwards: bool = False) -> _Spec:
    """Read one Keras cell (`where` names it in errors)."""
    cell_type = type(cell)
    kind = _CELLS.get(cell_type.__name__) if cell_type.__module__.startswith("keras.src.") else None
    if kind is None:
        raise call.unsupported(
            f"{where} is a {cell_type.__name__}, not a Keras LSTMCell, GRUCell, SimpleRNNCell or StackedRNNCells "
            "of them",
            hint="custom cells are not converted; use keras.layers.LSTM/GRU/SimpleRNN layers or their cells",
        )
    if not cell.built:
        raise call.unsupported(f"{where} has no weights yet", hint="build the model (call it once) first")
    act = activation_name(cell.activation)
    rec = activation_name(cell.recurrent_activation) if kind != "SimpleRNN" else None
    return _Spec(cell, kind, int(cell.units), int(cell.kernel.shape[0]), bool(cell.use_bias), act, rec,
                 bool(getattr(cell, "reset_after", False)), go_backwards)


def _refuse_masks(call: LayerCall) -> None:
    mask = call.kwargs.get("mask", call.args[2] if len(call.args) > 2 else None)
    if mask is not None:
        raise call.unsupported(
            "a mask reaches this recurrent layer (Keras then skips the masked time steps, carrying the state "
            "over them); porttax does not carry masks to PyTorch yet",
            hint="convert a copy without the mask if padding is handled another way, or open an issue",
        )


def _activation(call: LayerCall, name: str, units: int) -> Any:
    v = TVal(shape=(None, units))  # the per-step (batch, units) value an activation sees
    return activation_module(name, v, call.ctx, f"Keras layer {call.name!r} ({call.kind})")


def _make_module(call: LayerCall, spec: _Spec, bidirectional: bool = False) -> Any:
    if spec.builtin:
        common = dict(bias=spec.use_bias, batch_first=True, bidirectional=bidirectional)
        if spec.kind == "LSTM":
            module = nn.LSTM(spec.input_size, spec.units, **common)
        elif spec.kind == "GRU":
            module = nn.GRU(spec.input_size, spec.units, **common)
        else:
            module = nn.RNN(spec.input_size, spec.units, nonlinearity=spec.activation, **common)
        if spec.use_bias and spec.kind != "GRU":  # Keras' one bias goes to b_ih; b_hh stays zero
            for name, param in module.named_parameters():
                if name.startswith("bias_hh"):
                    nn.init.zeros_(param)
        return module
    act = _activation(call, spec.activation, spec.units)
    if spec.kind == "SimpleRNN":
        return KerasSimpleRNN(spec.input_size, spec.units, spec.use_bias, act)
    rec = _activation(call, spec.recurrent_activation or "sigmoid", spec.units)
    if spec.kind == "LSTM":
        return KerasLSTM(spec.input_size, spec.units, spec.use_bias, act, rec)
    return KerasGRU(spec.input_size, spec.units, spec.use_bias, spec.reset_after, act, rec)


def _port_weights(call: LayerCall, spec: _Spec, module: Any, suffix: str = "", direction: str = "") -> None:
    """Copy one Keras cell's weights into `module` (`direction` "_reverse": its reverse half)."""
    cell = spec.cell
    if not spec.builtin:
        for name in ("kernel", "recurrent_kernel", "bias"):
            if getattr(cell, name, None) is not None:
                call.port(getattr(cell, name), module, name, Identity(), suffix=suffix)
        return
    kernel: Transform = Transpose((1, 0))
    if spec.kind == "GRU":
        kernel = kernel.then(_GRU_GATES)
    call.port(cell.kernel, module, f"weight_ih_l0{direction}", kernel, suffix=suffix)
    call.port(cell.recurrent_kernel, module, f"weight_hh_l0{direction}", kernel, suffix=suffix)
    if not spec.use_bias:
        return
    if spec.kind != "GRU":
        log = call.ctx.log
        before = len(log.ports)
        call.port(cell.bias, module, f"bias_ih_l0{direction}", Identity(), suffix=suffix)
        if len(log.ports) > before:  # b_hh was zeroed when the module was made; logged as a constant
            path = call.path if not suffix else f"{call.path}.{suffix}"
            shape = tuple(log.ports[-1].shape)
            log.ports.append(WeightPort(None, f"{path}.bias_hh_l0{direction}",
                                        "zeros (torch adds b_ih + b_hh; Keras has one bias)", shape))
        return
    for row, param in ((0, "bias_ih"), (1, "bias_hh")):
        _port_row(call, cell.bias, row, module, f"{param}_l0{direction}", _GRU_GATES, suffix)


def _port_row(call: LayerCall, variable: Any, row: int, module: Any, param: str, transform: Transform,
              suffix: str) -> None:
    """Port row `row` of a Keras variable (GRU keeps b_ih and b_hh as rows of one (2, n) bias), logged
    under the variable's own path."""
    log = call.ctx.log
    before = len(log.ports)
    array = np.asarray(variable.numpy())
    call.port(array[row], module, param, transform, suffix=suffix)
    if len(log.ports) > before:  # not a shared layer's second call
        port = log.ports[-1]
        log.ports[-1] = WeightPort(getattr(variable, "path", None), port.target,
                                   f"row {row} of {tuple(array.shape)} then {transform.describe()}", port.shape)


def _initial_states(call: LayerCall, name: str = "initial_state") -> list[Any] | None:
    """The `initial_state=` argument (a cell's `states`) as operands in the Keras layout, (batch, units) each,
    nested lists (a StackedRNNCells' per-cell states) flattened in order; None when not given."""
    given = call.kwargs.get(name, call.args[1] if len(call.args) > 1 else None)
    if given is None:
        return None
    return [call.ctx.operand(item if isinstance(item, TVal) else np.asarray(item, dtype=np.float32))
            for item in _flatten(given)]


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [item for v in value for item in _flatten(v)]
    return [value]


def _hx(spec: _Spec, states: list[Any] | None, reverse: list[Any] | None = None) -> Any:
    """Initial states in torch's (directions, batch, units) form: a tensor, or (h, c) for an LSTM."""
    if states is None:
        return None
    if reverse is None:
        stacked = [s.unsqueeze(0) for s in states]
    else:
        stacked = [torch.stack([f, b]) for f, b in zip(states, reverse)]
    return tuple(stacked) if spec.kind == "LSTM" else stacked[0]


class _Finals:
    """The final states of one torch RNN module call, picked out of its second output only when used
    (so the generated forward has no dead indexing): h_n, and c_n for an LSTM, (directions, batch, units)."""

    def __init__(self, spec: _Spec, out: Any) -> None:
        self.out, self.count, self._stacked = out, spec.states, {}

    def stacked(self, i: int) -> Any:
        if i not in self._stacked:
            if "final" not in self._stacked:
                self._stacked["final"] = self.out[1]
            final = self._stacked["final"]
            self._stacked[i] = final[i] if self.count == 2 else final
        return self._stacked[i]

    def last(self, direction: int = 0) -> Any:
        """The final h of one direction: a return_sequences=False layer's output."""
        return self.stacked(0)[direction]

    def states(self, direction: int = 0) -> list[Any]:
        """(h, c) or (h,) of one direction, (batch, units) each."""
        return [self.stacked(i)[direction] for i in range(self.count)]


def _run_one(call: LayerCall, spec: _Spec, x: Any, init: list[Any] | None, suffix: str = "") -> Any:
    """Call one Keras RNN layer's torch module; its output is (sequence in processing order, final states)."""
    module = call.module(suffix) or _make_module(call, spec)
    _port_weights(call, spec, module, suffix)
    run = call.add_module(module, suffix)
    if spec.go_backwards:
        x = x.flip(1)
    hx = _hx(spec, init)
    return run(x) if hx is None else run(x, hx)


def _run_stack(call: LayerCall, specs: list[_Spec], x: Any, init: list[Any] | None) -> list[_Finals]:
    """Run a StackedRNNCells' cells one after another, each over the whole sequence the one below produced.

    Keras steps all cells together at each time step, but no cell reads a later cell's state, so running
    cell 0 over every step, then cell 1 over its outputs, and so on, computes the same numbers. Each cell
    is its own torch module, `<layer>.cells.<i>`; only the first reads the input flipped (go_backwards),
    the others read their input in the order it was produced.
    """
    finals, at = [], 0
    for i, spec in enumerate(specs):
        mine = None if init is None else init[at: at + spec.states]
        at += spec.states
        out = _run_one(call, spec, x, mine, suffix=f"cells.{i}")
        finals.append(_Finals(spec, out))
        x = out[0]
    return finals


def _stack_specs(call: LayerCall, stack: Any, go_backwards: bool = False) -> list[_Spec]:
    return [_cell_spec(call, cell, f"cell {i} ({cell.name!r}) of its StackedRNNCells", go_backwards and i == 0)
            for i, cell in enumerate(stack.cells)]


def _stacked_rnn(call: LayerCall) -> list[TVal]:
    layer = call.layer
    _refuse_stateful(call, layer, "the layer")
    specs = _stack_specs(call, layer.cell, bool(layer.go_backwards))
    finals = _run_stack(call, specs, call.ctx.keras_layout(call.x), _initial_states(call))
    states = [s for f in finals for s in f.states()] if layer.return_state else []
    if layer.return_sequences:
        first = finals[-1].out[0]
    else:
        first = finals[-1].last()
    return [call.result(o, index=i) for i, o in enumerate([first] + states)]


@keras_to_torch("LSTM", "GRU", "SimpleRNN", "RNN")
def recurrent(call: LayerCall) -> list[TVal]:
    layer = call.layer
    _refuse_masks(call)
    if _is_keras(layer.cell, "StackedRNNCells"):
        return _stacked_rnn(call)
    spec = _spec(call, layer)
    out = _run_one(call, spec, call.ctx.keras_layout(call.x), _initial_states(call))
    finals = _Finals(spec, out)
    states = finals.states() if layer.return_state else []
    if layer.return_sequences:
        outs = [out[0]] + states
    else:
        outs = [states[0] if states else finals.last()] + states
    return [call.result(o, index=i) for i, o in enumerate(outs)]


@keras_to_torch("Bidirectional")
def bidirectional(call: LayerCall) -> list[TVal]:
    layer = call.layer
    _refuse_masks(call)
    fwd, bwd = _spec(call, layer.forward_layer), _spec(call, layer.backward_layer)
    x = call.ctx.keras_layout(call.x)
    init = _initial_states(call)
    f_init = b_init = None
    if init is not None:
        half = len(init) // 2
        f_init, b_init = init[:half], init[half:]
    sequences, with_states = bool(layer.return_sequences), bool(layer.return_state)
    if fwd.same_module(bwd) and not fwd.go_backwards and bwd.go_backwards:
        # One bidirectional torch module: its reverse half reads the sequence from the end and its
        # outputs come back aligned with the forward ones, as Keras flips them back.
        module = call.module() or _make_module(call, fwd, bidirectional=True)
        _port_weights(call, fwd, module)
        _port_weights(call, bwd, module, direction="_reverse")
        run = call.add_module(module)
        hx = _hx(fwd, f_init, b_init) if init is not None else None
        out = run(x) if hx is None else run(x, hx)
        f_finals = b_finals = _Finals(fwd, out)
        b_direction = 1
    else:
        f_out = _run_one(call, fwd, x, f_init, suffix=layer.forward_layer.name)
        b_out = _run_one(call, bwd, x, b_init, suffix=layer.backward_layer.name)
        f_finals, b_finals, out, b_direction = _Finals(fwd, f_out), _Finals(bwd, b_out), None, 0
    f_states = f_finals.states() if with_states else []
    b_states = b_finals.states(b_direction) if with_states else []
    if not sequences:
        f_last = f_states[0] if with_states else f_finals.last()
        b_last = b_states[0] if with_states else b_finals.last(b_direction)
        merged = _merge(layer.merge_mode, f_last, b_last)
    elif out is None:
        merged = _merge(layer.merge_mode, f_out[0], b_out[0].flip(1))
    elif layer.merge_mode == "concat":
        merged = [out[0]]  # the bidirectional module's output is already [forward, backward]
    else:
        both = out[0]
        merged = _merge(layer.merge_mode, both[..., : fwd.units], both[..., fwd.units:])
    outs = merged + f_states + b_states
    return [call.result(o, index=i) for i, o in enumerate(outs)]


def _merge(mode: str | None, y: Any, y_rev: Any) -> list[Any]:
    """Keras Bidirectional's merge of the forward and (time-aligned) backward outputs."""
    if mode == "concat":
        return [torch.cat([y, y_rev], dim=-1)]
    if mode == "sum":
        return [y + y_rev]
    if mode == "ave":
        return [(y + y_rev) / 2]
    if mode == "mul":
        return [y * y_rev]
    return [y, y_rev]  # merge_mode=None: two outputs


# ---- cells called on their own -----------------------------------------------------------------------------
def _cell_states(call: LayerCall) -> list[Any]:
    states = _initial_states(call, name="states")
    if states is None:
        raise call.unsupported("a cell called without its states", hint="pass the states, as Keras requires")
    return states


def _cell_results(call: LayerCall, h: Any, states: list[Any]) -> list[TVal]:
    """A cell's (output, new states) as the node's flattened outputs: h, then every state."""
    outs = [h] + states
    if len(outs) != len(call.outputs):
        raise call.unsupported(f"the cell returns {len(call.outputs)} tensors, porttax expected {len(outs)}")
    return [call.result(o, index=i) for i, o in enumerate(outs)]


@keras_to_torch("LSTMCell", "GRUCell", "SimpleRNNCell")
def recurrent_cell(call: LayerCall) -> list[TVal]:
    """One time step, `h, states = cell(x, states)`: the cell's torch module (as in an RNN over it) run on a
    sequence of length one."""
    spec = _cell_spec(call, call.layer, "the cell")
    x = call.ctx.keras_layout(call.x).unsqueeze(1)
    finals = _Finals(spec, _run_one(call, spec, x, _cell_states(call)))
    states = finals.states()
    return _cell_results(call, states[0], states)


@keras_to_torch("StackedRNNCells")
def stacked_cells(call: LayerCall) -> list[TVal]:
    """One time step through every cell of the stack, each cell's new h the next one's input."""
    if not _is_keras(call.layer, "StackedRNNCells"):
        raise call.unsupported(f"a StackedRNNCells from {type(call.layer).__module__}",
                               hint="porttax converts Keras' own StackedRNNCells")
    specs = _stack_specs(call, call.layer)
    x = call.ctx.keras_layout(call.x).unsqueeze(1)
    finals = _run_stack(call, specs, x, _cell_states(call))
    states = [s for f in finals for s in f.states()]
    return _cell_results(call, finals[-1].last(), states)
