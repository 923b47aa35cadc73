"""porttax as an `onnx.backend` backend, one per road: ONNX's own node cases run through the public
`prepare` / `run` interface and match ONNX's reference outputs the way ONNX's runner compares them.
The full table over every case is bench/onnx_conformance.py; this is its sample."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper

from porttax._frameworks import import_keras, import_torch
from porttax.errors import PorttaxError
from porttax.operator_sets.onnx_backend import BACKENDS, KerasBackend, TorchBackend

import_torch()  # before Keras/TensorFlow: see porttax._frameworks
import_keras()

SAMPLE = ("test_relu", "test_add_bcast", "test_softmax_axis_1", "test_transpose_all_permutations_3",
          "test_reduce_mean_keepdims_random", "test_matmul_3d", "test_gather_0", "test_where_example")


@functools.cache
def _cases() -> dict:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return {c.name: c for c in collect_testcases(None)}


def _assert_like_onnx_runner(expected: list, got: list, rtol: float, atol: float) -> None:
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, g.dtype, e.shape, e.dtype)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("road", sorted(BACKENDS))
def test_node_cases_pass_on_each_road(road: str) -> None:
    backend = BACKENDS[road]
    for name in SAMPLE if road != "savedmodel" else SAMPLE[:3]:  # a SavedModel write is the slow part
        case = _cases()[name]
        rep = backend.prepare(case.model, "CPU")
        for inputs, expected in case.data_sets:
            _assert_like_onnx_runner(list(expected), list(rep.run(list(inputs))), case.rtol, case.atol)


def test_a_refused_op_raises_porttax_error_and_sizes_reconvert() -> None:
    """What a road cannot take is a PorttaxError naming the op (a counted refusal, never a crash), and one
    prepared model runs at new input sizes by converting again at them."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])
    relu = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                             opset_imports=[helper.make_opsetid("", 17)])
    rep = KerasBackend.prepare(relu)
    for n in (2, 5):
        data = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
        (out,) = rep.run([data])
        np.testing.assert_array_equal(out, np.maximum(data, 0))
    odd = helper.make_model(helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")],
                                              "g", [x], [y]),
                            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(PorttaxError, match="Frobnicate"):
        TorchBackend.prepare(odd).run([np.eye(3, dtype=np.float32)])
    with pytest.raises(ValueError, match="CPU"):
        TorchBackend.prepare(relu, "CUDA")
