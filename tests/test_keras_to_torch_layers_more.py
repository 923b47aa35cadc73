"""Keras → torch for ConvLSTM1D/2D/3D, TimeDistributed, SpectralNormalization, GroupedQueryAttention,
ReversibleEmbedding, RNN over cells (StackedRNNCells included) and cells called on their own, and two
whole architectures: keras.applications' ConvNeXtTiny and a tiny keras-hub Llama backbone.

Every case converts a live Keras model whose weights are all randomised (so no bias or gate block hides
behind a zero initialiser) and checks ‖a−b‖/‖b‖ ≤ 1e-5 on three seeds plus torch.export
(tests/k2t_check.py). Refused configurations raise UnsupportedError naming the layer.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from k2t_check import check_keras_to_torch, keras, outputs_of, rel_l2, torch  # torch before Keras

from porttax.converters.keras_to_torch.driver import convert_keras_model
from porttax.converters.registry import REGISTRY
from porttax.errors import UnsupportedError

L = keras.layers

# torch warns that nn.RNNBase's flattened weight list is re-assigned while it exports; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes .*_flat_weights:UserWarning")


def randomized(model: Any, seed: int = 0) -> Any:
    """Every weight drawn at random, scaled by fan-in, so no bias or gate block stays at its initial value."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "float" not in str(w.dtype):
            continue  # seed-generator state
        shape = tuple(w.shape)
        if not shape:
            value = 1.0 + 0.3 * rng.standard_normal()
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) >= 2 else 0
            value = rng.standard_normal(shape) * (1.0 / np.sqrt(fan_in) if fan_in else 0.3)
        if "variance" in w.path:
            value = 0.5 + np.abs(value)
        w.assign(np.asarray(value, dtype=str(w.dtype)))
    return model


def check(model: Any, **kw: Any) -> float:
    _, worst = check_keras_to_torch(randomized(model), **kw)
    return worst


def single(shape: tuple[int | None, ...], make: Callable[[], Any], dtype: str = "float32") -> Any:
    x = keras.Input(shape, dtype=dtype)
    out = make()(x)
    return keras.Model(x, keras.tree.flatten(out) if isinstance(out, (list, tuple)) else out)


def refusal(model: Any, layer_name: str) -> str:
    with pytest.raises(UnsupportedError) as info:
        convert_keras_model(model)
    message = str(info.value)
    assert layer_name in message, message
    return message


# ---- ConvLSTM1D / 2D / 3D ----------------------------------------------------------------------------------
CONV_LSTM_CASES: dict[str, tuple[tuple[int, ...], Callable[[], Any]]] = {
    "2d_seq_same": ((3, 6, 6, 2), lambda: L.ConvLSTM2D(3, 3, padding="same", return_sequences=True)),
    "2d_last_valid_strided": ((3, 7, 7, 2), lambda: L.ConvLSTM2D(3, 3, strides=2, return_state=True)),
    "2d_same_strided_even": ((3, 7, 6, 2), lambda: L.ConvLSTM2D(2, (2, 3), strides=2, padding="same",
                                                                  return_sequences=True)),
    "2d_backwards_dilated": ((4, 7, 7, 2), lambda: L.ConvLSTM2D(3, 3, dilation_rate=2, padding="same",
                                                                  go_backwards=True, return_sequences=True,
                                                                  return_state=True)),
    "2d_even_kernel_same": ((3, 5, 5, 2), lambda: L.ConvLSTM2D(2, 2, padding="same")),
    "2d_relu_hard_sigmoid_no_bias": ((3, 5, 5, 2), lambda: L.ConvLSTM2D(2, 3, activation="relu",
                                                                          recurrent_activation="hard_sigmoid",
                                                                          use_bias=False, return_sequences=True)),
    "1d_seq_state": ((4, 9, 3), lambda: L.ConvLSTM1D(4, 3, padding="same", return_sequences=True,
                                                     return_state=True)),
    "1d_backwards_last": ((4, 9, 3), lambda: L.ConvLSTM1D(4, 2, go_backwards=True)),
    "3d_seq": ((2, 4, 4, 4, 2), lambda: L.ConvLSTM3D(2, 3, padding="same", return_sequences=True)),
    "3d_valid_state": ((2, 5, 4, 4, 1), lambda: L.ConvLSTM3D(2, 2, return_state=True)),
}


