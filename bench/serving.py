"""Serving an LLM SavedModel: prefill of a prompt and per-token decode, against transformers, one run.

    .venv/bin/python bench/serving.py                 # TinyLlama's shape (1.1B parameters, random weights)
    .venv/bin/python bench/serving.py --shape tiny    # the llama-tiny preset's shape, a quick check

A Llama of the chosen shape is built with transformers (seeded random weights), saved as a Hugging Face
folder and converted by porttax with default options (open batch and sequence; parity skipped: the test
suite proves it). Then, in this process and on the same inputs:
- the SavedModel's `prefill` of a `--prompt`-token prompt (batch 1), and its `decode` step at batch 1
  and 4, with the cache at `--slots` slots;
- transformers' eager model with its StaticCache of the same length: the prompt in one forward, then
  one token per forward (the cache rewound before each timed step, so every step writes one slot).
Each is timed in alternating blocks and reported as a median, with the ratio SavedModel / transformers
and the thread counts both runtimes used. Only the ratios mean anything across machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from porttax._frameworks import import_tf, import_torch  # noqa: E402

SHAPES = {
    # TinyLlama-1.1B's config, with random weights (no model hub is reachable)
    "tinyllama": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048),
    "tiny": dict(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256),
}


def rewind(cache, length: int) -> None:  # noqa: ANN001  (a transformers StaticCache)
    """Set a StaticCache back to `length` tokens: transformers 5 writes at its own running count and
    ignores `cache_position`, so a timed step repeated would walk off the end of the cache."""
    for layer in cache.layers:
        if getattr(layer, "is_initialized", False):
            layer.cumulative_length.fill_(length)


def median_ms(fn, seconds: float) -> float:
    fn()  # warm-up: tracing, XLA, allocator
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tinyllama")
    ap.add_argument("--prompt", type=int, default=128, help="prefill length (default 128)")
    ap.add_argument("--slots", type=int, default=256, help="KV cache slots, both sides (default 256)")
    ap.add_argument("--seconds", type=float, default=10.0, help="timing budget per measurement")
    args = ap.parse_args()

    import numpy as np
    import transformers

    from porttax import convert

    torch = import_torch()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**SHAPES[args.shape])
    hf = transformers.LlamaForCausalLM(config).eval()
    with tempfile.TemporaryDirectory(prefix="porttax-serving-") as scratch:
        folder, out = Path(scratch) / "hf", Path(scratch) / "sm"
        hf.save_pretrained(folder, safe_serialization=True)
        t0 = time.perf_counter()
        result = convert(str(folder), to="savedmodel", output=out, parity=False, measure_latency=False,
                         max_cache_len=args.slots)
        convert_s = time.perf_counter() - t0
        tf = import_tf()
        saved = tf.saved_model.load(str(out))
        prefill, decode = saved.signatures["prefill"], saved.signatures["decode"]
        rng = np.random.default_rng(0)
        rows: list[tuple[str, float, float]] = []

        ids = rng.integers(0, config.vocab_size, size=(1, args.prompt)).astype(np.int64)
        mask = np.ones_like(ids)
        tf_ids, tf_mask = tf.constant(ids), tf.constant(mask)
        ours = median_ms(lambda: prefill(input_ids=tf_ids, attention_mask=tf_mask), args.seconds)

        prompt_cache = transformers.StaticCache(config=config, max_cache_len=args.slots)

        def hf_prefill() -> None:
            rewind(prompt_cache, 0)
            with torch.no_grad():
                hf(torch.from_numpy(ids), past_key_values=prompt_cache, use_cache=True)

        rows.append((f"prefill {args.prompt} tokens, batch 1", ours, median_ms(hf_prefill, args.seconds)))

        for batch in (1, 4):
            ids = rng.integers(0, config.vocab_size, size=(batch, args.prompt)).astype(np.int64)
            mask = np.ones_like(ids)
            out_tf = prefill(input_ids=tf.constant(ids), attention_mask=tf.constant(mask))
            keys, values = out_tf["present_keys"], out_tf["present_values"]
            slot_mask = np.zeros((batch, args.slots), dtype=np.int64)
            slot_mask[:, : args.prompt + 1] = 1
            step = dict(input_ids=tf.constant(ids[:, :1]), attention_mask=tf.constant(slot_mask),
                        cache_position=tf.constant(np.full((batch,), args.prompt, dtype=np.int64)),
                        past_keys=keys, past_values=values)
            ours = median_ms(lambda: decode(**step), args.seconds)

            cache = transformers.StaticCache(config=config, max_cache_len=args.slots)
            with torch.no_grad():
                hf(torch.from_numpy(ids), past_key_values=cache, use_cache=True)
            token = torch.from_numpy(ids[:, :1])

            def hf_step() -> None:
                rewind(cache, args.prompt)  # every timed step writes the same slot, as ours does
                with torch.no_grad():
                    hf(token, past_key_values=cache, use_cache=True)

            rows.append((f"decode one token, batch {batch}", ours, median_ms(hf_step, args.seconds)))

    threads = (f"torch {torch.get_num_threads()} intra-op threads; TensorFlow intra-op "
               f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default (all cores)'}, "
               f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default'}; "
               f"{os.cpu_count()} CPUs")
    params = sum(p.numel() for p in hf.parameters())
    print(f"Llama of {args.shape} shape ({params / 1e6:.1f}M parameters, random weights), cache {args.slots} slots; "
          f"converted with default options in {convert_s:.0f} s (porttax {result.tax.layers_mapped} layers)")
    print(threads)
    print("| step | SavedModel (ms) | transformers eager, StaticCache (ms) | ratio |")
    print("| --- | --- | --- | --- |")
    for name, ours, theirs in rows:
        print(f"| {name} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
