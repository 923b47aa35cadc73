"""→ TensorFlow.js graph model (the official converter in its own environment), checked in Node.js on
TF.js's pure-JS CPU backend; a graph-model folder as a parity operand; the environments' failures as
exit 2. The converter environment and the npm packages come from scripts/setup.sh (python -m
porttax.tfjs.env); a run that finds them missing creates them, so these tests need nothing by hand."""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from porttax import models
from porttax._frameworks import import_keras, import_torch
from porttax.errors import InputError

torch = import_torch()

# ‖a−b‖/‖b‖ every port below must reach in Node, the fp32 profile's own bound: TF.js's CPU kernels
# compute in float32 like TensorFlow's (mobilenet_v3_small measures ~9e-7, llama-tiny ~2e-7)
FP32_BOUND = 1e-5


def _pt2(module: torch.nn.Module, example: tuple, path: Path) -> Path:
    torch.export.save(torch.export.export(module.eval(), example), str(path))
    return path


def _convert(source: Path, out: Path, *extra: str) -> dict:
    done = run_cli("convert", str(source), "--to", "tfjs", "-o", str(out), "--json", *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "model.json").is_file() and list(out.glob("group1-shard*.bin"))
    report = json.loads(done.stdout)
    assert report["target"] == "tfjs" and report["passed"]
    assert report["porting_tax"]["drift_rel_l2"] <= FP32_BOUND and report["porting_tax"]["output_bytes"] > 0
    assert not list(out.parent.glob(".*porttax-tmp*"))  # the temporary sibling was renamed into place
    return report


def _parity(source: Path, web_model: Path, tmp_path: Path) -> dict:
    """The written folder as `porttax parity`'s operand, in a process of its own, over three seeds."""
    check = run_cli("parity", str(source), str(web_model), "--seeds", "3", "--json", str(tmp_path / "p.json"), "-q")
    assert check.returncode == 0, check.stderr[-3000:]
    parity = json.loads((tmp_path / "p.json").read_text())
    assert parity["passed"] and len(parity["cases"]) == 3 and parity["worst_rel_l2"] <= FP32_BOUND
    return parity


@pytest.mark.slow
def test_mobilenet_v3_small_reaches_tfjs_and_holds_in_node(tmp_path: Path) -> None:
    from porttax._frameworks import import_torchvision

    torch.manual_seed(0)
    model = import_torchvision().models.mobilenet_v3_small(weights=None)
    source = _pt2(model, (torch.randn(1, 3, 224, 224),), tmp_path / "mobilenet_v3_small.pt2")
    out = tmp_path / "web_model"
    report = _convert(source, out, "--no-latency")
    assert len(report["parity"]["cases"]) == 3
    _parity(source, out, tmp_path)


@pytest.mark.parametrize("batch", [1, 9])
def test_llama_tiny_token_ids_and_gathers_run_in_tfjs(tmp_path: Path, batch: int) -> None:
    """int64 token ids: the converter keeps DT_INT64 in the signature and stores int64 constants as int32;
    porttax feeds int32 (range-checked). One sequence computes attention per head (2-D MatMuls); nine
    (18 batch x key/value heads) batch it, and the batched `...` einsums are spelled out for TF.js's kernel."""
    source = _pt2(models.build_model("llama-tiny", seed=0), models.example_inputs("llama-tiny", batch=batch, seq=16),
                  tmp_path / "llama-tiny.pt2")
    out = tmp_path / "llama_web"
    report = _convert(source, out)
    tax = report["porting_tax"]
    assert tax["top1_agreement"] == 1.0 and tax["latency_converted_ms"] > 0 and tax["load_ms"] > 0
    assert "TF.js 4.22.0 cpu backend" in tax["runtime_note"]
    model = json.loads((out / "model.json").read_text())
    assert model["signature"]["inputs"]["input_ids"]["dtype"] == "DT_INT64"
    equations = [base64.b64decode(n["attr"]["equation"]["s"]).decode() for n in model["modelTopology"]["node"]
                 if n["op"] == "Einsum"]
    assert (len(equations) == 4 if batch > 1 else not equations) and not any("..." in e for e in equations)
    _parity(source, out, tmp_path)


