"""The source registry: every input format registers itself once, and one sniff decides it for
convert, inspect, audit and parity — from names and bytes, never by loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from porttax import sources
from porttax.inspection import sniff_format
from porttax.sources import SourceFormat, register_format


def test_each_source_module_registers_its_formats() -> None:
    names = {f.name for f in sources.all_formats()}
    assert names == {"pt2", "state_dict", "torchscript", "safetensors", "hf_folder", "onnx", "keras", "h5",
                     "savedmodel"}
    for fmt in sources.all_formats():
        assert fmt.kind in sources.KINDS and fmt.summary, fmt.name
    with pytest.raises(ValueError, match="already registered"):
        register_format(SourceFormat("pt2", "torch", "again", sniff=lambda p: False, load=lambda p, o: None))
    with pytest.raises(ValueError, match="kind"):
        register_format(SourceFormat("caffe", "caffe", "no such kind", sniff=lambda p: False, load=lambda p, o: None))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real file (or folder) of each format, written by the library that owns it."""
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("formats")
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    out = {"pt2": root / "m.pt2", "state_dict": root / "w.pt", "torchscript": root / "s.pt",
           "safetensors": root / "w.safetensors", "hf_folder": root / "hf", "savedmodel": root / "sm",
           "keras": root / "m.keras", "h5": root / "m.h5", "onnx": root / "m.onnx"}
    torch.export.save(torch.export.export(module, (torch.randn(1, 4),)), out["pt2"])
    torch.save(module.state_dict(), out["state_dict"])
    torch.jit.save(torch.jit.script(module), out["torchscript"])  # the same .pt ending as a state_dict
    save_file(module.state_dict(), out["safetensors"])
    out["hf_folder"].mkdir()
    (out["hf_folder"] / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file(module.state_dict(), out["hf_folder"] / "model.safetensors")
    out["savedmodel"].mkdir()
    (out["savedmodel"] / "saved_model.pb").write_bytes(b"")
    for name in ("keras", "h5", "onnx"):
        out[name].write_bytes(b"")
    return out


def test_sniff_names_each_format_from_names_and_bytes(files: dict[str, Path]) -> None:
    for name, path in files.items():
        assert sources.sniff(path).name == name, path
        assert sniff_format(path) == name
    assert sources.kind_of(files["onnx"]) == "onnx" and sources.kind_of(files["h5"]) == "keras"
    assert sources.kind_of(files["torchscript"]) == "torch"
    assert sources.sniff(files["pt2"].parent / "notes.txt") is None
    assert sniff_format(files["pt2"].parent) == "unknown"  # a folder that is none of them


TOY_FORMAT = '''
"""A source format in one file: a NumPy .npz of a state_dict, built into --arch."""
import numpy as np
import torch

from porttax.sources import SourceFormat, register_format
from porttax.sources.torch_source import from_state_dict


def load(path, options):
    with np.load(path) as stored:
        state = {k: torch.from_numpy(stored[k]) for k in stored.files}
    return from_state_dict(state, path, options)


register_format(SourceFormat("npz", "torch", "a NumPy archive of a state_dict", load=load,
                             sniff=lambda p: p.suffix == ".npz"))
'''

DRIVE_TOY = '''
import sys
import numpy as np

import porttax_toy_format  # noqa: F401  (registers "npz": the only change a new format needs)
import porttax
from porttax import models

folder = sys.argv[1]
module = models.build_model("mlp-tiny", seed=3)
np.savez(folder + "/w.npz", **{k: v.detach().numpy() for k, v in module.state_dict().items()})
result = porttax.convert(folder + "/w.npz", arch="mlp-tiny", to="keras", measure_latency=False, seeds=(0,))
assert result.passed and result.source.origin == "state_dict", result.parity.summary_line()
print("ok", result.tax.drift_rel_l2)
'''


def test_a_format_added_in_one_file_is_read_by_convert(tmp_path: Path) -> None:
    (tmp_path / "porttax_toy_format.py").write_text(TOY_FORMAT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", DRIVE_TOY, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]
