"""Keras → torch for preprocessing, augmentation and spectrogram layers.

Augmentation layers that are the identity at inference convert to no module; the first tests prove
that claim against Keras itself for every one of them (values and dtype), so a Keras release that
changes one fails here. Layers that compute at inference (RandomCrop where Keras crops, AutoContrast,
CLAHE), the categorical layers (exact: integer results must match bit for bit) and the spectrograms
are checked with `check_keras_to_torch`: ‖a−b‖/‖b‖ on 3 seeds plus a torch.export of the result.
Several layers share one model where they can, to keep exports (the slow part) few.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from k2t_check import check_keras_to_torch, outputs_of

import porttax.converters.keras_to_torch.families  # noqa: F401  (registers every converter)
from porttax._frameworks import import_keras, import_torch
from porttax.converters.keras_to_torch.augmentation import PASS_THROUGH
from porttax.converters.keras_to_torch.driver import convert_keras_model
from porttax.converters.registry import REGISTRY
from porttax.errors import UnsupportedError

torch = import_torch()  # before Keras/TensorFlow: see porttax._frameworks
keras = import_keras()
L = keras.layers

# Constructor arguments that make each layer's training-time transform non-trivial (a layer whose
# factor defaults to 0 would be the identity even while training, and prove nothing).
_ARGS: dict[str, tuple] = {
    "RandomBrightness": (0.5,), "RandomColorDegeneration": (0.5,), "RandomContrast": (0.5,),
    "RandomHue": (0.5,), "RandomPosterization": (4,), "RandomRotation": (0.3,), "RandomSaturation": (0.5,),
    "RandomSharpness": (0.5,), "RandomShear": (0.3, 0.3), "RandomTranslation": (0.3, 0.3), "RandomZoom": (0.3,),
}
_KWARGS: dict[str, dict] = {"RandomColorJitter": {"brightness_factor": 0.5, "contrast_factor": 0.5}}


def _make(name: str) -> Any:
    return getattr(L, name)(*_ARGS.get(name, ()), **_KWARGS.get(name, {}))


def _images(dtype: str, seed: int = 0, shape: tuple = (2, 8, 9, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(dtype)


def _model(inputs: Any, outputs: Any) -> Any:
    return keras.Model(inputs, outputs)


# ---- augmentation: identity at inference ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PASS_THROUGH))
def test_pass_through_layer_is_the_identity_in_keras(name: str) -> None:
    """Keras' own inference call returns the image: same values, and the dtype PASS_THROUGH says."""
    layer = _make(name)
    assert REGISTRY.lookup("keras", "torch", name) is not None
    for dtype in ("float32", "uint8"):
        x = _images(dtype)
        y = keras.ops.convert_to_numpy(layer(x, training=False))
        assert y.shape == x.shape and np.array_equal(y.astype(np.float64), x.astype(np.float64)), name
        want = str(layer.compute_dtype) if PASS_THROUGH[name] or dtype == "float32" else dtype
        assert str(y.dtype) == want, f"{name}: {dtype} image came back {y.dtype}, PASS_THROUGH expects {want}"
    # ...and it does change images while training, so the pass-through is a real claim
    x = _images("float32", seed=1, shape=(4, 8, 9, 3))
    changed = [not np.array_equal(keras.ops.convert_to_numpy(layer(x, training=True)), x) for _ in range(5)]
    if name not in ("CutMix", "MixUp"):  # they mix images of a batch; here the point is their labels
        assert any(changed), f"{name} never changed an image while training"


def test_every_image_preprocessing_layer_has_a_converter() -> None:
    """A Keras release that adds an image layer shows up here, not as a refused user model."""
    from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (
        BaseImagePreprocessingLayer,
    )

    classes = {n: getattr(L, n) for n in dir(L) if isinstance(getattr(L, n), type)}
    names = {n for n, cls in classes.items() if issubclass(cls, BaseImagePreprocessingLayer)}
    missing = sorted(n for n in names - {"MaxNumBoundingBoxes"} if REGISTRY.lookup("keras", "torch", n) is None)
    assert not missing, f"image preprocessing layers without a Keras→torch converter: {missing}"


def test_augmentation_layers_vanish_from_the_converted_model() -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 9, 3))
    x = inp
    for name in ("RandomFlip", "RandomBrightness", "RandomRotation", "RandomZoom", "RandAugment", "MixUp",
                 "RandomGrayscale", "Solarization", "RandomErasing", "AugMix"):
        x = _make(name)(x)
    out = L.Conv2D(4, 3, name="conv")(x)
    module, worst = check_keras_to_torch(_model(inp, out))
    assert [n for n, _ in module.named_children()] == ["conv"]
    assert worst <= 1e-6


