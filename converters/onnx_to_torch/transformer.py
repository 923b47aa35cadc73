"""The transformer ops recent opsets define as single nodes: RMSNormalization (→ nn.RMSNorm),
RotaryEmbedding and Attention (→ the computation the ONNX spec defines, in torch ops).

Attention covers self and cross attention in the 3-D and 4-D layouts, MHA/GQA/MQA head counts, bool
or float masks and `is_causal` with the spec's bottom-right alignment; the KV-cache inputs and outputs,
soft-capping and sliding windows are refused by name rather than approximated.
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


def attention(q, k, v, mask, is_causal: bool, scale: float | None, q_heads: int, kv_heads: int,
              bottom_right: bool = False):
    """ONNX Attention without a KV cache: Y only. `is_causal` aligns the mask top-left in opsets 23-24
    (query i sees keys j <= i, as torch's SDPA) and bottom-right from opset 25 (j <= i + S_k - S_q)."""
    three_d = q.dim() == 3
    if three_d:
        batch, q_len = q.shape[0], q.shape[1]
        q = q.reshape(batch, q_len, q_heads, -1).transpose(1, 2)
        k = k.reshape(batch, k.shape[1], kv_heads, -1).transpose(1, 2)
        v = v.reshape(batch, v.shape[1], kv_heads, -1).transpose(1, 2)
    if k.shape[1] != q.shape[1]:  # grouped-query: kv head j serves query heads j*g ... j*g+g-1
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    if is_causal:
        q_len, k_len = scores.shape[-2], scores.shape[-1]
        offset = k_len - q_len if bottom_right else 0
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril(offset)
        scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), v)
    if three_d:
        out = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)
    return out


@onnx_to_torch("Attention", since=23)
def attention_node(call: OnnxCall):
    return _attention_node(call, bottom_right=False)


@onnx_to_torch("Attention", since=25)
def attention_node_bottom_right(call: OnnxCall):
    return _attention_node(call, bottom_right=True)


def _attention_node(call: OnnxCall, bottom_right: bool):
    for i, what in ((4, "past_key"), (5, "past_value"), (6, "nonpad_kv_seqlen")):
        if call.has(i):
            raise call.unsupported(f"the {what} input (KV cache) is not supported")
    if any(name for name in call.node.output[1:]):
        raise call.unsupported("present_key / present_value / qk_matmul_output outputs are not supported")
    if float(call.attrs.get("softcap", 0.0)):
        raise call.unsupported("softcap is not supported")
    if int(call.attrs.get("left_window_size", -1)) != -1 or int(call.attrs.get("right_window_size", -1)) != -1:
        raise call.unsupported("sliding-window attention is not supported")
    scale = call.attrs.get("scale")
    mask = call.value(3) if call.has(3) else None
    return call.call(attention, call.value(0), call.value(1), call.value(2), mask,
                     bool(call.attrs.get("is_causal", 0)), None if scale is None else float(scale),
                     int(call.attrs.get("q_num_heads", 0)), int(call.attrs.get("kv_num_heads", 0)), bottom_right)