class _ElevenOutputs(torch.nn.Module):
    """Outputs whose signature keys sort wrongly as plain strings (output_10 before output_2)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.proj(x)
        return tuple(h[:, : i % 4 + 1] * (i + 1) for i in range(11))


def test_outputs_come_back_in_the_sources_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _pt2(_ElevenOutputs(), (torch.randn(2, 4),), tmp_path / "eleven.pt2")
    report = _convert(source, tmp_path / "web", "--no-latency", "--seeds", "1")
    assert [o["name"] for o in report["parity"]["cases"][0]["outputs"]] == [f"output_{i}" for i in range(11)]
    # the converter keys same-shaped outputs by tensor name (Identity_2:0); porttax puts the keys back
    signature = json.loads((tmp_path / "web" / "model.json").read_text())["signature"]["outputs"]
    assert sorted(signature) == sorted(f"output_{i}" for i in range(11))


@pytest.fixture(scope="module")
def keras_cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A small Sequential CNN saved as .keras, converted once for the tests that need a graph model."""
    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(),
        keras.layers.DepthwiseConv2D(3, padding="same"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5, activation="softmax"),
    ], name="tiny_cnn")
    folder = tmp_path_factory.mktemp("keras_cnn")
    source = folder / "tiny_cnn.keras"
    model.save(source)
    out = folder / "web_model"
    return source, out, _convert(source, out, "--no-latency")


def test_a_keras_model_reaches_tfjs_checked_against_keras(keras_cnn: tuple[Path, Path, dict], tmp_path: Path) -> None:
    source, out, report = keras_cnn
    assert report["source_format"] == "keras"
    assert report["porting_tax"]["layers_mapped"] == report["porting_tax"]["layers_total"] == 6
    _parity(source, out, tmp_path)


def test_an_existing_output_is_refused_without_force(keras_cnn: tuple[Path, Path, dict], tmp_path: Path) -> None:
    source, out, _ = keras_cnn
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    done = run_cli("convert", str(source), "--to", "tfjs", "-o", str(out))
    assert done.returncode == 2 and "already exists" in done.stderr and "--force" in done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    file_like = run_cli("convert", str(source), "--to", "tfjs", "-o", str(tmp_path / "model.json"))
    assert file_like.returncode == 2 and "folder" in file_like.stderr


def test_missing_node_is_exit_2_before_any_work(keras_cnn: tuple[Path, Path, dict], tmp_path: Path) -> None:
    source = keras_cnn[0]
    done = run_cli("convert", str(source), "--to", "tfjs", "-o", str(tmp_path / "web"),
                   env={"PORTTAX_TFJS_NODE": str(tmp_path / "no-such-node")})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot run Node.js" in done.stderr and "PORTTAX_TFJS_NODE" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "web").exists()
    # and a graph-model folder cannot be checked without Node either
    check = run_cli("parity", str(source), str(keras_cnn[1]), env={"PORTTAX_TFJS_NODE": str(tmp_path / "no-such-node")})
    assert check.returncode == 2 and "Node.js" in check.stderr


def test_a_node_that_dies_is_a_clear_error(keras_cnn: tuple[Path, Path, dict], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from porttax.parity.runners import TfjsRunner

    fake = tmp_path / "node"
    fake.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo v20.0.0; exit 0; fi\n'
                    'echo "node: broken install" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PORTTAX_TFJS_NODE", str(fake))
    with pytest.raises(InputError, match=r"runner did not start \(exit 1\): node: broken install"):
        TfjsRunner(keras_cnn[1])
    chatty = tmp_path / "chatty-node"  # a wrapper that prints on stdout: not the runner's protocol
    chatty.write_text('#!/bin/sh\necho v20.0.0\n')
    chatty.chmod(0o755)
    monkeypatch.setenv("PORTTAX_TFJS_NODE", str(chatty))
    with pytest.raises(InputError, match="sent a reply porttax cannot read"):
        TfjsRunner(keras_cnn[1])
    old = tmp_path / "old-node"
    old.write_text('#!/bin/sh\necho v16.20.0\n')
    old.chmod(0o755)
    monkeypatch.setenv("PORTTAX_TFJS_NODE", str(old))
    with pytest.raises(InputError, match="too old"):
        TfjsRunner(keras_cnn[1])


def test_a_converter_python_without_tensorflowjs_is_exit_2(keras_cnn: tuple[Path, Path, dict], tmp_path: Path) -> None:
    done = run_cli("convert", str(keras_cnn[0]), "--to", "tfjs", "-o", str(tmp_path / "web"),
                   env={"PORTTAX_TFJS_PYTHON": sys.executable})  # porttax's own Python: TF 2.21, no tensorflowjs
    assert done.returncode == 2 and "has no tensorflowjs package" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "web").exists()


