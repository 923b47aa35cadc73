"""Keras → torch for sequence models: LSTM, GRU, SimpleRNN, Bidirectional, MultiHeadAttention, Attention and
AdditiveAttention.

Every case converts a live Keras model whose weights (biases included) are all randomised, so a wrong
gate order or bias row cannot hide behind Keras' zero initialisers, and checks ‖a−b‖/‖b‖ ≤ 1e-5 on
three seeds plus torch.export (tests/k2t_check.py). Configurations the converter refuses raise
UnsupportedError naming the layer.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from k2t_check import check_keras_to_torch, keras  # imports torch before Keras (see porttax._frameworks)

from porttax.converters.keras_to_torch.driver import convert_keras_model
from porttax.errors import UnsupportedError

L = keras.layers
ops = keras.ops

# torch warns that nn.RNNBase's flattened weight list is re-assigned while it exports; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes .*_flat_weights:UserWarning")

STEPS, FEATURES = 7, 5


def randomized(model: Any, seed: int = 0) -> Any:
    """Every weight drawn at random, scaled by fan-in, so no bias or gate block stays at its initial value."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if not shape:
            value = 1.0 + 0.3 * rng.standard_normal()
        else:
            value = rng.standard_normal(shape) * (1.0 / np.sqrt(shape[0]) if len(shape) >= 2 else 0.3)
        w.assign(np.asarray(value, dtype="float32"))
    return model


def check(model: Any, **kw: Any) -> float:
    _, worst = check_keras_to_torch(randomized(model), **kw)
    return worst


def on_sequence(make: Callable[[], Any], steps: int = STEPS, features: int = FEATURES) -> Any:
    x = keras.Input((steps, features))
    out = make()(x)
    return keras.Model(x, list(out) if isinstance(out, (list, tuple)) else out)


def refusal(model: Any, layer_name: str) -> str:
    with pytest.raises(UnsupportedError) as info:
        convert_keras_model(model)
    message = str(info.value)
    assert layer_name in message, message
    return message


# ---- LSTM / GRU / SimpleRNN ------------------------------------------------------------------------------
RNN_CASES: dict[str, Callable[[], Any]] = {
    "lstm": lambda: L.LSTM(4),
    "lstm_seq_state": lambda: L.LSTM(4, return_sequences=True, return_state=True),
    "lstm_backwards_seq": lambda: L.LSTM(4, go_backwards=True, return_sequences=True),
    "lstm_backwards_state": lambda: L.LSTM(4, go_backwards=True, return_state=True),
    "lstm_no_bias": lambda: L.LSTM(4, use_bias=False, return_state=True),
    "lstm_relu_hard_sigmoid": lambda: L.LSTM(4, activation="relu", recurrent_activation="hard_sigmoid",
                                             return_sequences=True, return_state=True),
    "gru": lambda: L.GRU(6),
    "gru_seq_state": lambda: L.GRU(6, return_sequences=True, return_state=True),
    "gru_reset_before_seq_state": lambda: L.GRU(6, reset_after=False, return_sequences=True, return_state=True),
    "gru_reset_before_backwards": lambda: L.GRU(6, reset_after=False, go_backwards=True, return_sequences=True),
    "gru_no_bias": lambda: L.GRU(6, use_bias=False, return_sequences=True),
    "gru_reset_before_no_bias": lambda: L.GRU(6, reset_after=False, use_bias=False),
    "gru_elu_activation": lambda: L.GRU(6, activation="elu", return_sequences=True),
    "simple_rnn_seq_state": lambda: L.SimpleRNN(3, return_sequences=True, return_state=True),
    "simple_rnn_relu_backwards": lambda: L.SimpleRNN(3, activation="relu", go_backwards=True, return_sequences=True),
    "simple_rnn_sigmoid": lambda: L.SimpleRNN(3, activation="sigmoid"),
    "simple_rnn_linear_no_bias": lambda: L.SimpleRNN(3, activation=None, use_bias=False, return_sequences=True),
    "rnn_of_lstm_cell": lambda: L.RNN(L.LSTMCell(4), return_sequences=True, return_state=True),
    "rnn_of_gru_cell_reset_before": lambda: L.RNN(L.GRUCell(4, reset_after=False), go_backwards=True),
}


@pytest.mark.parametrize("case", list(RNN_CASES))
def test_recurrent_layer(case: str) -> None:
    assert check(on_sequence(RNN_CASES[case])) <= 1e-5


