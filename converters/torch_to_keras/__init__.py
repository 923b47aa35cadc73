"""torch → Keras converters, one module per layer family. Importing this package registers them."""

from porttax.converters.torch_to_keras import (  # noqa: F401  (registration side effect)
    activation,
    attention,
    conv,
    distance,
    elementwise,
    embedding,
    factories,
    linear,
    math_functions,
    norm,
    pixel_shuffle,
    pooling,
    recurrent,
    reduction,
    resize,
    sampling,
    scatter,
    shape,
    sorting,
    strided,
)
