"""porttax.targets: one module per output — write it atomically, reload it as a user would, check it.

Each target module converts a loaded source to its format and proves the artefact with the parity
suite before it is moved into place (through `porttax.targets._check`). The registry of target names,
file suffixes and aliases that `porttax.convert` drives lives in `porttax.targets.registry`.

May import: the base, the sources, the converters and the parity suite. Never the orchestration
(`porttax.conversion`, `porttax.routes`, `porttax.inspection`, the CLI).
"""