def test_pass_through_keeps_or_casts_the_dtype_as_keras_does() -> None:
    inp = keras.Input((8, 9, 3), dtype="uint8")
    kept = L.RandomContrast(0.5)(L.RandomBrightness(0.5)(inp))  # keep uint8
    cast = L.RandomFlip()(inp)  # casts to float32
    model = _model(inp, [kept, cast])
    module = convert_keras_model(model).module
    x = _images("uint8")
    expected = outputs_of(model(x, training=False))
    with torch.no_grad():
        got = outputs_of(module(torch.from_numpy(x)))
    assert [g.dtype for g in got] == [e.dtype for e in expected] == [np.uint8, np.float32]
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))


# ---- RandomCrop -----------------------------------------------------------------------------------

class CroppingRandomCrop(L.RandomCrop):
    """RandomCrop with Keras' upstream fix (keras-team/keras#21868): it crops at inference too, from the
    window get_random_transformation(training=False) computes."""

    def transform_images(self, images: Any, transformation: Any, training: bool = True) -> Any:
        return super().transform_images(images, transformation, training=True)


def _keras_crops_at_inference() -> bool:
    return keras.ops.shape(L.RandomCrop(2, 2)(np.zeros((1, 4, 4, 1), "float32"), training=False))[1] == 2


@pytest.mark.skipif(_keras_crops_at_inference(), reason="this Keras crops at inference (keras-team/keras#21868)")
def test_random_crop_is_refused_where_keras_skips_it_at_inference() -> None:
    inp = keras.Input((8, 9, 3))
    with pytest.raises(UnsupportedError, match="uncropped at inference"):
        convert_keras_model(_model(inp, L.RandomCrop(5, 6)(inp)))
    # the same size in and out is consistent either way, and converts
    inp = keras.Input((5, 6, 3))
    check_keras_to_torch(_model(inp, L.RandomCrop(5, 6)(inp)), tol=0.0)


@pytest.mark.parametrize("shape,hw,dtype", [
    pytest.param((8, 9, 3), (5, 6), "float32", id="larger"),
    pytest.param((4, 4, 3), (5, 6), "float32", id="smaller-resized"),
    pytest.param((3, 10, 2), (4, 4), "float32", id="cut-by-edge-resized"),
    pytest.param((9, 7, 2), (4, 6), "uint8", id="uint8-to-float"),
])
def test_random_crop_where_keras_crops_at_inference(shape: tuple, hw: tuple, dtype: str) -> None:
    inp = keras.Input(shape, dtype=dtype)
    model = _model(inp, L.Conv2D(3, 1, name="conv")(CroppingRandomCrop(*hw)(inp)))
    _, worst = check_keras_to_torch(model, int_high=255)
    assert worst <= 1e-6


# ---- AutoContrast and CLAHE -----------------------------------------------------------------------

def test_auto_contrast() -> None:
    inp = keras.Input((6, 7, 3))
    outs = [L.AutoContrast()(inp), L.AutoContrast(value_range=(-2, 2))(inp),
            L.AutoContrast(value_range=(0, 1))(L.Conv2D(3, 3, padding="same")(inp))]
    _, worst = check_keras_to_torch(_model(inp, outs))
    assert worst <= 1e-6


def test_auto_contrast_keeps_a_flat_channel() -> None:
    """A channel with one value gives 255/0: Keras keeps the input there (its NaN branch); so must torch."""
    inp = keras.Input((5, 4, 2), dtype="uint8")
    model = _model(inp, L.AutoContrast()(inp))
    x = _images("uint8", shape=(2, 5, 4, 2))
    x[0, :, :, 1] = 7
    expected = outputs_of(model(x, training=False))[0]
    got = outputs_of(convert_keras_model(model).module(torch.from_numpy(x)))[0]
    assert got.dtype == expected.dtype == np.float32
    assert np.array_equal(got, expected) and np.all(expected[0, :, :, 1] == 7)


def test_clahe() -> None:
    """Standard-normal images over a (-3, 3) range spread over the histogram; tiles that do not divide the
    image (symmetric padding), clip limits on and off, channels-first."""
    CLAHE = L.ContrastLimitedAdaptiveHistogramEqualization
    inp = keras.Input((10, 11, 3))
    cf = keras.Input((3, 7, 9))
    outs = [CLAHE(value_range=(-3, 3), tile_grid_size=(2, 3))(inp),
            CLAHE(value_range=(-3, 3), clip_limit=0, tile_grid_size=(3, 2))(inp),
            CLAHE(value_range=(-3, 3), clip_limit=1.5, tile_grid_size=(2, 2), data_format="channels_first")(cf)]
    _, worst = check_keras_to_torch(_model([inp, cf], outs), tol=1e-6)
    assert worst <= 1e-6


