"""Reference architectures with tiny presets and deterministic checkpoint builders.

The registry is what the converters, the parity suite and the tests iterate over: add an
architecture by writing one model file and one `_register(Architecture(...))` call below.

`import porttax.models` does not import torch: configs and input specs are plain Python, and the
model files (which import torch at top) are imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from porttax.errors import InputError, UntrustedInputError
from porttax.types import TensorSpec

from .configs import ConfigBase, EncoderConfig, LlamaConfig, MLPConfig, ResNetConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "ARCHITECTURES", "PRESETS", "Architecture", "EncoderConfig", "LlamaConfig", "MLPConfig", "ResNetConfig",
    "build_checkpoint", "build_model", "example_inputs", "input_specs", "list_architectures", "list_presets",
    "load_checkpoint", "load_state_dict_model", "resolve",
]

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One reference architecture: how to configure it, build it, and feed it.

    `builder` imports the model file on first call, so holding an Architecture costs no torch import.
    """

    name: str
    family: str  # one line: what the architecture is and what it exercises in a converter
    config_cls: type[ConfigBase]
    builder: Callable[[Any], "nn.Module"]
    presets: Mapping[str, Mapping[str, Any]]
    default_preset: str

    def input_specs(self, config: ConfigBase) -> list[TensorSpec]:
        """Input specs with symbolic "batch"/"seq" dims for `config` (an instance of config_cls)."""
        return config.input_specs()


def _lazy_builder(module: str, class_name: str) -> Callable[[Any], "nn.Module"]:
    def build(config: Any) -> "nn.Module":
        cls = getattr(importlib.import_module(f"{__name__}.{module}"), class_name)
        return cls(config)

    build.__qualname__ = f"build_{class_name}"
    build.__doc__ = f"Construct porttax.models.{module}.{class_name}(config); imports torch on first use."
    return build


ARCHITECTURES: dict[str, Architecture] = {}
PRESETS: dict[str, str] = {}  # preset name -> architecture name


def _register(arch: Architecture) -> None:
    """Add an architecture; any name clash (architecture or preset) is an error, never an overwrite."""
    if arch.name in ARCHITECTURES or arch.name in PRESETS:
        raise ValueError(f"architecture name {arch.name!r} is already registered")
    if arch.default_preset not in arch.presets:
        raise ValueError(f"{arch.name}: default preset {arch.default_preset!r} is not among its presets")
    for preset, values in arch.presets.items():
        if preset in PRESETS or preset in ARCHITECTURES or preset == arch.name:
            raise ValueError(f"preset name {preset!r} is already registered")
        arch.config_cls.from_dict(values)  # a preset that does not validate is a bug here, not at use
    ARCHITECTURES[arch.name] = arch
    for preset in arch.presets:
        PRESETS[preset] = arch.name


_register(Architecture(
    name="mlp",
    family="multilayer perceptron (Linear, LayerNorm, GELU, Dropout) on flat features",
    config_cls=MLPConfig,
    builder=_lazy_builder("mlp", "MLP"),
    presets={"mlp-tiny": {"in_features": 16, "hidden_sizes": [32, 32], "out_features": 4, "activation": "gelu"}},
    default_preset="mlp-tiny",
))
_register(Architecture(
    name="resnet",
    family="ResNet-style CNN (Conv2d+BatchNorm2d+ReLU basic blocks, strided 1x1 shortcuts, pooling), NCHW",
    config_cls=ResNetConfig,
    builder=_lazy_builder("resnet", "ResNet"),
    presets={"resnet-tiny": {
        "in_channels": 3, "image_size": 32, "num_classes": 10, "stem_channels": 16,
        "stage_channels": [16, 32, 64], "blocks_per_stage": [1, 1, 1],
    }},
    default_preset="resnet-tiny",
))
_register(Architecture(
    name="encoder",
    family="pre-LN transformer encoder (learned positions, q/k/v/o attention via SDPA, GELU MLP)",
    config_cls=EncoderConfig,
    builder=_lazy_builder("transformer_encoder", "TransformerEncoder"),
    presets={"encoder-tiny": {
        "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 128,
    }},
    default_preset="encoder-tiny",
))
_LLAMA_TINY = {
    "vocab_size": 256, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False,
}
_register(Architecture(
    name="llama",
    family="Llama-style causal decoder, HF parameter names (RMSNorm, RoPE, GQA, SwiGLU, causal SDPA)",
    config_cls=LlamaConfig,
    builder=_lazy_builder("llama", "LlamaForCausalLM"),
    presets={
        "llama-tiny": _LLAMA_TINY,
        "llama-tiny-tied": {**_LLAMA_TINY, "tie_word_embeddings": True},
    },
    default_preset="llama-tiny",
))


