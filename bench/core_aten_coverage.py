"""How much of PyTorch's core ATen IR the direct PyTorch → Keras road converts.

    .venv/bin/python bench/core_aten_coverage.py

Core ATen is the op set `torch.export` decomposes to (ops tagged `torch.Tag.core`); an op counts as
covered when the torch→keras registry holds a converter for its name or for one of its overloads.
Prints the count and every op without a converter, so a gap is a line to read, not a guess.
"""

from __future__ import annotations

from porttax._frameworks import import_torch


def core_aten_ops(torch) -> dict[str, list[str]]:
    """{op name: its core-tagged overload names} for every op in torch.ops.aten."""
    core: dict[str, list[str]] = {}
    for name in dir(torch.ops.aten):
        try:
            packet = getattr(torch.ops.aten, name)
            overloads = packet.overloads()
        except (AttributeError, RuntimeError):
            continue
        for overload in overloads:
            if torch.Tag.core in getattr(packet, overload).tags:
                core.setdefault(name, []).append(overload)
    return core


def main() -> None:
    torch = import_torch()
    import porttax.converters.torch_to_keras  # noqa: F401  (registers the converters)
    from porttax.converters.registry import REGISTRY

    core = core_aten_ops(torch)
    covered = {name for name, overloads in core.items()
               if any(REGISTRY.lookup("torch", "keras", key) is not None
                      for key in [f"aten.{name}", *(f"aten.{name}.{o}" for o in overloads)])}
    print(f"torch {torch.__version__}: {len(covered)} of {len(core)} core ATen ops have a torch→Keras converter")
    missing = sorted(set(core) - covered)
    training = [n for n in missing if "backward" in n]
    print(f"missing ({len(missing)}, of which {len(training)} backward ops):")
    for name in missing:
        print(f"  aten.{name}")


if __name__ == "__main__":
    main()
