"""Reference architectures: registry, deterministic builds, torch.export capture, checkpoints.

Real torch throughout; every preset is tiny, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import porttax.models as models
from porttax.errors import InputError, UntrustedInputError
from porttax.models.configs import LlamaConfig
from porttax.types import TensorSpec

PRESETS = models.list_presets()
EXPECTED_OUTPUT = {
    "mlp-tiny": (2, 4),
    "resnet-tiny": (2, 10),
    "encoder-tiny": (2, 16, 64),
    "llama-tiny": (2, 16, 256),
    "llama-tiny-tied": (2, 16, 256),
}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registry_lists_every_architecture_and_preset() -> None:
    assert models.list_architectures() == ["encoder", "llama", "mlp", "resnet"]
    assert set(PRESETS) == set(EXPECTED_OUTPUT)
    assert models.list_presets("llama") == ["llama-tiny", "llama-tiny-tied"]


def test_import_does_not_import_torch() -> None:
    code = "import sys, porttax.models as m; m.input_specs('llama-tiny'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolve_preset_arch_and_overrides() -> None:
    arch, cfg = models.resolve("llama-tiny")
    assert arch.name == "llama" and isinstance(cfg, LlamaConfig)
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (256, 64, 176)
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (2, 4, 2)
    assert cfg.max_position_embeddings == 128 and not cfg.tie_word_embeddings

    _, default = models.resolve("llama")  # plain architecture name: its default preset
    assert default == cfg
    _, small = models.resolve("llama", {"num_hidden_layers": 1})
    assert small.num_hidden_layers == 1 and small.hidden_size == 64
    assert models.resolve("llama", cfg)[1] is cfg
    assert LlamaConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.head_dim == 16  # defaulted as HF does, so to_dict() states it
    assert models.resolve("llama", {"rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})[1].rope_theta == 5e5


@pytest.mark.parametrize(
    ("name", "config", "fragment"),
    [
        ("nope", None, "nope"),
        ("llama", {"hidden_sizes": 3}, "hidden_sizes"),
        ("llama", {"num_key_value_heads": 3}, "num_key_value_heads"),
        ("llama", {"rope_scaling": {"rope_type": "llama3"}}, "missing factor, high_freq_factor"),
        ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "rope_scaling.*missing factor"),
        ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope types porttax implements"),
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0, "beta": 1}}, "unknown beta"),
        ("llama", {"rope_scaling": {"rope_type": "linear", "factor": -2.0}}, "positive numbers"),
        ("llama", {"sliding_window": 0}, "sliding_window"),
        ("llama", {"layer_types": ["full_attention"]}, "layer_types"),
        ("mlp", {"activation": "swish"}, "swish"),
        ("mlp", models.resolve("llama")[1], "LlamaConfig"),
        ("mlp", {"arch": "llama"}, "llama"),
    ],
)
def test_resolve_rejects_bad_names_and_configs(name: str, config: object, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        models.resolve(name, config)  # type: ignore[arg-type]


def test_mistral_and_qwen2_configs_read_as_llama_variants() -> None:
    _, mistral = models.resolve("llama", {"model_type": "mistral", "sliding_window": 8, "layer_types": ["x"]})
    assert mistral.sliding_window == 8 and mistral.layer_types is None and not mistral.qkv_bias
    assert [mistral.window_of(i) for i in range(2)] == [8, 8]
    _, qwen = models.resolve("llama", {"model_type": "qwen2", "sliding_window": 32, "use_sliding_window": False,
                                       "max_window_layers": 1, "layer_types": ["full_attention"] * 2})
    assert qwen.qkv_bias and qwen.sliding_window is None and qwen.window_of(1) is None
    _, windowed = models.resolve("llama", {"model_type": "qwen2", "sliding_window": 32, "use_sliding_window": True,
                                           "max_window_layers": 1})
    assert windowed.layer_types == ["full_attention", "sliding_attention"] and windowed.window_of(1) == 32
    _, scaled = models.resolve("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2}})
    assert scaled.rope_scaling == {"rope_type": "linear", "factor": 2} and scaled.rope_theta == 1e4
    _, plain = models.resolve("llama", {"rope_scaling": {"type": "default"}})
    assert plain.rope_scaling is None


def test_qwen2_biases_only_on_q_k_v() -> None:
    model = models.build_model("llama", {"model_type": "qwen2"})
    attn = model.model.layers[0].self_attn
    assert all(p.bias is not None for p in (attn.q_proj, attn.k_proj, attn.v_proj)) and attn.o_proj.bias is None


def test_input_specs_are_symbolic() -> None:
    assert models.input_specs("mlp-tiny") == [TensorSpec("x", ("batch", 16), "float32")]
    assert models.input_specs("resnet-tiny") == [TensorSpec("pixel_values", ("batch", 3, 32, 32), "float32")]
    for preset in ("encoder-tiny", "llama-tiny"):
        (spec,) = models.input_specs(preset)
        assert spec == TensorSpec("input_ids", ("batch", "seq"), "int64", (0, 256))


def test_example_inputs_follow_specs_and_seed() -> None:
    (ids,) = models.example_inputs("llama-tiny", batch=3, seq=5, seed=1)
    assert ids.shape == (3, 5) and ids.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) < 256
    assert torch.equal(ids, models.example_inputs("llama-tiny", batch=3, seq=5, seed=1)[0])
    assert not torch.equal(ids, models.example_inputs("llama-tiny", batch=3, seq=5, seed=2)[0])
    with pytest.raises(InputError, match="max_position_embeddings"):
        models.example_inputs("llama-tiny", seq=129)


@pytest.mark.parametrize("preset", PRESETS)
def test_build_is_deterministic_and_forward_is_sane(preset: str) -> None:
    rng_before = torch.get_rng_state()
    model = models.build_model(preset, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before), "build_model must not move the caller's RNG"
    assert not model.training
    assert _same_state(model.state_dict(), models.build_model(preset, seed=0).state_dict())
    assert not _same_state(model.state_dict(), models.build_model(preset, seed=1).state_dict())

    inputs = models.example_inputs(preset)
    with torch.no_grad():
        out = model(*inputs)
        other = model(*models.example_inputs(preset, seed=1))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == EXPECTED_OUTPUT[preset]
    assert torch.isfinite(out).all()
    assert out.std() > 1e-3 and not torch.allclose(out, other), "outputs must depend on the input"


def test_norm_layers_are_not_identities() -> None:
    model = models.build_model("resnet-tiny")
    bn = model.bn1
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.allclose(bn.weight, torch.ones_like(bn.weight))
    llama = models.build_model("llama-tiny")
    assert not torch.allclose(llama.model.norm.weight, torch.ones(64))


@pytest.mark.parametrize("preset", PRESETS)
def test_torch_export_captures_whole_model(preset: str) -> None:
    model = models.build_model(preset)
    inputs = models.example_inputs(preset)
    exported = torch.export.export(model, inputs)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(*inputs), model(*inputs), rtol=0, atol=0)


def test_torch_export_with_dynamic_batch_and_seq() -> None:
    model = models.build_model("llama-tiny")
    exported = torch.export.export(
        model, models.example_inputs("llama-tiny"),
        dynamic_shapes=({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},),
    )
    (ids,) = models.example_inputs("llama-tiny", batch=3, seq=7, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(ids), model(ids))


def test_encoder_padding_mask_hides_padded_tokens() -> None:
    model = models.build_model("encoder-tiny")
    (ids,) = models.example_inputs("encoder-tiny", batch=1, seq=12)
    mask = torch.ones_like(ids)
    mask[:, 8:] = 0
    with torch.no_grad():
        padded = model(ids, mask)
        short = model(ids[:, :8])
    torch.testing.assert_close(padded[:, :8], short)


def test_llama_uses_grouped_query_attention() -> None:
    cfg = models.resolve("llama-tiny")[1]
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    attn = models.build_model("llama-tiny").model.layers[0].self_attn
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    assert attn.q_proj.out_features == cfg.num_attention_heads * head_dim
    assert attn.k_proj.out_features == attn.v_proj.out_features == cfg.num_key_value_heads * head_dim


@pytest.mark.parametrize("preset", ["llama-tiny", "llama-tiny-tied"])
def test_llama_matches_hugging_face_implementation(preset: str) -> None:
    """Our weights in transformers' LlamaForCausalLM compute the same logits (and load back)."""
    transformers = pytest.importorskip("transformers")
    cfg = models.resolve(preset)[1]
    ours = models.build_model(preset, seed=3)
    hf_config = transformers.LlamaConfig(**cfg.to_dict())
    assert LlamaConfig.from_dict(hf_config.to_dict()) == cfg  # transformers' own config.json reads back
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    hf.load_state_dict(ours.state_dict(), strict=True)
    (ids,) = models.example_inputs(preset, seq=20)
    with torch.no_grad():
        expected = hf(input_ids=ids).logits
        torch.testing.assert_close(ours(ids), expected, rtol=1e-6, atol=1e-6)
        back = models.load_state_dict_model(preset, None, hf.state_dict())
        torch.testing.assert_close(back(ids), expected, rtol=1e-6, atol=1e-6)


