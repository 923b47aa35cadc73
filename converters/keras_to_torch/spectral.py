"""Spectrogram layers: STFTSpectrogram and MelSpectrogram.

STFTSpectrogram is a strided convolution with the layer's own DFT kernels (window and scaling already
folded in by Keras' STFT initializer); they are Keras weights, so they become the weights of two
`nn.Conv1d`s and move with the state_dict, and the torch module computes exactly Keras' convolution.
Every mode (real, imag, stft, angle, psd, magnitude, log) is the same few ops on the two results.

MelSpectrogram is `tf.signal.stft` of the reflect-padded signal (frames of fft_length, the periodic
window of sequence_length centred in them), then |X| ** mag_exp, Keras' HTK mel filterbank and, with
power_to_db, decibels clipped top_db below the batch's maximum. `torch.stft` with `center=True` and
reflect padding frames the signal the same way; the filterbank is computed by the layer itself at
conversion, so it is Keras' own float32 matrix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from porttax._frameworks import import_keras, import_torch
from porttax.converters.keras_to_torch._register import keras_to_torch
from porttax.converters.keras_to_torch.context import LayerCall, TVal
from porttax.converters.keras_to_torch.conv import SamePad, same_pads
from porttax.converters.transforms import Transpose

torch = import_torch()
nn = torch.nn
F = torch.nn.functional


class STFTSpectrogram(nn.Module):
    """Keras STFTSpectrogram: each channel framed by a strided conv with the real and imaginary DFT
    kernels, giving (batch, channels, freq, time), then the mode and Keras' output layout."""

    def __init__(self, mode: str, frame_length: int, frame_step: int, bins: int, pad: nn.Module | None,
                 channels_last: bool, expand_dims: bool, epsilon: float) -> None:
        super().__init__()
        self.mode = mode
        self.pad = pad
        self.channels_last = channels_last
        self.expand_dims = expand_dims
        self.epsilon = float(epsilon)
        make = lambda: nn.Conv1d(1, bins, frame_length, stride=frame_step, bias=False)  # noqa: E731
        self.real = make() if mode != "imag" else None
        self.imag = make() if mode != "real" else None

    def _frames(self, x: Any, conv: nn.Module) -> Any:
        batch, channels, time = x.shape
        out = conv(x.reshape(batch * channels, 1, time))
        return out.reshape(batch, channels, out.shape[1], out.shape[2])

    def _spectrum(self, x: Any) -> Any:
        real = self._frames(x, self.real) if self.real is not None else None
        imag = self._frames(x, self.imag) if self.imag is not None else None
        if self.mode == "real":
            return real
        if self.mode == "imag":
            return imag
        if self.mode == "angle":
            return torch.atan2(imag, real)
        if self.mode == "stft":
            return torch.cat([real, imag], dim=2)
        power = real.square() + imag.square()
        if self.mode == "psd":  # one-sided density: every bin but DC and Nyquist counted twice
            return power + F.pad(power[:, :, 1:-1, :], [0, 0, 1, 1])
        return torch.sqrt(torch.clamp(power, min=self.epsilon))

    def _layout(self, out: Any) -> Any:
        batch, channels, freq, time = out.shape
        if self.expand_dims:
            return out.permute(0, 3, 2, 1) if self.channels_last else out.transpose(2, 3)
        out = out.reshape(batch, channels * freq, time)
        return out.transpose(1, 2) if self.channels_last else out

    def forward(self, x: Any) -> Any:
        if self.channels_last:
            x = x.transpose(1, 2)  # (batch, channels, time)
        if self.pad is not None:
            x = self.pad(x)
        out = self._layout(self._spectrum(x))
        if self.mode == "log":
            out = torch.log(torch.clamp(out, min=self.epsilon))
        return out

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, channels_last={self.channels_last}, expand_dims={self.expand_dims}"


class ConstantPad(nn.Module):
    """F.pad with fixed (left, right) amounts on the time axis."""

    def __init__(self, left: int, right: int) -> None:
        super().__init__()
        self.left, self.right = int(left), int(right)

    def forward(self, x: Any) -> Any:
        return F.pad(x, [self.left, self.right])

    def extra_repr(self) -> str:
        return f"left={self.left}, right={self.right}"


def _time_pad(call: LayerCall, time: int | None) -> nn.Module | None:
    layer = call.layer
    if layer.padding == "valid":
        return None
    pads = same_pads(time, int(layer.frame_length), int(layer._frame_step))
    if pads is None:
        return SamePad((int(layer.frame_length),), (int(layer._frame_step),))
    return ConstantPad(*pads) if any(pads) else None


@keras_to_torch("STFTSpectrogram")
def stft_spectrogram(call: LayerCall) -> TVal:
    layer = call.layer
    v = call.x
    if v.rank != 3:
        raise call.unsupported(f"a rank-{v.rank} input (Keras takes (batch, time, channels) signals)")
    dtype = str(layer.compute_dtype)
    if dtype not in ("float32", "float64") or v.dtype != dtype:
        raise call.unsupported(f"a {v.dtype} signal with compute dtype {dtype}",
                               hint="feed float32 signals to a float32 layer")
    channels_last = layer.data_format == "channels_last"
    time = v.shape[1] if channels_last else v.shape[2]
    module = call.module()
    if module is None:
        bins = int(layer._fft_length) // 2 + 1
        module = STFTSpectrogram(str(layer.mode), int(layer.frame_length), int(layer._frame_step), bins,
                                 _time_pad(call, time), channels_last, bool(layer.expand_dims),
                                 import_keras().backend.epsilon())
    to_torch = Transpose((2, 1, 0))  # Keras (frame_length, 1, bins) -> torch (bins, 1, frame_length)
    for name in ("real", "imag"):
        conv = getattr(module, name)
        if conv is not None:
            call.port(getattr(layer, f"{name}_kernel"), conv, "weight", to_torch, suffix=name)
    x = call.ctx.keras_layout(v)
    return call.result(call.add_module(module)(x))


