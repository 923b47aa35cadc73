"""LLM parity beyond one forward pass: greedy decoding on both sides from the same prompt.

One forward pass at 1e-6 drift can still flip an argmax a few tokens later, and a generation that
wanders is what a user sees. Each side decodes from its *own* previous tokens, so the first step where
the streams part is exactly where the port changes what the model says.

Converted models have a fixed sequence length, so decoding works in a fixed window: the prompt sits at
the start, the rest is padding, and the logits at position t (which a causal model computes from
positions ≤ t only) pick token t+1. No KV cache is needed on either side.

Where the streams part, the float64 reference (when one ran) says whether that is a fault or a tie:
if the source's own logits for its token and the converted model's token differ by no more than the
noise factor times the source's own error there, the source itself cannot tell the two apart, and a
port that picks the other one has not changed what the model says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from porttax.errors import InputError
from porttax.parity.inputs import make_inputs
from porttax.parity.report import GenerationResult
from porttax.parity.runners import Runner
from porttax.types import TensorSpec


def token_input(specs: Sequence[TensorSpec]) -> TensorSpec:
    """The token-id input: the integer input with a vocabulary range (from the embedding it feeds)."""
    candidates = [s for s in specs if s.is_integer and s.dtype != "bool" and len(s.shape) == 2]
    with_vocab = [s for s in candidates if s.value_range and s.value_range[1] > 2]
    chosen = with_vocab or candidates
    if not chosen:
        raise InputError("greedy decoding needs a (batch, seq) integer token-id input; the signature has "
                         + ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in specs))
    return chosen[0]


def greedy_decode(
    source: Runner,
    converted: Runner,
    specs: Sequence[TensorSpec],
    steps: int,
    *,
    prompt_length: int | None = None,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    pad_id: int = 0,
    reference: Runner | None = None,
    noise_factor: float = 4.0,
) -> GenerationResult:
    """Decode `steps` tokens greedily on both sides; the logits are the first output, (batch, seq, vocab).
    With a float64 `reference` of the source, a first divergence at a near-tie (see above) passes."""
    tok = token_input(specs)
    inputs = make_inputs(specs, seed, dict(sizes or {}))
    window = inputs[tok.name].shape[1]
    prompt = prompt_length if prompt_length is not None else max(1, window - steps)
    if steps < 1 or prompt < 1 or prompt + steps > window:
        raise InputError(f"cannot decode {steps} step(s) after a {prompt}-token prompt in a window of {window} "
                         f"tokens (input {tok.name!r})", hint=f"use --generate {max(1, window - 1)} or fewer")
    streams = {}
    for side, runner in (("source", source), ("converted", converted)):
        ids = inputs[tok.name].copy()
        ids[:, prompt:] = pad_id
        for t in range(prompt, prompt + steps):
            logits = runner.run({**inputs, tok.name: ids})[0]
            if logits.ndim != 3 or logits.shape[:2] != ids.shape:
                raise InputError(f"{runner.describe()}: first output has shape {list(logits.shape)}, expected logits "
                                 f"(batch, seq, vocab) = ({ids.shape[0]}, {ids.shape[1]}, vocab)")
            ids[:, t] = np.argmax(logits[:, t - 1, :], axis=-1).astype(ids.dtype)
        streams[side] = ids[:, prompt:prompt + steps]
    src, conv = streams["source"], streams["converted"]
    differs = np.nonzero(np.any(src != conv, axis=0))[0]
    result = GenerationResult(steps, prompt, src.tolist(), conv.tolist(), int(differs[0]) if differs.size else None)
    if differs.size and reference is not None:
        result.tie = _tie(source, reference, inputs, tok.name, prompt, src, conv, int(differs[0]), pad_id,
                          noise_factor)
    return result


def _tie(source: Runner, reference: Runner, inputs: Mapping[str, np.ndarray], name: str, prompt: int,
         src: np.ndarray, conv: np.ndarray, step: int, pad_id: int, factor: float) -> str | None:
    """Why the first divergence is a near-tie the source cannot resolve itself, or None if it is not."""
    ids = np.asarray(inputs[name]).copy()
    ids[:, prompt:] = pad_id
    ids[:, prompt:prompt + step] = src[:, :step]  # the common prefix: both streams agree up to `step`
    t = prompt + step - 1
    logits = source.run({**inputs, name: ids})[0][:, t, :].astype(np.float64)
    exact = reference.run({**inputs, name: ids})[0][:, t, :].astype(np.float64)
    notes = []
    for row in np.nonzero(src[:, step] != conv[:, step])[0]:
        a, b = int(src[row, step]), int(conv[row, step])
        gap = float(logits[row, a] - logits[row, b])
        noise = float(np.max(np.abs(logits[row] - exact[row])))
        if gap > factor * noise:
            return None
        notes.append(f"row {row}: logit gap {gap:.3g} between tokens {a} and {b} <= {factor:g}x the source's own "
                     f"error {noise:.3g}")
    return "a near-tie the source itself cannot resolve (" + "; ".join(notes) + ")"
