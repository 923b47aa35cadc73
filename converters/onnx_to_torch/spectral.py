"""Spectral ops: DFT and STFT with torch.fft. ONNX carries complex values as a trailing axis of 2 (real,
imaginary), or 1 for a real signal; the transforms run on torch's complex tensors in between, in double
precision as ONNX's reference does (a float32 FFT leaves ~1e-7 noise where the exact value is 0).
"""

from __future__ import annotations

import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall


def _to_complex(x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.float64)
    return x[..., 0] if x.shape[-1] == 1 else torch.complex(x[..., 0], x[..., 1])


def _to_pairs(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.stack((y.real, y.imag), -1).to(dtype)


def dft(x: torch.Tensor, length: int, axis: int, inverse: bool, onesided: bool) -> torch.Tensor:
    """ONNX DFT along `axis` (counted with the trailing real/imaginary axis, which it never is)."""
    signal = _to_complex(x)
    if inverse and onesided:  # one-sided spectrum back to a real signal
        return torch.fft.irfft(signal, n=length, dim=axis).unsqueeze(-1).to(x.dtype)
    y = (torch.fft.ifft if inverse else torch.fft.fft)(signal, n=length, dim=axis)
    if onesided:
        y = y.narrow(axis, 0, length // 2 + 1)
    return _to_pairs(y, x.dtype)


def _dft_call(call: OnnxCall, axis: int):
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static input shape")
    axis %= len(shape)
    if axis == len(shape) - 1:
        raise call.unsupported("axis is the real/imaginary axis")
    inverse, onesided = bool(call.attrs.get("inverse", 0)), bool(call.attrs.get("onesided", 0))
    if call.has(1) and call.const(1).size:
        length = int(call.const(1).reshape(-1)[0])
    else:
        length = 2 * (shape[axis] - 1) if inverse and onesided else shape[axis]
    return call.call(dft, call.value(0), length, axis, inverse, onesided)


@onnx_to_torch("DFT", since=17)
def dft_17(call: OnnxCall):
    return _dft_call(call, int(call.attrs.get("axis", 1)))


@onnx_to_torch("DFT", since=20)
def dft_20(call: OnnxCall):
    return _dft_call(call, int(call.const(2).reshape(-1)[0]) if call.has(2) else -2)


def stft(x: torch.Tensor, step: int, window: torch.Tensor | None, frame_length: int, window_length: int,
         onesided: bool) -> torch.Tensor:
    """ONNX STFT: frames of `window_length` samples every `step`, weighted by the window, each transformed
    with an FFT of `frame_length` points; (batch, frames, bins, 2)."""
    signal = _to_complex(x)
    frames = signal.unfold(-1, window_length, step)
    if window is not None:
        frames = frames * window.to(torch.float64)
    y = torch.fft.fft(frames, n=frame_length, dim=-1)
    if onesided:
        y = y.narrow(-1, 0, frame_length // 2 + 1)
    return _to_pairs(y, x.dtype)


@onnx_to_torch("STFT", since=17)
def stft_node(call: OnnxCall):
    step = int(call.const(1).reshape(-1)[0])
    window = call.const(2) if call.has(2) else None
    shape = call.shape(0)
    if shape is None:
        raise call.unsupported("needs a static input shape")
    if call.has(3):
        frame_length = int(call.const(3).reshape(-1)[0])
    else:
        frame_length = window.shape[0] if window is not None else shape[-2]
    window_length = window.shape[0] if window is not None else frame_length
    onesided = bool(call.attrs.get("onesided", 1))
    window_node = call.ctx.tensor(window, call.node.input[2]) if window is not None else None
    return call.call(stft, call.value(0), step, window_node, frame_length, window_length, onesided)
