"""The SavedModel target: a serving signature of the model itself, the layer-map signature, LLM endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from porttax.targets import Target, Way, register_target
from porttax.types import ConversionResult, ConvertJob


def write_savedmodel_target(job: ConvertJob) -> ConversionResult:
    """The Keras model the pipeline built as a SavedModel (with an LLM's serving endpoints), reloaded
    with plain TensorFlow and checked; an LLM's greedy generation is checked through `decode` too."""
    from porttax.dtype_policy import keras_dtype
    from porttax.parity import SavedModelRunner
    from porttax.saving import atomic_output
    from porttax.targets import _check
    from porttax.targets.llm_signatures import (PREFILL, build_endpoints, check_batched_generation, check_generation,
                                                 step_tolerance)

    src, progress = job.src, job.progress
    tax = _check.built_tax(job)
    generation = None
    with atomic_output(job.output, force=job.force) as tmp:
        progress.stage(f"writing savedmodel to {job.output}")
        with keras_dtype(getattr(src, "float_dtype", "float32"), getattr(src, "weight_dtype", None)):
            endpoints = build_endpoints(src, job.model, max_cache_len=job.max_cache_len, progress=progress)
        write_savedmodel(job.model, tmp, job.layer_map, jit=job.jit, endpoints=endpoints)
        report, loaded = _check.check_artifact(job, tmp, tax,
                                               lambda: SavedModelRunner(tmp, name=f"{src.name} (SavedModel)"))
        if job.parity and endpoints:
            progress.stage("checking greedy generation through the 'decode' signature (KV cache) "
                           "against the source without a cache")
            generation = check_generation(loaded.loaded, src.runnable(), tolerance=step_tolerance(job.profile))
            if PREFILL in endpoints:
                progress.stage("checking prompts of different lengths through 'prefill' + 'decode' together")
                generation["batched"] = check_batched_generation(loaded.loaded, src.runnable())
                generation["passed"] = generation["passed"] and generation["batched"]["passed"]
    return _check.finish(job, Path(job.output), tax, report, generation=generation)


register_target(Target(
    "savedmodel", "a TensorFlow SavedModel directory with a serving_default signature",
    aliases=("tf", "tf-savedmodel"), output="required", output_hint="pass -o DIR",
    ways={"torch": Way(write_savedmodel_target, needs="keras",
                       options=("jit", "dtype", "route", "max_cache_len")),
          "onnx": Way(write_savedmodel_target, needs="keras", options=("jit", "route"))},
    refusal_hint="a Keras model saves as a SavedModel with Keras itself (model.export); "
                 "porttax converts it --to torch, tflite or tfjs"))


def write_savedmodel(model: object, path: Path, layer_map: object | None = None, *, jit: bool = False,
                     endpoints: dict[str, Any] | None = None) -> None:
    """A SavedModel whose first endpoint (`serve`, aliased `serving_default`) is the model itself.

    With a layer map, a second signature `porttax_layers` returns every tapped module output from the
    same variables, so a SavedModel can be localised with plain TensorFlow and no Keras file.
    `jit` compiles the serving function with XLA: small models, whose time goes to per-op dispatch,
    run about twice as fast; TF Serving then needs `--xla_cpu_compilation_enabled=true`, so it is opt-in.
    `endpoints` are further signatures by name, Keras models sharing `model`'s layers (an LLM's
    `logits` and `decode`, porttax.targets.llm_signatures); shared variables are saved once.
    """
    from porttax._frameworks import import_keras

    keras = import_keras()
    spec = keras.tree.map_structure(
        lambda t: keras.InputSpec(shape=t.shape, dtype=t.dtype, name=t.name), model.input  # type: ignore[attr-defined]
    )
    archive = keras.export.ExportArchive()
    if jit:
        from porttax._frameworks import import_tf

        tf = import_tf()
        tf_spec = keras.tree.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype, name=t.name), model.input)  # type: ignore[attr-defined]
        serve = tf.function(lambda inputs: model(inputs, training=False),  # type: ignore[operator]
                            input_signature=[tf_spec], jit_compile=True, autograph=False)
        serve.get_concrete_function()
        archive.track(model)
        archive.add_endpoint("serve", serve)
    else:
        archive.track_and_add_endpoint("serve", model, [spec])
    from porttax.parity.taps import tap_tensors

    tensors = tap_tensors(model, getattr(layer_map, "taps", []))
    if tensors:
        outputs = {}
        for i, tap in enumerate(t for t in layer_map.taps if t.key in tensors):  # type: ignore[union-attr]
            tap.output = f"tap_{i}"  # signature output names must be plain identifiers
            outputs[tap.output] = tensors[tap.key]
        tap_model = keras.Model(model.inputs, outputs, name="porttax_layers")  # type: ignore[attr-defined]
        archive.track_and_add_endpoint("porttax_layers", tap_model, [spec])
        _add_map_endpoint(archive, layer_map)
    for name, extra in (endpoints or {}).items():
        extra_spec = keras.tree.map_structure(lambda t: keras.InputSpec(shape=t.shape, dtype=t.dtype, name=t.name),
                                              extra.input)
        archive.track_and_add_endpoint(name, extra, [extra_spec])
    _save_each_variable_once(archive)
    archive.write_out(str(path), verbose=False)
    from porttax.sources.keras_source import KERAS_CONFIG, savedmodel_config

    (path / KERAS_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (path / KERAS_CONFIG).write_text(savedmodel_config(model))  # lets the Keras → torch road read it back
    if layer_map is not None:
        from porttax.layer_map import add_to_savedmodel

        add_to_savedmodel(path, layer_map)  # type: ignore[arg-type]


def _add_map_endpoint(archive: Any, layer_map: Any) -> None:
    """The layer map also as a signature (`porttax_layer_map`, no inputs, one string): a SavedModel
    loaded and saved again with TensorFlow keeps its signatures but drops `assets.extra`, so the map
    travels inside the graph too (its folded constants stay in assets.extra only)."""
    from porttax._frameworks import import_tf
    from porttax.layer_map import MAP_SIGNATURE

    tf = import_tf()
    text = layer_map.to_json()
    fn = tf.function(lambda: {"layer_map": tf.constant(text)}, input_signature=[], autograph=False)
    archive.add_endpoint(MAP_SIGNATURE, fn)


def _save_each_variable_once(archive: Any) -> None:
    """Keras' ExportArchive (3.15, TF 2.21) checkpoints every weight twice: once as the Keras variable
    it tracks (`variables/N`) and once as the tf.Variable its endpoints capture (`_all_variables/N`),
    so a SavedModel is twice its weights on disk. Pointing the tracked lists at the tf.Variables
    themselves lets TensorFlow save each once; names, signatures and `loaded.variables` are unchanged
    (tests/test_acceptance.py checks the size)."""
    trackable = getattr(archive, "_tf_trackable", None)
    for attr in ("variables", "trainable_variables", "non_trainable_variables"):
        values = getattr(trackable, attr, None)
        if values:
            setattr(trackable, attr, [getattr(v, "_value", v) for v in values])