def test_an_environment_that_cannot_be_created_is_exit_2(keras_cnn: tuple[Path, Path, dict], tmp_path: Path) -> None:
    """No package index reachable: the venv is made, pip fails, the half-made env is removed, exit 2."""
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": str(empty), "PORTTAX_TFJS_PYTHON": ""}
    done = run_cli("convert", str(keras_cnn[0]), "--to", "tfjs", "-o", str(tmp_path / "web"), env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "could not create the TensorFlow.js converter environment" in done.stderr
    assert "tensorflowjs" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "cache" / "porttax" / "tfjs-env-4.22.0").exists() and not (tmp_path / "web").exists()


def test_ops_tfjs_lacks_are_named(tmp_path: Path) -> None:
    """A SavedModel source goes to the converter as it is; MatrixDeterminant has no TF.js kernel."""
    from porttax._frameworks import import_tf

    tf = import_tf()

    class Determinant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 3, 3], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict:
            return {"output_0": tf.linalg.det(x)}

    module = Determinant()
    tf.saved_model.save(module, str(tmp_path / "det"), signatures={"serving_default": module.serve})
    done = run_cli("convert", str(tmp_path / "det"), "--to", "tfjs", "-o", str(tmp_path / "web"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "TensorFlow.js has no kernels for op(s) MatrixDeterminant" in done.stderr
    assert not (tmp_path / "web").exists() and not list(tmp_path.glob(".*porttax-tmp*"))


def test_a_graph_model_folder_is_read_safely(keras_cnn: tuple[Path, Path, dict], tmp_path: Path) -> None:
    from porttax.parity.runners import TfjsRunner
    from porttax.tfjs.node import read_graph_model

    web = tmp_path / "web"
    shutil.copytree(keras_cnn[1], web)
    model = json.loads((web / "model.json").read_text())
    shard = model["weightsManifest"][0]["paths"][0]
    model["weightsManifest"][0]["paths"][0] = "../" + shard
    (web / "model.json").write_text(json.dumps(model))
    with pytest.raises(InputError, match="outside the model folder"):
        read_graph_model(web)
    model["weightsManifest"][0]["paths"][0] = shard  # back in place, but cut short: Node refuses the weights
    (web / "model.json").write_text(json.dumps(model))
    (web / shard).write_bytes((web / shard).read_bytes()[:100])
    with pytest.raises(InputError, match="TF.js cannot load the model"):
        TfjsRunner(web)


@pytest.mark.parametrize(("equation", "shapes", "expected"), [
    ("...abcde,...afce->...acdbf", [[1, 16, 2, 2, 16], [1, 16, 2, 16]], "abcde,afce->acdbf"),  # porttax's attention
    ("...b,bc->...c", [[2, 3, 4], [4, 5]], "adb,bc->adc"),  # EinsumDense with two leading axes
    ("...ij,...jk->...ik", [[7, 2, 3], [5, 7, 3, 4]], "bij,abjk->abik"),  # ellipses of different rank
    ("...ij,...jk->...ik", [[1, 2, 3], [5, 3, 4]], None),  # a broadcast (1 vs 5): no letters express it
    ("abcd->acdb", [[1, 2, 3, 4]], "abcd->acdb"),
])
def test_einsum_ellipsis_is_spelled_out(equation: str, shapes: list, expected: str | None) -> None:
    from porttax.tfjs.fixes import explicit_equation

    got = explicit_equation(equation, shapes)
    if expected is None:
        assert got is None
        return
    assert got is not None and "..." not in got
    # the same contraction: numpy agrees on random operands
    import numpy as np

    rng = np.random.default_rng(0)
    operands = [rng.standard_normal(s) for s in shapes]
    np.testing.assert_allclose(np.einsum(got, *operands), np.einsum(equation, *operands), rtol=1e-12)


def test_the_node_package_ships_in_the_wheel() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "porttax.tfjs" in config["packages"]
    shipped = set(config["package-data"]["porttax.tfjs"])
    assert {"requirements.txt", "package.json", "package-lock.json", "run_graph_model.mjs"} <= shipped
    lock = json.loads((REPO / "porttax" / "tfjs" / "package-lock.json").read_text())
    pinned = {k.split("node_modules/")[-1]: v["version"] for k, v in lock["packages"].items() if k}
    assert pinned["@tensorflow/tfjs-core"] == pinned["@tensorflow/tfjs-converter"] == "4.22.0"
    assert "@tensorflow/tfjs-node" not in pinned  # its install downloads libtensorflow from outside the registries
