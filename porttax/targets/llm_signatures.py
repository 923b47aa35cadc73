"""Generation signatures for a Llama-family SavedModel: `logits` (input_ids, attention_mask), `prefill`
(a whole prompt into a KV cache) and `decode` (one step with that cache), so TF Serving (or any TF
program) can generate.

`serving_default` is one full pass. A client generating with it recomputes every position for every
new token; `prefill` takes a batch of prompts (batch, seq; right-padded, `attention_mask` 0 on the
padding) and returns the logits at each row's last token and the caches (layers, batch, kv_heads,
max_len, head_dim) filled up to seq, in one call; `decode` takes one token per row, each row's own
`cache_position` (batch,), the caches and a mask over the cache slots, and returns the logits and the
updated caches. The cache is static (max_len slots, like transformers' StaticCache) and no op
scatters by a data-dependent index: the new keys are blended into their slot. Batch and prompt length
stay open where the source was captured open (porttax.converters.torch_to_keras.symbolic).

They come from porttax's own Llama module (models/llama.py), exported once per entry point and
converted with the layers of the main conversion reused, so the three signatures share one set of
variables: the SavedModel holds each weight once. A checkpoint porttax reads through an architecture
(a Hugging Face folder, a state_dict with --arch llama, Mistral and Qwen2 configs) gets them; a `.pt2`
of someone else's module does not (its code is not porttax's to re-enter).

`check_batched_generation` proves prefill + decode on prompts of different lengths decoding together;
`check_generation` proves the result: greedy tokens from the SavedModel's decode loop against the
source module decoding without a cache, with per-step logits drift.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from porttax.progress import QUIET, Progress

LOGITS, DECODE, PREFILL = "logits", "decode", "prefill"
# a cached step sums attention over the cache in another order than a full pass: in float32 the two
# differ by ~1e-6 relative (torch against itself); a wrong position or a stale slot is orders above
STEP_TOLERANCE = 1e-4
DECODE_OUTPUTS = ("logits", "present_keys", "present_values")
BATCH_PROMPTS = (5, 9, 17)  # prompt lengths of the batched prefill + decode check: rows at different positions


def llama_module(src: Any) -> Any | None:
    """The source's porttax Llama module, if that is what it is (any Llama-family config)."""
    from porttax.models.llama import LlamaForCausalLM

    module = getattr(src, "module", None)
    return module if isinstance(module, LlamaForCausalLM) else None


def default_cache_len(module: Any, seq: int) -> int:
    """Cache slots: the model's context, capped at 4096 (the decode signature's shapes are fixed)."""
    return max(seq, min(int(module.config.max_position_embeddings), 4096))


