"""Planted faults: each is caught by parity and localised to the layer that holds it.

Faults are planted the way real porting bugs look: a converted layer with the wrong epsilon or a
transposed weight, or a source whose padding mode / rotary base no longer matches what was converted.
Every test asserts the layer name the report gives, in the API report and in the CLI's reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import porttax
from porttax import models
from porttax._frameworks import import_keras, import_torch
from porttax.parity import KerasRunner, SavedModelRunner, TorchRunner, check_parity
from porttax.parity.precision import precision_warnings
from porttax.parity.profiles import get_profile
from porttax.layer_map import read_keras_file
from porttax.targets.keras import write_keras
from tests.conftest import run_cli

torch = import_torch()
nn = torch.nn


class Block(nn.Module):
    """Linear → LayerNorm → square Linear → GELU → LayerNorm → head: every fault site a named leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(12, 16)
        self.norm1 = nn.LayerNorm(16)
        self.square = nn.Linear(16, 16)
        self.act = nn.GELU()
        self.norm2 = nn.LayerNorm(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.inp(x))
        return self.head(self.norm2(self.act(self.square(h))))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.reflect = nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.reflect(torch.relu(self.stem(x)))))
        return self.fc(self.pool(h).flatten(1))


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.normal_(p, std=0.5)
    return module.eval()


def _convert(module: nn.Module, example: tuple, path: Path) -> porttax.conversion.ConversionResult:
    result = porttax.convert(module, example_inputs=example, output=path, measure_latency=False, force=True)
    assert result.parity is not None and result.parity.passed, result.parity.summary_line()
    return result


def _plant_in_keras(path: Path, plant) -> None:
    """Load the converted model, apply `plant(model)`, save it back with its layer map."""
    keras = import_keras()
    layer_map = read_keras_file(path)
    model = keras.saving.load_model(path, compile=False)
    plant(model)
    path.unlink()
    write_keras(model, path, layer_map)


@pytest.fixture(scope="module")
def block(tmp_path_factory):
    module = _seeded(Block())
    x = torch.randn(2, 12)
    path = tmp_path_factory.mktemp("block") / "block.keras"
    _convert(module, (x,), path)
    return module, path


def _check(module, path, **kwargs):
    converted = KerasRunner(path)
    source = TorchRunner(module, converted.input_names)
    return check_parity(source, converted, seeds=(0, 1), **kwargs)


def test_passing_model_localises_nothing(block):
    module, path = block
    report = _check(module, path, localize=True)
    assert report.passed and report.localization is not None
    assert report.first_divergent is None
    names = [layer.name for layer in report.localization.layers]
    assert names[:3] == ["inp", "norm1", "square"]  # execution order, named after the source modules
    assert all(layer.passed for layer in report.localization.layers)


def test_layernorm_with_wrong_epsilon(block, tmp_path):
    module, original = block
    path = tmp_path / "eps.keras"
    path.write_bytes(original.read_bytes())

    def plant(model):
        model.get_layer("norm2").epsilon = 0.5  # torch's is 1e-5

    _plant_in_keras(path, plant)
    report = _check(module, path)
    assert not report.passed
    assert report.first_divergent == "norm2"
    by_name = {layer.name: layer for layer in report.localization.layers}
    assert by_name["square"].passed and by_name["act"].passed  # everything before it still matches
    assert not by_name["head"].passed  # and the drift is inherited downstream


def test_transposed_square_linear_weight(block, tmp_path):
    module, original = block
    path = tmp_path / "transposed.keras"
    path.write_bytes(original.read_bytes())

    def plant(model):
        dense = model.get_layer("square")
        kernel, bias = dense.get_weights()
        dense.set_weights([kernel.T, bias])  # the classic forgotten transpose: shapes still fit

    _plant_in_keras(path, plant)
    report = _check(module, path)
    assert not report.passed
    assert report.first_divergent == "square"
    assert "first diverging layer: square" in report.summary_line()


