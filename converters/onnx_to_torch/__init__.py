"""ONNX → PyTorch: each ONNX node becomes a readable `torch.fx` call, weights become parameters named
after the ONNX initializers (which torch's exporter names after the original module paths).

Import `porttax.converters.onnx_to_torch.driver` to convert; this package itself imports nothing, so
`import porttax.converters` stays free of torch and onnx.
"""