def build_endpoints(src: Any, model: Any, *, max_cache_len: int | None = None,
                    progress: Progress = QUIET) -> dict[str, Any]:
    """Keras models for the `logits` and `decode` signatures, sharing `model`'s layers."""
    from porttax._frameworks import import_keras, import_torch
    from porttax.converters.torch_to_keras.driver import convert_exported_program
    from porttax.errors import InputError

    torch = import_torch()
    keras = import_keras()
    module = llama_module(src)
    if module is None:
        return {}
    batch, seq = (int(d) for d in src.example[0].shape)
    slots = max_cache_len or default_cache_len(module, seq)
    if slots > module.config.max_position_embeddings:
        raise InputError(f"--max-cache-len {slots} is longer than the model's max_position_embeddings "
                         f"({module.config.max_position_embeddings})")
    shared = {layer.name: layer for layer in model.layers if layer.weights}
    dtype = getattr(torch, getattr(src, "float_dtype", "float32"))
    if any(p.dtype != dtype for p in module.parameters() if p.is_floating_point()):
        import copy  # a half-precision conversion: cache inputs and outputs in that dtype too

        module = copy.deepcopy(module).to(dtype)
    ids = torch.zeros((batch, seq), dtype=torch.int64)
    mask = torch.ones((batch, seq), dtype=torch.int64)
    keys, values = module.empty_cache(batch, slots, dtype)
    examples = {
        LOGITS: {"input_ids": ids, "attention_mask": mask},
        DECODE: {"input_ids": ids[:, :1], "attention_mask": torch.ones((batch, slots), dtype=torch.int64),
                 "cache_position": torch.zeros((batch,), dtype=torch.int64), "past_keys": keys, "past_values": values},
        PREFILL: {"input_ids": ids, "attention_mask": mask, "prefill_slots": slots},
    }
    # the axes each signature keeps open when the source was captured open: batch and prompt length
    # for logits, batch for decode (its cache slots are fixed)
    opened = any(isinstance(d, str) for s in src.specs for d in s.shape)
    auto = torch.export.Dim.AUTO
    open_axes = {
        LOGITS: {"input_ids": {0: auto, 1: auto}, "attention_mask": {0: auto, 1: auto}},
        DECODE: {"input_ids": {0: auto}, "attention_mask": {0: auto}, "cache_position": {0: auto},
                 "past_keys": {1: auto}, "past_values": {1: auto}},
        PREFILL: {"input_ids": {0: auto, 1: auto}, "attention_mask": {0: auto, 1: auto}, "prefill_slots": None},
    }
    endpoints = {}
    for name, kwargs in examples.items():
        progress.stage(f"adding the {name!r} signature ({', '.join(k for k, v in kwargs.items() if torch.is_tensor(v))})")
        built = None
        if opened:
            try:
                with torch.no_grad():
                    program = torch.export.export(module, (), kwargs=kwargs, dynamic_shapes=open_axes[name],
                                                  strict=False)
                built = convert_exported_program(program, name=f"{src.name}_{name}", reuse=shared)
            except Exception as exc:  # torch raises many types; the signature is then built at fixed sizes
                progress.stage(f"the {name!r} signature keeps fixed sizes: {str(exc).strip().splitlines()[0][:200]}")
        if built is None:
            with torch.no_grad():
                program = torch.export.export(module, (), kwargs=kwargs, strict=False)
            built = convert_exported_program(program, name=f"{src.name}_{name}", reuse=shared)
        outputs = built.model.outputs
        if name in (DECODE, PREFILL):
            # the caches come back in the dtype they go in, whatever the graph promoted them to, so a
            # client can feed them straight back
            cache_dtype = str(keys.dtype).removeprefix("torch.")
            outputs = [outputs[0]] + [keras.ops.cast(o, cache_dtype) for o in outputs[1:]]
            outputs = dict(zip(DECODE_OUTPUTS, outputs))
        else:
            outputs = {"logits": outputs[0]}
        endpoints[name] = keras.Model(built.model.inputs, outputs, name=f"{src.name}_{name}")
    return endpoints


def step_tolerance(profile: str) -> float:
    """A decode step's drift bound: the cache's own reordering, or the profile's when that is looser
    (bf16, fp16)."""
    from porttax.parity.profiles import get_profile

    chosen = get_profile(profile)
    return max(STEP_TOLERANCE, chosen.threshold) if chosen.stat == "rel_l2" else STEP_TOLERANCE