def test_llama_uses_hugging_face_parameter_names() -> None:
    keys = set(models.build_model("llama-tiny").state_dict())
    assert {
        "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
        "model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.o_proj.weight",
        "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight", "model.layers.1.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight",
    } <= keys
    assert not any("rotary" in k for k in keys), "rotary tables are derived, not checkpoint state"

    tied = models.build_model("llama-tiny-tied")
    assert tied.lm_head.weight is tied.model.embed_tokens.weight


@pytest.mark.parametrize(
    ("preset", "suffix"),
    [("resnet-tiny", ".pt"), ("resnet-tiny", ".safetensors"), ("llama-tiny-tied", ".safetensors"),
     ("encoder-tiny", ".pt")],
)
def test_checkpoint_round_trip(tmp_path: Path, preset: str, suffix: str) -> None:
    path = models.build_checkpoint(preset, tmp_path / f"model{suffix}", seed=7)
    assert path == tmp_path / f"model{suffix}" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "model.config.json"])

    arch, cfg = models.resolve(preset)
    sidecar = json.loads((tmp_path / "model.config.json").read_text())
    assert sidecar == {"arch": arch.name, **cfg.to_dict()}

    if suffix == ".pt":
        state = torch.load(path, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(path))
    loaded = models.load_state_dict_model(sidecar["arch"], sidecar, state)
    from_file = models.load_checkpoint(path)
    reference = models.build_model(preset, seed=7)
    inputs = models.example_inputs(preset)
    with torch.no_grad():
        expected = reference(*inputs)
        torch.testing.assert_close(loaded(*inputs), expected, rtol=0, atol=0)
        torch.testing.assert_close(from_file(*inputs), expected, rtol=0, atol=0)


