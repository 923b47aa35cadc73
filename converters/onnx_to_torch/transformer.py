"""The transformer ops recent opsets define as single nodes: RMSNormalization (→ nn.RMSNorm),
RotaryEmbedding and Attention (→ the computation the ONNX spec defines, in torch ops).

Attention covers self and cross attention in the 3-D and 4-D layouts, MHA/GQA/MQA head counts, bool
or float masks, `is_causal` aligned after the cached keys, the KV-cache inputs and outputs (past/present,
nonpad_kv_seqlen), soft-capping, sliding windows, softmax_precision and every qk_matmul_output mode.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall
from porttax.converters.onnx_to_torch.layers import _module, _param


@onnx_to_torch("RMSNormalization", since=23)
def rms_norm(call: OnnxCall):
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static input shape")
    axis = int(call.attrs.get("axis", -1)) % len(shape)
    normalized = tuple(shape[axis:])
    layer = nn.RMSNorm(normalized, eps=float(call.attrs.get("epsilon", 1e-5)))
    layer.weight = _param(np.broadcast_to(call.const(1), normalized).copy())
    return _module(call, layer, 1, "rms_norm", call.value(0))


def rotary_embedding(x, cos_cache, sin_cache, position_ids, interleaved: bool, rotary_dim: int, num_heads: int):
    """ONNX RotaryEmbedding (opset 23), written in torch the way the spec's reference writes it."""
    original = x.shape
    if x.dim() == 4:
        x = x.transpose(1, 2)  # -> (batch, seq, heads, head_size)
    else:
        x = x.reshape(x.shape[0], x.shape[1], num_heads, x.shape[2] // num_heads)
    rotary_dim = rotary_dim or x.shape[-1]
    rotate, keep = x[..., :rotary_dim], x[..., rotary_dim:]
    if position_ids is not None:
        cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]
    cos, sin = cos_cache.unsqueeze(2), sin_cache.unsqueeze(2)
    if interleaved:
        x1, x2 = rotate[..., 0::2], rotate[..., 1::2]
    else:
        x1, x2 = rotate.chunk(2, dim=-1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if interleaved:
        rotated = torch.stack((real, imag), dim=-1).reshape(rotate.shape)
    else:
        rotated = torch.cat((real, imag), dim=-1)
    out = torch.cat((rotated, keep), dim=-1)
    if len(original) == 4:
        return out.transpose(1, 2)
    return out.reshape(original)


@onnx_to_torch("RotaryEmbedding", since=23)
def rotary(call: OnnxCall):
    position_ids = call.value(3) if call.has(3) else None
    return call.call(rotary_embedding, call.value(0), call.value(1), call.value(2), position_ids,
                     bool(call.attrs.get("interleaved", 0)), int(call.attrs.get("rotary_embedding_dim", 0)),
                     int(call.attrs.get("num_heads", 0)))


def _frontier(shape_q: int, shape_k: int, offset, dtype, device, left: int = -1, right: int = -1,
              causal: bool = True) -> torch.Tensor:
    """0 where query i may attend key j, -inf elsewhere: j <= i + offset for causal masking, and
    p - left <= j <= p + right (p = i + offset, each bound when not -1) for a sliding window. A per-batch
    offset (a tensor) gives (batch, 1, q, k)."""
    i = torch.arange(shape_q, device=device).reshape(shape_q, 1)
    j = torch.arange(shape_k, device=device).reshape(1, shape_k)
    if isinstance(offset, torch.Tensor):
        i = i + offset.reshape(-1, 1, 1).to(torch.int64)
    else:
        i = i + int(offset)
    allowed = torch.ones(torch.broadcast_shapes(i.shape, j.shape), dtype=torch.bool, device=device)
    if causal:
        allowed &= j <= i
    if left >= 0:
        allowed &= i - j <= left
    if right >= 0:
        allowed &= j - i <= right
    bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))
    return bias.unsqueeze(1) if isinstance(offset, torch.Tensor) else bias