@pytest.mark.parametrize("case", list(CONV_LSTM_CASES))
def test_conv_lstm(case: str) -> None:
    shape, make = CONV_LSTM_CASES[case]
    assert check(single(shape, make)) <= 1e-5


def test_conv_lstm_channels_first() -> None:
    x = keras.Input((3, 2, 6, 6))
    y = L.ConvLSTM2D(3, 3, padding="same", data_format="channels_first", return_sequences=True)(x)
    assert check(keras.Model(x, y)) <= 1e-5


def test_conv_lstm_initial_state_and_stack_without_transposes() -> None:
    """An encoder's final (h, c) start a second ConvLSTM2D; the two run in the held channels-first layout,
    so the only transposes are at the model's input, its states and its output."""
    x, y = keras.Input((3, 6, 6, 2)), keras.Input((2, 6, 6, 2))
    _, h, c = L.ConvLSTM2D(3, 3, padding="same", return_state=True, name="encoder")(x)
    seq = L.ConvLSTM2D(3, 3, padding="same", return_sequences=True, name="decoder")(y, initial_state=[h, c])
    out = L.ConvLSTM2D(2, 1, return_sequences=True, name="head")(seq)
    model = randomized(keras.Model([x, y], out))
    module, worst = check_keras_to_torch(model)
    assert worst <= 1e-5
    assert type(module.encoder).__name__ == "ConvLSTM"
    keys = set(module.state_dict())
    assert {"encoder.input_conv.weight", "encoder.input_conv.bias", "encoder.recurrent_conv.weight"} <= keys
    log = convert_keras_model(model).log
    assert log.transposes_inserted == 3, log.transposes_inserted  # x in, y in, output out


def test_conv_lstm_refuses_stateful() -> None:
    x = keras.Input(batch_shape=(2, 3, 5, 5, 2))
    model = keras.Model(x, L.ConvLSTM2D(2, 3, stateful=True, name="stateful_conv_lstm")(x))
    assert "stateful" in refusal(model, "stateful_conv_lstm")


# ---- TimeDistributed ---------------------------------------------------------------------------------------
def test_time_distributed_dense_is_the_inner_module() -> None:
    x = keras.Input((5, 6))
    model = randomized(keras.Model(x, L.TimeDistributed(L.Dense(4, activation="tanh"), name="td")(x)))
    module, worst = check_keras_to_torch(model)
    assert worst <= 1e-5
    assert isinstance(module.td, torch.nn.Linear) and {"td.weight", "td.bias"} == set(module.state_dict())


def test_time_distributed_video_model_folds_in_held_layout() -> None:
    """A per-frame CNN: TimeDistributed Conv2D → BatchNorm → Conv2D → pooling → Flatten, then an LSTM. Time
    folds into the batch on the channels-first value the convolutions leave, so no transpose between them."""
    x = keras.Input((4, 8, 8, 3))
    y = L.TimeDistributed(L.Conv2D(4, 3, padding="same", activation="relu"))(x)
    y = L.TimeDistributed(L.BatchNormalization())(y)
    y = L.TimeDistributed(L.Conv2D(4, 3, strides=2))(y)
    y = L.TimeDistributed(L.MaxPooling2D())(y)
    y = L.TimeDistributed(L.Flatten())(y)
    model = randomized(keras.Model(x, L.LSTM(3)(y)))
    assert check_keras_to_torch(model)[1] <= 1e-5
    assert convert_keras_model(model).log.transposes_inserted == 2  # in, and before the flatten


def test_time_distributed_open_time_axis() -> None:
    x = keras.Input((None, 6))
    y = L.TimeDistributed(L.Dense(3))(L.GRU(5, return_sequences=True)(x))
    model = randomized(keras.Model(x, y))
    for steps in (2, 7):
        assert check_keras_to_torch(model, sizes={1: steps})[1] <= 1e-5


def test_time_distributed_nested_model() -> None:
    frame = keras.Input((6, 6, 2))
    encoder = keras.Model(frame, L.GlobalAveragePooling2D()(L.Conv2D(3, 3, activation="relu")(frame)),
                          name="frame_encoder")
    x = keras.Input((3, 6, 6, 2))
    model = randomized(keras.Model(x, L.Dense(2)(L.TimeDistributed(encoder, name="per_frame")(x))))
    module, worst = check_keras_to_torch(model)
    assert worst <= 1e-5
    assert any(k.startswith("per_frame.") for k in module.state_dict()), list(module.state_dict())