def check_generation(saved: Any, module: Any, *, steps: int = 16, prompt_length: int = 8,
                     seed: int = 0, tolerance: float = STEP_TOLERANCE) -> dict[str, Any]:
    """Greedy decoding from one seeded prompt: the SavedModel's `decode` loop (prompt fed one token at a
    time, then its own tokens) against the source module recomputing every position without a cache.
    `saved` is a SavedModel path, or one already loaded (parity's runner holds it: no second copy).

    Returns the token streams, the first step where they part, and the worst per-step logits drift
    ‖a−b‖/‖b‖ (in float64) over prompt and generated positions."""
    from porttax._frameworks import import_tf, import_torch

    torch = import_torch()
    tf = import_tf()
    loaded = saved if hasattr(saved, "signatures") else tf.saved_model.load(str(saved))
    fn = loaded.signatures[DECODE]
    specs = fn.structured_input_signature[1]
    batch = specs["input_ids"].shape.as_list()[0] or 2  # an open batch: decode two rows together
    rows = specs["cache_position"].shape.as_list()[0] or batch  # one position per row (or (1,) for all)
    cache_shape = specs["past_keys"].shape.as_list()
    cache_shape[1] = batch
    slots = cache_shape[3]
    steps = min(steps, slots - prompt_length)
    vocab = int(module.config.vocab_size)
    prompt = np.random.default_rng(seed).integers(0, vocab, size=(batch, prompt_length))

    ids = torch.from_numpy(prompt)
    expected_logits = []
    with torch.no_grad():
        for _ in range(steps):
            logits = module(ids).float().numpy()
            expected_logits.append(logits)
            ids = torch.cat([ids, torch.from_numpy(logits[:, -1].argmax(-1))[:, None]], dim=1)
    source_tokens = ids[:, prompt_length:].numpy()
    exact = _float64_logits(module, ids)  # the source's own error per position, as parity judges it
    from porttax.parity.profiles import NOISE_FACTOR

    keys = np.zeros(cache_shape, dtype=specs["past_keys"].dtype.as_numpy_dtype)
    values = np.zeros_like(keys)
    mask = np.ones((batch, slots), dtype=np.int64)
    tokens = prompt.copy()
    worst, worst_ratio, over = 0.0, 0.0, []
    for t in range(prompt_length + steps - 1):
        out = fn(input_ids=tf.constant(tokens[:, t:t + 1]), attention_mask=tf.constant(mask),
                 cache_position=tf.constant(np.full((rows,), t, dtype=np.int64)), past_keys=tf.constant(keys),
                 past_values=tf.constant(values))
        keys, values = out["present_keys"].numpy(), out["present_values"].numpy()
        got = out["logits"].numpy()[:, 0].astype(np.float32).astype(np.float64)
        step = max(0, t - prompt_length + 1)
        want = expected_logits[step][:, t].astype(np.float64)
        drift = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
        worst = max(worst, drift)
        if exact is not None and t < exact.shape[1] and np.array_equal(tokens[:, :t + 1], ids[:, :t + 1].numpy()):
            ref = exact[:, t]
            own = float(np.linalg.norm(want - ref) / max(np.linalg.norm(ref), 1e-30))
            err = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
            worst_ratio = max(worst_ratio, err / own if own > 0 else 0.0)
            if err > max(tolerance, NOISE_FACTOR * own):
                over.append(t)
        elif drift > tolerance:
            over.append(t)
        if t >= prompt_length - 1:
            tokens = np.concatenate([tokens, got.argmax(-1)[:, None].astype(np.int64)], axis=1)
    converted_tokens = tokens[:, prompt_length:]
    differs = np.nonzero(np.any(source_tokens != converted_tokens, axis=0))[0]
    first = int(differs[0]) if differs.size else None
    return {"signature": DECODE, "passed": first is None and not over, "tolerance": tolerance,
            "rule": f"each step within max({tolerance:g}, {NOISE_FACTOR:g}x the source's own error against float64)"
                    if exact is not None else f"each step within {tolerance:g} of the source (no float64 reference)",
            "steps_over": over, "worst_step_ratio": worst_ratio if exact is not None else None,
            "steps": steps, "prompt_length": prompt_length, "cache_slots": slots,
            "source": "the source module, no cache (every position recomputed)",
            "first_divergent_step": first,
            "agreement": float(np.mean(source_tokens == converted_tokens)),
            "worst_step_rel_l2": worst, "source_tokens": source_tokens.tolist(),
            "converted_tokens": converted_tokens.tolist()}


