"""The converter battery: every torch → Keras converter runs on its samples, at its tolerance.

One parametrised test over `samples.SAMPLES` exports each tiny module, converts it, and compares the
Keras model with PyTorch in float64 (NaN/Inf masks first, then ‖keras − torch‖ / ‖torch‖); a second
test fails for any registered op that no sample exercises. Real torch and Keras, no mocks.
"""

from __future__ import annotations

import inspect

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from porttax._frameworks import import_keras, import_torch

torch = import_torch()  # before Keras/TensorFlow: see porttax._frameworks
keras = import_keras()

import porttax.converters.torch_to_keras  # noqa: E402,F401  (registers the converters)
from porttax.converters.registry import REGISTRY, DuplicateConverterError, Registry  # noqa: E402
from porttax.converters.torch_to_keras.driver import convert_exported_program  # noqa: E402
from porttax.converters.torch_to_keras.samples import SAMPLES, Sample  # noqa: E402
from porttax.converters.transforms import Chain, Identity, Reshape, Transform, Transpose  # noqa: E402
from porttax.errors import UnsupportedError  # noqa: E402

REGISTERED = {c.key.op for c in REGISTRY.coverage("torch", "keras")}


def _flat(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return [out]


def _graph_ops(log: Any) -> set[str]:
    """Op names in the decomposed graph (`ep.run_decompositions({})`) the driver converted.

    The driver's log records `str(node.target)` for every call_function node of that graph, so it is
    read from there instead of decomposing a second time (decomposition is most of each case's
    time). Each name is kept as the overload ("aten.where.ScalarOther") and its packet ("aten.where").
    """
    names: set[str] = set()
    for record in log.layers.values():
        for op in record.ops:
            names.update((op, op.rsplit(".", 1)[0]))
    return names


def _assert_close(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, torch has {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, torch has {want.dtype}"
    a, b = got.astype(np.float64), want.astype(np.float64)
    for mask in (np.isnan, np.isposinf, np.isneginf):
        assert np.array_equal(mask(a), mask(b)), f"{what}: {mask.__name__} masks differ"
    finite = np.isfinite(b)
    diff = float(np.linalg.norm(a[finite] - b[finite]))
    ref = float(np.linalg.norm(b[finite]))
    rel = diff / ref if ref > 0 else diff
    worst = float(np.abs(a - b)[finite].max()) if finite.any() else 0.0
    assert rel <= tol, f"{what}: ‖keras − torch‖/‖torch‖ = {rel:.3g} > {tol:g} (max abs {worst:.3g})"


def _convert(model: Any, inputs: tuple[Any, ...], open_axes: Any = None) -> tuple[Any, Any]:
    dynamic: Any = tuple({a: torch.export.Dim.AUTO for a in axes} for axes in open_axes) if open_axes else None
    params = inspect.signature(model.forward).parameters.values()
    if dynamic and any(p.kind == p.VAR_POSITIONAL for p in params):
        dynamic = (dynamic,)  # forward(*xs): one argument holding every input
    ep = torch.export.export(model, inputs, dynamic_shapes=dynamic)
    return ep, convert_exported_program(ep)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_converter_matches_torch(sample: Sample) -> None:
    unknown = set(sample.ops) - REGISTERED
    assert not unknown, f"sample lists ops with no registered converter: {sorted(unknown)}"
    model, inputs = sample.make()
    _, result = _convert(model, inputs, sample.open_axes)
    missing = [op for op in sample.ops if op not in _graph_ops(result.log)]
    assert not missing, f"the exported graph does not contain {missing}: the sample does not test them"
    ran = {name for record in result.log.layers.values() for name in record.converters}
    idle = [op for op in sample.ops if REGISTRY.lookup("torch", "keras", op).name not in ran]
    assert not idle, f"the converters of {idle} never ran (folded into constants?): the sample does not test them"
    _assert_matches_torch(sample, model, inputs, result.model)
    if sample.open_axes:
        opened = [(i, a) for i, axes in enumerate(sample.open_axes) for a in axes]
        assert all(result.model.inputs[i].shape[a] is None for i, a in opened), result.model.inputs
        _assert_matches_torch(sample, model, sample.resized(), result.model)  # other sizes, same model


def _assert_matches_torch(sample: Sample, model: Any, inputs: tuple[Any, ...], converted: Any) -> None:
    with torch.no_grad():
        want = [t.numpy() for t in _flat(model(*inputs))]
    got = [np.asarray(keras.ops.convert_to_numpy(o)) for o in _flat(converted([t.numpy() for t in inputs]))]
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        _assert_close(g, w, sample.tol, f"{sample.name} output {i}")


_ATTENTION = [s for s in SAMPLES if "aten.scaled_dot_product_attention" in s.ops]


@pytest.mark.parametrize("sample", _ATTENTION, ids=lambda s: s.name)
def test_attention_samples_also_match_torch_in_the_batched_form(sample: Sample, monkeypatch: Any) -> None:
    """The battery's attention samples are small enough for the per-head form; the batched Einsum form
    (taken by larger attention) is checked on the same masks, GQA and layouts with the limit at 0."""
    import porttax.converters.torch_to_keras.attention as attention

    monkeypatch.setattr(attention, "_PER_HEAD_MAX_HEADS", 0)
    model, inputs = sample.make()
    _, result = _convert(model, inputs)
    assert "Unstack" not in [type(op).__name__ for op in result.model.operations]
    _assert_matches_torch(sample, model, inputs, result.model)


@pytest.mark.parametrize("name, per_head", [("sdpa_gqa", True), ("sdpa_gqa_bool_mask", True),
                                             ("sdpa_many_heads_batched_einsum", False)])
def test_small_attention_is_computed_per_head_and_large_attention_batched(name: str, per_head: bool) -> None:
    """Per (batch, key/value head) 2-D MatMuls below the size where TF's threaded batched kernels pay."""
    sample = next(s for s in SAMPLES if s.name == name)
    model, inputs = sample.make()
    _, result = _convert(model, inputs)
    kinds = [type(op).__name__ for op in result.model.operations]
    q, k = inputs[0], inputs[1]
    heads = q.shape[0] * k.shape[1]  # batch x key/value heads
    if per_head:
        assert "Einsum" not in kinds and kinds.count("Matmul") == 2 * heads, kinds
    else:
        assert kinds.count("Einsum") == 2 and "Unstack" not in kinds, kinds


@pytest.mark.parametrize("width", [1000, 70_000])
def test_small_silu_is_arithmetic_and_large_silu_keeps_its_layer(width: int) -> None:
    """Below 64k elements SiLU is h + h·tanh(h) (TF's fused Swish kernel threads even tiny tensors);
    across -40..40 it stays within 1e-7 of torch's x·sigmoid(x), the tail included."""
    model = torch.nn.Sequential(torch.nn.SiLU()).eval()
    x = torch.linspace(-40.0, 40.0, width).reshape(1, width)
    _, result = _convert(model, (x,))
    activations = [layer for layer in result.model.layers if isinstance(layer, keras.layers.Activation)]
    assert len(activations) == (0 if width <= 1 << 16 else 1)
    got = np.asarray(result.model(x.numpy()), dtype=np.float64)
    want = torch.nn.functional.silu(x.double()).numpy()
    error = np.abs(got - want)
    assert float(error.max()) <= 1e-7 * float(np.abs(want).max())
    assert float(error[0, : width // 4].max()) <= 1e-7  # x < -20: the tail, where h + h·tanh(h) gives 0


def test_every_registered_op_has_a_sample() -> None:
    covered = {op for s in SAMPLES for op in s.ops}
    uncovered = sorted(REGISTERED - covered)
    assert not uncovered, f"registered torch→Keras ops with no sample in samples.py: {uncovered}"


def test_sample_names_are_unique() -> None:
    names = [s.name for s in SAMPLES]
    assert len(names) == len(set(names))


def test_importing_the_samples_imports_no_framework() -> None:
    code = ("import sys, porttax.converters.torch_to_keras.samples as s; assert s.SAMPLES; "
            "print(sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- registry --------------------------------------------------------------------------------------


def test_registering_a_key_twice_raises() -> None:
    reg = Registry()
    reg.register("torch", "keras", "aten.foo")(lambda call: None)
    with pytest.raises(DuplicateConverterError, match="aten.foo"):
        reg.register("torch", "keras", ["aten.bar", "aten.foo"])(lambda call: None)
    assert reg.lookup("torch", "keras", "aten.bar") is None, "a refused registration must leave no trace"
    reg.register("torch", "keras", "aten.foo", version=2)(lambda call: None)  # a new version is a new key
    assert reg.lookup("torch", "keras", "aten.foo").key.version == 2


def test_global_registry_refuses_a_second_converter() -> None:
    before = len(REGISTRY)
    with pytest.raises(DuplicateConverterError, match="aten.relu"):
        REGISTRY.register("torch", "keras", "aten.relu")(lambda call: None)
    assert len(REGISTRY) == before


# ---- weight transforms -----------------------------------------------------------------------------

_TRANSFORMS: list[tuple[Transform, tuple[int, ...]]] = [
    (Identity(), (3, 4)),
    (Transpose((1, 0)), (5, 3)),  # Linear weight -> Dense kernel
    (Transpose((2, 3, 1, 0)), (4, 3, 2, 5)),  # Conv2d weight -> Conv2D kernel
    (Transpose((2, 3, 4, 1, 0)), (2, 3, 1, 2, 3)),  # Conv3d
    (Reshape((3, 2, 3, 3), (6, 1, 3, 3)), (6, 1, 3, 3)),
    # depthwise Conv2d weight (C*m, 1, kh, kw) -> DepthwiseConv2D kernel (kh, kw, C, m)
    (Chain((Reshape((3, 2, 3, 3), (6, 1, 3, 3)), Transpose((2, 3, 0, 1)))), (6, 1, 3, 3)),
    (Transpose((1, 0)).then(Reshape((2, 6), (4, 3))), (3, 4)),
]


@pytest.mark.parametrize("transform,shape", _TRANSFORMS, ids=lambda v: v.describe() if isinstance(v, Transform) else "")
def test_transform_round_trips(transform: Transform, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = transform.apply(x)
    back = transform.inverse().apply(y)
    assert back.shape == x.shape and np.array_equal(back, x)
    assert np.array_equal(transform.inverse().inverse().apply(x), y)


def test_every_port_of_a_converted_model_round_trips() -> None:
    """The transforms the converters really use, on the weights they really move."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, groups=3), torch.nn.Conv2d(6, 4, 1),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.randn(1, 3, 8, 8)
    _, result = _convert(model, (x,))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    layers = {layer.name: layer for layer in result.model.layers}
    ports = [p for p in result.log.ports if p.source_key is not None]
    assert {p.source_key for p in ports} == set(state)
    for port in ports:
        layer_name, var_name = port.target.split("/")
        var = next(v for v in layers[layer_name].weights if v.name == var_name)
        transform = _describe_to_transform(port.transform, state[port.source_key].shape)
        target = np.asarray(var.numpy())
        assert np.array_equal(transform.apply(state[port.source_key]), target)
        assert np.array_equal(transform.inverse().apply(target), state[port.source_key])


def _describe_to_transform(description: str, shape: tuple[int, ...]) -> Transform:
    """Rebuild a logged transform (ports are logged by description) for the round-trip check."""
    steps: list[Transform] = []
    for part in description.split(" then "):
        if part == "identity":
            steps.append(Identity())
        elif part.startswith("transpose"):
            steps.append(Transpose(tuple(int(i) for i in part[len("transpose("):-1].split(",") if i.strip())))
        elif part.startswith("reshape"):
            src, dst = part[len("reshape"):].split("->")
            parse = lambda s: tuple(int(i) for i in s.strip("()").split(",") if i.strip())  # noqa: E731
            steps.append(Reshape(parse(dst), parse(src)))
        else:
            raise AssertionError(f"unknown transform {part!r}")
    return steps[0] if len(steps) == 1 else Chain(tuple(steps))


# ---- refusal ---------------------------------------------------------------------------------------


class _Inner(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Any) -> Any:
        return self.fn(x)


class _Outer(torch.nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.pre = torch.nn.Linear(4, 4)
        self.block = torch.nn.Sequential(torch.nn.ReLU(), _Inner(fn))

    def forward(self, x: Any) -> Any:
        return self.block(self.pre(x))


@pytest.mark.parametrize("fn,op", [
    (lambda x: torch.special.bessel_j0(x), "aten.special_bessel_j0"),
    (lambda x: torch.linalg.inv(x), "linalg_inv"),
    (lambda x: torch.fft.fft(x).real, "fft"),
], ids=["bessel_j0", "linalg_inv", "fft"])
def test_an_op_without_converter_is_refused_by_name_and_module(fn: Any, op: str) -> None:
    ep = torch.export.export(_Outer(fn).eval(), (torch.randn(2, 4, 4),))
    with pytest.raises(UnsupportedError) as info:
        convert_exported_program(ep)
    message = str(info.value)
    assert op in message
    assert "block.1" in message, f"the message should name the module path: {message}"


# ---- layout ----------------------------------------------------------------------------------------


def test_conv_chain_transposes_only_its_input() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()
    x = torch.randn(2, 3, 9, 9)
    _, result = _convert(model, (x,))
    assert result.log.transposes_inserted == 1
    with torch.no_grad():
        want = model(x).numpy()
    got = np.asarray(keras.ops.convert_to_numpy(_flat(result.model([x.numpy()]))[0]))
    _assert_close(got, want, 1e-5, "conv chain")