def test_tied_checkpoint_stores_shared_weight_once(tmp_path: Path) -> None:
    path = models.build_checkpoint("llama-tiny-tied", tmp_path / "tied.pt")
    assert "lm_head.weight" not in torch.load(path, weights_only=True)


def test_checkpoint_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.bin"):
        models.build_checkpoint("mlp-tiny", tmp_path / "model.bin")
    assert not any(tmp_path.iterdir())


def test_load_checkpoint_refuses_pickled_modules(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(models.build_model("mlp-tiny"), path)
    with pytest.raises(UntrustedInputError, match="whole.pt.*pickled"):
        models.load_checkpoint(path, "mlp-tiny")


def test_load_reports_missing_and_unexpected_keys() -> None:
    state = models.build_model("mlp-tiny").state_dict()
    missing = {k: v for k, v in state.items() if k != "head.bias"}
    with pytest.raises(InputError, match=r"missing keys: head\.bias"):
        models.load_state_dict_model("mlp-tiny", None, missing)
    extra = {**state, "head.scale": torch.ones(1)}
    with pytest.raises(InputError, match=r"unexpected keys: head\.scale"):
        models.load_state_dict_model("mlp-tiny", None, extra)


def test_load_reports_shape_mismatch_by_name() -> None:
    state = models.build_model("llama-tiny").state_dict()
    with pytest.raises(InputError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight \(checkpoint \(32, 64\), model \(64, 64\)\)"):
        models.load_state_dict_model("llama", {"num_key_value_heads": 4}, state)


def test_load_rejects_tied_config_for_untied_weights() -> None:
    state = models.build_model("llama-tiny").state_dict()
    with pytest.raises(InputError, match="ties them"):
        models.load_state_dict_model("llama-tiny-tied", None, state)
