"""Keras → torch converters, one module per layer family; `families` imports (registers) them all.

The families import torch when loaded, so this package does not import them itself: `import
porttax.converters` must stay cheap (see DESIGN.md). The driver loads them before converting.
"""
