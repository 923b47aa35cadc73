"""Keras → torch for convolutional models: convolutions, pooling, spatial reshaping and preprocessing.

Every case builds a one-layer Keras model (small shapes, fixed seed), converts it, and checks
‖a−b‖/‖b‖ ≤ 1e-5 on 3 seeds plus a torch.export of the result (`check_keras_to_torch`). The cases run
through the configurations where the frameworks disagree: TensorFlow's asymmetric "same" padding (odd
and even sizes, kernels, strides), dilation, groups, depth multipliers, transposed-convolution output
sizes, channels-first Keras layers, sizes known only at run time. Full keras.applications models are
the acceptance tests (slow).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from k2t_check import check_keras_to_torch, rel_l2

from porttax._frameworks import import_keras, import_torch
from porttax.errors import UnsupportedError

torch = import_torch()  # before Keras/TensorFlow: see porttax._frameworks
keras = import_keras()
L = keras.layers
CF = {"data_format": "channels_first"}


def _one_layer(make: Callable[[], Any], shape: tuple, dtype: str = "float32") -> Any:
    keras.utils.set_random_seed(0)
    inp = keras.Input(shape, dtype=dtype)
    layer = make()
    out = layer(inp)
    _randomize_bias(layer)
    return keras.Model(inp, out)


def _randomize_bias(layer: Any) -> None:
    """Keras initialises biases to zero; a wrong bias layout would then pass unnoticed."""
    bias = getattr(layer, "bias", None)
    if bias is not None:
        bias.assign(np.random.default_rng(1).normal(0, 0.5, bias.shape).astype("float32"))


def _case(make: Callable[[], Any], shape: tuple, sizes: dict | None = None, id: str = "") -> Any:
    return pytest.param(make, shape, sizes, id=id)


def _check(make: Callable[[], Any], shape: tuple, sizes: dict | None) -> float:
    model = _one_layer(make, shape)
    kwargs = {"sizes": sizes} if sizes else {}
    _, worst = check_keras_to_torch(model, **kwargs)
    return worst


# ---- convolutions -------------------------------------------------------------------------------

CONV = [
    # Conv2D over kernel × stride × padding on a 9×8 input (odd and even sizes, so "same" pads both ways)
    *[_case(lambda k=k, s=s, p=p: L.Conv2D(4, k, strides=s, padding=p), (9, 8, 3), id=f"conv2d-k{k}-s{s}-{p}")
      for k in (1, 2, 3, 4) for s in (1, 2, 3) for p in ("valid", "same")],
    _case(lambda: L.Conv2D(4, 3, padding="same", dilation_rate=2), (9, 8, 3), id="conv2d-dilated-same"),
    _case(lambda: L.Conv2D(4, 2, padding="same", dilation_rate=(3, 1)), (9, 8, 3), id="conv2d-dilated-even-same"),
    _case(lambda: L.Conv2D(4, 3, padding="valid", dilation_rate=2), (9, 8, 3), id="conv2d-dilated-valid"),
    _case(lambda: L.Conv2D(4, (3, 2), strides=(2, 1), padding="same"), (9, 8, 3), id="conv2d-rect"),
    _case(lambda: L.Conv2D(6, 3, groups=3, strides=2, padding="same"), (9, 8, 6), id="conv2d-groups3"),
    _case(lambda: L.Conv2D(4, 3, groups=2, padding="valid"), (9, 8, 4), id="conv2d-groups2"),
    _case(lambda: L.Conv2D(4, 3, use_bias=False, activation="relu"), (9, 8, 3), id="conv2d-nobias-relu"),
    _case(lambda: L.Conv2D(4, 3, activation="softmax", padding="same"), (9, 8, 3), id="conv2d-softmax"),
    # Channels-first cases keep `filters` different from the output's last dim: Keras' TF backend then
    # adds the bias on the wrong axis (ops.add guesses NHWC for a (1, C, 1, 1) bias when W == C).
    _case(lambda: L.Conv2D(5, 3, strides=2, padding="same", **CF), (3, 9, 8), id="conv2d-channels-first"),
    _case(lambda: L.Conv2D(4, 4, groups=2, padding="same", **CF), (4, 9, 8), id="conv2d-cf-groups"),
    _case(lambda: L.Conv2D(4, 3, strides=2, padding="same"), (None, None, 3), {1: 9, 2: 6}, id="conv2d-unknown-s2"),
    _case(lambda: L.Conv2D(4, 2, padding="same"), (None, None, 3), {1: 7, 2: 6}, id="conv2d-unknown-even-k"),
    # Conv1D, causal included
    *[_case(lambda k=k, s=s, p=p: L.Conv1D(4, k, strides=s, padding=p), (9, 3), id=f"conv1d-k{k}-s{s}-{p}")
      for k in (2, 3) for s in (1, 2) for p in ("valid", "same", "causal")],
    _case(lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2), (9, 3), id="conv1d-causal-dilated"),
    _case(lambda: L.Conv1D(4, 3, strides=2, padding="same", **CF), (3, 9), id="conv1d-channels-first"),
    _case(lambda: L.Conv1D(4, 4, strides=3, padding="same"), (None, 3), {1: 11}, id="conv1d-unknown"),
    _case(lambda: L.Conv1D(6, 3, groups=3, activation="tanh"), (9, 6), id="conv1d-groups"),
    # Conv3D
    _case(lambda: L.Conv3D(4, (2, 3, 1), strides=(1, 2, 2), padding="same"), (5, 6, 7, 2), id="conv3d-same"),
    _case(lambda: L.Conv3D(4, 2, dilation_rate=2, padding="valid"), (5, 6, 7, 2), id="conv3d-dilated"),
    _case(lambda: L.Conv3D(5, 3, strides=2, padding="same", **CF), (2, 5, 6, 7), id="conv3d-channels-first"),
    # Depthwise: output channel c*multiplier + m reads input channel c
    *[_case(lambda k=k, s=s, p=p, m=m: L.DepthwiseConv2D(k, strides=s, padding=p, depth_multiplier=m),
            (9, 8, 3), id=f"depthwise2d-k{k}-s{s}-{p}-x{m}")
      for k, s in ((3, 1), (3, 2), (2, 2)) for p in ("valid", "same") for m in (1, 2)],
    _case(lambda: L.DepthwiseConv2D(3, padding="same", dilation_rate=2), (9, 8, 3), id="depthwise2d-dilated"),
    _case(lambda: L.DepthwiseConv2D(3, strides=2, padding="same", dilation_rate=2, depth_multiplier=2), (9, 8, 3),
          id="depthwise2d-strided-and-dilated"),
    _case(lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, **CF), (3, 9, 8),
          id="depthwise2d-channels-first"),
    _case(lambda: L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6"), (None, None, 3),
          {1: 7, 2: 10}, id="depthwise2d-unknown"),
    *[_case(lambda s=s, p=p: L.DepthwiseConv1D(3, strides=s, padding=p, depth_multiplier=2), (9, 3),
            id=f"depthwise1d-s{s}-{p}") for s in (1, 2) for p in ("valid", "same")],
    # Separable
    _case(lambda: L.SeparableConv2D(5, 3, padding="same"), (9, 8, 3), id="separable2d-same"),
    _case(lambda: L.SeparableConv2D(5, 2, strides=2, padding="same", depth_multiplier=2), (9, 8, 3),
          id="separable2d-even-strided"),
    _case(lambda: L.SeparableConv2D(5, 3, dilation_rate=2, use_bias=False, activation="relu"), (9, 8, 3),
          id="separable2d-dilated"),
    _case(lambda: L.SeparableConv2D(5, 3, strides=2, padding="same", **CF), (3, 9, 8), id="separable2d-cf"),
    _case(lambda: L.SeparableConv1D(5, 3, strides=2, padding="same", depth_multiplier=3), (9, 3),
          id="separable1d-same"),
    _case(lambda: L.SeparableConv1D(5, 2, padding="valid"), (9, 3), id="separable1d-valid"),
]


@pytest.mark.parametrize("make,shape,sizes", CONV)
def test_convolution(make: Callable[[], Any], shape: tuple, sizes: dict | None) -> None:
    _check(make, shape, sizes)


TRANSPOSED = [
    *[_case(lambda k=k, s=s, p=p: L.Conv2DTranspose(4, k, strides=s, padding=p), (5, 6, 3),
            id=f"conv2dT-k{k}-s{s}-{p}")
      for k in (1, 2, 3, 4) for s in (1, 2, 3) for p in ("valid", "same")],
    *[_case(lambda k=k, s=s, p=p, op=op: L.Conv2DTranspose(4, k, strides=s, padding=p, output_padding=op),
            (5, 6, 3), id=f"conv2dT-k{k}-s{s}-{p}-op{op}")
      for k, s, op in ((3, 2, 1), (3, 2, 0), (1, 3, 2), (4, 3, 1)) for p in ("valid", "same")],
    _case(lambda: L.Conv2DTranspose(4, 3, padding="same", dilation_rate=2), (5, 6, 3), id="conv2dT-dilated-same"),
    _case(lambda: L.Conv2DTranspose(4, 2, padding="valid", dilation_rate=2), (5, 6, 3), id="conv2dT-dilated-valid"),
    _case(lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="sigmoid", **CF), (3, 5, 6),
          id="conv2dT-channels-first"),
    _case(lambda: L.Conv2DTranspose(4, 4, padding="same"), (None, None, 3), {1: 5, 2: 7}, id="conv2dT-unknown"),
    *[_case(lambda s=s, p=p: L.Conv1DTranspose(4, 3, strides=s, padding=p), (5, 3), id=f"conv1dT-s{s}-{p}")
      for s in (1, 2) for p in ("valid", "same")],
    _case(lambda: L.Conv1DTranspose(4, 2, strides=2, padding="same", output_padding=1), (5, 3), id="conv1dT-op"),
    _case(lambda: L.Conv3DTranspose(4, (2, 3, 1), strides=(1, 2, 2), padding="same"), (3, 4, 5, 2), id="conv3dT"),
    _case(lambda: L.Conv3DTranspose(4, 2, strides=2, padding="valid", **CF), (2, 3, 4, 5), id="conv3dT-cf"),
]


@pytest.mark.parametrize("make,shape,sizes", TRANSPOSED)
def test_transposed_convolution(make: Callable[[], Any], shape: tuple, sizes: dict | None) -> None:
    _check(make, shape, sizes)


# ---- pooling ------------------------------------------------------------------------------------

POOL = [
    *[_case(lambda c=c, k=k, s=s, p=p: getattr(L, f"{c}Pooling2D")(k, strides=s, padding=p), (9, 8, 3),
            id=f"{c.lower()}2d-k{k}-s{s}-{p}")
      for c in ("Max", "Average") for k in (2, 3) for s in (None, 1, 2) for p in ("valid", "same")],
    *[_case(lambda c=c, p=p: getattr(L, f"{c}Pooling2D")((3, 2), strides=(2, 3), padding=p), (9, 8, 3),
            id=f"{c.lower()}2d-rect-{p}") for c in ("Max", "Average") for p in ("valid", "same")],
    *[_case(lambda c=c: getattr(L, f"{c}Pooling2D")(3, strides=2, padding="same", **CF), (3, 9, 8),
            id=f"{c.lower()}2d-channels-first") for c in ("Max", "Average")],
    *[_case(lambda c=c: getattr(L, f"{c}Pooling2D")(3, strides=2, padding="same"), (None, None, 3), {1: 9, 2: 6},
            id=f"{c.lower()}2d-unknown") for c in ("Max", "Average")],
    *[_case(lambda c=c, k=k, s=s, p=p: getattr(L, f"{c}Pooling1D")(k, strides=s, padding=p), (9, 3),
            id=f"{c.lower()}1d-k{k}-s{s}-{p}")
      for c in ("Max", "Average") for k, s in ((2, None), (3, 2)) for p in ("valid", "same")],
    *[_case(lambda c=c: getattr(L, f"{c}Pooling1D")(3, strides=2, padding="same", **CF), (3, 9),
            id=f"{c.lower()}1d-channels-first") for c in ("Max", "Average")],
    *[_case(lambda c=c, p=p: getattr(L, f"{c}Pooling3D")((3, 2, 2), strides=(2, 1, 3), padding=p), (5, 6, 7, 2),
            id=f"{c.lower()}3d-{p}") for c in ("Max", "Average") for p in ("valid", "same")],
    # Global pools, with and without keepdims, both data formats
    *[_case(lambda c=c, n=n, kd=kd, df=df: getattr(L, f"Global{c}Pooling{n}D")(keepdims=kd, data_format=df),
            {1: (9, 3), 2: (9, 8, 3), 3: (4, 5, 6, 3)}[n], id=f"global-{c.lower()}{n}d-keep{kd}-{df}")
      for c in ("Average", "Max") for n in (1, 2, 3) for kd in (False, True)
      for df in ("channels_last", "channels_first")],
    # Adaptive pools (Keras computes torch's windows); output size 1 crashes Keras' own TF max pool
    *[_case(lambda c=c, o=o: getattr(L, f"Adaptive{c}Pooling2D")(o), (9, 7, 3), id=f"adaptive-{c.lower()}2d-{o}")
      for c in ("Average", "Max") for o in (2, (4, 3))],
    *[_case(lambda c=c: getattr(L, f"Adaptive{c}Pooling1D")(4), (9, 3), id=f"adaptive-{c.lower()}1d")
      for c in ("Average", "Max")],
    *[_case(lambda c=c: getattr(L, f"Adaptive{c}Pooling3D")((3, 2, 2), **CF), (2, 9, 5, 7),
            id=f"adaptive-{c.lower()}3d-cf") for c in ("Average", "Max")],
]


@pytest.mark.parametrize("make,shape,sizes", POOL)
def test_pooling(make: Callable[[], Any], shape: tuple, sizes: dict | None) -> None:
    _check(make, shape, sizes)


# ---- spatial reshaping --------------------------------------------------------------------------

SPATIAL = [
    _case(lambda: L.ZeroPadding1D((1, 2)), (5, 3), id="zeropad1d"),
    _case(lambda: L.ZeroPadding2D(((1, 2), (0, 3))), (5, 4, 3), id="zeropad2d"),
    _case(lambda: L.ZeroPadding2D(1, **CF), (3, 5, 4), id="zeropad2d-cf"),
    _case(lambda: L.ZeroPadding3D(((1, 2), (0, 3), (2, 0))), (5, 4, 3, 2), id="zeropad3d"),
    _case(lambda: L.Cropping1D((1, 2)), (7, 3), id="crop1d"),
    _case(lambda: L.Cropping1D((0, 2)), (None, 3), {1: 7}, id="crop1d-unknown"),
    _case(lambda: L.Cropping2D(((1, 2), (0, 3))), (7, 6, 3), id="crop2d"),
    _case(lambda: L.Cropping2D(1, **CF), (3, 5, 4), id="crop2d-cf"),
    _case(lambda: L.Cropping2D(((1, 0), (2, 1))), (None, None, 3), {1: 7, 2: 9}, id="crop2d-unknown"),
    _case(lambda: L.Cropping3D(((1, 2), (0, 3), (2, 0))), (5, 4, 3, 2), id="crop3d"),
    _case(lambda: L.UpSampling1D(3), (5, 3), id="upsample1d"),
    *[_case(lambda i=i: L.UpSampling2D((2, 3), interpolation=i), (5, 4, 3), id=f"upsample2d-{i}")
      for i in ("nearest", "bilinear")],
    *[_case(lambda i=i: L.UpSampling2D(2, interpolation=i, **CF), (3, 5, 4), id=f"upsample2d-{i}-cf")
      for i in ("nearest", "bilinear")],
    *[_case(lambda i=i: L.UpSampling2D(3, interpolation=i), (None, None, 3), {1: 7, 2: 5},
            id=f"upsample2d-{i}-unknown") for i in ("nearest", "bilinear")],
    _case(lambda: L.UpSampling3D((2, 1, 3)), (3, 4, 2, 3), id="upsample3d"),
    _case(lambda: L.UpSampling3D(2, **CF), (3, 4, 2, 3), id="upsample3d-cf"),
]


@pytest.mark.parametrize("make,shape,sizes", SPATIAL)
def test_spatial(make: Callable[[], Any], shape: tuple, sizes: dict | None) -> None:
    _check(make, shape, sizes)


@pytest.mark.parametrize("make", [
    pytest.param(lambda: L.ZeroPadding2D(((1, 2), (0, 3))), id="zeropad2d"),
    pytest.param(lambda: L.Cropping2D(((1, 2), (0, 1))), id="crop2d"),
    pytest.param(lambda: L.UpSampling2D((2, 3)), id="upsample-nearest"),
    pytest.param(lambda: L.UpSampling2D((2, 3), interpolation="bilinear"), id="upsample-bilinear"),
    pytest.param(lambda: L.Rescaling([0.5, 2.0, 3.0], offset=0.5), id="rescaling-per-channel"),
    pytest.param(lambda: _adapted_normalization(-1, (5, 4, 3)), id="normalization"),
])
def test_spatial_layers_after_a_convolution_add_no_transposes(make: Callable[[], Any]) -> None:
    """Held channels-first by the convolution before them, these layers work in that layout."""
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 4, 3))
    model = keras.Model(inp, L.Conv2D(3, 1)(make()(L.Conv2D(3, 1)(inp))))
    check_keras_to_torch(model)
    assert convert_keras_model(model).log.transposes_inserted == 2  # in and out


# ---- preprocessing ------------------------------------------------------------------------------


def _adapted_normalization(axis: Any, shape: tuple) -> Any:
    layer = L.Normalization(axis=axis)
    layer.adapt(np.random.default_rng(3).normal(1.0, 3.0, (20, *shape)).astype("float32"))
    return layer


PREPROCESSING = [
    _case(lambda: L.Rescaling(1 / 255.0, offset=-1), (5, 4, 3), id="rescaling"),
    _case(lambda: L.Rescaling([0.5, 2.0, 3.0], offset=[1.0, 0.0, -1.0]), (5, 4, 3), id="rescaling-per-channel"),
    _case(lambda: _adapted_normalization(-1, (5, 4, 3)), (5, 4, 3), id="normalization-adapted"),
    _case(lambda: _adapted_normalization((1, 3), (5, 4, 3)), (5, 4, 3), id="normalization-two-axes"),
    _case(lambda: L.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 0.0, 0.25]), (5, 4, 3),
          id="normalization-given-zero-variance"),
    _case(lambda: L.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 1.0, 0.25], invert=True), (5, 4, 3),
          id="normalization-invert"),
    _case(lambda: L.Normalization(axis=None, mean=2.0, variance=3.0), (5, 4, 3), id="normalization-scalar"),
    *[_case(lambda i=i, a=a, hw=hw: L.Resizing(*hw, interpolation=i, antialias=a), (5, 4, 3),
            id=f"resizing-{i}-aa{a}-{hw[0]}x{hw[1]}")
      for i in ("bilinear", "nearest") for a in (False, True) for hw in ((10, 8), (3, 2), (7, 9), (2, 11))],
    *[_case(lambda hw=hw: L.Resizing(*hw, crop_to_aspect_ratio=True), shape, id=f"resizing-crop-{hw}-{shape[0]}")
      for hw in ((3, 2), (7, 9), (2, 11)) for shape in ((5, 4, 3), (7, 13, 3))],
    *[_case(lambda hw=hw: L.Resizing(*hw, pad_to_aspect_ratio=True, fill_value=0.5), shape,
            id=f"resizing-pad-{hw}-{shape[0]}")
      for hw in ((3, 2), (7, 9), (2, 11)) for shape in ((5, 4, 3), (7, 13, 3))],
    _case(lambda: L.Resizing(6, 8, data_format="channels_first"), (3, 5, 4), id="resizing-cf"),
    _case(lambda: L.Resizing(6, 8), (None, None, 3), {1: 7, 2: 5}, id="resizing-unknown"),
    *[_case(lambda hw=hw: L.CenterCrop(*hw), shape, id=f"centercrop-{hw}-{shape[0]}")
      for hw in ((3, 2), (7, 9), (9, 5)) for shape in ((5, 4, 3), (9, 13, 3))],
    _case(lambda: L.CenterCrop(3, 2, data_format="channels_first"), (3, 5, 4), id="centercrop-cf"),
]


@pytest.mark.parametrize("make,shape,sizes", PREPROCESSING)
def test_preprocessing(make: Callable[[], Any], shape: tuple, sizes: dict | None) -> None:
    _check(make, shape, sizes)


def test_normalization_statistics_are_buffers_in_the_state_dict() -> None:
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    model = _one_layer(lambda: _adapted_normalization(-1, (5, 4, 3)), (5, 4, 3))
    module = convert_keras_model(model).module
    state = module.state_dict()
    layer = model.layers[-1]
    assert set(state) == {f"{layer.name}.mean", f"{layer.name}.variance"}
    np.testing.assert_allclose(state[f"{layer.name}.mean"].reshape(-1).numpy(), layer.adapt_mean.numpy())


# ---- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("make,shape,reason", [
    pytest.param(lambda: L.UpSampling2D(2, interpolation="bicubic"), (5, 4, 3), "bicubic", id="upsample-bicubic"),
    pytest.param(lambda: L.Resizing(6, 8, interpolation="bicubic"), (5, 4, 3), "bicubic", id="resizing-bicubic"),
    pytest.param(lambda: L.Resizing(6, 8, interpolation="area"), (5, 4, 3), "area", id="resizing-area"),
    pytest.param(lambda: L.Resizing(6, 8, crop_to_aspect_ratio=True), (None, None, 3), "image size",
                 id="resizing-crop-unknown-size"),
    pytest.param(lambda: L.CenterCrop(3, 2), (None, None, 3), "image size", id="centercrop-unknown-size"),
])
def test_what_cannot_match_is_refused_with_a_reason(make: Callable[[], Any], shape: tuple, reason: str) -> None:
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    with pytest.raises(UnsupportedError, match=reason):
        convert_keras_model(_one_layer(make, shape))


# ---- run-time sizes through torch.export ---------------------------------------------------------


@pytest.mark.parametrize("make", [
    pytest.param(lambda: L.Conv2D(4, 3, strides=2, padding="same"), id="conv-same-strided"),
    pytest.param(lambda: L.MaxPooling2D(3, strides=2, padding="same"), id="maxpool-same"),
    pytest.param(lambda: L.AveragePooling2D(3, strides=2, padding="same"), id="avgpool-same"),
    pytest.param(lambda: L.Conv2DTranspose(4, 4, padding="same"), id="conv-transpose-trimmed"),
    pytest.param(lambda: L.UpSampling2D(2, interpolation="bilinear"), id="upsample-bilinear"),
    pytest.param(lambda: L.Cropping2D(((1, 0), (1, 2))), id="crop"),
])
def test_unknown_spatial_sizes_stay_dynamic_in_the_export(make: Callable[[], Any]) -> None:
    """Padding computed at run time (`SamePad`, `SameAvgPool`) survives torch.export with dynamic dims."""
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    model = _one_layer(make, (None, None, 3))
    module = convert_keras_model(model).module
    rng = np.random.default_rng(0)
    example = torch.from_numpy(rng.standard_normal((2, 8, 8, 3)).astype("float32"))
    auto = torch.export.Dim.AUTO
    program = torch.export.export(module, (example,), dynamic_shapes=({0: auto, 1: auto, 2: auto},))
    for h, w in ((7, 9), (12, 5), (6, 8)):
        x = rng.standard_normal((3, h, w, 3)).astype("float32")
        with torch.no_grad():
            got = program.module()(torch.from_numpy(x)).numpy()
        want = keras.ops.convert_to_numpy(model(x))
        assert got.shape == want.shape
        assert rel_l2(got, want) <= 1e-5


# ---- layouts ------------------------------------------------------------------------------------


def _small_cnn() -> Any:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    y = L.BatchNormalization(name="bn")(x)
    y = L.ReLU(name="relu")(y)
    y = L.Conv2D(8, 3, padding="same", name="conv2")(y)
    z = L.Add(name="add")([x, y])
    z = L.GlobalAveragePooling2D(name="pool")(z)
    model = keras.Model(inp, L.Dense(5, name="head")(z))
    _randomize_bn(model)
    return model


def test_cnn_transposes_only_at_the_boundary() -> None:
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    model = _small_cnn()
    check_keras_to_torch(model)
    result = convert_keras_model(model)
    assert result.log.transposes_inserted <= 1
    assert result.module.code.count(".permute(") == 1  # the input, NHWC → NCHW
    check_keras_to_torch(model, channels_first=True)
    assert convert_keras_model(model, channels_first_io=True).log.transposes_inserted == 0


def test_shared_convolution_keeps_one_module() -> None:
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    keras.utils.set_random_seed(0)
    inp = keras.Input((9, 8, 3))
    conv = L.Conv2D(3, 3, strides=2, padding="same", name="shared")
    model = keras.Model(inp, conv(conv(inp)))
    check_keras_to_torch(model)
    assert sorted(convert_keras_model(model).module.state_dict()) == ["shared.bias", "shared.weight"]


# ---- acceptance: keras.applications ---------------------------------------------------------------


def _randomize_bn(model: Any, seed: int = 0) -> None:
    """keras.applications builds BNs with mean 0 / variance 1 / scale 1 / offset 0 (an identity at
    inference), so a wrong BN port would pass; give every statistic a seeded random value."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.2, shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.2, shape).astype("float32"))
        elif isinstance(layer, L.Normalization) and layer.input_mean is None:
            shape = layer.adapt_mean.shape
            layer.adapt_mean.assign(rng.normal(0, 0.5, shape).astype("float32"))
            layer.adapt_variance.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
            layer.finalize_state()


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("MobileNetV2", 96), ("ResNet50", 64), ("EfficientNetB0", 64),
                                       ("DenseNet121", 64)])
def test_keras_applications(name: str, size: int) -> None:
    from porttax.converters.keras_to_torch.driver import convert_keras_model

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    _randomize_bn(model)
    _, worst = check_keras_to_torch(model)
    assert worst <= 1e-5
    # One transpose in; EfficientNet's squeeze-and-excite blocks add one each (Reshape runs in Keras' layout).
    se_blocks = sum(isinstance(layer, L.Reshape) for layer in model.layers)
    assert convert_keras_model(model).log.transposes_inserted <= 1 + se_blocks
