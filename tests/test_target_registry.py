"""The target registry: every output format registers itself once, and `--to` / `-o` resolve through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from porttax import targets
from porttax.conversion import infer_target
from porttax.errors import InputError
from porttax.targets import Target, register_target


def test_each_target_module_registers_its_targets() -> None:
    names = {t.name for t in targets.all_targets()}
    assert names == {"keras", "keras-weights", "savedmodel", "onnx", "tflite", "executorch", "tfjs", "torch",
                     "safetensors", "state_dict"}
    for t in targets.all_targets():
        assert t.summary and t.output in ("optional", "required", "suffix")
        assert t.output != "suffix" or t.suffixes, t.name


@pytest.mark.parametrize(("to", "output", "keras_source", "expected"), [
    (None, "m.keras", False, "keras"),
    (None, "m.weights.h5", False, "keras-weights"),  # the longer suffix wins
    (None, "M.ONNX", False, "onnx"),
    (None, "out/sm", False, "savedmodel"),  # a folder: the serving default
    (None, None, False, "keras"),  # nothing written: a Keras model in memory
    (None, "model", True, "torch"),  # a Keras source goes back to torch
    (None, "w.pth", True, "state_dict"),
    ("TF_SavedModel", None, False, "savedmodel"),
    ("litert", "m.tflite", False, "tflite"),
    ("pte", "m.pte", False, "executorch"),
    ("pytorch", "m.pt2", True, "torch"),
])
def test_to_and_output_resolve_through_the_registry(to: str | None, output: str | None, keras_source: bool,
                                                    expected: str) -> None:
    assert infer_target(to, output, keras_source) == expected


def test_an_unknown_target_names_every_registered_one() -> None:
    with pytest.raises(InputError) as err:
        infer_target("caffe", None)
    assert all(t.name in str(err.value) for t in targets.all_targets())


def test_the_list_does_not_depend_on_which_target_module_was_imported_first() -> None:
    code = ("import porttax.targets.tflite, porttax.targets.torch; from porttax import targets; "
            "print(','.join(t.name for t in targets.all_targets()))")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert first == [",".join(t.name for t in targets.all_targets())]


def test_a_second_owner_of_a_name_alias_or_suffix_is_refused() -> None:
    targets.load_all()
    for clash in (Target("keras", "again"), Target("k3", "alias clash", aliases=("Save_dModel",)),
                  Target("k4", "suffix clash", suffixes=(".onnx",))):
        with pytest.raises(ValueError, match="already taken"):
            register_target(clash)
    assert targets.resolve("keras").summary != "again"


@pytest.mark.parametrize(("name", "output", "ok"), [
    ("keras", None, True), ("keras", "m.keras", True), ("keras", "m.h5", False),
    ("savedmodel", None, False), ("savedmodel", "dir", True),
    ("tflite", "m.tflite", True), ("tflite", "m.onnx", False), ("tflite", None, False),
    ("onnx", None, False),
])
def test_output_paths_are_checked_before_the_slow_part(name: str, output: str | None, ok: bool) -> None:
    target = targets.resolve(name)
    if ok:
        target.check_output(output)
    else:
        with pytest.raises(InputError) as err:
            target.check_output(output)
        assert target.output_hint in str(err.value)


def test_the_cli_lists_the_registry_and_offers_exactly_it_to_convert() -> None:
    listed = subprocess.run([sys.executable, "-m", "porttax.cli", "targets", "--json"], capture_output=True,
                            text=True, check=True)
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == [t.name for t in targets.all_targets()]
    helped = subprocess.run([sys.executable, "-m", "porttax.cli", "convert", "--help"], capture_output=True,
                            text=True, check=True)
    assert "{" + ",".join(r["name"] for r in rows) + "}" in helped.stdout.replace("\n", "").replace(" ", "")


def test_every_way_names_a_known_source_kind_need_and_options() -> None:
    for t in targets.all_targets():
        assert t.ways, f"{t.name} takes no source"
        for kind, way in t.ways.items():
            assert kind in targets.KIND_NAMES and way.needs in targets.NEEDS, (t.name, kind)
            assert set(way.options) <= set(targets.OPTIONS), (t.name, kind, way.options)


def test_a_source_kind_or_option_a_target_cannot_take_is_refused_by_name() -> None:
    from porttax.types import ConvertJob

    with pytest.raises(InputError) as err:
        targets.resolve("keras").admit(ConvertJob("m.keras", kind="keras", output="o.keras"))
    assert "takes a PyTorch source or an ONNX file, not a Keras source" in str(err.value)
    assert err.value.path == "m.keras"
    with pytest.raises(InputError) as err:
        targets.resolve("keras").admit(ConvertJob("m.pt2", kind="torch", output="o.keras", jit=True))
    assert "--jit does not apply to --to keras" in str(err.value) and "--to savedmodel" in err.value.hint
    with pytest.raises(InputError, match="--channels-first"):
        targets.resolve("onnx").admit(ConvertJob("m.pt2", kind="torch", output="o.onnx", channels_first=True))
    # the Python API keeps a Keras source's torch module in memory; -o is required only to write a file
    assert targets.resolve("torch").admit(ConvertJob("m.keras", kind="keras")).in_memory


TOY_TARGET = '''
"""A target in one file: the source's state_dict as a NumPy .npz (no check beyond the keys)."""
import time
from pathlib import Path

import numpy as np

from porttax.converters.mapping_log import MappingLog
from porttax.saving import atomic_output
from porttax.targets import Target, Way, register_target
from porttax.tax import PortingTax, size_on_disk
from porttax.types import ConversionResult


def write(job):
    state = {k: v.detach().numpy() for k, v in job.src.program.state_dict.items()}
    with atomic_output(job.output, force=job.force) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **state)
        tax = PortingTax(conversion_seconds=time.perf_counter() - job.t0, output_bytes=size_on_disk(tmp))
    return ConversionResult(job.target, Path(job.output), None, MappingLog(), None, tax, job.src)


register_target(Target("npz", "the weights as a NumPy archive", suffixes=(".npz",), output="required",
                       ways={"torch": Way(write, needs="loaded")}))
'''

DRIVE_TOY = '''
import sys
import numpy as np
import torch

import porttax_toy_target  # noqa: F401  (registers "npz": the only change a new target needs)
import porttax
from porttax.errors import InputError

folder = sys.argv[1]
torch.manual_seed(0)
module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
torch.export.save(torch.export.export(module, (torch.randn(1, 4),)), folder + "/m.pt2")
result = porttax.convert(folder + "/m.pt2", output=folder + "/w.npz")  # picked by the suffix alone
stored = np.load(folder + "/w.npz")
assert result.target == "npz" and sorted(stored) == sorted(module.state_dict()), sorted(stored)
assert np.array_equal(stored["0.weight"], module[0].weight.detach().numpy())
try:
    porttax.convert(folder + "/m.pt2", to="npz", output=folder + "/x.npz", quantize="int8")
except InputError as exc:
    assert "--quantize does not apply to --to npz" in str(exc), exc
else:
    raise AssertionError("an option the new target does not take was accepted")
print("ok")
'''


def test_a_target_added_in_one_file_is_driven_by_convert(tmp_path) -> None:
    (tmp_path / "porttax_toy_target.py").write_text(TOY_TARGET)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", DRIVE_TOY, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