def test_builtin_modules_for_default_activations() -> None:
    """Default activations give nn.LSTM / nn.GRU / nn.RNN named after the layer; what torch.nn cannot
    compute gets the loop module, weights in Keras' layout."""
    x = keras.Input((STEPS, FEATURES))
    y = L.LSTM(4, return_sequences=True, name="encoder")(x)
    y = L.GRU(4, return_sequences=True, name="gru_after")(y)
    y = L.GRU(4, reset_after=False, return_sequences=True, name="gru_before")(y)
    y = L.SimpleRNN(4, activation="relu", name="rnn")(y)
    module = convert_keras_model(randomized(keras.Model(x, y))).module
    torch_nn = __import__("torch").nn
    assert isinstance(module.encoder, torch_nn.LSTM) and module.encoder.batch_first
    assert isinstance(module.gru_after, torch_nn.GRU)
    assert type(module.gru_before).__name__ == "KerasGRU"
    assert isinstance(module.rnn, torch_nn.RNN) and module.rnn.nonlinearity == "relu"
    keys = set(module.state_dict())
    assert {"encoder.weight_ih_l0", "encoder.bias_hh_l0", "gru_before.kernel", "gru_before.bias"} <= keys


def test_unknown_sequence_length() -> None:
    """Time left as None: the modules take any length (torch.export then fixes the one it traced)."""
    x = keras.Input((None, FEATURES))
    y = L.Bidirectional(L.LSTM(4, return_sequences=True))(x)
    y = L.GRU(4, reset_after=False, return_sequences=True)(y)
    y = L.MultiHeadAttention(2, 4)(y, y, use_causal_mask=True)
    model = randomized(keras.Model(x, y))
    for steps in (3, 9):
        assert check_keras_to_torch(model, sizes={1: steps})[1] <= 1e-5


# ---- initial states and shared layers --------------------------------------------------------------------
def test_lstm_initial_state_inputs() -> None:
    x, h, c = keras.Input((STEPS, FEATURES)), keras.Input((4,)), keras.Input((4,))
    outs = L.LSTM(4, return_sequences=True, return_state=True)(x, initial_state=[h, c])
    assert check(keras.Model([x, h, c], list(outs))) <= 1e-5


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_initial_state_single_tensor(reset_after: bool) -> None:
    x, h = keras.Input((STEPS, FEATURES)), keras.Input((6,))
    out = L.GRU(6, reset_after=reset_after, go_backwards=True, return_sequences=True)(x, initial_state=h)
    assert check(keras.Model([x, h], out)) <= 1e-5


def test_seq2seq_states_from_encoder() -> None:
    """The usual Keras seq2seq: the encoder's final (h, c) start the decoder."""
    enc_in, dec_in = keras.Input((STEPS, FEATURES)), keras.Input((4, 3))
    _, h, c = L.LSTM(8, return_state=True, name="encoder")(enc_in)
    dec = L.LSTM(8, return_sequences=True, name="decoder")(dec_in, initial_state=[h, c])
    assert check(keras.Model([enc_in, dec_in], L.Dense(3)(dec))) <= 1e-5


def test_shared_recurrent_layer() -> None:
    a, b = keras.Input((STEPS, FEATURES)), keras.Input((STEPS, FEATURES))
    shared = L.GRU(4, reset_after=False, name="shared")
    model = keras.Model([a, b], L.Subtract()([shared(a), shared(b)]))
    module, _ = check_keras_to_torch(randomized(model))
    assert [n for n, _ in module.named_children()] == ["shared"]


# ---- Bidirectional ---------------------------------------------------------------------------------------
BIDI_CASES: dict[str, Callable[[], Any]] = {
    **{f"lstm_seq_{mode}": (lambda mode=mode: L.Bidirectional(L.LSTM(4, return_sequences=True), merge_mode=mode))
       for mode in ("concat", "sum", "mul", "ave", None)},
    **{f"gru_last_{mode}": (lambda mode=mode: L.Bidirectional(L.GRU(4), merge_mode=mode))
       for mode in ("concat", "ave", None)},
    "lstm_state_concat": lambda: L.Bidirectional(L.LSTM(4, return_state=True)),
    "gru_seq_state_none": lambda: L.Bidirectional(L.GRU(4, return_sequences=True, return_state=True), merge_mode=None),
    "gru_reset_before_seq_sum": lambda: L.Bidirectional(L.GRU(4, reset_after=False, return_sequences=True),
                                                        merge_mode="sum"),
    "gru_reset_before_state": lambda: L.Bidirectional(L.GRU(4, reset_after=False, return_state=True)),
    "simple_rnn_relu_state": lambda: L.Bidirectional(L.SimpleRNN(3, activation="relu", return_sequences=True,
                                                                 return_state=True)),
    "lstm_no_bias": lambda: L.Bidirectional(L.LSTM(4, use_bias=False, return_sequences=True)),
    "backward_layer_gru": lambda: L.Bidirectional(L.LSTM(4, return_sequences=True),
                                                  backward_layer=L.GRU(4, go_backwards=True, return_sequences=True),
                                                  merge_mode="mul"),
    "backward_layer_forwards": lambda: L.Bidirectional(L.LSTM(4, go_backwards=True, return_state=True),
                                                       backward_layer=L.LSTM(4, return_state=True)),
}


