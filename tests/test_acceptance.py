"""Issue acceptance: real architectures convert to .keras and SavedModel and hold fp32 parity.

Each model goes through the public API (porttax.convert), which checks parity on the written
artefact over 3 seeds; the SavedModel is then checked again here with plain TensorFlow, without
porttax, and the .keras file is reloaded with plain Keras.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import porttax
from porttax import models
from porttax._frameworks import import_keras, import_tf, import_torch, import_torchvision
from porttax.layer_map import keras_layer_name

torch = import_torch()
SEEDS = (0, 1, 2)
TOL = 1e-5


def _torchvision(name: str) -> Callable[[], tuple[Any, tuple]]:
    def build() -> tuple[Any, tuple]:
        tv = import_torchvision()
        torch.manual_seed(0)
        model = getattr(tv.models, name)(weights=None).eval()
        return model, (torch.randn(1, 3, 96, 96),)

    return build


def _hf_llama() -> tuple[Any, tuple]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      use_cache=False)
    return LlamaForCausalLM(cfg).eval(), (torch.randint(0, 256, (1, 12)),)


def _hf_bert() -> tuple[Any, tuple]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64)
    return BertModel(cfg).eval(), (torch.randint(0, 256, (2, 12)),)


def _preset(name: str) -> Callable[[], tuple[Any, tuple]]:
    return lambda: (models.build_model(name), models.example_inputs(name, batch=2, seq=16))


CASES = {name: _preset(name) for name in models.list_presets()}
SLOW_CASES = {
    "torchvision-resnet18": _torchvision("resnet18"),
    "torchvision-mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "transformers-llama": _hf_llama,
    "transformers-bert": _hf_bert,
}
ALL = [pytest.param(n, id=n) for n in CASES] + [pytest.param(n, id=n, marks=pytest.mark.slow) for n in SLOW_CASES]


def _build(name: str) -> tuple[Any, tuple]:
    return (CASES | SLOW_CASES)[name]()


def _torch_outputs(module: Any, inputs: tuple) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*inputs)
    if isinstance(out, torch.Tensor):
        return [out.numpy()]
    values = out.values() if hasattr(out, "values") else out
    return [v.numpy() for v in values if isinstance(v, torch.Tensor)]


def _rel_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    assert not np.isnan(a).any(), "NaN in converted output"
    return float(np.linalg.norm(a - e) / np.linalg.norm(e))


def _seeded_like(example: tuple, seed: int, vocab: int | None) -> tuple:
    gen = torch.Generator().manual_seed(100 + seed)
    out = []
    for x in example:
        if x.dtype.is_floating_point:
            out.append(torch.randn(x.shape, generator=gen))
        else:
            out.append(torch.randint(0, vocab or 2, x.shape, generator=gen, dtype=x.dtype))
    return tuple(out)


@pytest.mark.parametrize("name", ALL)
def test_converts_to_keras_and_savedmodel_with_parity(name: str, tmp_path: Path) -> None:
    module, example = _build(name)

    keras_path = tmp_path / f"{name}.keras"
    res_k = porttax.convert(module, example_inputs=example, to="keras", output=keras_path,
                            seeds=SEEDS, measure_latency=False)
    assert res_k.passed, res_k.parity.summary_line()
    assert res_k.parity.worst_rel_l2 <= TOL
    assert len(res_k.parity.cases) == len(SEEDS)
    assert res_k.tax.layers_mapped == res_k.tax.layers_total > 0

    sm_path = tmp_path / f"{name}_sm"
    res_s = porttax.convert(module, example_inputs=example, to="savedmodel", output=sm_path,
                            seeds=SEEDS, measure_latency=False)
    assert res_s.passed, res_s.parity.summary_line()

    # Independent check with plain TensorFlow and plain Keras, on inputs porttax never saw.
    tf = import_tf()
    keras = import_keras()
    loaded = tf.saved_model.load(str(sm_path))
    serve = loaded.signatures["serving_default"]
    reloaded = keras.saving.load_model(keras_path)
    input_names = [s.name for s in res_s.source.specs]
    vocab = next((s.value_range[1] for s in res_s.source.specs if s.value_range), None)
    assert sorted(serve.structured_input_signature[1]) == sorted(input_names)
    # each weight is stored once: the variables folder is the weights' size, not twice it
    weights = sum(p.numel() * p.element_size() for p in module.state_dict().values())
    stored = sum(f.stat().st_size for f in (sm_path / "variables").iterdir())
    assert stored < 1.25 * weights + 64 * 1024, (stored, weights)
    for seed in SEEDS:
        inputs = _seeded_like(example, seed, int(vocab) if vocab else None)
        expected = _torch_outputs(module, inputs)
        got = serve(**{n: tf.constant(x.numpy()) for n, x in zip(input_names, inputs)})
        keys = sorted(got, key=lambda k: int(k.rsplit("_", 1)[-1]))
        assert len(keys) == len(expected)
        for k, e in zip(keys, expected):
            assert _rel_l2(got[k].numpy(), e) <= TOL, f"SavedModel {k} seed {seed}"
        k_out = reloaded([x.numpy() for x in inputs])
        k_out = k_out if isinstance(k_out, (list, tuple)) else [k_out]
        for a, e in zip(k_out, expected):
            assert _rel_l2(keras.ops.convert_to_numpy(a), e) <= TOL, f".keras seed {seed}"


def test_api_returns_in_memory_keras_model() -> None:
    module = models.build_model("mlp-tiny")
    (x,) = models.example_inputs("mlp-tiny")
    result = porttax.convert(module, example_inputs=(x,), to="keras", measure_latency=False)
    assert result.output is None and result.passed
    y = result.keras_model([x.numpy()])
    assert _rel_l2(np.asarray(y), module(x).detach().numpy()) <= TOL


def test_layers_are_named_after_source_modules() -> None:
    module = models.build_model("resnet-tiny")
    example = models.example_inputs("resnet-tiny")
    result = porttax.convert(module, example_inputs=example, to="keras", parity=False, measure_latency=False)
    layer_names = {layer.name for layer in result.keras_model.layers}
    conv_modules = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    linear_modules = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    assert conv_modules and {keras_layer_name(n) for n in conv_modules + linear_modules} <= layer_names
    # every weight of the source was ported into a named layer
    ported = {p.source_key for p in result.log.ports}
    params = {n for n, _ in module.named_parameters()}
    assert params <= ported
    assert result.tax.transposes_inserted == 1  # NCHW -> NHWC once, at the input


@pytest.mark.parametrize("target", ["keras", "savedmodel"])
def test_a_written_conversion_prices_its_latency(target: str, tmp_path: Path) -> None:
    """The porting tax of a conversion written to disk times both sides (the artefact as loaded back)."""
    module, example = _build("mlp-tiny")
    out = tmp_path / ("m.keras" if target == "keras" else "m_sm")
    res = porttax.convert(module, example_inputs=example, to=target, output=out, seeds=(0,))
    assert res.passed
    assert res.tax.latency_source_ms > 0 and res.tax.latency_converted_ms > 0 and res.tax.latency_ratio > 0
