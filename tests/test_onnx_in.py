"""ONNX in: porttax's own op registry turns an ONNX graph into a readable torch module, and from there
every road (PyTorch .pt2, Keras, SavedModel) is proved against the ONNX file in onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from porttax import cli, models
from porttax._frameworks import import_torch

torch = import_torch()


def _onnx_of(module, example, path: Path) -> Path:
    torch.onnx.export(module.eval(), example, str(path), dynamo=True)
    return path


def _convert(src: Path, out: Path, tmp_path: Path) -> dict:
    report = tmp_path / f"{out.name}.json"
    code = cli.main(["convert", str(src), "-o", str(out), "-q", "--no-latency", "--report", str(report)])
    data = json.loads(report.read_text())
    assert code == 0, data["parity"]
    assert data["porting_tax"]["drift_rel_l2"] <= 1e-5
    assert ".onnx" in json.dumps(data["parity"])  # the reference was the ONNX file in onnxruntime
    return data


@pytest.mark.parametrize("preset", ["mlp-tiny", "resnet-tiny", "encoder-tiny", "llama-tiny"])
def test_preset_onnx_converts_back_to_every_target(preset: str, tmp_path: Path) -> None:
    module = models.build_model(preset)
    src = _onnx_of(module, models.example_inputs(preset, batch=1, seq=16), tmp_path / f"{preset}.onnx")
    for out in (tmp_path / "back.pt2", tmp_path / "m.keras", tmp_path / "m_sm"):
        _convert(src, out, tmp_path)
    # modules are named after the initializers, i.e. after the original module paths: every weight of the
    # converted module sits in a module the original has (the exporter may fold BatchNorm into Conv)
    back = torch.export.load(str(tmp_path / "back.pt2"))
    paths = {name for name, _ in module.named_modules()}
    assert back.state_dict and all(k.rsplit(".", 1)[0] in paths for k in back.state_dict), sorted(back.state_dict)


def _hf(kind: str):
    if kind == "bert":
        from transformers import BertConfig, BertModel

        net = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64, max_position_embeddings=64))
        pick = "last_hidden_state"
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        net = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=176,
                                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                           max_position_embeddings=128))
        pick = "logits"

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, input_ids):
            kwargs = {"use_cache": False} if pick == "logits" else {}
            return getattr(self.net(input_ids=input_ids, **kwargs), pick)

    return Wrapped(), (torch.randint(0, 100, (1, 16)),)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "bert", "llama"])
def test_exported_onnx_of_real_architectures_converts(name: str, tmp_path: Path) -> None:
    from porttax._frameworks import import_torchvision

    torch.manual_seed(0)
    if name in ("bert", "llama"):
        module, example = _hf(name)
    else:
        module = getattr(import_torchvision().models, name)(weights=None)
        example = (torch.randn(1, 3, 224, 224),)
    src = _onnx_of(module, example, tmp_path / f"{name}.onnx")
    for out in (tmp_path / "back.pt2", tmp_path / "m.keras", tmp_path / "m_sm"):
        _convert(src, out, tmp_path)


def test_unsupported_onnx_ops_are_named_with_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Bernoulli", ["r"], ["h"]),
             helper.make_node("Bernoulli", ["h"], ["y"])]  # random draws: no road converts them
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    path = tmp_path / "odd.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert cli.main(["convert", str(path), "-o", str(tmp_path / "odd.pt2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "Bernoulli ×2" in err and str(path) in err and "What to do:" in err
    assert not (tmp_path / "odd.pt2").exists()


def test_symbolic_input_dims(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Symbolic dims are tried open; where the converted module pins them (this encoder's ONNX graph
    computes its reshapes from the input's shape), each is fixed, a batch at 1, and named in the report.
    With --static a symbolic batch is fixed to 1 and other symbolic dims need --input-shape."""
    module = models.build_model("encoder-tiny")
    ids = models.example_inputs("encoder-tiny", batch=2, seq=16)
    batch, seq = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=2, max=32)
    src = tmp_path / "dyn.onnx"
    torch.onnx.export(module.eval(), ids, str(src), dynamo=True, dynamic_shapes=({0: batch, 1: seq},))
    report = tmp_path / "r.json"
    assert cli.main(["convert", str(src), "-o", str(tmp_path / "d.keras"), "-q", "--no-latency",
                     "--report", str(report)]) == 0
    written = json.loads(report.read_text())
    notes = " ".join(written["shape_notes"])
    assert written["inputs"][0]["shape"] == [1, 16] and "(batch) stays 1" in notes and "(seq) stays 16" in notes
    assert cli.main(["convert", str(src), "-o", str(tmp_path / "a.pt2"), "-q", "--static"]) == 2
    err = capsys.readouterr().err
    assert "seq" in err and "--input-shape" in err and str(src) in err
    assert cli.main(["convert", str(src), "-o", str(tmp_path / "b.pt2"), "-q", "--no-latency",
                     "--input-shape", "3,12"]) == 0
    assert cli.main(["convert", str(src), "-o", str(tmp_path / "c.pt2"), "-q", "--input-shape", "3,12,1"]) == 2