@pytest.mark.parametrize("case", list(BIDI_CASES))
def test_bidirectional(case: str) -> None:
    assert check(on_sequence(BIDI_CASES[case])) <= 1e-5


def test_bidirectional_lstm_is_one_torch_module() -> None:
    x = keras.Input((STEPS, FEATURES))
    model = keras.Model(x, L.Bidirectional(L.LSTM(4, return_sequences=True), name="bilstm")(x))
    module = convert_keras_model(randomized(model)).module
    assert module.bilstm.bidirectional and "bilstm.weight_hh_l0_reverse" in module.state_dict()


@pytest.mark.parametrize("reset_after", [True, False])
def test_bidirectional_initial_states(reset_after: bool) -> None:
    x = keras.Input((STEPS, FEATURES))
    hf, hb = keras.Input((4,)), keras.Input((4,))
    outs = L.Bidirectional(L.GRU(4, reset_after=reset_after, return_sequences=True, return_state=True))(
        x, initial_state=[hf, hb])
    assert check(keras.Model([x, hf, hb], list(outs))) <= 1e-5


def test_bidirectional_lstm_initial_states() -> None:
    x = keras.Input((STEPS, FEATURES))
    states = [keras.Input((4,)) for _ in range(4)]
    out = L.Bidirectional(L.LSTM(4))(x, initial_state=states)
    assert check(keras.Model([x, *states], out)) <= 1e-5


