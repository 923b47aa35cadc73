"""The parity base: metrics, profiles, inputs, runners, worker and check_parity, on real frameworks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from porttax._frameworks import import_keras, import_torch
from porttax.errors import InputError
from porttax.parity import (
    KerasRunner,
    SavedModelRunner,
    TorchRunner,
    assert_parity,
    check_parity,
    compare,
    get_profile,
    load_npz_cases,
    make_inputs,
    verdict,
)
from porttax.parity.worker import WorkerError, run_in_worker
from porttax.types import TensorSpec

SPECS = [TensorSpec("x", ("batch", 4), "float32")]


def test_import_is_cheap():
    code = ("import sys, porttax.parity, porttax.parity.worker; "
            "print(sorted({'torch', 'tensorflow', 'keras', 'jax'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- metrics -----------------------------------------------------------------------------------------


def test_identical_outputs_have_zero_distance():
    a = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    m = compare(a, a.copy())
    assert m.shape_match and m.finite_ok
    assert m.max_abs == m.max_rel == m.rel_l2 == m.mean_abs == m.median_abs == 0.0
    assert m.cosine == pytest.approx(1.0)
    assert m.topk_agreement == {1: 1.0}
    assert verdict(m, "fp32")[0]


def test_known_perturbation_gives_known_rel_l2():
    expected = np.random.default_rng(1).standard_normal(1000)
    m = compare(expected * (1 + 1e-3), expected)
    assert m.rel_l2 == pytest.approx(1e-3, rel=1e-9)
    assert m.max_rel == pytest.approx(1e-3, rel=1e-9)
    assert m.max_abs == pytest.approx(1e-3 * np.abs(expected).max(), rel=1e-9)
    assert m.cosine == pytest.approx(1.0)
    assert m.topk_agreement == {}  # rank 1: not logits
    assert not verdict(m, "fp32")[0]
    assert verdict(m, "bf16")[0]


def test_zero_reference_uses_absolute_l2():
    m = compare(np.array([3.0, 4.0]), np.zeros(2))
    assert m.rel_l2 == pytest.approx(5.0)
    assert m.cosine == 0.0


def test_inf_must_match_in_place_and_sign():
    a = np.array([np.inf, 1.0, -np.inf])
    assert verdict(compare(a, a.copy()), "fp32")[0]
    passed, reason = verdict(compare(a, np.array([-np.inf, 1.0, -np.inf])), "fp32")
    assert not passed and "Inf" in reason
    assert not verdict(compare(a, np.array([1e30, 1.0, -np.inf])), "fp32")[0]


def test_shape_mismatch_fails():
    m = compare(np.zeros((2, 3)), np.zeros((3, 2)))
    assert not m.shape_match and m.rel_l2 is None
    passed, reason = verdict(m, "fp32")
    assert not passed and "shape" in reason


def test_topk_agreement_on_logits():
    expected = np.array([[0.1, 0.9, 0.0, 0.2], [0.5, 0.1, 0.3, 0.0], [0.0, 0.1, 0.2, 0.3], [1.0, 0.0, 0.0, 0.5]])
    actual = expected.copy()
    actual[0, 1], actual[0, 3] = 0.2, 0.9  # row 0: argmax moves from class 1 to class 3; top-2 set unchanged
    m = compare(actual.astype(np.float32), expected.astype(np.float32), topk=(1, 2))
    assert m.topk_agreement[1] == pytest.approx(0.75)
    assert m.topk_agreement[2] == pytest.approx(1.0)


# --- profiles ----------------------------------------------------------------------------------------


def test_profile_thresholds():
    assert {n: get_profile(n).threshold for n in ("fp32", "tf32", "bf16", "fp16")} == {
        "fp32": 1e-5, "tf32": 1e-3, "bf16": 1e-2, "fp16": 1e-3}
    ref = np.ones(100)
    just_under, just_over = compare(ref * (1 + 0.9e-5), ref), compare(ref * (1 + 1.1e-5), ref)
    assert verdict(just_under, "fp32")[0]
    passed, reason = verdict(just_over, "fp32")
    assert not passed and "rel_l2" in reason and "fp32" in reason
    assert verdict(just_over, "tf32")[0]
    assert verdict(just_over, "fp32", rtol=2e-5)[0]
    assert verdict(just_over, "fp32", atol=1e-4)[0]  # absolute floor
    assert not verdict(just_over, "fp32", atol=1e-6)[0]


def test_unknown_profile_lists_valid_names():
    with pytest.raises(InputError, match="fp32.*tf32.*bf16.*fp16"):
        get_profile("fp64")


# --- inputs ------------------------------------------------------------------------------------------


def test_inputs_are_deterministic_by_seed():
    specs = [TensorSpec("x", ("batch", 3), "float32"), TensorSpec("mask", ("batch",), "bool")]
    a, b, c = make_inputs(specs, 0), make_inputs(specs, 0), make_inputs(specs, 1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["x"], c["x"])
    assert a["x"].dtype == np.float32 and a["x"].shape == (1, 3) and a["mask"].dtype == np.bool_
    # Each input has its own stream: the signature's order does not change the values.
    assert np.array_equal(make_inputs(specs[::-1], 0)["x"], a["x"])


def test_integer_inputs_stay_in_value_range():
    specs = [TensorSpec("ids", ("batch", "seq"), "int64", value_range=(5, 9)), TensorSpec("pos", (50,), "int32")]
    inputs = make_inputs(specs, 3, sizes={"batch": 4, "seq": 50})
    ids, pos = inputs["ids"], inputs["pos"]
    assert ids.shape == (4, 50) and ids.dtype == np.int64
    assert ids.min() >= 5 and ids.max() <= 8 and len(np.unique(ids)) == 4
    assert pos.dtype == np.int32 and 0 <= pos.min() and pos.max() < 10


def test_load_npz_cases(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.savez(tmp_path / "one.npz", x=x)
    [case] = load_npz_cases(tmp_path / "one.npz")
    assert np.array_equal(case["x"], x)
    np.savez(tmp_path / "many.npz", **{"case10/x": x + 10, "case2/x": x + 2, "case2/y": x})
    cases = load_npz_cases(tmp_path / "many.npz")
    assert [sorted(c) for c in cases] == [["x", "y"], ["x"]]
    assert cases[0]["x"][0, 0] == 2 and cases[1]["x"][0, 0] == 10
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="obj.npz"):
        load_npz_cases(tmp_path / "obj.npz")


# --- runners and check_parity ------------------------------------------------------------------------


def _torch_mlp():
    torch = import_torch()
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()


def _keras_copy(module, perturb: float = 0.0):
    keras = import_keras()
    x = keras.Input((4,), name="x")
    d1, d2 = keras.layers.Dense(8, activation="relu", name="fc1"), keras.layers.Dense(3, name="fc2")
    model = keras.Model(x, d2(d1(x)))
    for dense, linear in ((d1, module[0]), (d2, module[2])):
        dense.set_weights([linear.weight.detach().numpy().T, linear.bias.detach().numpy()])
    if perturb:
        w, b = d2.get_weights()
        b[0] += perturb
        d2.set_weights([w, b])
    return model


@pytest.fixture(scope="module")
def torch_mlp():
    return _torch_mlp()


def test_torch_vs_keras_copy_passes_fp32(torch_mlp):
    report = check_parity(TorchRunner(torch_mlp, ["x"], specs=SPECS), KerasRunner(_keras_copy(torch_mlp)), SPECS,
                          sizes={"batch": 5})
    assert_parity(report)
    assert [c.label for c in report.cases] == ["seed=0", "seed=1", "seed=2"]
    assert report.worst_rel_l2 < 1e-6
    assert report.cases[0].outputs[0].metrics.actual_shape == (5, 3)
    d = report.to_dict()
    assert d["passed"] and d["profile"]["name"] == "fp32"
    assert {"torch", "tensorflow", "keras"} <= set(d["environment"])
    assert report.summary_line().startswith("PASS [fp32]")


def test_perturbed_weight_fails(torch_mlp):
    report = check_parity(TorchRunner(torch_mlp, ["x"]), KerasRunner(_keras_copy(torch_mlp, perturb=1e-2)), SPECS)
    assert not report.passed
    assert report.summary_line().startswith("FAIL [fp32]")
    with pytest.raises(AssertionError, match=r"seed=0 / output_0: rel_l2 .* > 1e-05"):
        assert_parity(report)


def test_runner_input_errors_name_the_input(torch_mlp):
    runner = KerasRunner(_keras_copy(torch_mlp))
    assert runner.specs == [TensorSpec("x", ("batch", 4), "float32")]
    with pytest.raises(InputError, match="missing: \\['x'\\]"):
        runner.run({"y": np.zeros((1, 4), np.float32)})
    with pytest.raises(InputError, match="'x' has dtype float64"):
        runner.run({"x": np.zeros((1, 4))})
    with pytest.raises(InputError, match="'x' has size 5 on axis 1, expected 4"):
        runner.run({"x": np.zeros((1, 5), np.float32)})
    two = [TensorSpec("a", ("batch", 2)), TensorSpec("b", ("batch", 2))]
    with pytest.raises(InputError, match="'b' has batch=3 .* 'a' has batch=2"):
        TorchRunner(torch_mlp, ["a", "b"], specs=two).run(
            {"a": np.zeros((2, 2), np.float32), "b": np.zeros((3, 2), np.float32)})


def test_torch_runner_names_dict_outputs():
    torch = import_torch()

    class TwoHeads(torch.nn.Module):
        def forward(self, x):
            return {"logits": x * 2, "aux": (x + 1, None, x.to(torch.bfloat16))}

    runner = TorchRunner(TwoHeads(), ["x"])
    out = runner.run({"x": np.ones((2, 3), np.float32)})
    assert runner.output_names == ["logits", "aux.0", "aux.2"]
    assert out[0][0, 0] == 2 and out[1][0, 0] == 2 and out[2].dtype == np.float32


def test_torch_runner_accepts_exported_program(torch_mlp):
    torch = import_torch()
    exported = torch.export.export(torch_mlp, (torch.zeros(2, 4),))
    assert_parity(check_parity(TorchRunner(torch_mlp, ["x"]), TorchRunner(exported, ["x"]), SPECS,
                               seeds=(0,), sizes={"batch": 2}))


def test_savedmodel_export_matches_keras(torch_mlp, tmp_path):
    model = _keras_copy(torch_mlp)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    saved = SavedModelRunner(tmp_path / "sm")
    assert saved.input_names == ["x"] and saved.output_names == ["output_0"]
    assert saved.specs == [TensorSpec("x", ("batch", 4), "float32")]
    report = check_parity(TorchRunner(torch_mlp, ["x"]), saved, SPECS, sizes={"batch": 3})
    assert_parity(report)
    compiled = KerasRunner(model, compiled=True)
    assert_parity(check_parity(saved, compiled, SPECS, seeds=(7,)))


def test_user_cases_and_output_count_mismatch(torch_mlp):
    torch = import_torch()

    class Extra(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x), x

    cases = [{"x": np.ones((2, 4), np.float32)}]
    report = check_parity(TorchRunner(Extra(torch_mlp), ["x"]), KerasRunner(_keras_copy(torch_mlp)), SPECS,
                          cases=cases)
    assert [c.label for c in report.cases] == ["case0"]
    assert not report.passed and report.cases[0].outputs[0].passed
    assert "source gave 2 output(s), converted gave 1" in report.cases[0].reason


# --- worker processes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_models(torch_mlp, tmp_path_factory):
    """The MLP as a .keras file and as a SavedModel, its inputs, and its output on the in-process TF backend."""
    folder = tmp_path_factory.mktemp("worker")
    model = _keras_copy(torch_mlp)
    model.save(folder / "mlp.keras")
    model.export(str(folder / "sm"), format="tf_saved_model", verbose=False)
    inputs = make_inputs(SPECS, 0, {"batch": 4})
    return folder, inputs, KerasRunner(model).run(inputs)[0]


@pytest.mark.parametrize(("backend", "artifact", "precision_key"), [
    ("torch", "mlp.keras", "float32_matmul_precision"),
    ("jax", "mlp.keras", "jax_default_matmul_precision"),
    ("tensorflow", "sm", "tensor_float_32_execution"),
])
def test_worker_backends_match_tensorflow(saved_models, backend, artifact, precision_key):
    folder, inputs, tf_out = saved_models
    outputs, info = run_in_worker(folder / artifact, inputs, backend, timeout=300)
    assert len(outputs) == 1 and outputs[0].shape == tf_out.shape
    assert compare(outputs[0], tf_out).rel_l2 <= 1e-5
    assert info["backend"] == backend and info["keras_version"] and info["device"]
    assert precision_key in info["precision"]


def test_worker_failure_reports_stderr(tmp_path):
    missing = tmp_path / "missing.keras"
    with pytest.raises(WorkerError, match=r"exited with 2; stderr tail:\n.*missing.keras: no such model file"):
        run_in_worker(missing, {"x": np.zeros((1, 4), np.float32)}, "jax", timeout=300)


def test_keras_runner_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="broken.keras: not a .keras archive"):
        KerasRunner(bad)