def test_clahe_on_uint8_images_is_exact() -> None:
    inp = keras.Input((8, 10, 3), dtype="uint8")
    model = _model(inp, L.ContrastLimitedAdaptiveHistogramEqualization(tile_grid_size=(2, 2))(inp))
    module = convert_keras_model(model).module
    for seed in (0, 1):
        x = _images("uint8", seed, (2, 8, 10, 3))
        expected = outputs_of(model(x, training=False))[0]
        got = outputs_of(module(torch.from_numpy(x)))[0]
        assert got.dtype == expected.dtype == np.uint8 and np.array_equal(got, expected)


# ---- Discretization, CategoryEncoding, IntegerLookup (exact) -------------------------------------

_BOUNDS = [-1.0, 0.0, 0.5, 2.0]


def test_discretization_every_output_mode() -> None:
    inp = keras.Input((5,))
    outs = [L.Discretization(bin_boundaries=_BOUNDS, output_mode=m)(inp)
            for m in ("int", "one_hot", "multi_hot", "count")]
    one = keras.Input((1,))
    outs.append(L.Discretization(bin_boundaries=_BOUNDS, output_mode="one_hot")(one))  # (batch, 1): squeezed
    seq = keras.Input((3, 4))
    outs.append(L.Discretization(bin_boundaries=_BOUNDS, output_mode="count")(seq))  # reduces axis 1
    check_keras_to_torch(_model([inp, one, seq], outs), tol=0.0)


def test_discretization_of_integers() -> None:
    inp = keras.Input((6,), dtype="int32")
    check_keras_to_torch(_model(inp, L.Discretization(bin_boundaries=[2, 5.5, 7])(inp)), tol=0.0)


def test_category_encoding() -> None:
    """Ids up to 13 against 12 tokens: ids >= depth count nowhere, as in Keras."""
    ids = keras.Input((4,), dtype="int32")
    one = keras.Input((1,), dtype="int32")
    weights = keras.Input((4,))
    outs = [L.CategoryEncoding(12, output_mode=m)(ids) for m in ("one_hot", "multi_hot", "count")]
    outs.append(L.CategoryEncoding(12, output_mode="one_hot")(one))
    outs.append(L.CategoryEncoding(12, output_mode="count")(ids, count_weights=weights))
    model = _model([ids, one, weights], outs)
    _, worst = check_keras_to_torch(model, tol=1e-6, int_high=14)
    module = convert_keras_model(model).module
    x = [np.random.default_rng(3).integers(0, 14, s).astype(d) for s, d in (((2, 4), "int32"), ((2, 1), "int32"))]
    x.append(np.random.default_rng(3).normal(size=(2, 4)).astype("float32"))
    expected = outputs_of(model(x, training=False))
    got = outputs_of(module(*[torch.from_numpy(a) for a in x]))
    assert all(np.array_equal(g, e) for g, e in zip(got[:4], expected[:4]))  # the unweighted ones: exact


def test_category_encoding_negative_ids_raise_as_in_keras() -> None:
    ids = keras.Input((4,), dtype="int32")
    model = _model(ids, L.CategoryEncoding(6, output_mode="multi_hot")(ids))
    module = convert_keras_model(model).module
    bad = np.array([[0, -1, 2, 3]], "int32")
    with pytest.raises(Exception, match="non-negative"):
        model(bad)
    with pytest.raises(RuntimeError, match="non-negative"):
        module(torch.from_numpy(bad))


def test_category_encoding_refuses_a_shape_keras_does_not_compute() -> None:
    ids = keras.Input((3, 4), dtype="int32")
    with pytest.raises(UnsupportedError, match="computes shape"):
        convert_keras_model(_model(ids, L.CategoryEncoding(6, output_mode="multi_hot")(ids)))


_VOCAB = [7, 3, 5, 1]
LOOKUPS = [
    pytest.param({}, id="default"),
    pytest.param({"num_oov_indices": 3}, id="oov3-floormod"),
    pytest.param({"mask_token": 0}, id="mask"),
    pytest.param({"output_mode": "one_hot", "mask_token": 0}, id="one-hot-mask"),
    pytest.param({"output_mode": "multi_hot", "mask_token": 0}, id="multi-hot-mask"),
    pytest.param({"output_mode": "count", "num_oov_indices": 2}, id="count-oov2"),
    pytest.param({"output_mode": "multi_hot", "pad_to_max_tokens": True, "max_tokens": 9}, id="padded"),
    pytest.param({"output_mode": "tf_idf", "idf_weights": [0.1, 0.2, 0.3, 0.4]}, id="tf-idf"),
    pytest.param({"invert": True, "mask_token": -5}, id="invert"),
]


