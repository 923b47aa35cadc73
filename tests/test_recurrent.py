"""Recurrent layers (nn.LSTM, nn.GRU, nn.RNN) convert to Keras LSTM / GRU / SimpleRNN with parity.

Real torch and Keras: each model is converted through the public API to a `.keras` file, reloaded,
and compared with PyTorch on several seeds; the gate reorder is shown to matter by undoing it; the
file runs on the torch and JAX Keras backends; configurations Keras cannot compute exactly are
refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import porttax
from porttax._frameworks import import_keras, import_torch
from porttax.converters.torch_to_keras.driver import convert_exported_program
from porttax.converters.transforms import GateReorder, Transpose
from porttax.errors import UnsupportedError
from porttax.parity import make_inputs
from porttax.parity.worker import run_in_worker

torch = import_torch()  # before Keras/TensorFlow: see porttax._frameworks
keras = import_keras()
nn = torch.nn

TOL = 1e-5
SEEDS = (0, 1, 2)

# torch warns that nn.RNNBase's flattened weight list is re-assigned while it exports; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes .*_flat_weights:UserWarning")


class Encoder(nn.Module):
    """A recurrent module at path `enc.rnn`, called with or without initial states."""

    def __init__(self, rnn: Any) -> None:
        super().__init__()
        self.enc = nn.Module()
        self.enc.rnn = rnn

    def forward(self, x: Any, *states: Any) -> Any:
        if not states:
            return self.enc.rnn(x)
        return self.enc.rnn(x, tuple(states) if len(states) == 2 else states[0])


def _inputs(rnn: Any, batch: int = 2, steps: int = 6, with_states: bool = False) -> tuple[Any, ...]:
    shape = (batch, steps, rnn.input_size) if rnn.batch_first else (steps, batch, rnn.input_size)
    x = torch.randn(shape)
    if not with_states:
        return (x,)
    state = (rnn.num_layers * (2 if rnn.bidirectional else 1), batch, rnn.hidden_size)
    return (x,) + tuple(torch.randn(state) for _ in range(2 if isinstance(rnn, nn.LSTM) else 1))


def _rel(got: Any, want: Any) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"shape {got.shape}, torch has {want.shape}"
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _flat(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return [out]


# ---- the gate reorder transform --------------------------------------------------------------------


@pytest.mark.parametrize("order,axis,shape", [
    ((1, 0, 2), 0, (15, 4)),  # torch GRU weight r|z|n -> z|r|n
    ((1, 0, 2), -1, (2, 15)),  # the same on a Keras (2, 3*units) bias
    ((3, 0, 2, 1), 1, (5, 8)),
])
def test_gate_reorder_round_trips(order: tuple[int, ...], axis: int, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t = GateReorder(order, axis)
    y = t.apply(x)
    assert not np.array_equal(y, x)
    assert np.array_equal(t.inverse().apply(y), x)
    assert np.array_equal(t.inverse().inverse().apply(x), y)
    chained = t.then(Transpose((1, 0)))
    assert np.array_equal(chained.inverse().apply(chained.apply(x)), x)
    blocks = np.split(x, len(order), axis=axis)
    assert np.array_equal(np.split(y, len(order), axis=axis)[0], blocks[order[0]])


def test_gate_reorder_refuses_a_shape_that_does_not_split_into_gates() -> None:
    with pytest.raises(ValueError, match="does not split into 3 gates"):
        GateReorder((1, 0, 2)).apply(np.zeros((10, 4), np.float32))


# ---- parity through the public API -----------------------------------------------------------------

_CASES = {
    "lstm_batch_first_given_states": (lambda: nn.LSTM(4, 6, batch_first=True), True),
    "lstm_stacked_bidirectional_time_major": (lambda: nn.LSTM(4, 6, num_layers=2, bidirectional=True), False),
    "gru_stacked_batch_first_dropout_eval": (lambda: nn.GRU(4, 6, num_layers=2, dropout=0.3, batch_first=True), False),
    "gru_bidirectional_time_major_given_state": (lambda: nn.GRU(4, 6, bidirectional=True), True),
    "rnn_tanh_bidirectional_stacked": (lambda: nn.RNN(4, 6, num_layers=2, bidirectional=True, batch_first=True),
                                       False),
    "rnn_relu_no_bias_given_state": (lambda: nn.RNN(4, 6, nonlinearity="relu", bias=False), True),
}


@pytest.mark.parametrize("name", list(_CASES))
def test_converted_keras_file_matches_torch(name: str, tmp_path: Path) -> None:
    make, with_states = _CASES[name]
    torch.manual_seed(0)
    module = Encoder(make()).eval()
    example = _inputs(module.enc.rnn, with_states=with_states)
    result = porttax.convert(module, example_inputs=example, to="keras", output=tmp_path / "m.keras",
                             seeds=SEEDS, measure_latency=False)
    report = result.parity
    assert report is not None and result.passed, "\n".join(report.failures()) if report is not None else "no parity"
    assert len(report.cases) == len(SEEDS)
    outputs = 3 if isinstance(module.enc.rnn, nn.LSTM) else 2  # output, h_n[, c_n]
    assert all(len(case.outputs) == outputs for case in report.cases)
    assert report.worst_rel_l2 <= TOL

    rnn = module.enc.rnn
    dirs = 2 if rnn.bidirectional else 1
    layers = result.log.layers["enc.rnn"].targets
    if rnn.num_layers == 1 and dirs == 1:
        assert layers == ["enc-rnn"]
    else:
        assert layers == [f"enc-rnn-l{k}{s}" for k in range(rnn.num_layers) for s in ("", "_reverse")[:dirs]]
    ported = {p.source_key for p in result.log.ports}
    assert {f"enc.rnn.{n}" for n, _ in rnn.named_parameters()} <= ported


def test_savedmodel_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Encoder(nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=True)).eval()
    result = porttax.convert(module, example_inputs=_inputs(module.enc.rnn), to="savedmodel",
                             output=tmp_path / "sm", seeds=SEEDS, measure_latency=False)
    assert result.passed and result.parity.worst_rel_l2 <= TOL, "\n".join(result.parity.failures())


def test_learned_initial_state_and_downstream_layers() -> None:
    """A parameter h0/c0 (constant, non-zero) and a time-major output read back by later layers."""

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 6, bidirectional=True)
            self.h0 = nn.Parameter(torch.randn(2, 1, 6))
            self.c0 = nn.Parameter(torch.randn(2, 1, 6))
            self.head = nn.Linear(12, 3)

        def forward(self, x: Any) -> Any:
            state = (self.h0.expand(-1, x.shape[1], -1).contiguous(), self.c0.expand(-1, x.shape[1], -1).contiguous())
            y, (h, c) = self.rnn(x, state)
            return self.head(y.transpose(0, 1)), h.sum(0), c

    torch.manual_seed(0)
    module = Tagger().eval()
    result = porttax.convert(module, example_inputs=(torch.randn(6, 3, 4),), to="keras", seeds=SEEDS,
                             measure_latency=False)
    assert result.passed and result.parity.worst_rel_l2 <= TOL, "\n".join(result.parity.failures())


# ---- the gate reorder matters ----------------------------------------------------------------------


def test_undoing_the_gru_gate_reorder_breaks_parity() -> None:
    torch.manual_seed(0)
    module = Encoder(nn.GRU(4, 6, batch_first=True)).eval()
    (x,) = _inputs(module.enc.rnn)
    ep = torch.export.export(module, (x,))
    model = convert_exported_program(ep).model
    with torch.no_grad():
        want = [t.numpy() for t in _flat(module(x))]

    def rel_now() -> float:
        return max(_rel(g, w) for g, w in zip(model([x.numpy()]), want))

    assert rel_now() <= TOL
    layer = model.get_layer("enc-rnn")
    # z|r|h back to torch's r|z|n on the gate axis of every variable (the order is its own inverse)
    torch_order = GateReorder((1, 0, 2), axis=-1)
    for var in layer.weights:
        var.assign(torch_order.apply(np.asarray(var.numpy())))
    assert rel_now() > 1e-2, "swapping the update and reset gates should change the GRU's output"


def test_gru_kernel_ports_round_trip() -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(4, 6, batch_first=True)
    module = Encoder(rnn).eval()
    result = convert_exported_program(torch.export.export(module, _inputs(rnn)))
    layer = result.model.get_layer("enc-rnn")
    port = GateReorder((1, 0, 2)).then(Transpose((1, 0)))
    state = {k: v.numpy() for k, v in rnn.state_dict().items()}
    got = {v.name: np.asarray(v.numpy()) for v in layer.weights}
    for keras_name, key in (("kernel", "weight_ih_l0"), ("recurrent_kernel", "weight_hh_l0")):
        assert np.array_equal(port.apply(state[key]), got[keras_name])
        assert np.array_equal(port.inverse().apply(got[keras_name]), state[key])
    bias = GateReorder((1, 0, 2), axis=-1).inverse().apply(got["bias"])
    assert np.array_equal(bias, np.stack([state["bias_ih_l0"], state["bias_hh_l0"]]))


# ---- other Keras backends --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_lstm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any]:
    torch.manual_seed(0)
    module = Encoder(nn.LSTM(4, 6, num_layers=2, bidirectional=True)).eval()
    path = tmp_path_factory.mktemp("recurrent") / "lstm.keras"
    result = porttax.convert(module, example_inputs=_inputs(module.enc.rnn, with_states=True), to="keras",
                             output=path, parity=False, measure_latency=False)
    return path, module, result.source.specs


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_file_holds_parity_on_backend(saved_lstm: tuple[Path, Any, Any], backend: str) -> None:
    path, module, specs = saved_lstm
    inputs = make_inputs(specs, 0)
    with torch.no_grad():
        want = [t.numpy() for t in _flat(module(*[torch.from_numpy(inputs[s.name]) for s in specs]))]
    outputs, info = run_in_worker(path, inputs, backend)
    assert info["backend"] == backend
    assert len(outputs) == len(want) == 3
    for i, (got, expected) in enumerate(zip(outputs, want)):
        assert _rel(got, expected) <= TOL, f"output {i} on {backend}"


# ---- refusal ---------------------------------------------------------------------------------------


def test_projected_lstm_is_refused_by_name(tmp_path: Path) -> None:
    module = Encoder(nn.LSTM(4, 6, proj_size=3, batch_first=True)).eval()
    out = tmp_path / "m.keras"
    with pytest.raises(UnsupportedError) as info:
        porttax.convert(module, example_inputs=_inputs(module.enc.rnn), to="keras", output=out,
                        measure_latency=False)
    message = str(info.value)
    assert "enc.rnn" in message and "proj_size" in message and "What to do" in message
    assert not out.exists()


def test_training_mode_dropout_between_layers_is_refused() -> None:
    module = Encoder(nn.GRU(4, 6, num_layers=2, dropout=0.2)).train()
    ep = torch.export.export(module, _inputs(module.enc.rnn))
    with pytest.raises(UnsupportedError, match=r"enc\.rnn .*dropout .*training mode") as info:
        convert_exported_program(ep)
    assert "model.eval()" in str(info.value)
