"""NaN and Inf where the source has them: the same non-finite value at the same position passes and is
counted; one the source does not have fails, however small the finite drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from porttax.parity import check_parity, compare, verdict


def test_shared_non_finite_values_pass_and_are_counted() -> None:
    source = np.array([1.0, np.nan, 2.0, np.inf, -np.inf])
    m = compare(source.copy(), source)
    assert m.nan_actual == m.nan_expected == 1 and m.nonfinite_shared == 3 and m.nonfinite_mismatch == 0
    assert m.rel_l2 == 0.0  # distances cover the finite positions only
    passed, reason = verdict(m, "fp32")
    assert passed and "3 non-finite" in reason


@pytest.mark.parametrize("converted", [
    [1.0, np.nan, np.nan, np.inf, -np.inf],  # a NaN where the source is finite
    [1.0, 0.5, 2.0, np.inf, -np.inf],  # a finite value where the source has NaN
    [1.0, np.nan, 2.0, -np.inf, -np.inf],  # Inf of the other sign
    [1.0, np.inf, 2.0, np.inf, -np.inf],  # Inf where the source has NaN
])
def test_a_non_finite_value_the_source_does_not_have_fails(converted: list[float]) -> None:
    source = np.array([1.0, np.nan, 2.0, np.inf, -np.inf])
    m = compare(np.array(converted), source)
    assert m.nonfinite_mismatch == 1
    passed, reason = verdict(m, "bf16", atol=1e9, rtol=1e9)  # no tolerance overrides it
    assert not passed and "non-finite" in reason


def test_an_output_with_nothing_finite_proves_nothing_and_fails() -> None:
    poisoned = np.array([[np.nan, np.inf], [np.nan, -np.inf]])  # what a NaN weight spreads to
    m = compare(poisoned.copy(), poisoned)
    assert m.nonfinite_shared == 4 and m.nonfinite_mismatch == 0
    passed, reason = verdict(m, "bf16", atol=1e9, rtol=1e9)
    assert not passed and "nothing finite" in reason
    assert verdict(compare(np.zeros((0, 3)), np.zeros((0, 3))), "fp32")[0]  # empty is not poisoned


def _sqrt_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])
    graph = helper.make_graph([helper.make_node("Sqrt", ["x"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
                              "signed_sqrt", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_faithful_conversion_of_sqrt_on_signed_inputs_passes_and_one_more_nan_fails(tmp_path: Path) -> None:
    import porttax
    from porttax._frameworks import import_torch
    from porttax.parity import TorchRunner

    _sqrt_onnx(tmp_path / "sqrt.onnx")
    result = porttax.convert(tmp_path / "sqrt.onnx", to="keras", output=tmp_path / "sqrt.keras", seeds=(0, 1),
                             measure_latency=False)
    outputs = [o for case in result.parity.cases for o in case.outputs]
    assert result.passed, result.parity.summary_line()
    assert all(o.metrics.nonfinite_shared > 0 and o.metrics.nonfinite_mismatch == 0 for o in outputs)

    torch = import_torch()

    class Sqrt(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(torch.sqrt(x))

    class OneMoreNaN(Sqrt):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x).clone()
            finite = torch.nonzero(torch.isfinite(out.flatten()))[0, 0]
            out.view(-1)[finite] = float("nan")  # planted: NaN where the source is finite
            return out

    specs = result.source.specs
    same = check_parity(TorchRunner(Sqrt(), ["x"]), TorchRunner(Sqrt(), ["x"]), specs, seeds=(0,))
    assert same.passed
    planted = check_parity(TorchRunner(Sqrt(), ["x"]), TorchRunner(OneMoreNaN(), ["x"]), specs, seeds=(0,))
    assert not planted.passed and "non-finite" in planted.cases[0].outputs[0].reason