def test_time_distributed_refuses_unconvertible_inner_layer() -> None:
    class Doubler(L.Layer):
        def call(self, x: Any) -> Any:
            return x * 2.0

        def compute_output_shape(self, shape: Any) -> Any:
            return shape

    x = keras.Input((3, 4))
    model = keras.Model(x, L.TimeDistributed(Doubler(name="doubler"), name="td_custom")(x))
    message = refusal(model, "td_custom")
    assert "doubler" in message and "Doubler" in message


# ---- SpectralNormalization ---------------------------------------------------------------------------------
@pytest.mark.parametrize("trained", [False, True])
def test_spectral_normalization_uses_the_stored_kernel(trained: bool) -> None:
    """Keras' inference call runs the wrapped layer with its kernel as stored; a training call first writes
    the normalised kernel back. Both states convert exactly."""
    x = keras.Input((6, 6, 2))
    y = L.SpectralNormalization(L.Conv2D(3, 3), name="sn_conv")(x)
    y = L.SpectralNormalization(L.Dense(4), power_iterations=2, name="sn_dense")(L.Flatten()(y))
    model = randomized(keras.Model(x, y))
    if trained:
        before = model.get_layer("sn_dense").layer.kernel.numpy().copy()
        model(np.random.default_rng(3).standard_normal((2, 6, 6, 2)).astype("float32"), training=True)
        assert not np.allclose(before, model.get_layer("sn_dense").layer.kernel.numpy())
    module, worst = check_keras_to_torch(model)
    assert worst <= 1e-5
    assert isinstance(module.sn_conv, torch.nn.Conv2d) and isinstance(module.sn_dense, torch.nn.Linear)


def test_spectral_normalization_of_embedding_keeps_keras_cast() -> None:
    """Keras casts the wrapped layer's output to the input's dtype: around an Embedding the vectors come out
    truncated to int32 (its symbolic output claims float32). The converted model computes the same."""
    model = single((5,), lambda: L.SpectralNormalization(L.Embedding(20, 4), name="sn"), "int32")
    model.get_layer("sn").layer.embeddings.assign(np.random.default_rng(1).uniform(-9, 9, (20, 4)).astype("float32"))
    ids = np.random.default_rng(2).integers(0, 20, (2, 5)).astype("int32")
    want = keras.ops.convert_to_numpy(model(ids))
    got = convert_keras_model(model).module(torch.from_numpy(ids)).numpy()
    assert want.dtype == got.dtype == np.int32 and np.abs(want).max() > 0
    np.testing.assert_array_equal(got, want)