def test_integer_lookup_every_option() -> None:
    ids = keras.Input((4,), dtype="int64")
    outs = [L.IntegerLookup(vocabulary=_VOCAB, **p.values[0])(ids) for p in LOOKUPS]
    model = _model(ids, outs)
    _, worst = check_keras_to_torch(model, tol=0.0)
    module = convert_keras_model(model).module
    x = np.random.default_rng(4).integers(-3, 12, (3, 4)).astype("int64")  # unknown and negative keys too
    expected = outputs_of(model(x))
    got = outputs_of(module(torch.from_numpy(x)))
    for p, g, e in zip(LOOKUPS, got, expected):
        assert g.dtype == e.dtype and np.array_equal(g, e), p.id


def test_integer_lookup_without_oov_raises_on_unknown_keys_as_keras_does() -> None:
    ids = keras.Input((3,), dtype="int64")
    model = _model(ids, L.IntegerLookup(vocabulary=_VOCAB, num_oov_indices=0)(ids))
    module = convert_keras_model(model).module
    known = np.array([[7, 1, 5]], "int64")
    assert np.array_equal(outputs_of(module(torch.from_numpy(known)))[0], outputs_of(model(known))[0])
    unknown = np.array([[7, 2, 5]], "int64")
    with pytest.raises(Exception):
        model(unknown)
    with pytest.raises(RuntimeError, match="num_oov_indices=0"):
        module(torch.from_numpy(unknown))


def test_integer_lookup_refuses_farmhash_oov() -> None:
    ids = keras.Input((3,), dtype="int64")
    layer = L.IntegerLookup(vocabulary=_VOCAB, num_oov_indices=2, oov_method="farmhash")
    with pytest.raises(UnsupportedError, match="farmhash"):
        convert_keras_model(_model(ids, layer(ids)))


# ---- spectrograms ---------------------------------------------------------------------------------

def test_stft_spectrogram_every_mode() -> None:
    """The kernels are Keras weights: they land in the state_dict as two Conv1d weights per layer."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((50, 2))
    outs = [L.STFTSpectrogram(mode=m, frame_length=16, frame_step=5, fft_length=32, name=f"stft_{m}")(inp)
            for m in ("log", "magnitude", "psd", "real", "imag", "angle", "stft")]
    module, worst = check_keras_to_torch(_model(inp, outs))
    assert worst <= 1e-6
    keys = module.state_dict().keys()
    assert {"stft_log.real.weight", "stft_log.imag.weight", "stft_real.real.weight", "stft_imag.imag.weight"} <= keys
    assert "stft_real.imag.weight" not in keys


STFT = [
    pytest.param(lambda: L.STFTSpectrogram(mode="magnitude", frame_length=15, frame_step=4, padding="same",
                                           window="hamming", periodic=True, scaling="spectrum"), (47, 1), None,
                 id="same-hamming-spectrum"),
    pytest.param(lambda: L.STFTSpectrogram(mode="log", frame_length=15, frame_step=4, padding="same"), (None, 2),
                 {1: 45}, id="same-unknown-length"),
    pytest.param(lambda: L.STFTSpectrogram(mode="psd", frame_length=16, frame_step=8, expand_dims=True,
                                           data_format="channels_first", scaling=None), (2, 40), None,
                 id="channels-first-expand"),
    pytest.param(lambda: L.STFTSpectrogram(mode="stft", frame_length=16, frame_step=8, expand_dims=True), (40, 3),
                 None, id="expand"),
]


@pytest.mark.parametrize("make,shape,sizes", STFT)
def test_stft_spectrogram_configurations(make: Callable[[], Any], shape: tuple, sizes: dict | None) -> None:
    inp = keras.Input(shape)
    check_keras_to_torch(_model(inp, make()(inp)), **({"sizes": sizes} if sizes else {}))


def test_mel_spectrogram() -> None:
    """torch.stft against tf.signal.stft: frames, window padding, decibels against the batch maximum."""
    inp = keras.Input((200,))
    outs = [L.MelSpectrogram(fft_length=64, sequence_stride=16, num_mel_bins=10, sampling_rate=8000)(inp),
            L.MelSpectrogram(fft_length=64, sequence_stride=16, sequence_length=40, num_mel_bins=12,
                             sampling_rate=8000, power_to_db=False, mag_exp=1.0, window="hamming")(inp),
            L.MelSpectrogram(fft_length=32, sequence_stride=10, num_mel_bins=8, ref_power=2.0, top_db=30.0,
                             min_freq=100.0, max_freq=7000)(inp),
            L.MelSpectrogram(fft_length=32, sequence_stride=8, sequence_length=20, num_mel_bins=8, window=None)(inp)]
    _, worst = check_keras_to_torch(_model(inp, outs))
    assert worst <= 1e-6


def test_mel_spectrogram_of_unknown_length() -> None:
    inp = keras.Input((None,))
    layer = L.MelSpectrogram(fft_length=32, sequence_stride=10, num_mel_bins=8)
    check_keras_to_torch(_model(inp, layer(inp)), sizes={1: 150})
