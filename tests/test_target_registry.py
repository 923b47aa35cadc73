"""The target registry: every output format registers itself once, and `--to` / `-o` resolve through it."""

from __future__ import annotations

import json
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