# ---------------------------------------------------------------------------------------------
# lookup


def list_architectures() -> list[str]:
    """Architecture names, e.g. ["encoder", "llama", "mlp", "resnet"]."""
    return sorted(ARCHITECTURES)


def list_presets(arch: str | None = None) -> list[str]:
    """Preset names ("mlp-tiny", ...), all of them or those of one architecture."""
    if arch is not None:
        return sorted(_architecture(arch).presets)
    return sorted(PRESETS)


def _architecture(name: str) -> Architecture:
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    raise InputError(
        f"unknown architecture {name!r}", hint=f"use one of {', '.join(list_architectures())}"
    )


def resolve(
    name_or_preset: str, config: Mapping[str, Any] | ConfigBase | None = None
) -> tuple[Architecture, ConfigBase]:
    """Turn an architecture or preset name plus optional config into (Architecture, config object).

    A preset gives its own config; an architecture name alone gives its default preset. A config
    dict overrides fields of that base (an "arch" key, as in checkpoint sidecars, must agree); a
    config object of the architecture's class is used as is.
    """
    if name_or_preset in ARCHITECTURES:
        arch = ARCHITECTURES[name_or_preset]
        base = arch.presets[arch.default_preset]
    elif name_or_preset in PRESETS:
        arch = ARCHITECTURES[PRESETS[name_or_preset]]
        base = arch.presets[name_or_preset]
    else:
        raise InputError(
            f"unknown architecture or preset {name_or_preset!r}",
            hint=f"architectures: {', '.join(list_architectures())}; presets: {', '.join(list_presets())}",
        )
    if config is None:
        return arch, arch.config_cls.from_dict(base)
    if isinstance(config, ConfigBase):
        if not isinstance(config, arch.config_cls):
            raise InputError(
                f"architecture {arch.name!r} needs a {arch.config_cls.__name__}, got {type(config).__name__}"
            )
        return arch, config
    if not isinstance(config, Mapping):
        raise InputError(f"config for {arch.name!r} must be a dict or {arch.config_cls.__name__}")
    named = config.get("arch")
    if named is not None and named != arch.name:
        raise InputError(f"config says arch {named!r} but {name_or_preset!r} is architecture {arch.name!r}")
    return arch, arch.config_cls.from_dict({**base, **config})


def input_specs(name: str, config: Mapping[str, Any] | ConfigBase | None = None) -> list[TensorSpec]:
    """The model's inputs, with symbolic "batch" (and "seq" for token models) dims."""
    arch, cfg = resolve(name, config)
    return arch.input_specs(cfg)


# ---------------------------------------------------------------------------------------------
# building


