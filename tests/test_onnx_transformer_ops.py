"""Opset-23 transformer ops as single ONNX nodes (RMSNormalization, RotaryEmbedding, Attention) convert
and match onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from porttax import cli

RNG = np.random.default_rng(0)


def _write(path: Path, nodes, inputs, output_shape, inits) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              initializer=[numpy_helper.from_array(a, n) for n, a in inits.items()])
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]).SerializeToString())
    return path


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_llama_block_of_opset23_nodes(tmp_path: Path) -> None:
    """RMSNorm → q/k/v → rotary (4-D, position ids from the graph) → causal GQA attention, 4-D layout."""
    b, s, d, hq, hkv, e = 2, 6, 16, 4, 2, 4
    inits = {"norm.weight": 1 + 0.1 * _f(d), "wq": _f(d, hq * e), "wk": _f(d, hkv * e), "wv": _f(d, hkv * e),
             "cos": _f(32, e // 2), "sin": _f(32, e // 2), "shape_q": np.array([b, s, hq, e]),
             "shape_kv": np.array([b, s, hkv, e]), "pos": np.tile(np.arange(s), (b, 1)).astype(np.int64)}
    nodes = [helper.make_node("RMSNormalization", ["x", "norm.weight"], ["n"], epsilon=1e-6)]
    for name, w, shape, heads in (("q", "wq", "shape_q", hq), ("k", "wk", "shape_kv", hkv), ("v", "wv", "shape_kv", hkv)):
        nodes += [helper.make_node("MatMul", ["n", w], [f"{name}2"]),
                  helper.make_node("Reshape", [f"{name}2", shape], [f"{name}3"]),
                  helper.make_node("Transpose", [f"{name}3"], [f"{name}4"], perm=[0, 2, 1, 3])]
    nodes += [helper.make_node("RotaryEmbedding", ["q4", "cos", "sin", "pos"], ["qr"]),
              helper.make_node("RotaryEmbedding", ["k4", "cos", "sin", "pos"], ["kr"]),
              helper.make_node("Attention", ["qr", "kr", "v4"], ["y"], is_causal=1)]
    path = _write(tmp_path / "block.onnx", nodes, [("x", TensorProto.FLOAT, [b, s, d])], [b, hq, s, e], inits)
    for out in ("block.pt2", "block.keras"):
        assert cli.main(["convert", str(path), "-o", str(tmp_path / out), "-q", "--no-latency"]) == 0


@pytest.mark.parametrize("interleaved", [0, 1])
def test_three_d_attention_with_mask_and_partial_interleaved_rotary(interleaved: int, tmp_path: Path) -> None:
    b, s, hq, hkv, e = 2, 5, 4, 1, 8
    inits = {"cos": _f(b, s, 2), "sin": _f(b, s, 2), "mask": RNG.random((s, s)) > 0.3}
    inits["mask"][:, 0] = True  # every query sees at least one key
    nodes = [helper.make_node("RotaryEmbedding", ["q", "cos", "sin"], ["qr"], num_heads=hq, rotary_embedding_dim=4,
                              interleaved=interleaved),
             helper.make_node("Attention", ["qr", "k", "v", "mask"], ["y"], q_num_heads=hq, kv_num_heads=hkv,
                              scale=0.3)]
    inputs = [("q", TensorProto.FLOAT, [b, s, hq * e]), ("k", TensorProto.FLOAT, [b, s, hkv * e]),
              ("v", TensorProto.FLOAT, [b, s, hkv * e])]
    path = _write(tmp_path / "attn.onnx", nodes, inputs, [b, s, hq * e], inits)
    assert cli.main(["convert", str(path), "-o", str(tmp_path / "attn.pt2"), "-q", "--no-latency"]) == 0
