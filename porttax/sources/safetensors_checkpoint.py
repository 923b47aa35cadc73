"""A single `.safetensors` file of weights, built into an architecture (`--arch`, `--config`, or a
sidecar `.json` porttax wrote beside it).

The header, dtypes and byte spans are checked before the library maps a byte
(porttax.sources.file_checks); a large file streams its tensors into the converter instead of being
read whole (porttax.lazy_weights).
"""

from __future__ import annotations

from pathlib import Path

from porttax.errors import InputError, brief
from porttax.sources import LoadOptions, SourceFormat, register_format
from porttax.sources.file_checks import check_safetensors
from porttax.sources.torch_program import TorchSource
from porttax.sources.torch_source import from_state_dict


def load_safetensors(path: Path, options: LoadOptions) -> TorchSource:
    from safetensors.torch import load_file

    from porttax.lazy_weights import lazy_state, should_stream

    entries = check_safetensors(path)  # header, dtypes, spans: before the library maps a single byte
    try:
        streaming = should_stream([path]) if options.stream is None else options.stream
        state = lazy_state(path, entries) if streaming else load_file(str(path))
    except Exception as exc:
        raise InputError(f"not a valid safetensors file ({brief(exc)})", path=str(path),
                         hint="re-save the tensors with safetensors' save_file") from exc
    return from_state_dict(state, path, options)


register_format(SourceFormat("safetensors", "torch", "a safetensors file of weights (.safetensors), with --arch",
                             load=load_safetensors, sniff=lambda p: p.suffix.lower() == ".safetensors"
                             and not p.is_dir()))