def _safe_softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where a row of -inf gives zeros instead of NaN (ONNX's definition)."""
    peak = torch.amax(x, -1, keepdim=True)
    peak = torch.where(peak == float("-inf"), torch.zeros_like(peak), peak)
    e = torch.exp(x - peak)
    total = e.sum(-1, keepdim=True)
    return e / torch.where(total == 0, torch.ones_like(total), total)


def attention(q, k, v, mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *, is_causal: bool = False,
              scale: float | None = None, q_heads: int = 0, kv_heads: int = 0, softcap: float = 0.0,
              qk_mode: int = 0, softmax_dtype=None, left: int = -1, right: int = -1):
    """ONNX Attention (opsets 23-25), as the spec defines it: (Y, present_key, present_value, qk output).

    The KV cache is concatenated before the new keys; the causal frontier and sliding windows align to the
    keys before the query block (the past length, or nonpad_kv_seqlen - q_len per batch); bool masks
    disable positions, float masks add; softcap bounds the scores with tanh; fully masked rows give 0.
    Scores are (q·√scale)(k·√scale)ᵀ, the order ONNX's reference multiplies in. float16 / bfloat16 inputs
    are computed in float32 and the outputs rounded once (op by op in half precision drifts by an ulp)."""
    if q.dtype in (torch.float16, torch.bfloat16):
        def wide(t):
            return t.to(torch.float32) if isinstance(t, torch.Tensor) and t.is_floating_point() else t

        outputs = attention(wide(q), wide(k), wide(v), wide(mask), wide(past_key), wide(past_value), nonpad_kv_seqlen,
                            is_causal=is_causal, scale=scale, q_heads=q_heads, kv_heads=kv_heads, softcap=softcap,
                            qk_mode=qk_mode, softmax_dtype=softmax_dtype, left=left, right=right)
        return tuple(o.to(q.dtype) for o in outputs)
    three_d = q.dim() == 3
    if three_d:
        batch = q.shape[0]
        q = q.reshape(batch, q.shape[1], q_heads, -1).transpose(1, 2)
        k = k.reshape(batch, k.shape[1], kv_heads, -1).transpose(1, 2)
        v = v.reshape(batch, v.shape[1], kv_heads, -1).transpose(1, 2)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    root = math.sqrt(scale)
    if past_key is not None:
        k, v = torch.cat((past_key, k), 2), torch.cat((past_value, v), 2)
    present_key, present_value = k, v
    q_len, k_len = q.shape[2], k.shape[2]
    if past_key is not None:
        offset = past_key.shape[2]
    elif nonpad_kv_seqlen is not None:
        offset = nonpad_kv_seqlen.reshape(-1) - q_len
    else:
        offset = 0
    bias = torch.zeros((q_len, k_len), dtype=q.dtype, device=q.device)
    if mask is not None:
        if mask.shape[-1] < k_len:  # a mask for the new keys only: the rest is padding
            pad_value = False if mask.dtype == torch.bool else float("-inf")
            mask = torch.nn.functional.pad(mask, (0, k_len - mask.shape[-1]), value=pad_value)
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
        bias = bias + mask
    if is_causal:
        bias = bias + _frontier(q_len, k_len, offset, q.dtype, q.device)
    if left >= 0 or right >= 0:
        bias = bias + _frontier(q_len, k_len, offset, q.dtype, q.device, left, right, causal=False)
    if nonpad_kv_seqlen is not None:
        valid = torch.arange(k_len, device=q.device) < nonpad_kv_seqlen.reshape(-1, 1)
        bias = bias + torch.zeros(valid.shape, dtype=q.dtype).masked_fill(~valid, float("-inf")).reshape(
            -1, 1, 1, k_len)
    if k.shape[1] != q.shape[1]:  # grouped-query: kv head j serves query heads j*g ... j*g+g-1
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q * root, (k * root).transpose(-1, -2))
    if softcap > 0:
        scores = torch.tanh(scores / softcap) * softcap
    qk = scores
    biased = scores + bias
    if qk_mode == 2:
        qk = biased
    if softmax_dtype is not None:
        biased = biased.to(softmax_dtype)
    probs = _safe_softmax(biased)
    probs = torch.where(torch.amax(bias, -1, keepdim=True) == float("-inf"), torch.zeros_like(probs), probs)
    if qk_mode == 3:
        qk = probs
    out = torch.matmul(probs.to(q.dtype), v)
    if three_d:
        out = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)
    return out, present_key, present_value, qk.to(q.dtype)


