"""SavedModels whose functions touch files are refused before porttax calls or restores them.

Real SavedModels (Keras `model.export`, `tf.saved_model.save` of a tf.Module, one with a While loop, a
TF1 SavedModelBuilder graph) pass `check_savedmodel_ops`: their file I/O is the saver's own. Hostile
ones are built with the real TensorFlow API (or, for what the API cannot write, by editing a real
saved_model.pb) and must be refused with InputError naming the op, through the library, through
`porttax parity` (exit 2) and through the Keras → torch road, and the file the op would write must not
exist afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import porttax
from porttax import cli
from porttax._frameworks import import_keras, import_tf
from porttax.errors import InputError
from porttax.sources.savedmodel_checks import SAVEDMODEL_DENIED_OPS, check_savedmodel_ops

tf = import_tf()
keras = import_keras()

from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402  (after import_tf: import order)

SPEC = tf.TensorSpec([None, 4], tf.float32, name="x")


def _save(tmp_path: Path, fn: Callable, name: str = "sm") -> Path:
    """A tf.Module whose serving signature is `fn(module, x)`, saved with tf.saved_model.save."""

    class Model(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.v = tf.Variable(tf.ones([4]))

        @tf.function(input_signature=[SPEC])
        def serve(self, x):
            return {"y": fn(self, x)}

    module = Model()
    out = tmp_path / name
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out


def _refused(sm: Path, op: str, capsys: pytest.CaptureFixture, canary: Path | None = None) -> str:
    """Assert the check and `porttax parity` (through SavedModelRunner) refuse `sm` naming `op`, and the
    canary the op would write does not exist afterwards."""
    with pytest.raises(InputError) as info:
        check_savedmodel_ops(sm)
    message = str(info.value)
    assert op in message and str(sm) in message and "What to do:" in message, message
    capsys.readouterr()
    assert cli.main(["parity", str(sm), str(sm), "-q"]) == 2
    assert op in capsys.readouterr().err
    if canary is not None:
        assert not canary.exists(), "porttax ran the SavedModel's file op"
    return message


# --- real SavedModels pass ----------------------------------------------------------------------------


def test_keras_export_passes_and_its_saver_is_what_we_think(tmp_path: Path) -> None:
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(3)(keras.layers.Dense(5, activation="relu")(x)))
    model.export(str(tmp_path / "k"), verbose=False)
    check_savedmodel_ops(tmp_path / "k")

    meta = saved_model_pb2.SavedModel.FromString((tmp_path / "k" / "saved_model.pb").read_bytes()).meta_graphs[0]
    ops = {f.signature.name: {n.op for n in f.node_def} for f in meta.graph_def.library.function}
    checkpoint = sorted(n for n in ops if n.startswith("__inference__traced_"))
    assert [n.rsplit("_", 1)[0] for n in checkpoint] == ["__inference__traced_restore", "__inference__traced_save"]
    assert {"SaveV2", "MergeV2Checkpoints"} <= ops[checkpoint[1]] and "RestoreV2" in ops[checkpoint[0]]
    assert not any(op in SAVEDMODEL_DENIED_OPS for n, o in ops.items() if n not in checkpoint for op in o)
    assert not any(n.op in SAVEDMODEL_DENIED_OPS for n in meta.graph_def.node)  # TF2: the saver is two calls
    callers = {n.name: n.attr["f"].func.name for n in meta.graph_def.node if n.attr["f"].func.name in checkpoint}
    assert set(callers) == {meta.saver_def.save_tensor_name.split(":")[0], meta.saver_def.restore_op_name}


def test_module_while_loop_and_tf1_savedmodels_pass(tmp_path: Path) -> None:
    check_savedmodel_ops(_save(tmp_path, lambda m, x: x * m.v, "plain"))
    check_savedmodel_ops(_save(tmp_path, lambda m, x: tf.while_loop(
        lambda i, a: i < 3, lambda i, a: (i + 1, a * m.v), (0, x))[1], "loop"))
    check_savedmodel_ops(_tf1_savedmodel(tmp_path / "tf1"))


def _tf1_savedmodel(out: Path, extra: Callable | None = None) -> Path:
    """A TF1-style SavedModel: no functions, the saver is SaveV2/RestoreV2 nodes in graph_def."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.matmul(x, v1.get_variable("w", [4, 3]), name="y")
        if extra is not None:
            y = extra(y)
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(out))
        signature = v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
    return out