# ---- GroupedQueryAttention -----------------------------------------------------------------------------------
def _gqa_self(**kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        q = keras.Input((6, 16))
        return keras.Model(q, L.GroupQueryAttention(**{"head_dim": 4, "num_query_heads": 4,
                                                         "num_key_value_heads": 2, **kw})(q, q))
    return build


def _gqa_cross(with_key: bool, scores: bool, causal: bool = False, **kw: Any) -> Callable[[], Any]:
    def build() -> Any:
        q, v, k = keras.Input((6, 8)), keras.Input((5, 8)), keras.Input((5, 7))
        layer = L.GroupQueryAttention(**{"head_dim": 3, "num_query_heads": 6, "num_key_value_heads": 3, **kw})
        out = layer(q, v, key=k if with_key else None, return_attention_scores=scores, use_causal_mask=causal)
        return keras.Model([q, v, k] if with_key else [q, v], list(out) if scores else out)
    return build


GQA_CASES: dict[str, Callable[[], Any]] = {
    "self": _gqa_self(),
    "self_no_bias": _gqa_self(use_bias=False),
    "multi_query": _gqa_self(num_key_value_heads=1),
    "as_many_kv_heads": _gqa_self(num_key_value_heads=4),
    "gated": _gqa_self(use_gate=True),
    "sliding_window": _gqa_self(sliding_window=2),
    "cross_value_only": _gqa_cross(with_key=False, scores=False),
    "cross_key_scores": _gqa_cross(with_key=True, scores=True),
    "cross_key_causal": _gqa_cross(with_key=True, scores=False, causal=True),
}


@pytest.mark.parametrize("case", list(GQA_CASES))
def test_grouped_query_attention(case: str) -> None:
    assert check(GQA_CASES[case]()) <= 1e-5


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("scores,dropout", [(False, 0.0), (True, 0.0), (False, 0.1)])
def test_gqa_attention_mask(causal: bool, scores: bool, dropout: float) -> None:
    """A (B, T, S) 0/1 mask whose first query row is all zeros: uniform weights on Keras' fused path, zero
    weights on its explicit one (scores returned, or dropout > 0)."""
    q, v = keras.Input((6, 8)), keras.Input((5, 8))
    m = keras.Input((6, 5), dtype="int32")
    keep_rows = np.ones((6, 1), "int32")
    keep_rows[0] = 0
    layer = L.GroupQueryAttention(4, 4, 2, dropout=dropout)
    out = layer(q, v, attention_mask=m * keep_rows, use_causal_mask=causal, return_attention_scores=scores)
    assert check(keras.Model([q, v, m], list(out) if scores else out), int_high=2) <= 1e-5


def test_gqa_causal_self_attention_state_dict() -> None:
    q = keras.Input((6, 16))
    model = keras.Model(q, L.GroupQueryAttention(4, 4, 2, name="gqa")(q, q, use_causal_mask=True))
    module, worst = check_keras_to_torch(randomized(model))
    assert worst <= 1e-5
    assert module.state_dict()["gqa.key.weight"].shape == (8, 16)  # 2 kv heads x 4, from 16 features


def test_gqa_refuses_propagated_mask() -> None:
    q, vm = keras.Input((6, 8)), keras.Input((6,), dtype="bool")
    model = keras.Model([q, vm], L.GroupQueryAttention(4, 2, 1, name="masked_gqa")(q, q, value_mask=vm))
    assert "attention_mask" in refusal(model, "masked_gqa")


# ---- ReversibleEmbedding -------------------------------------------------------------------------------------
def _tiny_lm(**kw: Any) -> Any:
    ids = keras.Input((6,), dtype="int32")
    emb = L.ReversibleEmbedding(30, 8, name="tokens", **kw)
    h = L.Dense(8, activation="gelu")(emb(ids))
    return keras.Model(ids, emb(h, reverse=True))


@pytest.mark.parametrize("kw", [{}, {"tie_weights": False}, {"logit_soft_cap": 2.0},
                                {"tie_weights": False, "logit_soft_cap": 0.5}],
                         ids=["tied", "untied", "tied_soft_cap", "untied_soft_cap"])
def test_reversible_embedding(kw: dict) -> None:
    model = randomized(_tiny_lm(**kw))
    module, worst = check_keras_to_torch(model, int_high=30)
    assert worst <= 1e-5
    assert type(module.tokens).__name__ == "ReversibleEmbedding"
    expected = {"tokens.weight"} if kw.get("tie_weights", True) else {"tokens.weight", "tokens.reverse_weight"}
    assert {k for k in module.state_dict() if k.startswith("tokens")} == expected


def test_reversible_embedding_refuses_mask_zero() -> None:
    ids = keras.Input((6,), dtype="int32")
    model = keras.Model(ids, L.ReversibleEmbedding(30, 8, mask_zero=True, name="masked_tokens")(ids))
    assert "mask_zero" in refusal(model, "masked_tokens")


# ---- RNN over cells, StackedRNNCells, cells on their own ------------------------------------------------------
STEPS, FEATURES = 6, 5

CELL_RNN_CASES: dict[str, Callable[[], Any]] = {
    "stacked_lstm_gru_seq_state": lambda: L.RNN([L.LSTMCell(4), L.GRUCell(3)], return_sequences=True,
                                                return_state=True),
    "stacked_three_last": lambda: L.RNN(L.StackedRNNCells([L.SimpleRNNCell(4), L.GRUCell(4, reset_after=False),
                                                           L.LSTMCell(3, activation="relu")])),
    "stacked_backwards_state": lambda: L.RNN([L.GRUCell(4), L.SimpleRNNCell(3, activation="relu")],
                                             go_backwards=True, return_sequences=True, return_state=True),
    "rnn_of_simple_rnn_cell": lambda: L.RNN(L.SimpleRNNCell(3), return_sequences=True),
}


@pytest.mark.parametrize("case", list(CELL_RNN_CASES))
def test_rnn_over_cells(case: str) -> None:
    assert check(single((STEPS, FEATURES), CELL_RNN_CASES[case])) <= 1e-5


def test_stacked_cells_initial_states_and_module_names() -> None:
    x, h1, c1, h2 = keras.Input((STEPS, FEATURES)), keras.Input((4,)), keras.Input((4,)), keras.Input((3,))
    rnn = L.RNN([L.LSTMCell(4), L.GRUCell(3)], return_sequences=True, name="stack")
    model = randomized(keras.Model([x, h1, c1, h2], rnn(x, initial_state=[[h1, c1], h2])))
    module, worst = check_keras_to_torch(model)
    assert worst <= 1e-5
    assert isinstance(module.get_submodule("stack.cells.0"), torch.nn.LSTM)
    assert isinstance(module.get_submodule("stack.cells.1"), torch.nn.GRU)


def test_cells_called_on_their_own() -> None:
    """One step of each cell, `h, states = cell(x, states)`, and of a StackedRNNCells."""
    x, h, c, g = keras.Input((FEATURES,)), keras.Input((4,)), keras.Input((4,)), keras.Input((3,))
    lstm_out = L.LSTMCell(4)(x, [h, c])
    gru_out = L.GRUCell(3, reset_after=False)(x, g)
    rnn_out = L.SimpleRNNCell(3, activation="relu")(x, [g])
    stack_out = L.StackedRNNCells([L.LSTMCell(4), L.GRUCell(3)])(x, [[h, c], g])
    outs = keras.tree.flatten([lstm_out, gru_out, rnn_out, stack_out])
    assert check(keras.Model([x, h, c, g], outs)) <= 1e-5


def test_cells_count_in_the_coverage_table() -> None:
    keys = {c.key.op for c in REGISTRY.coverage("keras", "torch")}
    wanted = {"LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
              "TimeDistributed", "SpectralNormalization", "GroupedQueryAttention", "ReversibleEmbedding"}
    assert wanted <= keys, wanted - keys


def test_refuses_stacked_custom_cell() -> None:
    class MinimalCell(L.Layer):
        state_size = 3

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(shape=(input_shape[-1], 3))

        def call(self, inputs: Any, states: Any) -> Any:
            h = keras.ops.matmul(inputs, self.kernel) + states[0]
            return h, [h]

    x = keras.Input((STEPS, FEATURES))
    model = keras.Model(x, L.RNN([L.GRUCell(3), MinimalCell()], name="mixed_stack")(x))
    assert "MinimalCell" in refusal(model, "mixed_stack")


# ---- keras.applications.ConvNeXtTiny -------------------------------------------------------------------------
def test_convnext_tiny_converts() -> None:
    """The real ConvNeXtTiny (random weights, 64×64 to stay fast, logits out); LayerScale's gamma starts at
    1e-6, which would hide a wrong block, so it is drawn around 1. (tests/test_keras_applications.py checks a
    smaller ConvNeXt through the CLI.)"""
    keras.utils.set_random_seed(0)
    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "LayerScale":
            layer.gamma.assign(rng.uniform(0.5, 1.5, size=layer.gamma.shape).astype("float32"))
    assert check_keras_to_torch(model, seeds=(0, 1))[1] <= 1e-5


# ---- keras-hub: a tiny Llama backbone -------------------------------------------------------------------------
def _llama_backbone(tie: bool) -> Any:
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    # Llama 3's rope frequency smoothing on, so the inverse frequencies are not the plain ones
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, hidden_dim=16, intermediate_dim=24,
        num_key_value_heads=2, tie_word_embeddings=tie, rope_frequency_adjustment_factor=8.0,
        rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_pretraining_sequence_length=16)
    randomized(backbone)
    for w in backbone.weights:  # RMS-norm scales around 1
        if w.path.endswith("scale"):
            w.assign(1.0 + np.asarray(w.numpy()))
    return backbone