def _randomize_norms(model: "nn.Module") -> None:
    """Give every norm layer seeded, non-trivial parameters and statistics.

    Fresh norms are identities (weight 1, bias 0, BatchNorm running mean 0 / var 1), so a converter
    that drops gamma, beta or the running statistics would still pass parity. Uses the (forked,
    seeded) global RNG, so it is as deterministic as the rest of construction.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
                if module.track_running_stats:
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)):
                if getattr(module, "weight", None) is not None:
                    module.weight.normal_(1.0, 0.1)
                if getattr(module, "bias", None) is not None:
                    module.bias.normal_(0.0, 0.1)


def _build(arch: Architecture, config: ConfigBase, seed: int) -> "nn.Module":
    import torch

    # fork_rng: seeding must not disturb the caller's RNG stream (tests, parity input generation)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = arch.builder(config)
        _randomize_norms(model)
    return model.eval()


def build_model(name: str, config: Mapping[str, Any] | ConfigBase | None = None, seed: int = 0) -> "nn.Module":
    """A freshly initialised model in eval mode; the same (name, config, seed) gives identical weights."""
    arch, cfg = resolve(name, config)
    return _build(arch, cfg, seed)


def example_inputs(
    name: str,
    config: Mapping[str, Any] | ConfigBase | None = None,
    batch: int = 2,
    seq: int = 16,
    seed: int = 0,
) -> tuple["torch.Tensor", ...]:
    """Seeded inputs matching `input_specs`: floats ~ N(0, 1), integers uniform in their value_range."""
    import torch

    arch, cfg = resolve(name, config)
    max_pos = getattr(cfg, "max_position_embeddings", None)
    if max_pos is not None and seq > max_pos:
        raise InputError(f"seq {seq} exceeds {arch.name} max_position_embeddings {max_pos}")
    generator = torch.Generator().manual_seed(seed)
    out = []
    for spec in arch.input_specs(cfg):
        shape = spec.concrete_shape({"batch": batch, "seq": seq})
        dtype = getattr(torch, spec.dtype)
        if spec.is_integer:
            low, high = spec.value_range or (0, 2)
            out.append(torch.randint(int(low), int(high), shape, generator=generator, dtype=dtype))
        else:
            out.append(torch.randn(shape, generator=generator, dtype=dtype))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# checkpoints


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """`dir/name.safetensors` -> `dir/name.config.json`, where build_checkpoint writes the config."""
    path = Path(path)
    return path.with_name(f"{path.stem}.config.json")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through porttax's atomic output (temporary sibling, then rename); replaces `path`."""
    from porttax.saving import atomic_output

    with atomic_output(path, force=True) as tmp:
        write(tmp)


def _torch_save(tensors: dict, path: Path) -> None:
    import torch

    from porttax.saving import torch_archive_file

    with torch_archive_file(path) as sink:
        torch.save(tensors, sink)


def _checkpoint_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise InputError(
            f"unsupported checkpoint suffix {path.suffix!r}",
            path=str(path),
            hint=f"use one of {', '.join(CHECKPOINT_SUFFIXES)}",
        )
    return suffix


def build_checkpoint(
    name: str,
    path: str | os.PathLike[str],
    config: Mapping[str, Any] | ConfigBase | None = None,
    seed: int = 0,
) -> Path:
    """Write the state_dict of `build_model(name, config, seed)` to `path`, plus a sidecar config.

    `.safetensors` is written with safetensors; `.pt`/`.pth` as a plain dict of tensors (loadable with
    `torch.load(weights_only=True)`). Tied duplicates (llama's lm_head.weight when tied) are left out,
    as HF does. The sidecar `<stem>.config.json` holds {"arch": <architecture>, **config}. Both files
    are written atomically; existing files at those paths are replaced.
    """
    import torch

    path = Path(path)
    suffix = _checkpoint_suffix(path)
    arch, cfg = resolve(name, config)
    model = _build(arch, cfg, seed)
    tied = getattr(model, "tied_weight_keys", {})
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in tied}
    config_json = json.dumps({"arch": arch.name, **cfg.to_dict()}, indent=2, sort_keys=True)

    if suffix == ".safetensors":
        from porttax.sources.safetensors_file import write_safetensors

        metadata = {"format": "pt", "porttax.config": config_json}
        _atomic_write(path, lambda tmp: write_safetensors(tensors, tmp, metadata))
    else:
        _atomic_write(path, lambda tmp: _torch_save(tensors, tmp))
    _atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(config_json + "\n"))
    return path