def test_conv_with_wrong_padding_mode(tmp_path):
    module = _seeded(ConvNet(), 1)
    module.bn.running_var.fill_(1.5)
    x = torch.randn(1, 3, 10, 10)
    path = tmp_path / "conv.keras"
    _convert(module, (x,), path)
    module.reflect.padding_mode = "zeros"  # the source now pads with zeros; the port reflects
    report = _check(module, path)
    assert not report.passed
    assert report.first_divergent == "reflect"
    by_name = {layer.name: layer for layer in report.localization.layers}
    assert by_name["stem"].passed


class Tagger(nn.Module):
    """Embedding-free sequence tagger: Linear → GRU → Linear, the recurrent layer in the middle."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 8)
        self.gru = nn.GRU(8, 8, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.gru(self.proj(x))[0])


def test_recurrent_layer_with_swapped_gates(tmp_path):
    from porttax.converters.transforms import GateReorder

    module = _seeded(Tagger(), 2)
    path = tmp_path / "tagger.keras"
    _convert(module, (torch.randn(2, 7, 5),), path)

    def plant(model):
        gru = model.get_layer("gru")  # Keras holds z|r|h; swapping z and r is the classic GRU porting bug
        swap = GateReorder((1, 0, 2), axis=-1)
        gru.set_weights([swap.apply(w) for w in gru.get_weights()])

    _plant_in_keras(path, plant)
    report = _check(module, path)
    assert not report.passed
    assert report.first_divergent == "gru"
    assert {layer.name: layer.passed for layer in report.localization.layers}["proj"]


def test_llama_wrong_rotary_base(tmp_path):
    config = {"rope_theta": 10000.0}
    converted_from = models.build_model("llama-tiny", config=config, seed=0)
    example = models.example_inputs("llama-tiny", batch=1, seq=16)
    path = tmp_path / "llama.keras"
    _convert(converted_from, example, path)
    # The same weights with another rotary base: what a port that ignores rope_theta computes.
    source = models.build_model("llama-tiny", config={"rope_theta": 500.0}, seed=0)
    source.load_state_dict(converted_from.state_dict())
    report = _check(source, path)
    assert not report.passed
    assert report.first_divergent == "model.rotary_emb"
    embed = [layer for layer in report.localization.layers if layer.name == "model.embed_tokens"]
    assert embed and embed[0].passed


def test_savedmodel_localises_with_plain_tensorflow_signature(tmp_path):
    module = _seeded(Block(), 3)
    x = torch.randn(2, 12)
    path = tmp_path / "block_sm"
    _convert(module, (x,), path)
    with torch.no_grad():
        module.norm1.weight.mul_(-1.0)  # the source's norm1 scale flipped after conversion
    converted = SavedModelRunner(path)
    report = check_parity(TorchRunner(module, converted.input_names), converted, seeds=(0,))
    assert not report.passed
    assert report.first_divergent == "norm1"


def test_cli_names_the_layer_in_every_report_and_exits_1(block, tmp_path):
    module, original = block
    path = tmp_path / "eps.keras"
    path.write_bytes(original.read_bytes())
    _plant_in_keras(path, lambda m: setattr(m.get_layer("norm1"), "epsilon", 1.0))
    source = tmp_path / "block.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(2, 12),)), str(source))
    reports = {ext: tmp_path / f"r.{ext}" for ext in ("json", "md", "xml", "html")}
    proc = run_cli("parity", str(source), str(path), "--seeds", "2", "--json", str(reports["json"]),
                   "--markdown", str(reports["md"]), "--junit", str(reports["xml"]), "--html", str(reports["html"]))
    assert proc.returncode == 1, proc.stderr[-2000:]
    data = json.loads(reports["json"].read_text())
    assert data["first_divergent"] == "norm1" and data["passed"] is False
    for ext in ("md", "xml", "html"):
        assert "norm1" in reports[ext].read_text(), ext
    assert "norm1" in proc.stdout


def test_cli_passes_and_baseline_catches_creeping_drift(block, tmp_path):
    module, original = block
    source = tmp_path / "block.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(2, 12),)), str(source))
    base = tmp_path / "base.json"
    proc = run_cli("parity", str(source), str(original), "--seeds", "2", "--json", str(base), "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    drift = json.loads(base.read_text())["cases"][0]["outputs"][0]["metrics"]["rel_l2"]
    assert 0 < drift < 1e-5

    # Still inside fp32 tolerance, but an order of magnitude worse than the baseline.
    path = tmp_path / "creep.keras"
    path.write_bytes(original.read_bytes())

    def plant(model):
        dense = model.get_layer("head")
        kernel, bias = dense.get_weights()
        dense.set_weights([kernel * np.float32(1 + 3e-6), bias])

    _plant_in_keras(path, plant)
    proc = run_cli("parity", str(source), str(path), "--seeds", "2", "--baseline", str(base), "-q",
                   "--json", str(tmp_path / "now.json"))
    now = json.loads((tmp_path / "now.json").read_text())
    assert all(o["passed"] for c in now["cases"] for o in c["outputs"])  # within tolerance...
    assert proc.returncode == 1 and now["baseline"]["passed"] is False  # ...yet a regression
    # both reports measured against float64, so the ratio to the source's own error is what grew
    assert now["baseline"]["regressions"] and "ratio to the source's own error" in now["baseline"]["regressions"][0]


def test_dynamic_shape_check_fails_fixed_length_port(tmp_path):
    module = models.build_model("llama-tiny", seed=0)
    example = models.example_inputs("llama-tiny", batch=1, seq=16)
    seq = torch.export.Dim("seq", min=2, max=64)
    program = torch.export.export(module, example, dynamic_shapes=({1: seq},))
    source = tmp_path / "llama_dyn.pt2"
    torch.export.save(program, str(source))
    converted = tmp_path / "llama.keras"
    _convert(module, example, converted)  # converted at a fixed sequence length of 16
    out = tmp_path / "r.json"
    proc = run_cli("parity", str(source), str(converted), "--shapes", "seq=16,32", "--seeds", "1", "--json", str(out))
    assert proc.returncode == 1, proc.stderr[-2000:]
    cases = {c["label"]: c for c in json.loads(out.read_text())["cases"]}
    assert cases["seed=0 seq=16"]["passed"]
    failed = cases["seed=0 seq=32"]
    assert not failed["passed"] and "fixed size" in failed["reason"] and "axis 1" in failed["reason"]


def test_shapes_for_a_dim_the_source_does_not_have_is_bad_input(block, tmp_path):
    module, original = block
    source = tmp_path / "block.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(2, 12),)), str(source))
    proc = run_cli("parity", str(source), str(original), "--shapes", "seq=8,16")
    assert proc.returncode == 2
    assert "seq" in proc.stderr and "dynamic dims" in proc.stderr


def test_tf32_profile_and_precision_modes_reported(block):
    module, path = block
    fp32 = _check(module, path)
    tf32 = _check(module, path, profile="tf32")
    assert fp32.passed and tf32.passed
    assert (fp32.profile.name, fp32.profile.threshold) == ("fp32", 1e-5)
    assert (tf32.profile.name, tf32.profile.threshold) == ("tf32", 1e-3)
    assert "fp32" in fp32.summary_line() and "tf32" in tf32.summary_line()
    modes = fp32.environment["tensorflow"]
    assert "tensor_float_32_execution" in modes and not fp32.warnings  # CPU: no reduced mode in force


def test_jax_tf32_default_on_gpu_is_named():
    fp32, tf32 = get_profile("fp32"), get_profile("tf32")
    gpu_jax = {"converted": ("cuda:0", {"jax_default_matmul_precision": None}), "source": ("cuda:0", {
        "cuda_matmul_allow_tf32": False, "cudnn_allow_tf32": False, "float32_matmul_precision": "highest"})}
    warnings = precision_warnings(fp32, gpu_jax)
    assert len(warnings) == 1 and "JAX" in warnings[0] and "TF32" in warnings[0] and "converted" in warnings[0]
    assert precision_warnings(tf32, gpu_jax) == []  # asked for: nothing to warn about
    cpu = {"converted": ("cpu", {"jax_default_matmul_precision": None})}
    assert precision_warnings(fp32, cpu) == []
    highest = {"converted": ("cuda:0", {"jax_default_matmul_precision": "highest"})}
    assert precision_warnings(fp32, highest) == []