def _llama_feeds(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pad = np.ones((3, 7), "int32")
    pad[1, 5:] = 0  # right padding
    pad[2, :2] = 0  # left padding: the first two query rows see no key at all
    return {"token_ids": rng.integers(0, 50, (3, 7)).astype("int32"), "padding_mask": pad}


def _check_by_name(model: Any, result: Any, seeds: tuple[int, ...] = (0, 1, 2)) -> float:
    """Parity for a model with named (dict) inputs; the torch module takes them positionally, in the order
    `result.inputs` names them. Then torch.export of the module."""
    worst = 0.0
    for seed in seeds:
        feeds = _llama_feeds(seed)
        want = outputs_of(model(feeds))
        args = tuple(torch.from_numpy(feeds[spec.name]) for spec in result.inputs)
        with torch.no_grad():
            got = outputs_of(result.module(*args))
        assert [g.shape for g in got] == [w.shape for w in want]
        worst = max([worst] + [rel_l2(g, w) for g, w in zip(got, want)])
    program = torch.export.export(result.module, args)
    assert rel_l2(outputs_of(program.module()(*args))[0], got[0]) <= 1e-6
    return worst


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_keras_hub_llama_backbone(tie: bool) -> None:
    backbone = _llama_backbone(tie)
    result = convert_keras_model(backbone)
    assert _check_by_name(backbone, result) <= 1e-5
    module = result.module
    assert type(module.transformer_layer_0).__name__ == "LlamaTransformerDecoder"
    assert type(module.transformer_layer_0.self_attention.rotary_embedding).__name__ == "RotaryEmbedding"
    keys = set(module.state_dict())
    assert {"token_embedding.weight", "transformer_layer_1.self_attention.query.weight",
            "transformer_layer_0.feedforward_gate_dense.weight", "sequence_output_layernorm.scale"} <= keys
    assert ("token_embedding.reverse_weight" in keys) is not tie
    sources = {p.source_key for p in result.log.ports}
    assert {w.path for w in backbone.weights} <= sources, {w.path for w in backbone.weights} - sources


def test_keras_hub_llama_lm_head_shares_the_embedding() -> None:
    """Backbone + logits through the backbone's own (untied) token embedding: one ReversibleEmbedding module
    serves both calls. (Keras itself cannot reload such a model from .keras: the shared layer's variables are
    not restored, so this one stays in memory.)"""
    backbone = _llama_backbone(tie=False)
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in ("token_ids", "padding_mask")}
    model = keras.Model(inputs, backbone.token_embedding(backbone(inputs), reverse=True))
    result = convert_keras_model(model)
    assert _check_by_name(model, result) <= 1e-5
    assert [n for n, _ in result.module.named_children()] == [backbone.name]
    assert type(result.module.get_submodule(f"{backbone.name}.token_embedding")).__name__ == "ReversibleEmbedding"


