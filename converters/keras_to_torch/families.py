"""Importing this module registers every Keras → torch converter family (they import torch at load,
so the package itself stays framework-free and `import porttax.converters` stays cheap)."""

from porttax.converters.keras_to_torch import (  # noqa: F401  (registration side effect)
    activation,
    applications,
    attention,
    augmentation,
    conv,
    core,
    dense,
    embedding,
    merge,
    norm,
    ops,
    pooling,
    preprocessing,
    recurrent,
    reshape,
    spatial,
    spectral,
)