def test_porttax_written_savedmodel_passes_and_runs(tmp_path: Path) -> None:
    from porttax.targets.savedmodel import write_savedmodel

    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(3, name="d")(x))
    write_savedmodel(model, tmp_path / "sm")
    check_savedmodel_ops(tmp_path / "sm")
    assert cli.main(["parity", str(tmp_path / "sm"), str(tmp_path / "sm"), "-q"]) == 0


# --- hostile SavedModels are refused before anything runs ----------------------------------------------


def test_write_file_in_the_serving_signature(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    canary = tmp_path / "canary"

    def fn(m, x):
        with tf.control_dependencies([tf.io.write_file(str(canary), "pwned")]):
            return x * m.v

    sm = _save(tmp_path, fn)
    message = _refused(sm, "WriteFile", capsys, canary)
    assert "writes files" in message and "__inference_" in message
    # The Keras -> torch road reads a SavedModel that carries a Keras config; a hostile one can carry one too.
    from porttax.sources.keras_source import KERAS_CONFIG, savedmodel_config

    x = keras.Input((4,), name="x")
    (sm / KERAS_CONFIG).parent.mkdir(parents=True)
    (sm / KERAS_CONFIG).write_text(savedmodel_config(keras.Model(x, keras.layers.Dense(4)(x))))
    with pytest.raises(InputError, match="WriteFile"):  # checked before tf.saved_model.load restores it
        porttax.convert(str(sm), to="torch", output=tmp_path / "o.pt2")
    assert not canary.exists()
    # The control: without the check, `porttax parity` runs the op and the canary appears.
    import porttax.parity.runners as runners

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runners, "check_savedmodel_ops", lambda path: None)
        assert cli.main(["parity", str(sm), str(sm), "-q"]) == 0
    assert canary.read_text() == "pwned"