def _name_list(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def load_state_dict_model(
    name: str,
    config: Mapping[str, Any] | ConfigBase | None,
    state_dict: Mapping[str, "torch.Tensor"],
    *,
    lazy: bool = False,
) -> "nn.Module":
    """Build the architecture and load `state_dict` into it strictly; returns the model in eval mode.

    `lazy=True` takes the meta tensors of a streamed checkpoint (porttax.lazy_weights): the model's
    parameters stay on the meta device, each pointing at its bytes in the file.

    Raises InputError naming every missing key, unexpected key and shape mismatch at once, so one
    run shows everything wrong with a checkpoint. Tolerated: a tied key left out (filled from the
    tensor it is tied to) and BatchNorm `num_batches_tracked` counters (unused in eval).
    """
    import torch

    arch, cfg = resolve(name, config)
    if lazy:
        from porttax.lazy_weights import empty_parameters

        with empty_parameters():
            model = _build(arch, cfg, seed=0)
    else:
        model = _build(arch, cfg, seed=0)
    expected = model.state_dict()
    given = dict(state_dict)

    bad_types = sorted(k for k, v in given.items() if not isinstance(v, torch.Tensor))
    if bad_types:
        raise InputError(f"state_dict values are not tensors for keys: {_name_list(bad_types)}")
    for key, source in getattr(model, "tied_weight_keys", {}).items():
        if key not in given and source in given:
            given[key] = given[source]
        elif key in given and source in given and not lazy and not torch.equal(given[key], given[source]):
            raise InputError(
                f"{arch.name}: {key} differs from {source}, but the config ties them",
                hint="set tie_word_embeddings to false for this checkpoint",
            )
    missing = sorted(
        k for k in expected if k not in given and not k.endswith(".num_batches_tracked")
    )
    unexpected = sorted(k for k in given if k not in expected)
    mismatched = sorted(
        f"{k} (checkpoint {tuple(given[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys: {_name_list(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_name_list(unexpected)}")
        if mismatched:
            problems.append(f"shape mismatches: {_name_list(mismatched)}")
        raise InputError(
            f"state_dict does not fit {arch.name} ({type(cfg).__name__}): " + "; ".join(problems),
            hint="check that the architecture and config match the checkpoint",
        )
    if lazy:
        from porttax.lazy_weights import attach

        attach(model, given)
        return model.eval()
    model.load_state_dict(given, strict=False)  # keys checked above; strict would trip on tolerated ones
    return model.eval()


def load_checkpoint(
    path: str | os.PathLike[str],
    name: str | None = None,
    config: Mapping[str, Any] | ConfigBase | None = None,
) -> "nn.Module":
    """Load a checkpoint written by `build_checkpoint` (or any state_dict of a known architecture).

    Architecture and config come from the arguments, else from the `<stem>.config.json` sidecar.
    Tensors load safely: safetensors, or `torch.load(weights_only=True)`.
    """
    import torch

    path = Path(path)
    suffix = _checkpoint_suffix(path)
    if not path.is_file():
        raise InputError("checkpoint file not found", path=str(path))
    if name is None or config is None:
        side = sidecar_path(path)
        if side.is_file():
            try:
                stored = json.loads(side.read_text())
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read config sidecar: {exc}", path=str(side)) from None
            name = name or stored.get("arch")
            if config is None:
                config = {k: v for k, v in stored.items() if k != "arch"}
        if name is None:
            raise InputError(
                "architecture unknown", path=str(path),
                hint=f"pass the architecture name or add {side.name} with an \"arch\" key",
            )
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path))
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UntrustedInputError(
            "the file holds pickled Python objects (such as a whole nn.Module), not only tensors; "
            "loading it would run code from the file",
            path=str(path),
            hint="re-save it as a state_dict (torch.save(model.state_dict(), ...)) or as .safetensors",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse the file is bad input
        raise InputError(f"cannot read checkpoint: {type(exc).__name__}: {exc}", path=str(path)) from None
    if not isinstance(state_dict, Mapping):
        raise InputError(f"checkpoint holds a {type(state_dict).__name__}, not a dict of tensors", path=str(path))
    return load_state_dict_model(name, config, state_dict)
