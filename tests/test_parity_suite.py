"""The parity suite across formats, backends and gates: ONNX files, Keras workers, user cases, generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import porttax
from porttax import models
from porttax._frameworks import import_keras, import_torch
from porttax.parity import KerasRunner, TorchRunner, assert_parity, check_parity
from porttax.layer_map import read_keras_file
from porttax.targets.keras import write_keras
from tests.conftest import run_cli

torch = import_torch()
nn = torch.nn


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A .pt2 source, its .keras port, and a copy of the port with fc1's kernel transposed."""
    tmp = tmp_path_factory.mktemp("pair")
    torch.manual_seed(0)
    module = TwoLayer().eval()
    x = torch.randn(4, 6)
    source = tmp / "two.pt2"
    torch.export.save(torch.export.export(module, (x,)), str(source))
    good = tmp / "two.keras"
    porttax.convert(module, example_inputs=(x,), output=good, measure_latency=False)
    bad = tmp / "bad.keras"
    keras = import_keras()
    model = keras.saving.load_model(good, compile=False)
    kernel, bias = model.get_layer("fc1").get_weights()
    model.get_layer("fc1").set_weights([kernel * 1.01, bias])
    write_keras(model, bad, read_keras_file(good))
    return module, source, good, bad


def _onnx_of(module: TwoLayer, path: Path, scale: float = 1.0) -> None:
    """The same two-layer network written as an ONNX graph by hand (no exporter involved)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, t: torch.Tensor) -> onnx.TensorProto:
        return numpy_helper.from_array(t.detach().numpy().astype(np.float32), name)

    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
        [init("w1", module.fc1.weight * scale), init("b1", module.fc1.bias), init("w2", module.fc2.weight),
         init("b2", module.fc2.bias)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_on_either_side(pair, tmp_path):
    module, source, good, _ = pair
    onnx_path = tmp_path / "two.onnx"
    _onnx_of(module, onnx_path)
    # torch vs ONNX, and ONNX (as the reference) vs the Keras port: input names differ, so feed cases.
    proc = run_cli("parity", str(source), str(onnx_path), "--seeds", "2", "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cases = tmp_path / "cases.npz"
    rng = np.random.default_rng(0)
    np.savez(cases, **{"case0/x": rng.standard_normal((4, 6)).astype(np.float32)})
    drifted = tmp_path / "drifted.onnx"
    _onnx_of(module, drifted, scale=1.001)
    out = tmp_path / "r.json"
    proc = run_cli("parity", str(onnx_path), str(drifted), "--inputs", str(cases), "--json", str(out), "-q")
    assert proc.returncode == 1
    report = json.loads(out.read_text())
    assert report["cases"][0]["label"] == "case0"
    assert "no porttax layer map" in report["localization"]["note"] or "cannot expose" in report["localization"]["note"]


def test_onnx_external_data_outside_the_folder_is_refused(pair, tmp_path):
    import onnx

    module, source, _, _ = pair
    path = tmp_path / "m" / "two.onnx"
    path.parent.mkdir()
    _onnx_of(module, path)
    model = onnx.load(str(path))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    onnx.save(model, str(path))
    proc = run_cli("parity", str(source), str(path))
    assert proc.returncode == 2
    assert "outside the model folder" in proc.stderr and "w1" in proc.stderr


def test_keras_on_jax_in_a_worker_localises(pair, tmp_path):
    _, source, _, bad = pair
    out = tmp_path / "r.json"
    proc = run_cli("parity", str(source), str(bad), "--backend", "jax", "--seeds", "1", "--json", str(out))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "first diverging layer: fc1" in proc.stdout
    report = json.loads(out.read_text())
    runtime = report["environment"]["runtimes"]["converted"]
    assert runtime["backend"] == "jax" and "jax_default_matmul_precision" in runtime["precision"]
    assert report["first_divergent"] == "fc1"


def test_assert_parity_for_a_projects_own_tests(pair):
    _, source, good, bad = pair
    report = assert_parity(str(source), str(good), seeds=(0, 1))
    assert report.passed
    with pytest.raises(AssertionError, match="first diverging layer: fc1"):
        assert_parity(str(source), str(bad), seeds=(0,))


def test_cuda_request_without_a_gpu_is_bad_input(pair):
    if torch.cuda.is_available():
        pytest.xfail("this machine has CUDA; the no-GPU message cannot be produced here")
    _, source, good, _ = pair
    proc = run_cli("parity", str(source), str(good), "--device", "cuda")
    assert proc.returncode == 2
    assert "CUDA" in proc.stderr


def test_gate_statistic_and_per_output_tolerances(pair):
    module, _, _, bad = pair
    converted = KerasRunner(bad)
    source = TorchRunner(module, converted.input_names)
    strict = check_parity(source, converted, seeds=(0,), localize=False)
    assert not strict.passed
    worst = strict.cases[0].outputs[0].metrics.max_abs
    loose = check_parity(source, converted, seeds=(0,), stat="max_abs", rtol=worst * 1.5)
    assert loose.passed and loose.gate_stat == "max_abs" and loose.profile.threshold == pytest.approx(worst * 1.5)
    from porttax.parity import Tolerance

    per_output = check_parity(source, converted, seeds=(0,), tolerances={"output_0": Tolerance(rtol=0.5)})
    assert per_output.passed
    assert not check_parity(source, converted, seeds=(0,), tolerances={"other": Tolerance(rtol=0.5)},
                            localize=False).passed


def test_greedy_generation_agrees_and_finds_the_first_divergent_step(tmp_path):
    module = models.build_model("llama-tiny", seed=0)
    example = models.example_inputs("llama-tiny", batch=2, seq=16)
    path = tmp_path / "llama.keras"
    porttax.convert(module, example_inputs=example, output=path, measure_latency=False)
    converted = KerasRunner(path)
    source = TorchRunner(module, converted.input_names)
    report = check_parity(source, converted, seeds=(0,), generate=6)
    assert report.passed and report.generation is not None
    assert report.generation.first_divergent_step is None and report.generation.agreement == 1.0
    assert len(report.generation.source_tokens) == 2 and len(report.generation.source_tokens[0]) == 6

    with torch.no_grad():  # a source whose head prefers other tokens: generation must part at once
        module.lm_head.weight.copy_(module.lm_head.weight.flip(0))
    report = check_parity(source, converted, seeds=(0,), generate=6, localize=False)
    assert not report.passed
    assert report.generation.first_divergent_step == 0
    assert any("generation" in line for line in report.failures())