def test_read_file_in_the_serving_signature(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    secret = tmp_path / "secret"
    secret.write_text("1 2 3 4")
    sm = _save(tmp_path, lambda m, x: x + tf.cast(tf.strings.length(tf.io.read_file(str(secret))), tf.float32))
    assert "reads files" in _refused(sm, "ReadFile", capsys)


def test_print_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    canary = tmp_path / "printed"

    def fn(m, x):
        with tf.control_dependencies([tf.print("hello", output_stream=f"file://{canary}")]):
            return x * m.v

    assert "prints to" in _refused(_save(tmp_path, fn), "PrintV2", capsys, canary)
    _save(tmp_path, lambda m, x: (tf.print("debug"), x)[1], "stderr")  # printing to stderr is fine
    assert b"PrintV2" in (tmp_path / "stderr" / "saved_model.pb").read_bytes()
    check_savedmodel_ops(tmp_path / "stderr")


def test_write_file_nested_in_while_and_cond_bodies(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    canary = tmp_path / "canary"

    def body(i, a):
        with tf.control_dependencies([tf.io.write_file(str(canary), "pwned")]):
            return i + 1, a * 2.0

    in_loop = _save(tmp_path, lambda m, x: tf.while_loop(lambda i, a: i < 2, body, (0, x))[1], "loop")
    assert "while_body" in _refused(in_loop, "WriteFile", capsys, canary)

    def branch(x):
        with tf.control_dependencies([tf.io.write_file(str(canary), "pwned")]):
            return x + 1.0

    in_cond = _save(tmp_path, lambda m, x: tf.cond(tf.reduce_sum(x) > 0, lambda: branch(x), lambda: x), "cond")
    _refused(in_cond, "WriteFile", capsys, canary)


def test_tfrecord_dataset_in_the_serving_signature(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    records = tmp_path / "r.tfrecord"
    with tf.io.TFRecordWriter(str(records)) as writer:
        writer.write(b"abcd")
    count = lambda m, x: x + tf.cast(tf.data.TFRecordDataset(str(records)).reduce(0, lambda n, _: n + 1), tf.float32)
    assert "reads files" in _refused(_save(tmp_path, count), "TFRecordDataset", capsys)


def test_write_file_in_a_tf1_graph_signature(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    canary = tmp_path / "canary"

    def extra(y):
        with tf.control_dependencies([tf.io.write_file(str(canary), "pwned", name="evil")]):
            return tf.identity(y)

    assert "evil" in _refused(_tf1_savedmodel(tmp_path / "tf1", extra), "WriteFile", capsys, canary)


def _rename_function(sm: Path, old: str, new: str) -> None:
    """Rename a library function everywhere saved_model.pb names it (what a hand-edited file could do)."""
    from google.protobuf import text_format

    proto = saved_model_pb2.SavedModel.FromString((sm / "saved_model.pb").read_bytes())
    # Names are length-prefixed in the wire format, so rename in the text format, not in the bytes.
    rewritten = text_format.MessageToString(proto).replace(f'"{old}"', f'"{new}"')
    assert rewritten != text_format.MessageToString(proto)
    (sm / "saved_model.pb").write_bytes(text_format.Parse(rewritten, saved_model_pb2.SavedModel()).SerializeToString())


def _function_with(sm: Path, op: str) -> str:
    proto = saved_model_pb2.SavedModel.FromString((sm / "saved_model.pb").read_bytes())
    return next(f.signature.name for f in proto.meta_graphs[0].graph_def.library.function
                if any(n.op == op for n in f.node_def))


def test_file_writer_named_like_a_checkpoint_function(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    canary = tmp_path / "canary"

    def fn(m, x):
        with tf.control_dependencies([tf.io.write_file(str(canary), "pwned")]):
            return x * m.v

    sm = _save(tmp_path, fn)
    _rename_function(sm, _function_with(sm, "WriteFile"), "__inference__traced_save_99999")
    message = _refused(sm, "__inference__traced_save_99999", capsys, canary)
    assert "WriteFile" in message or "checkpoint function" in message, message


def test_checkpoint_op_on_a_path_of_its_own(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A checkpoint function whose SaveV2 writes somewhere other than the prefix the loader passes."""
    sm = _save(tmp_path, lambda m, x: x * m.v)
    proto = saved_model_pb2.SavedModel.FromString((sm / "saved_model.pb").read_bytes())
    save = next(f for f in proto.meta_graphs[0].graph_def.library.function if "traced_save" in f.signature.name)
    join = next(n for n in save.node_def if n.op == "StringJoin")
    join.input[0] = "Const:output:0"  # the prefix becomes a constant instead of the file_prefix argument
    (sm / "saved_model.pb").write_bytes(proto.SerializeToString())
    assert "file prefix" in _refused(sm, "SaveV2", capsys)


def _misuse_signature(meta) -> None:
    meta.signature_def["serving_default"].outputs["y"].name = "save/Identity:0"  # calling it runs the save


def _misuse_collection(meta) -> None:
    meta.collection_def["saved_model_main_op"].node_list.value.append("save/restore_all")  # init runs it


def _misuse_consumer(meta) -> None:
    leak = meta.graph_def.node.add(name="leak", op="Identity", input=["save/RestoreV2"])  # outside the saver
    leak.attr["T"].type = 1  # DT_FLOAT


@pytest.mark.parametrize("misuse,says", [(_misuse_signature, "signature"), (_misuse_collection, "collection"),
                                         (_misuse_consumer, "outside the saver")])
def test_tf1_saver_used_outside_the_loaders_restore(tmp_path: Path, misuse: Callable, says: str) -> None:
    """A TF1 graph's saver nodes may do file I/O only as the saver: not as a signature, an init op or an input."""
    sm = _tf1_savedmodel(tmp_path / "tf1")
    proto = saved_model_pb2.SavedModel.FromString((sm / "saved_model.pb").read_bytes())
    misuse(proto.meta_graphs[0])
    (sm / "saved_model.pb").write_bytes(proto.SerializeToString())
    with pytest.raises(InputError, match=says):
        check_savedmodel_ops(sm)


def test_denied_ops_are_real_op_names() -> None:
    from tensorflow.python.framework import op_def_registry

    assert [op for op in SAVEDMODEL_DENIED_OPS if op_def_registry.get(op) is None] == []


def test_unreadable_saved_model_pb_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    with pytest.raises(InputError, match="not a readable SavedModel"):
        check_savedmodel_ops(tmp_path / "sm")


def test_oversized_saved_model_pb_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "sm").mkdir()
    with open(tmp_path / "sm" / "saved_model.pb", "wb") as f:
        f.truncate(2 * 1024**3 + 1)  # sparse: no disk used, and the check must not read it
    with pytest.raises(InputError, match="more than protobuf can parse"):
        check_savedmodel_ops(tmp_path / "sm")


def test_mutated_saved_model_pb_raises_input_error_or_passes(tmp_path: Path) -> None:
    """Nothing but InputError escapes the check, whatever the bytes (the file_checks contract)."""
    import random

    data = _save(tmp_path, lambda m, x: x * m.v).joinpath("saved_model.pb").read_bytes()
    (tmp_path / "fz").mkdir()
    rng = random.Random(0)
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        (tmp_path / "fz" / "saved_model.pb").write_bytes(bytes(mutated))
        try:
            check_savedmodel_ops(tmp_path / "fz")
        except InputError:
            pass
