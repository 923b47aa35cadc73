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
