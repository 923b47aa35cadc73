"""Hugging Face checkpoint folders in: config.json + model.safetensors, or shards with their index,
as transformers' save_pretrained writes them, converted and checked against transformers itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bad_inputs import hf_llama_folder
from porttax import cli
from porttax._frameworks import import_torch
from porttax.keras_loading import load_keras_file

torch = import_torch()


@pytest.mark.parametrize("shard_size", ["100KB", "10MB"], ids=["sharded", "single-file"])
def test_hf_folder_converts_and_matches_transformers(shard_size: str, tmp_path: Path) -> None:
    from transformers import LlamaForCausalLM

    folder = hf_llama_folder(tmp_path, shard_size)
    assert ((folder / "model.safetensors.index.json").exists()) == (shard_size == "100KB")
    out = tmp_path / "llama.keras"
    assert cli.main(["convert", str(folder), "-o", str(out), "-q", "--no-latency"]) == 0
    ids = np.random.default_rng(0).integers(0, 256, size=(1, 16))  # the example length a checkpoint converts at
    with torch.no_grad():
        expected = LlamaForCausalLM.from_pretrained(folder).eval()(torch.from_numpy(ids)).logits.numpy()
    got = np.asarray(load_keras_file(out)(ids.astype("int64")))
    rel = np.linalg.norm(got.astype(np.float64) - expected) / np.linalg.norm(expected)
    assert rel <= 1e-5, rel


# Llama 3.1-style rope scaling, Mistral's sliding window (shorter than the sequence, so it masks), Qwen2's
# q/k/v biases: each a config variant of the one llama architecture, checked against transformers' own class.
FAMILIES = {
    "llama3-rope": ("LlamaConfig", "LlamaForCausalLM", {"rope_parameters": {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}),
    "mistral-window": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 8}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": True}),
}
WINDOW = 40  # converted at this sequence length: an 8-token prompt and 32 greedy steps fit


def _hf_family_folder(root: Path, family: str) -> tuple[Path, object]:
    import transformers

    config_name, model_name, extra = FAMILIES[family]
    torch.manual_seed(7)
    config = getattr(transformers, config_name)(
        vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, **extra)
    model = getattr(transformers, model_name)(config).eval()
    with torch.no_grad():  # transformers' init (std 0.02) gives near-uniform logits; widen them so tokens differ
        for p in model.parameters():
            p.mul_(4.0)
    folder = root / family
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="100KB")
    return folder, model


class _Logits(torch.nn.Module):
    """A transformers model as a plain input_ids -> logits module, for the parity suite's runners."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids).logits


FORMS = ["hf-folder", "state-dict", "pt2", "pickle"]


def _source_in_form(form: str, folder: Path, reference: torch.nn.Module, tmp_path: Path) -> list[str]:
    """The CLI arguments that name the same model in one of the input forms porttax reads."""
    shape = ["--input-shape", f"1,{WINDOW}"]
    if form == "hf-folder":
        return [str(folder), *shape]
    if form == "state-dict":  # a plain torch.save'd state_dict, with the folder's config.json as --config
        torch.save(reference.state_dict(), tmp_path / "weights.pt")
        return [str(tmp_path / "weights.pt"), "--arch", "llama", "--config", str(folder / "config.json"), *shape]
    if form == "pt2":  # transformers' own modelling code, captured by torch.export
        ids = torch.zeros((1, WINDOW), dtype=torch.int64)
        torch.export.save(torch.export.export(_Logits(reference).eval(), (ids,)), str(tmp_path / "model.pt2"))
        return [str(tmp_path / "model.pt2")]
    torch.save(_Logits(reference), tmp_path / "model.pth")  # a whole pickled module
    return [str(tmp_path / "model.pth"), "--trust-pickle", *shape, "--input-dtype", "int64"]


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_llama_family_matches_transformers_and_generates_the_same_tokens(family: str, form: str,
                                                                        tmp_path: Path) -> None:
    from porttax.parity import KerasRunner, TorchRunner
    from porttax.parity.generate import greedy_decode
    from porttax.types import TensorSpec

    folder, reference = _hf_family_folder(tmp_path, family)
    out = tmp_path / f"{family}.keras"
    source = _source_in_form(form, folder, reference, tmp_path)
    assert cli.main(["convert", *source, "-o", str(out), "-q", "--no-latency"]) == 0
    keras_model = load_keras_file(out)
    ids = np.random.default_rng(1).integers(0, 256, size=(1, WINDOW))
    with torch.no_grad():
        expected = reference(torch.from_numpy(ids)).logits.numpy().astype(np.float64)
    got = np.asarray(keras_model(ids.astype("int64")), dtype=np.float64)
    rel = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert rel <= 1e-5, rel

    specs = [TensorSpec("input_ids", (1, WINDOW), "int64", (0, 256))]
    result = greedy_decode(TorchRunner(_Logits(reference), ["input_ids"], name=family),
                           KerasRunner(keras_model, compiled=True), specs, steps=32, prompt_length=8)
    assert result.steps == 32 and result.first_divergent_step is None, (result.source_tokens, result.converted_tokens)
    assert len(set(result.source_tokens[0])) > 3  # a real sequence, not one token repeated
