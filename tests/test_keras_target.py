"""The converted `.keras` and SavedModel as a user calls them: one positional tensor, by name, no warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

import porttax
from porttax import models
from porttax._frameworks import import_keras, import_tf, import_torch


def test_a_single_input_model_takes_one_positional_tensor_without_a_warning(tmp_path: Path) -> None:
    torch = import_torch()
    module = models.build_model("mlp-tiny", seed=1).eval()
    example = tuple(models.example_inputs("mlp-tiny", batch=2))
    porttax.convert(module, example_inputs=example, to="keras", output=tmp_path / "m.keras", measure_latency=False)
    porttax.convert(module, example_inputs=example, to="savedmodel", output=tmp_path / "sm", measure_latency=False)
    keras, tf = import_keras(), import_tf()
    x = example[0].numpy()
    with torch.no_grad():
        expected = module(*example).numpy()

    loaded = keras.saving.load_model(tmp_path / "m.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = np.asarray(loaded(x))
        predicted = loaded.predict(x, verbose=0)
    structure = [str(w.message) for w in caught if "structure" in str(w.message)]
    assert structure == [], structure
    for out in (got, np.asarray(predicted)):
        assert np.linalg.norm(out - expected) / np.linalg.norm(expected) < 1e-5

    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    _, kwargs = serve.structured_input_signature
    name = next(iter(kwargs))
    assert list(kwargs) == [name] and kwargs[name].shape.as_list()[1:] == list(x.shape[1:])
    (served,) = serve(**{name: tf.constant(x)}).values()
    assert np.linalg.norm(served.numpy() - expected) / np.linalg.norm(expected) < 1e-5
