"""Hugging Face checkpoint folders in: config.json + model.safetensors, or shards with their index,
as transformers' save_pretrained writes them, converted and checked against transformers itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bad_inputs import hf_llama_folder
from porttax import cli
from porttax._frameworks import import_torch
from porttax.sources.keras_source import load_keras_file

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


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def test_keras_goes_back_to_the_hugging_face_folder_it_came_from(tmp_path: Path) -> None:
    """bf16 Qwen2 (tied embeddings, q/k/v biases) → .keras → a folder again: the same keys (the tied head
    left out, as the checkpoint had it), the same bf16 bits, the same config, so transformers reads it;
    sharded when asked; `--dtype` widens; a kernel changed in Keras comes back transposed into place."""
    import keras
    import transformers

    folder, reference = _hf_family_folder(tmp_path, "qwen2")
    bf16 = tmp_path / "bf16"
    reference.to(torch.bfloat16).save_pretrained(bf16, safe_serialization=True)
    out = tmp_path / "qwen2.keras"
    assert cli.main(["convert", str(bf16), "-o", str(out), "-q", "--no-latency"]) == 0
    back = tmp_path / "back"
    assert cli.main(["convert", str(out), "--to", "safetensors", "-o", str(back), "-q", "--no-latency",
                     "--max-shard-size", "100KB"]) == 0
    assert (back / "model.safetensors.index.json").exists() and len(list(back.glob("*.safetensors"))) > 1
    original, returned = _tensors(bf16), _tensors(back)
    assert sorted(returned) == sorted(original) and "lm_head.weight" not in returned
    assert all(returned[k].dtype == torch.bfloat16 and torch.equal(returned[k], original[k]) for k in original)
    assert json.loads((back / "config.json").read_text()) == json.loads((bf16 / "config.json").read_text())
    ids = torch.from_numpy(np.random.default_rng(2).integers(0, 256, size=(1, 12)))
    with torch.no_grad():
        expected = transformers.AutoModelForCausalLM.from_pretrained(bf16)(ids).logits
        assert torch.equal(transformers.AutoModelForCausalLM.from_pretrained(back)(ids).logits, expected)

    # fine-tuned in Keras and saved by Keras (no porttax map inside): the original .keras names the places
    model = load_keras_file(out)
    layer = model.get_layer("model-layers-0-self_attn-q_proj")
    kernel = layer.kernel.numpy()
    kernel[3, 5] += 1.0  # kernel is weightᵀ: this is weight[5, 3]
    layer.kernel.assign(kernel)
    tuned = tmp_path / "tuned.keras"
    model.save(tuned)
    assert cli.main(["convert", str(tuned), "--to", "safetensors", "-o", str(tmp_path / "no-map"), "-q"]) == 2
    wide = tmp_path / "tuned_fp32"
    assert cli.main(["convert", str(tuned), "--to", "safetensors", "-o", str(wide), "-q", "--no-latency",
                     "--weight-map", str(out), "--dtype", "float32"]) == 0
    changed = _tensors(wide)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert all(t.dtype == torch.float32 for t in changed.values())
    assert json.loads((wide / "config.json").read_text())["dtype"] == "float32"
    diff = (changed[q] - original[q].float()).abs()
    assert diff[5, 3] == 1.0 and int((diff > 0).sum()) == 1
    assert all(torch.equal(changed[k], original[k].float()) for k in original if k != q)


@pytest.mark.parametrize("family", ["qwen2", "mistral-window"])
def test_savedmodel_generates_through_its_kv_cache_signature(family: str, tmp_path: Path) -> None:
    """A Llama-family SavedModel serves `logits` (input_ids, attention_mask) and `decode` (one token, a
    static KV cache), sharing one set of variables; read with plain TensorFlow, the logits signature
    matches transformers on left-padded rows, and a decode loop generates transformers' greedy tokens."""
    import tensorflow as tf

    from porttax.conversion import convert
    from porttax.targets.llm_signatures import check_generation

    folder, reference = _hf_family_folder(tmp_path, family)
    out = tmp_path / "sm"
    result = convert(str(folder), to="savedmodel", output=out, input_shapes=[(1, 24)], max_cache_len=48,
                     measure_latency=False)
    assert result.passed and result.generation["first_divergent_step"] is None, result.generation
    assert result.generation["steps"] == 16 and result.generation["worst_step_rel_l2"] <= 1e-5
    loaded = tf.saved_model.load(str(out))
    assert {"serving_default", "logits", "decode"} <= set(loaded.signatures)
    # one set of variables for every signature: each weight saved once
    assert len({id(v) for v in loaded.variables}) == len(result.keras_model.weights)
    weights = sum(int(np.prod(w.shape)) * 4 for w in result.keras_model.weights)
    assert sum(f.stat().st_size for f in (out / "variables").glob("variables.data*")) <= 1.05 * weights

    ids = np.random.default_rng(3).integers(0, 256, size=(1, 24))
    mask = np.ones((1, 24), dtype=np.int64)
    mask[:, :5] = 0  # left padding
    got = loaded.signatures["logits"](input_ids=tf.constant(ids), attention_mask=tf.constant(mask))["logits"].numpy()
    with torch.no_grad():
        want = reference(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    real = mask[0].astype(bool)
    rel = np.linalg.norm(got[:, real] - want[:, real]) / np.linalg.norm(want[:, real])
    assert rel <= 1e-5, rel

    # the decode loop by hand, plain TF: prompt one token at a time, then 12 greedy tokens
    decode = loaded.signatures["decode"]
    shape = decode.structured_input_signature[1]["past_keys"].shape.as_list()
    assert shape[3] == 48
    keys = values = tf.zeros(shape)
    tokens = list(ids[0, :8])
    for t in range(8 + 12 - 1):
        step = decode(input_ids=tf.constant([[tokens[t]]], dtype=tf.int64), attention_mask=tf.ones((1, 48), tf.int64),
                      cache_position=tf.constant([t], dtype=tf.int64), past_keys=keys, past_values=values)
        keys, values = step["present_keys"], step["present_values"]
        if t >= 7:
            tokens.append(int(np.argmax(step["logits"].numpy()[0, 0])))
    with torch.no_grad():
        expected = reference.generate(torch.from_numpy(ids[:, :8]), max_new_tokens=12, do_sample=False,
                                      attention_mask=torch.ones((1, 8), dtype=torch.int64))
    assert tokens[8:] == expected[0, 8:].tolist()
    assert len(set(tokens[8:])) > 3

    # a planted fault: the same SavedModel against a source whose one projection differs is caught
    module = result.source.module
    with torch.no_grad():
        module.model.layers[1].self_attn.v_proj.weight.mul_(1.5)
    assert not check_generation(out, module)["passed"]


def test_bf16_checkpoint_to_a_bf16_savedmodel_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--dtype bfloat16`: a bf16 checkpoint, streamed, becomes a SavedModel whose variables are the
    checkpoint's own bf16 bits (half the float32 size), checked under the bf16 profile, generation included."""
    import tensorflow as tf

    from safetensors.torch import save_file

    from porttax import models

    monkeypatch.setenv("PORTTAX_STREAM", "1")
    # porttax's llama-tiny preset (its own init; the 4x-widened family models above drift 1.5e-2 between
    # two bf16 implementations, past the bf16 profile, as torch bf16 drifts 2.9e-2 from its own fp32)
    bf16 = tmp_path / "bf16"
    bf16.mkdir()
    model = models.build_model("llama-tiny")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}, bf16 / "model.safetensors")
    (bf16 / "config.json").write_text(json.dumps({"model_type": "llama", **model.config.to_dict()}))
    out = tmp_path / "sm"
    assert cli.main(["convert", str(bf16), "--input-shape", "1,24", "-o", str(out), "--dtype", "bfloat16",
                     "--max-cache-len", "40", "-q", "--no-latency", "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["source_streamed"] and report["parity"]["profile"]["name"] == "bf16"
    assert report["generation"]["passed"] and report["generation"]["steps"] == 16
    loaded = tf.saved_model.load(str(out))
    stored = _tensors(bf16)
    variables = {v.name.split(":")[0]: v for v in loaded.variables}
    assert {v.dtype for v in variables.values()} == {tf.bfloat16}
    kernel = variables["model-layers-0-self_attn-q_proj/kernel"].numpy()
    assert np.array_equal(kernel.view(np.uint16).T, stored["model.layers.0.self_attn.q_proj.weight"].view(torch.uint16).numpy())
    weights = sum(t.numel() * 2 for t in stored.values())
    assert sum(f.stat().st_size for f in (out / "variables").glob("variables.data*")) <= 1.05 * weights


def test_parity_reads_a_hugging_face_folder_and_generates_on_another_keras_backend(tmp_path: Path) -> None:
    """`porttax parity HF_DIR model.keras --backend torch --generate N` (on a GPU session, `--device cuda`
    too): the folder is the source, the .keras runs on Keras' torch backend in one worker process that
    serves every decoding step, and greedy tokens agree."""
    from porttax.parity.worker import WorkerRunner

    folder, _ = _hf_family_folder(tmp_path, "qwen2")
    out, report_file = tmp_path / "q.keras", tmp_path / "r.json"
    assert cli.main(["convert", str(folder), "--input-shape", "1,24", "-o", str(out), "-q", "--no-latency"]) == 0
    assert cli.main(["parity", str(folder), str(out), "--input-shape", "1,24", "--backend", "torch",
                     "--generate", "12", "--seeds", "1", "-q", "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["converted"] == "keras:q.keras@torch/cpu"
    assert report["environment"]["runtimes"]["converted"]["backend"] == "torch"
    assert report["generation"]["steps"] == 12 and report["generation"]["first_divergent_step"] is None
    assert report["worst_rel_l2"] <= 1e-5

    runner = WorkerRunner(out, ["input_ids"], "torch")
    ids = {"input_ids": np.zeros((1, 24), dtype=np.int64)}
    first = runner.run(ids)
    pid = runner._worker.proc.pid
    assert np.array_equal(runner.run(ids)[0], first[0]) and runner._worker.proc.pid == pid  # one process
    runner.close()
