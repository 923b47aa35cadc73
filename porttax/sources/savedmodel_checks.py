"""TensorFlow SavedModels from strangers: refuse functions that touch files, run Python or reach the
network, before TensorFlow restores or calls any of them.

A SavedModel is a program: its functions run when porttax calls a signature (parity) or restores the
model (conversion), so an op that touches files, runs Python or reaches the network runs with the
user's rights. The checkpoint functions every TF2 SavedModel carries (and the saver nodes of a TF1
graph) do write and read files, but only at the path the loader feeds them; the rules that tell those
apart from a hostile copy are in check_savedmodel_ops' docstring.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from porttax.errors import InputError, brief
from porttax.sources.file_checks import open_regular, show_value

MAX_SAVED_MODEL_PB = 2 * 1024**3  # protobuf cannot parse a larger message; TensorFlow cannot either


def _deny(why: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), why)


# Op type -> what it does. Every name is a registered op in TensorFlow 2.21 (a test checks it).
SAVEDMODEL_DENIED_OPS: dict[str, str] = {
    **_deny("reads files",
            "ReadFile MatchingFiles ImmutableConst InitializeTableFromTextFile InitializeTableFromTextFileV2 "
            "LoadAndRemapMatrix GenerateVocabRemapping Skipgram FixedUnigramCandidateSampler RecordInput "
            "WholeFileReader WholeFileReaderV2 TextLineReader TextLineReaderV2 TFRecordReader TFRecordReaderV2 "
            "FixedLengthRecordReader FixedLengthRecordReaderV2 LMDBReader TFRecordDataset TFRecordDatasetV2 "
            "FixedLengthRecordDataset FixedLengthRecordDatasetV2 TextLineDataset CSVDataset CSVDatasetV2 "
            "ExperimentalCSVDataset LMDBDataset ExperimentalLMDBDataset MatchingFilesDataset "
            "ExperimentalMatchingFilesDataset SqlDataset ExperimentalSqlDataset LoadDataset SnapshotDatasetReader "
            "SnapshotNestedDatasetReader SnapshotChunkDataset ListSnapshotChunksDataset"),
    **_deny("writes files",
            "WriteFile DatasetToTFRecord ExperimentalDatasetToTFRecord SaveDataset SaveDatasetV2 DistributedSave "
            "SnapshotDataset SnapshotDatasetV2 CacheDataset CacheDatasetV2 CreateSummaryFileWriter "
            "CreateSummaryDbWriter SummaryWriter ImportEvent FlushSummaryWriter CloseSummaryWriter WriteSummary "
            "WriteScalarSummary WriteHistogramSummary WriteImageSummary WriteAudioSummary WriteGraphSummary "
            "WriteRawProtoSummary StatsAggregatorSetSummaryWriter CalibrationStatisticsSaver DumpTensor "
            "DebugIdentity DebugIdentityV2 DebugIdentityV3 DebugNanCount DebugNumericSummary "
            "FileSystemSetConfiguration"),
    **_deny("reads or writes checkpoint files",
            "Save SaveSlices SaveV2 MergeV2Checkpoints Restore RestoreSlice RestoreV2 DTensorRestoreV2"),
    **_deny("runs Python code", "PyFunc PyFuncStateless EagerPyFunc"),
    **_deny("reaches the network",
            "RpcServer RpcServerStart RpcServerRegister RpcClient RpcCall RpcCheckStatus RpcGetValue "
            "DataServiceDataset DataServiceDatasetV2 DataServiceDatasetV3 DataServiceDatasetV4 RegisterDataset "
            "RegisterDatasetV2 RemoteCall"),
    **_deny("runs a graph stored as data", "DatasetFromGraph"),
}
# PrintV2 is harmless on these streams; any other output_stream ("file:///...") is a file it appends to.
_PRINT_STREAMS = frozenset({"stdout", "stderr", "log(info)", "log(warning)", "log(error)"})
# What the checkpoint functions and saver nodes may use of the above, and only on the saver's own path.
_CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints"})
# tf.saved_model.save (Keras model.export calls it) writes its saver as MultiDeviceSaver.to_proto traces
# it (tensorflow/python/checkpoint/functional_saver.py): tf.functions `_traced_save`/`_traced_restore`,
# which TensorFlow names `__inference_<name>_<uid>`.
_CHECKPOINT_FUNCTION = re.compile(r"__inference__traced_(save|restore)_[0-9]+")
# Ops a checkpoint path may pass through on its way from the saver's filename: the prefix itself goes
# through _PATH_SPINE; constant suffixes ("_temp/part", shard numbers) through _PATH_SUFFIX.
_PATH_SPINE = frozenset({"Identity", "StringJoin", "ShardedFilename", "Pack"})
_PATH_SUFFIX = frozenset({"Identity", "Const", "Select", "StaticRegexFullMatch"})

_SAVEDMODEL_HINT = ("porttax runs SavedModel functions during parity and conversion; a model that reads or "
                    "writes files when called is refused. Re-export it without file I/O ops, or convert "
                    "from the .keras file")


def check_savedmodel_ops(path: str | os.PathLike) -> None:
    """Refuse a SavedModel whose functions or graph could touch files, run Python or reach the network.

    Reads `<path>/saved_model.pb` (the file tf.saved_model.load reads first) and runs nothing. The
    MetaGraph checked is the only one, or the one tagged "serve". A node is denied when its op type is
    in SAVEDMODEL_DENIED_OPS, or it is a PrintV2 whose output_stream is not stdout, stderr or a log.

    What may do file I/O is the saver, and only on the path the loader gives it:
      * Checkpoint functions: `__inference__traced_save_N` and `__inference__traced_restore_N`, the
        names tf.saved_model.save (so also Keras `model.export`) gives the functions saver_def runs.
        Of the denied ops they may hold SaveV2, RestoreV2 and MergeV2Checkpoints only, each on a path
        that is the function's first argument (the file prefix) with only constant suffixes joined on:
        the prefix through Identity/StringJoin/ShardedFilename/Pack, the rest through
        Const/Select/StaticRegexFullMatch/Identity, no constant holding a '..' component.
      * Every other library function, whatever calls it (calls: an op named after a function, or a
        func-valued attr, so PartitionedCall, While/If/Case bodies and dataset functions count), holds
        no denied op and calls no checkpoint function; the object graph (the callables TF2's loader
        builds) and gradient entries name none. So a serving function cannot reach a file writer by
        naming it like a checkpoint function.
      * Top-level graph_def nodes (what a TF1-style loader prunes and runs: signatures, the init op,
        saver_def's restore op). In a TF2 SavedModel they hold no denied op: the saver is two
        StatefulPartitionedCall nodes calling the checkpoint functions. A node that is a denied op or
        calls a checkpoint function must be SaveV2/RestoreV2/MergeV2Checkpoints or such a call, on a
        path from saver_def's filename tensor (rule above), and it and every node depending on it must
        be among the nodes saver_def's save tensor and restore op depend on; no signature tensor and no
        collection (node lists, or node names inside serialized protos such as VariableDef) may name
        one of them.
    Anything else raises InputError naming the op type and the function or node it sits in.
    """
    from porttax._frameworks import import_tf

    import_tf()  # the protobuf modules come with TensorFlow; import it in porttax's safe order
    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(path) / "saved_model.pb"
    with open_regular(pb, "SavedModel file") as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_SAVED_MODEL_PB:
                raise InputError(f"saved_model.pb is {size} bytes, more than protobuf can parse (2 GiB)",
                                 path=str(path), hint="re-export the model; a real saved_model.pb stays under "
                                 "2 GiB because its weights live in variables/")
            data = f.read()
        except OSError as exc:
            raise InputError(f"cannot read saved_model.pb: {exc}", path=str(path)) from None
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(data)
    except Exception as exc:  # protobuf DecodeError, RecursionError on deep nesting
        raise InputError(f"saved_model.pb is not a readable SavedModel: {brief(exc)}", path=str(path),
                         hint="re-export the model with tf.saved_model.save or Keras model.export") from None
    _SavedModelOps(_pick_meta_graph(saved_model, str(path)), str(path)).check()


def _pick_meta_graph(saved_model: Any, path: str) -> Any:
    graphs = list(saved_model.meta_graphs)
    if not graphs:
        raise InputError("the SavedModel holds no MetaGraph", path=path,
                         hint="re-export the model with tf.saved_model.save or Keras model.export")
    if len(graphs) > 1:
        graphs = [g for g in graphs if "serve" in g.meta_info_def.tags]
    if len(graphs) != 1:
        raise InputError(f"the SavedModel has {len(saved_model.meta_graphs)} MetaGraphs and {len(graphs)} of "
                         "them are tagged 'serve'; porttax needs exactly one to check and load", path=path,
                         hint="re-export the model with a single serving MetaGraph")
    return graphs[0]


def _node_name(ref: str) -> str:
    """The node a graph_def input or tensor name refers to: 'x:0' and '^x' both name node 'x'."""
    return ref.lstrip("^").split(":", 1)[0]


def _attr_funcs(attr: Any) -> list[str]:
    """Names of the functions an AttrValue carries, however deep (a func's own attrs may hold funcs)."""
    names: list[str] = []
    stack = [attr]
    while stack:
        value = stack.pop()
        funcs = list(value.list.func)
        if value.HasField("func"):
            funcs.append(value.func)
        for func in funcs:
            names.append(func.name)
            stack.extend(func.attr.values())
    return names


def _calls(node: Any, library: set[str]) -> list[str]:
    names = [node.op] + [name for attr in node.attr.values() for name in _attr_funcs(attr)]
    return [name for name in names if name in library]


def _denial(node: Any) -> str | None:
    """What a node does that porttax refuses, or None."""
    if node.op == "PrintV2":
        stream = node.attr["output_stream"].s.decode("utf-8", "replace") if "output_stream" in node.attr else "stderr"
        return None if stream in _PRINT_STREAMS else f"prints to {show_value(stream)}, a file"
    return SAVEDMODEL_DENIED_OPS.get(node.op)


def _has_parent_ref(value: bytes) -> bool:
    return b".." in re.split(rb"[\\/]", value)


class _Body:
    """One graph to check: a function body (inputs 'node:out:0' or an argument name) or the top-level
    graph (inputs 'node:0' or 'node'). Paths are checked against one start (the file prefix argument or
    the saver's filename node), and what is proven is remembered, so a graph is walked once in all."""

    def __init__(self, nodes: Any, args: list[str], where: str, start: str | None) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.args = set(args)
        self.where = where
        self.start = start
        self._spine: dict[str, bool] = {}  # source -> proven (True) or being walked (False)
        self._suffix: dict[str, bool] = {}

    def source(self, ref: str) -> str:
        """A data input's source: a node name, or ':' + an argument name (node names hold no ':')."""
        if ":" not in ref and ref in self.args:
            return ":" + ref
        return _node_name(ref)

    def data_inputs(self, node: Any) -> list[str]:
        return [self.source(ref) for ref in node.input if not ref.startswith("^")]

    def path_from_start(self, ref: str) -> bool:
        """True if the string tensor `ref` is the start with only constant suffixes joined on: the prefix
        runs through _PATH_SPINE ops back to the start, every other input through _PATH_SUFFIX ops."""
        return self.start is not None and self._walk(self.source(ref), self._spine, self._spine_inputs)

    def _spine_inputs(self, node: Any) -> list[str] | None:
        inputs = self.data_inputs(node)
        if node.op not in _PATH_SPINE or not inputs:
            return None
        if node.op == "Pack":
            return inputs
        # StringJoin and ShardedFilename: the prefix comes first, then suffixes and shard numbers.
        if not all(self._walk(s, self._suffix, self._suffix_inputs) for s in inputs[1:]):
            return None
        return inputs[:1]

    def _suffix_inputs(self, node: Any) -> list[str] | None:
        if node.op not in _PATH_SUFFIX:
            return None
        if node.op == "Const" and any(_has_parent_ref(s) for s in node.attr["value"].tensor.string_val):
            return None
        return self.data_inputs(node)  # StaticRegexFullMatch(prefix, '^s3://.*') may read the start

    def _walk(self, root: str, proven: dict[str, bool], expand: Any) -> bool:
        """Depth-first from `root` to the start: every node on the way must expand (not None); a cycle fails."""
        stack = [(root, False)]
        while stack:
            source, done = stack.pop()
            if done:
                proven[source] = True
                continue
            if source == self.start or proven.get(source):
                continue
            node = self.nodes.get(source)
            if source in proven or node is None:  # met again while being walked: a cycle
                return False
            inputs = expand(node)
            if inputs is None:
                return False
            proven[source] = False
            stack.append((source, True))
            stack.extend((s, False) for s in inputs)
        return True


class _SavedModelOps:
    def __init__(self, meta_graph: Any, path: str) -> None:
        self.meta_graph = meta_graph
        self.path = path
        self.names = {f.signature.name for f in meta_graph.graph_def.library.function}
        self.checkpoint = {n for n in self.names if _CHECKPOINT_FUNCTION.fullmatch(n)}

    def refuse(self, message: str) -> InputError:
        return InputError(message, path=self.path, hint=_SAVEDMODEL_HINT)

    def body(self, nodes: Any, args: list[str], where: str, start: str | None) -> _Body:
        body = _Body(nodes, args, where, start)
        if len(body.nodes) != len(nodes):  # TensorFlow refuses these too; here one could hide behind its twin
            seen: set[str] = set()
            twice = next(n.name for n in nodes if n.name in seen or seen.add(n.name))
            raise self.refuse(f"{where} has two nodes named {show_value(twice)}")
        return body

    def check(self) -> None:
        for function in self.meta_graph.graph_def.library.function:
            name, args = function.signature.name, [a.name for a in function.signature.input_arg]
            if name in self.checkpoint:  # the file prefix the saver passes is the first argument
                self.check_sites(self.body(function.node_def, args, f"function {show_value(name)}",
                                           ":" + args[0] if args else None))
            else:
                self.check_plain(function.node_def, f"function {show_value(name)}")
        for gradient in self.meta_graph.graph_def.library.gradient:
            if gradient.gradient_func in self.checkpoint or gradient.function_name in self.checkpoint:
                raise self.refuse(f"the gradient entry for {show_value(gradient.function_name)} names a checkpoint "
                                  "function; only the saver may call one")
        self.check_object_graph()
        self.check_graph()

    def check_plain(self, nodes: Any, where: str) -> None:
        """A function porttax may call: no denied op, no call to a checkpoint function."""
        for node in nodes:
            why = _denial(node)
            if why is not None:
                # A denied op's name is one of ours, short and plain, so it is shown as it is.
                raise self.refuse(f"{where} holds the op {node.op} (node {show_value(node.name)}), which {why}")
            for callee in _calls(node, self.names):
                if callee in self.checkpoint:
                    raise self.refuse(f"{where} calls the checkpoint function {show_value(callee)} (node "
                                      f"{show_value(node.name)}); only the saver may call one")

    def check_sites(self, body: _Body) -> list[Any]:
        """Check the file I/O of a checkpoint function or of the top-level graph; returns the nodes doing it."""
        sites = []
        for node in body.nodes.values():
            why = _denial(node)
            callees = [c for c in _calls(node, self.names) if c in self.checkpoint]
            if why is None and not callees:
                continue
            what = (f"the op {node.op} (node {show_value(node.name)}), which {why}" if why else
                    f"a call to the checkpoint function {show_value(callees[0])} (node {show_value(node.name)})")
            if why is not None and node.op not in _CHECKPOINT_OPS:
                raise self.refuse(f"{body.where} holds {what}")
            paths = [r for r in node.input if not r.startswith("^")][: 2 if node.op == "MergeV2Checkpoints" else 1]
            if not paths or not all(body.path_from_start(r) for r in paths):
                raise self.refuse(f"{body.where} holds {what} on a path that is not the saver's own file prefix")
            sites.append(node)
        return sites

    def check_object_graph(self) -> None:
        """TF2's loader turns these functions into callables: none may be a checkpoint function."""
        objects = self.meta_graph.object_graph_def
        named = list(objects.concrete_functions)
        for node in objects.nodes:
            kind = node.WhichOneof("kind")
            if kind == "function":
                named.extend(node.function.concrete_functions)
            elif kind == "bare_concrete_function":
                named.append(node.bare_concrete_function.concrete_function_name)
        for name in named:
            if name in self.checkpoint:
                raise self.refuse(f"the object graph exposes the checkpoint function {show_value(name)} as a "
                                  "callable; only the saver may call one")

    def check_graph(self) -> None:
        """The top-level graph: file I/O only inside the saver saver_def names, and nothing else uses it."""
        graph, saver = self.meta_graph.graph_def, self.meta_graph.saver_def
        start = _node_name(saver.filename_tensor_name) if saver.filename_tensor_name else None
        body = self.body(graph.node, [], "the top-level graph", start)
        sites = self.check_sites(body)
        if not sites:
            return
        consumers: dict[str, list[str]] = {}
        for node in graph.node:
            for ref in node.input:
                consumers.setdefault(_node_name(ref), []).append(node.name)
        entries = [_node_name(n) for n in (saver.save_tensor_name, saver.restore_op_name) if n]
        inputs = {name: [_node_name(r) for r in node.input] for name, node in body.nodes.items()}
        saver_nodes = _closure(entries, lambda n: inputs.get(n, []))
        tainted = _closure([s.name for s in sites], lambda n: consumers.get(n, []))
        outside = sorted(tainted - saver_nodes)
        if outside:
            raise self.refuse(f"the top-level graph runs checkpoint reads or writes outside the saver its MetaGraph "
                              f"declares: node {show_value(outside[0])} is or depends on one")
        uses = [(f"signature {show_value(key)}", tensor) for key, signature in self.meta_graph.signature_def.items()
                for info in [*signature.inputs.values(), *signature.outputs.values()]
                for tensor in _tensor_info_names(info)]
        saver_bytes = saver.SerializeToString()
        for key, collection in self.meta_graph.collection_def.items():
            uses += [(f"collection {show_value(key)}", name) for name in collection.node_list.value]
            # Protos in bytes (VariableDef names its initializer op): look for node names in them. A name
            # sits after its length byte, which may itself read as a name character.
            for value in collection.bytes_list.value:
                if value != saver_bytes:
                    for token in re.findall(rb"[A-Za-z0-9_./>-]+", value):
                        uses += [(f"collection {show_value(key)}", t.decode()) for t in (token, token[1:])]
        for user, name in uses:
            if _node_name(name) in tainted:
                raise self.refuse(f"{user} names {show_value(name)}, which runs the saver's checkpoint reads or writes "
                                  "outside the loader's restore")


def _closure(start: list[str], step: Any) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(step(name))
    return seen


def _tensor_info_names(info: Any) -> list[str]:
    names, stack = [], [info]
    while stack:
        info = stack.pop()
        encoding = info.WhichOneof("encoding")
        if encoding == "name":
            names.append(info.name)
        elif encoding == "coo_sparse":
            sparse = info.coo_sparse
            names += [sparse.values_tensor_name, sparse.indices_tensor_name, sparse.dense_shape_tensor_name]
        elif encoding == "composite_tensor":
            stack.extend(info.composite_tensor.components)
    return names