@onnx_to_torch("Attention", since=23)
def attention_node(call: OnnxCall):
    """Every input and output of ONNX Attention: mask, KV cache (past/present), nonpad_kv_seqlen, softcap,
    sliding windows, softmax_precision and the qk_matmul_output modes."""
    from porttax.converters.onnx_to_torch.shape import _DTYPES

    scale = call.attrs.get("scale")
    precision = call.attrs.get("softmax_precision")
    softmax_dtype = _DTYPES.get(int(precision)) if precision else None
    opt = [call.value(i) if call.has(i) else None for i in range(3, 7)]
    y = call.call(attention, call.value(0), call.value(1), call.value(2), *opt,
                  is_causal=bool(call.attrs.get("is_causal", 0)), scale=None if scale is None else float(scale),
                  q_heads=int(call.attrs.get("q_num_heads", 0)), kv_heads=int(call.attrs.get("kv_num_heads", 0)),
                  softcap=float(call.attrs.get("softcap", 0.0)),
                  qk_mode=int(call.attrs.get("qk_matmul_output_mode", 0)),
                  softmax_dtype=softmax_dtype, left=int(call.attrs.get("left_window_size", -1)),
                  right=int(call.attrs.get("right_window_size", -1)))
    return call.unpack(y, 4)


def linear_attention(q, k, v, past_state, decay, beta, *, q_heads: int, kv_heads: int, scale: float, rule: str):
    """ONNX LinearAttention (opset 27): the recurrence of `rule` run token by token, in float32.

    linear: S += k vᵀ; gated: S = exp(g) S + k vᵀ; delta: S += k (β (v - Sᵀk))ᵀ; gated_delta: both.
    Each token's output is scale · qᵀS, a KV head's state shared by its group of query heads."""
    batch, steps = q.shape[0], q.shape[1]
    d_k, d_v = q.shape[-1] // q_heads, v.shape[-1] // kv_heads

    def heads(x, n):
        return x.reshape(batch, steps, n, -1).transpose(1, 2).to(torch.float32)

    q4, k4, v4 = heads(q, q_heads), heads(k, kv_heads), heads(v, kv_heads)
    if decay is not None:
        decay = heads(decay, kv_heads)  # (B, H_kv, T, 1 or d_k)
    if beta is not None:
        beta = beta.reshape(batch, steps, beta.shape[-1], 1).transpose(1, 2).to(torch.float32)
    state = past_state.to(torch.float32) if past_state is not None else torch.zeros(
        batch, kv_heads, d_k, d_v, dtype=torch.float32, device=q.device)
    groups = q_heads // kv_heads
    outputs = []
    for t in range(steps):
        k_t, v_t = k4[:, :, t], v4[:, :, t]
        if decay is not None:
            state = state * torch.exp(decay[:, :, t])[..., None]
        if beta is not None:
            v_t = beta[:, :, t] * (v_t - torch.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t[..., :, None] * v_t[..., None, :]
        shared = state.repeat_interleave(groups, dim=1) if groups > 1 else state
        outputs.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, t], shared))
    out = torch.stack(outputs, 2).transpose(1, 2).reshape(batch, steps, q_heads * d_v).to(q.dtype)
    return out, state.to(past_state.dtype if past_state is not None else q.dtype)


@onnx_to_torch("LinearAttention", since=27)
def linear_attention_node(call: OnnxCall):
    rule = call.attrs.get("update_rule", "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise call.unsupported(f"update_rule={rule!r}")
    q_heads, kv_heads = int(call.attrs["q_num_heads"]), int(call.attrs["kv_num_heads"])
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static query shape")
    scale = float(call.attrs.get("scale", 0.0)) or 1.0 / math.sqrt(shape[-1] // q_heads)
    opt = [call.value(i) if call.has(i) else None for i in range(3, 6)]
    y = call.call(linear_attention, call.value(0), call.value(1), call.value(2), *opt, q_heads=q_heads,
                  kv_heads=kv_heads, scale=scale, rule=rule)
    return call.unpack(y, 2)


def causal_conv_with_state(x, weight, bias, past_state, silu: bool):
    """ONNX CausalConvWithState (opset 27): a depthwise causal conv1d over [past state, x]; the new state is
    the last k - 1 positions of that sequence."""
    channels, width = x.shape[1], weight.shape[-1]
    past = past_state if past_state is not None else x.new_zeros(x.shape[0], channels, width - 1)
    padded = torch.cat((past, x), 2)
    y = torch.nn.functional.conv1d(padded, weight, bias, groups=channels)
    if silu:
        y = torch.nn.functional.silu(y.to(torch.float32)).to(x.dtype)
    return y, padded[:, :, padded.shape[2] - (width - 1):]


@onnx_to_torch("CausalConvWithState", since=27)
def causal_conv_node(call: OnnxCall):
    activation = call.attrs.get("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise call.unsupported(f"activation={activation!r}")
    bias = call.tensor(2) if call.has(2) else None
    past = call.value(3) if call.has(3) else None
    y = call.call(causal_conv_with_state, call.value(0), call.tensor(1), bias, past, activation != "none")
    return call.unpack(y, 2)