def check_batched_generation(saved: Any, module: Any, *, lengths: tuple[int, ...] = BATCH_PROMPTS,
                             steps: int = 8, seed: int = 1) -> dict[str, Any]:
    """Greedy decoding of a batch of prompts of different `lengths` through `prefill` (one call for the
    whole right-padded batch) and then `decode` (every row at its own position), against the source
    decoding each prompt alone without a cache. Passes when every token agrees."""
    from porttax._frameworks import import_tf, import_torch

    torch = import_torch()
    tf = import_tf()
    loaded = saved if hasattr(saved, "signatures") else tf.saved_model.load(str(saved))
    prefill, decode = loaded.signatures[PREFILL], loaded.signatures[DECODE]
    slots = decode.structured_input_signature[1]["past_keys"].shape.as_list()[3]
    rows, fixed_width = prefill.structured_input_signature[1]["input_ids"].shape.as_list()
    if rows is not None or fixed_width is not None:  # a --static SavedModel: prompts that fit its shapes
        rows = rows or len(lengths)
        fixed_width = fixed_width or max(lengths)
        lengths = tuple(max(1, round(fixed_width * (i + 1) / rows)) for i in range(rows))
    width = fixed_width or max(lengths)
    vocab = int(module.config.vocab_size)
    ids = np.random.default_rng(seed).integers(0, vocab, size=(len(lengths), width)).astype(np.int64)
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    steps = min(steps, slots - width)
    expected = []
    with torch.no_grad():
        for row, n in enumerate(lengths):
            x = torch.from_numpy(ids[row:row + 1, :n])
            for _ in range(steps):
                x = torch.cat([x, module(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
            expected.append(x[0, n:].tolist())
    out = prefill(input_ids=tf.constant(ids), attention_mask=tf.constant(mask))
    keys, values = out["present_keys"], out["present_values"]
    tokens = out["logits"].numpy().argmax(-1)
    got = [[int(t)] for t in tokens]
    cache_mask = np.zeros((len(lengths), slots), dtype=np.int64)
    cache_mask[:, :width] = mask
    position = np.array(lengths, dtype=np.int64)
    for _ in range(steps - 1):
        cache_mask[np.arange(len(lengths)), position] = 1
        out = decode(input_ids=tf.constant(tokens[:, None].astype(np.int64)), attention_mask=tf.constant(cache_mask),
                     cache_position=tf.constant(position), past_keys=keys, past_values=values)
        keys, values = out["present_keys"], out["present_values"]
        tokens = out["logits"].numpy()[:, 0].argmax(-1)
        position = position + 1
        for row, t in enumerate(tokens):
            got[row].append(int(t))
    agree = [g == e for g, e in zip(got, expected)]
    return {"signature": f"{PREFILL} + {DECODE}", "passed": all(agree), "prompt_lengths": list(lengths),
            "steps": steps, "rows_agreeing": int(sum(agree)), "source_tokens": expected, "converted_tokens": got}


def _float64_logits(module: Any, ids: Any) -> np.ndarray | None:
    """The source's logits over the whole stream in float64, or None where it cannot run widened."""
    from porttax._frameworks import import_torch
    from porttax.parity.reference import ReferenceUnavailable, default_dtype_float64, widen_torch_module

    torch = import_torch()
    try:
        wide = widen_torch_module(module)
        with torch.no_grad(), default_dtype_float64():
            return wide(ids).double().numpy()
    except (ReferenceUnavailable, RuntimeError, TypeError):  # a module with fixed float32 inside
        return None


def summary_line(generation: dict[str, Any]) -> str:
    verdict = "PASS" if generation["passed"] else "FAIL"
    where = ("every token agreed" if generation["first_divergent_step"] is None
             else f"first divergent step {generation['first_divergent_step']}")
    line = (f"{verdict} [generation] {generation['steps']} greedy tokens through 'decode' (KV cache, "
            f"{generation['cache_slots']} slots) vs the source without a cache: {where}; worst step "
            f"‖a−b‖/‖b‖ {generation['worst_step_rel_l2']:.2e}; {generation.get('rule', '')}")
    batched = generation.get("batched")
    if batched:
        line += (f"\n{'PASS' if batched['passed'] else 'FAIL'} [generation] prompts of "
                 f"{', '.join(map(str, batched['prompt_lengths']))} tokens through 'prefill' + 'decode' together: "
                 f"{batched['rows_agreeing']}/{len(batched['prompt_lengths'])} rows agree token for token "
                 f"over {batched['steps']} steps")
    return line
