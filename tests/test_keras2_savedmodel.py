"""SavedModels written by TF-Keras 2 (keras_metadata.pb) convert to PyTorch, proved against the graph
TF-Keras itself wrote. The fixtures are built with tf_keras in a child process, as a team still on
TF-Keras would have saved them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from porttax import cli

BUILD = r'''
import sys
import tf_keras as k
k.utils.set_random_seed(0)
kind, out = sys.argv[1], sys.argv[2]
if kind == "cnn":
    i = k.Input((8, 8, 3), name="img")
    x = k.layers.Conv2D(4, 3, padding="same", name="conv")(i)
    x = k.layers.BatchNormalization(name="bn", epsilon=1e-3)(x)
    x = k.layers.ReLU()(x)
    x = k.layers.MaxPooling2D()(x)
    x = k.layers.DepthwiseConv2D(3, padding="same")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(i, k.layers.Dense(5, activation="softmax", name="head")(x), name="cnn")
    bn = model.get_layer("bn")
    bn.set_weights([w + 0.1 * (j + 1) for j, w in enumerate(bn.get_weights())])  # non-trivial statistics
elif kind == "bilstm":
    model = k.Sequential([k.Input((12,), dtype="int32", name="tokens"), k.layers.Embedding(50, 8),
                          k.layers.Bidirectional(k.layers.LSTM(6, return_sequences=True)),
                          k.layers.LSTM(5), k.layers.Dense(3)], name="bilstm")
elif kind == "gru":
    i = k.Input((7, 4), name="seq")
    x = k.layers.GRU(6, return_sequences=True)(i)
    x = k.layers.GRU(5, reset_after=False)(x)
    model = k.Model(i, k.layers.Dense(2)(k.layers.Dropout(0.5)(x)), name="gru")
elif kind == "nested":
    inner = k.Sequential([k.Input((6,)), k.layers.Dense(8, activation="relu"), k.layers.LayerNormalization()],
                         name="block")
    i = k.Input((6,), name="x")
    model = k.Model(i, k.layers.Dense(3)(k.layers.Add()([inner(i), k.layers.Dense(8)(i)])), name="nested")
elif kind == "subclassed":
    class Net(k.Model):
        def __init__(self):
            super().__init__()
            self.d = k.layers.Dense(3)
        def call(self, x):
            return self.d(x)
    model = Net()
    model(k.ops.zeros((1, 4)) if hasattr(k, "ops") else __import__("tensorflow").zeros((1, 4)))
model.save(out, save_format="tf")
'''


def _build(kind: str, folder: Path) -> Path:
    out = folder / f"{kind}_sm"
    result = subprocess.run([sys.executable, "-c", BUILD, kind, str(out)], capture_output=True, text=True,
                            timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "keras_metadata.pb").is_file()
    return out


@pytest.mark.parametrize("kind", ["cnn", "bilstm", "gru", "nested"])
def test_tf_keras_savedmodel_converts_with_parity_against_its_own_graph(kind: str, tmp_path: Path) -> None:
    sm = _build(kind, tmp_path)
    report = tmp_path / "report.json"
    code = cli.main(["convert", str(sm), "-o", str(tmp_path / f"{kind}.pt2"), "-q", "--no-latency",
                     "--report", str(report)])
    data = json.loads(report.read_text())
    assert code == 0, data["parity"]
    assert "TF-Keras SavedModel" in json.dumps(data["parity"])  # the reference is the SavedModel itself
    assert data["porting_tax"]["drift_rel_l2"] <= 1e-5


def test_subclassed_tf_keras_savedmodel_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sm = _build("subclassed", tmp_path)
    assert cli.main(["convert", str(sm), "-o", str(tmp_path / "s.pt2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert str(sm) in err and "What to do:" in err and "Traceback" not in err
    assert not (tmp_path / "s.pt2").exists()


def test_tf_keras_savedmodel_to_onnx(tmp_path: Path) -> None:
    """SavedModel → ONNX: through the rebuilt Keras model and porttax's torch module, proved against
    the SavedModel's own serving graph in onnxruntime."""
    sm = _build("cnn", tmp_path)
    report = tmp_path / "report.json"
    assert cli.main(["convert", str(sm), "-o", str(tmp_path / "cnn.onnx"), "-q", "--no-latency",
                     "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert "TF-Keras SavedModel" in json.dumps(data["parity"]) and data["porting_tax"]["drift_rel_l2"] <= 1e-5
