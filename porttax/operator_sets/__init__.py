"""Measuring the roads against whole operator sets rather than our own models: `coverage` (what each
direct road converts, from the frameworks' own op lists: core ATen, keras.layers, ONNX's schemas) and
`onnx_backend` (porttax as an `onnx.backend` backend per road, so ONNX's conformance tests run on it).
Both sit on top: they read the registries and drive sources, converters and targets."""
