"""porttax.sources: one module per input format — how to recognise it, check it safely, and load it.

A source module turns a file (or a live object) into a model handle the converters read: a
`TorchSource` for PyTorch-family inputs (`.pt2`, checkpoints with an architecture, trusted pickles,
TorchScript, Hugging Face folders, ONNX files, which arrive as a torch module), a `KerasSource` for
Keras-family inputs (`.keras`, `.h5`, SavedModels). The safety checks every loader runs before a
framework sees the bytes (zip and pickle inspection, SavedModel op allow-lists) live here too.

May import: the base (`porttax.errors`, `porttax.types`, `porttax._frameworks`, `porttax.saving`,
`porttax.layer_map`, `porttax.torch_ir`, `porttax.progress`), `porttax.models` and the converters.
Never: targets, parity or the orchestration (`porttax.conversion`, `porttax.routes`, the CLI).
"""