# ---- MultiHeadAttention ----------------------------------------------------------------------------------
def _mha_self(**layer_kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        q = keras.Input((6, 16))
        return keras.Model(q, L.MultiHeadAttention(**{"num_heads": 2, "key_dim": 4, **layer_kw})(q, q))
    return build


def _mha_cross(with_key: bool, scores: bool, **layer_kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        q, v, k = keras.Input((6, 16)), keras.Input((5, 7)), keras.Input((5, 9))
        layer = L.MultiHeadAttention(**{"num_heads": 3, "key_dim": 4, **layer_kw})
        out = layer(q, v, key=k if with_key else None, return_attention_scores=scores)
        return keras.Model([q, v, k] if with_key else [q, v], list(out) if scores else out)
    return build


MHA_CASES: dict[str, Callable[[], Any]] = {
    "self": _mha_self(),
    "self_no_bias": _mha_self(use_bias=False),
    "key_dim_ne_value_dim": _mha_self(key_dim=4, value_dim=6),
    "output_shape_int": _mha_self(output_shape=10),
    "output_shape_tuple": _mha_self(output_shape=(2, 5)),
    "gated": _mha_self(use_gate=True),
    "sliding_window": _mha_self(sliding_window=2),
    "cross_value_only": _mha_cross(with_key=False, scores=False),
    "cross_key_value": _mha_cross(with_key=True, scores=False, value_dim=5),
    "cross_scores": _mha_cross(with_key=True, scores=True),
}


@pytest.mark.parametrize("case", list(MHA_CASES))
def test_multi_head_attention(case: str) -> None:
    assert check(MHA_CASES[case]()) <= 1e-5


@pytest.mark.parametrize("scores", [False, True])
def test_mha_causal(scores: bool) -> None:
    q = keras.Input((6, 16))
    out = L.MultiHeadAttention(2, 4)(q, q, use_causal_mask=True, return_attention_scores=scores)
    assert check(keras.Model(q, list(out) if scores else out)) <= 1e-5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_mha_attention_mask(causal: bool, scores: bool, dropout: float) -> None:
    """A (B, T, S) 0/1 mask whose first query row is all zeros: Keras gives that row uniform weights on its
    fused path and zero weights on its explicit one (scores returned, or dropout > 0); both must match."""
    q, v = keras.Input((6, 16)), keras.Input((5, 16))
    m = keras.Input((6, 5), dtype="int32")
    keep_rows = np.ones((6, 1), "int32")
    keep_rows[0] = 0
    layer = L.MultiHeadAttention(2, 4, value_dim=3, dropout=dropout)
    out = layer(q, v, attention_mask=m * keep_rows, use_causal_mask=causal, return_attention_scores=scores)
    assert check(keras.Model([q, v, m], list(out) if scores else out), int_high=2) <= 1e-5


def test_mha_shared_and_state_dict_keys() -> None:
    a, b = keras.Input((6, 16)), keras.Input((6, 16))
    mha = L.MultiHeadAttention(2, 4, name="mha")
    model = keras.Model([a, b], L.Add()([mha(a, b), mha(b, a)]))
    module, _ = check_keras_to_torch(randomized(model))
    assert {"mha.query.weight", "mha.key.bias", "mha.value.weight", "mha.output.weight"} <= set(module.state_dict())


# ---- Attention / AdditiveAttention -----------------------------------------------------------------------
ATTENTION_LAYERS: dict[str, Callable[[], Any]] = {
    "dot": lambda: L.Attention(),
    "dot_scale": lambda: L.Attention(use_scale=True),
    "concat": lambda: L.Attention(score_mode="concat"),
    "concat_scale": lambda: L.Attention(use_scale=True, score_mode="concat"),
    "additive": lambda: L.AdditiveAttention(),
    "additive_no_scale": lambda: L.AdditiveAttention(use_scale=False),
}


@pytest.mark.parametrize("case", list(ATTENTION_LAYERS))
def test_attention_layers(case: str) -> None:
    q, v, k = keras.Input((6, 8)), keras.Input((5, 8)), keras.Input((5, 8))
    layer = ATTENTION_LAYERS[case]()
    model = keras.Model([q, v, k], list(layer([q, v, k], return_attention_scores=True)))
    assert check(model) <= 1e-5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("case", ["dot_scale", "additive"])
def test_attention_masks_and_causal(case: str, causal: bool) -> None:
    q, v = keras.Input((6, 8)), keras.Input((6, 8))
    qm, vm = keras.Input((6,), dtype="int32"), keras.Input((6,), dtype="int32")
    layer = ATTENTION_LAYERS[case]()
    out = layer([q, v], mask=[ops.cast(qm, "bool"), ops.cast(vm, "bool")], use_causal_mask=causal)
    assert check(keras.Model([q, v, qm, vm], out), int_high=2) <= 1e-5


# ---- acceptance models -----------------------------------------------------------------------------------
def bilstm_text_model() -> Any:
    ids = keras.Input((12,), dtype="int32")
    x = L.Embedding(100, 32)(ids)
    x = L.Bidirectional(L.LSTM(32, return_sequences=True))(x)
    x = L.Bidirectional(L.LSTM(16))(x)
    return keras.Model(ids, L.Dense(5, activation="softmax")(x))


def stacked_gru_model() -> Any:
    x = keras.Input((10, 6))
    y = L.GRU(16, return_sequences=True)(x)
    y = L.GRU(16, return_sequences=True, reset_after=False)(y)
    y = L.GRU(12, return_sequences=True)(y)
    y = L.GRU(8, reset_after=False)(y)
    return keras.Model(x, L.Dense(3)(y))


def encoder_block(x: Any, heads: int = 4, key_dim: int = 8, ff: int = 64) -> Any:
    width = x.shape[-1]
    attended = L.MultiHeadAttention(heads, key_dim, dropout=0.1)(x, x)
    x = L.LayerNormalization(epsilon=1e-6)(L.Add()([x, L.Dropout(0.1)(attended)]))
    f = L.Dense(ff, activation="gelu")(x)
    f = L.Dense(width)(f)
    return L.LayerNormalization(epsilon=1e-6)(L.Add()([x, f]))


def transformer_encoder_model() -> Any:
    x = keras.Input((10, 32))
    return keras.Model(x, encoder_block(x))


def sinusoidal_positions(steps: int, width: int) -> np.ndarray:
    angle = np.arange(steps)[:, None] / np.power(10000.0, (2 * (np.arange(width)[None] // 2)) / width)
    return np.where(np.arange(width)[None] % 2 == 0, np.sin(angle), np.cos(angle)).astype("float32")


def transformer_text_model() -> Any:
    ids = keras.Input((10,), dtype="int32")
    x = L.Embedding(100, 32)(ids) + sinusoidal_positions(10, 32)
    x = encoder_block(encoder_block(x))
    return keras.Model(ids, L.Dense(5)(x[:, 0]))


@pytest.mark.parametrize("build,int_high", [
    (bilstm_text_model, 100),
    (stacked_gru_model, 10),
    (transformer_encoder_model, 10),
    (transformer_text_model, 100),
], ids=["bilstm_text", "stacked_gru", "transformer_encoder", "transformer_text"])
def test_acceptance_model(build: Callable[[], Any], int_high: int) -> None:
    assert check(build(), int_high=int_high) <= 1e-5


@pytest.mark.parametrize("build", [bilstm_text_model, stacked_gru_model, transformer_encoder_model],
                         ids=["bilstm_text", "stacked_gru", "transformer_encoder"])
def test_every_parameter_is_ported(build: Callable[[], Any]) -> None:
    """The mapping log accounts for every torch parameter (LSTM's zero b_hh as a logged constant) and every
    Keras weight (GRU's two bias rows under the one Keras variable)."""
    model = randomized(build())
    result = convert_keras_model(model)
    ported = {p.target for p in result.log.ports}
    assert set(result.module.state_dict()) <= ported, set(result.module.state_dict()) - ported
    sources = {p.source_key for p in result.log.ports}
    assert {w.path for w in model.weights} <= sources, {w.path for w in model.weights} - sources


# ---- refused configurations ------------------------------------------------------------------------------
def test_refuses_stateful() -> None:
    x = keras.Input(batch_shape=(2, STEPS, FEATURES))
    model = keras.Model(x, L.LSTM(4, stateful=True, name="stateful_lstm")(x))
    assert "stateful" in refusal(model, "stateful_lstm")


def test_refuses_stateful_bidirectional() -> None:
    x = keras.Input(batch_shape=(2, STEPS, FEATURES))
    model = keras.Model(x, L.Bidirectional(L.GRU(4, stateful=True), name="bi_stateful")(x))
    assert "stateful" in refusal(model, "bi_stateful")


@pytest.mark.parametrize("wrap", [False, True])
def test_refuses_explicit_mask(wrap: bool) -> None:
    x, m = keras.Input((STEPS, FEATURES)), keras.Input((STEPS,), dtype="bool")
    layer = L.Bidirectional(L.LSTM(4), name="masked") if wrap else L.LSTM(4, name="masked")
    assert "mask" in refusal(keras.Model([x, m], layer(x, mask=m)), "masked")


def test_refuses_mask_zero_embedding_before_lstm() -> None:
    ids = keras.Input((STEPS,), dtype="int32")
    x = L.Embedding(20, 8, mask_zero=True, name="padded_embedding")(ids)
    assert "mask_zero" in refusal(keras.Model(ids, L.LSTM(4)(x)), "padded_embedding")


def test_refuses_unknown_activation() -> None:
    def doubled(t: Any) -> Any:
        return t * 2.0

    x = keras.Input((STEPS, FEATURES))
    model = keras.Model(x, L.SimpleRNN(3, activation=doubled, name="odd_rnn")(x))
    assert "doubled" in refusal(model, "odd_rnn")


def test_refuses_custom_cell() -> None:
    class MinimalCell(L.Layer):
        state_size = 3

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(shape=(input_shape[-1], 3))

        def call(self, inputs: Any, states: Any) -> Any:
            h = ops.matmul(inputs, self.kernel) + states[0]
            return h, [h]

    x = keras.Input((STEPS, FEATURES))
    model = keras.Model(x, L.RNN(MinimalCell(), name="custom_rnn")(x))
    assert "MinimalCell" in refusal(model, "custom_rnn")


def test_refuses_mha_over_other_axes() -> None:
    q = keras.Input((4, 3, 16))
    model = keras.Model(q, L.MultiHeadAttention(2, 4, attention_axes=(2,), name="axial")(q, q))
    refusal(model, "axial")


def test_refuses_mha_propagated_value_mask() -> None:
    q, vm = keras.Input((6, 16)), keras.Input((6,), dtype="bool")
    model = keras.Model([q, vm], L.MultiHeadAttention(2, 4, name="masked_mha")(q, q, value_mask=vm))
    assert "attention_mask" in refusal(model, "masked_mha")