class MelSpectrogram(nn.Module):
    """Keras MelSpectrogram on (batch, time) or (time,): |STFT| ** mag_exp @ mel filterbank, optionally in
    decibels clipped `top_db` below the maximum over the whole input, returned as (..., mel_bins, frames)."""

    def __init__(self, fft_length: int, hop: int, window: np.ndarray | None, mel: np.ndarray, mag_exp: float,
                 power_to_db: bool, min_power: float, ref_db: float, top_db: float | None) -> None:
        super().__init__()
        self.fft_length = int(fft_length)
        self.hop = int(hop)
        self.register_buffer("window", None if window is None else torch.from_numpy(window), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel), persistent=False)
        self.mag_exp = float(mag_exp)
        self.power_to_db = bool(power_to_db)
        self.min_power = float(min_power)
        self.ref_db = float(ref_db)
        self.top_db = None if top_db is None else float(top_db)

    def forward(self, x: Any) -> Any:
        window = self.window if self.window is not None else torch.ones(self.fft_length, dtype=x.dtype)
        spec = torch.stft(x, self.fft_length, hop_length=self.hop, window=window, center=True,
                          pad_mode="reflect", return_complex=True)  # (..., freq, frames)
        spec = torch.view_as_real(spec)
        magnitude = torch.sqrt(spec[..., 0].square() + spec[..., 1].square())
        power = torch.pow(magnitude, self.mag_exp).transpose(-1, -2)  # (..., frames, freq)
        out = torch.tensordot(power, self.mel, dims=1)
        if self.power_to_db:
            out = 10.0 * torch.log10(torch.clamp(out, min=self.min_power)) - self.ref_db
            if self.top_db is not None:
                out = torch.maximum(out, out.amax() - self.top_db)
        return out.transpose(-1, -2)

    def extra_repr(self) -> str:
        return (f"fft_length={self.fft_length}, hop={self.hop}, mel_bins={self.mel.shape[1]}, "
                f"power_to_db={self.power_to_db}")


def _mel_window(call: LayerCall, dtype: str) -> np.ndarray | None:
    """Keras' stft window: periodic Hann or Hamming of sequence_length (or the layer's array), zero-padded
    to fft_length with the odd cell on the right; None is the rectangular fft_length frame."""
    layer = call.layer
    window, length, fft = layer.window, int(layer.sequence_length), int(layer.fft_length)
    if window is None:
        return None
    if isinstance(window, str):
        if window not in ("hann", "hamming"):
            raise call.unsupported(f"window {window!r}", hint="Keras' stft takes 'hann' or 'hamming'")
        a = 0.5 if window == "hann" else 0.54
        n = np.arange(length, dtype=np.float64)
        win = a - (1.0 - a) * np.cos(2.0 * math.pi * n / length)
    else:
        win = np.asarray(window, np.float64).reshape(-1)
        if win.shape != (length,):
            raise call.unsupported(f"a window of shape {win.shape} for sequence_length {length}")
    left = (fft - length) // 2
    return np.pad(win, (left, fft - length - left)).astype(dtype)


@keras_to_torch("MelSpectrogram")
def mel_spectrogram(call: LayerCall) -> TVal:
    layer = call.layer
    keras = import_keras()
    v = call.x
    if v.rank not in (1, 2):
        raise call.unsupported(f"a rank-{v.rank} input (Keras takes (batch, time) or (time,) signals)")
    dtype = str(layer.compute_dtype)
    if dtype not in ("float32", "float64"):
        raise call.unsupported(f"compute dtype {dtype}", hint="use a float32 layer")
    fft = int(layer.fft_length)
    time = v.shape[-1]
    if time is not None and time <= fft // 2:
        raise call.unsupported(f"signals of {time} samples: reflect padding by {fft // 2} needs more")
    mel = keras.ops.convert_to_numpy(layer.linear_to_mel_weight_matrix(
        num_mel_bins=int(layer.num_mel_bins), num_spectrogram_bins=fft // 2 + 1,
        sampling_rate=layer.sampling_rate, lower_edge_hertz=layer.min_freq, upper_edge_hertz=layer.max_freq,
        dtype=dtype))
    ref = float(np.float32(abs(float(layer.ref_power))))
    ref_db = float(10.0 * np.log10(np.float32(max(ref, float(layer.min_power)))))
    module = call.module() or MelSpectrogram(
        fft, int(layer.sequence_stride), _mel_window(call, dtype), np.ascontiguousarray(mel),
        float(layer.mag_exp), bool(layer.power_to_db), float(layer.min_power), ref_db,
        None if layer.top_db is None else float(layer.top_db))
    x = call.ctx.keras_layout(v)
    if v.dtype != dtype:
        x = x.to(getattr(torch, dtype))
    out = call.add_module(module)(x)
    return call.result(out)