def test_keras_hub_llama_backbone_from_a_keras_file(tmp_path: Any) -> None:
    """A saved backbone loads the way porttax loads files (Keras imports keras_hub from the config's module
    path) and converts. Untied: keras-hub 0.32's LlamaBackbone.get_config drops `tie_word_embeddings`, so a
    tied one does not load back in Keras itself."""
    from porttax.sources.keras_source import load_keras_file

    _llama_backbone(tie=False).save(str(tmp_path / "llama.keras"))
    model = load_keras_file(tmp_path / "llama.keras")
    assert _check_by_name(model, convert_keras_model(model), seeds=(0,)) <= 1e-5


def test_keras_hub_rotary_embedding_layer() -> None:
    keras_hub = pytest.importorskip("keras_hub")
    x = keras.Input((7, 3, 8))
    model = keras.Model(x, keras_hub.layers.RotaryEmbedding(max_wavelength=100, scaling_factor=2.0)(x))
    assert check_keras_to_torch(model)[1] <= 1e-5


def test_same_named_layer_outside_keras_hub_is_refused() -> None:
    class LlamaLayerNorm(L.Layer):  # not keras-hub's: must not be taken for it
        def build(self, shape: Any) -> None:
            self.scale = self.add_weight(shape=(shape[-1],))

        def call(self, x: Any) -> Any:
            return x * self.scale

    x = keras.Input((4, 6))
    assert "keras-hub" in refusal(keras.Model(x, LlamaLayerNorm(name="lookalike")(x)), "lookalike")
