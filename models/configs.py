"""Configuration dataclasses for the reference architectures.

They live apart from the model files so that resolving a preset, reading a sidecar config or asking
for input specs never imports torch (the CLI and the parity planner do all three). Each model file
re-exports its config class, so `from porttax.models.llama import LlamaConfig` works too.

Defaults equal the tiny preset of each architecture: `LlamaConfig()` is "llama-tiny".
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Mapping, TypeVar

from porttax.errors import InputError
from porttax.types import TensorSpec

C = TypeVar("C", bound="ConfigBase")


@dataclasses.dataclass
class ConfigBase:
    """from_dict / to_dict shared by every config.

    `from_dict` refuses unknown keys instead of dropping them: a field we do not model (a rope
    scaling rule, a bias flag) changes the function the checkpoint computes, and ignoring it would
    build a silently wrong model. Keys in `IGNORED_KEYS` are metadata that change nothing.
    """

    # which architecture and dtype a config.json names: metadata porttax reads elsewhere, or writes
    IGNORED_KEYS: ClassVar[frozenset[str]] = frozenset({"arch", "model_type", "architectures", "torch_dtype", "dtype"})

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        if not isinstance(data, Mapping):
            raise InputError(f"{cls.__name__} expects a dict, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names and k not in cls.IGNORED_KEYS)
        if unknown:
            raise InputError(
                f"{cls.__name__} has no field(s) {', '.join(unknown)}",
                hint=f"known fields: {', '.join(names)}",
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                continue
            default = names[key].default
            # JSON turns tuples into lists; keep the dataclass's own types so configs compare equal.
            if isinstance(default, tuple) and isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (tuples become lists) that `from_dict` turns back into an equal config."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def input_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def _require_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InputError(f"{type(self).__name__}.{name} must be a positive int, got {value!r}")

    def _require_rate(self, name: str) -> None:
        value = getattr(self, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise InputError(f"{type(self).__name__}.{name} must be in [0, 1), got {value!r}")


ACTIVATIONS = ("gelu", "relu", "silu", "tanh")


@dataclasses.dataclass
class MLPConfig(ConfigBase):
    """Feed-forward classifier on flat feature vectors."""

    in_features: int = 16
    hidden_sizes: tuple[int, ...] = (32, 32)
    out_features: int = 4
    activation: str = "gelu"
    layer_norm: bool = True
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self._require_positive("in_features", "out_features")
        if not all(isinstance(h, int) and h > 0 for h in self.hidden_sizes):
            raise InputError(f"MLPConfig.hidden_sizes must be positive ints, got {self.hidden_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise InputError(
                f"MLPConfig.activation {self.activation!r} is not supported",
                hint=f"use one of {', '.join(ACTIVATIONS)}",
            )
        self._require_rate("dropout")

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("x", ("batch", self.in_features), "float32")]


@dataclasses.dataclass
class ResNetConfig(ConfigBase):
    """ResNet-style CNN: stem, one stage per entry of `stage_channels`, global pool, linear head.

    Every stage after the first halves the resolution with a strided basic block whose shortcut is
    a 1x1 strided conv + BatchNorm.
    """

    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    stem_channels: int = 16
    stage_channels: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: tuple[int, ...] = (1, 1, 1)
    batch_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        self._require_positive("in_channels", "image_size", "num_classes", "stem_channels")
        if len(self.stage_channels) != len(self.blocks_per_stage) or not self.stage_channels:
            raise InputError(
                "ResNetConfig.stage_channels and blocks_per_stage must be non-empty and the same length, "
                f"got {self.stage_channels!r} and {self.blocks_per_stage!r}"
            )
        if not all(isinstance(v, int) and v > 0 for v in (*self.stage_channels, *self.blocks_per_stage)):
            raise InputError("ResNetConfig.stage_channels and blocks_per_stage must be positive ints")
        # stem max-pool halves once, each later stage halves once more
        if self.image_size < 2 ** len(self.stage_channels):
            raise InputError(
                f"ResNetConfig.image_size {self.image_size} is too small for {len(self.stage_channels)} stages"
            )

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("pixel_values", ("batch", self.in_channels, self.image_size, self.image_size), "float32")]


@dataclasses.dataclass
class EncoderConfig(ConfigBase):
    """BERT-like pre-LN transformer encoder returning the last hidden states."""

    vocab_size: int = 256
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 128
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self._require_positive(
            "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "max_position_embeddings",
        )
        if self.hidden_size % self.num_attention_heads:
            raise InputError(
                f"EncoderConfig.hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        self._require_rate("dropout")

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("input_ids", ("batch", "seq"), "int64", (0, self.vocab_size))]


@dataclasses.dataclass
class LlamaConfig(ConfigBase):
    """Field names and meanings follow Hugging Face's `LlamaConfig`, so a Hub config.json loads as is;
    Mistral and Qwen2 configs read as variants (`from_dict` translates their `model_type`).

    HF metadata that does not change the computation is ignored; fields we do not implement (rope
    scaling other than linear and llama3, other activations, pretraining_tp > 1) are refused by
    `__post_init__` rather than silently dropped.
    """

    IGNORED_KEYS: ClassVar[frozenset[str]] = frozenset({
        "arch", "architectures", "model_type", "torch_dtype", "dtype", "transformers_version",
        "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range", "use_cache",
        "_name_or_path", "attention_dropout",  # dropout is training-only
        # generic PretrainedConfig fields that transformers writes into every config
        "output_hidden_states", "output_attentions", "return_dict", "chunk_size_feed_forward",
        "is_encoder_decoder", "id2label", "label2id", "problem_type", "tokenizer_class",
    })
    ROPE_TYPES: ClassVar[dict[str, frozenset[str]]] = {  # rope type -> the parameters it needs
        "linear": frozenset({"factor"}),
        "llama3": frozenset({"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}),
    }

    vocab_size: int = 256
    hidden_size: int = 64
    intermediate_size: int = 176
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None  # None: set to hidden_size // num_attention_heads, as HF does
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 128
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    rope_scaling: dict[str, Any] | None = None
    pretraining_tp: int = 1
    # Qwen2: q/k/v projections carry biases, o_proj does not (HF's attention_bias puts one on all four)
    qkv_bias: bool = False
    # Mistral / Qwen2: a query attends to the last `sliding_window` positions only, in the layers whose
    # entry in `layer_types` is "sliding_attention" (all layers when layer_types is None)
    sliding_window: int | None = None
    layer_types: list[str] | None = None

    def __post_init__(self) -> None:
        self._require_positive(
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
        )
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise InputError(
                    f"LlamaConfig.hidden_size {self.hidden_size} is not divisible by "
                    f"num_attention_heads {self.num_attention_heads}; set head_dim explicitly"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        self._require_positive("head_dim")
        if self.num_attention_heads % self.num_key_value_heads:
            raise InputError(
                f"LlamaConfig.num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.resolved_head_dim % 2:
            raise InputError(f"LlamaConfig head_dim {self.resolved_head_dim} must be even for rotary embeddings")
        if self.hidden_act != "silu":
            raise InputError(f"LlamaConfig.hidden_act {self.hidden_act!r} is not supported", hint="only 'silu'")
        if self.rope_scaling is not None:
            self._check_rope_scaling()
        if self.sliding_window is not None and (isinstance(self.sliding_window, bool) or
                                                not isinstance(self.sliding_window, int) or self.sliding_window < 1):
            raise InputError(f"LlamaConfig.sliding_window must be a positive integer or null, got {self.sliding_window!r}")
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_hidden_layers or not set(self.layer_types) <= {
                    "full_attention", "sliding_attention"}:
                raise InputError(f"LlamaConfig.layer_types {self.layer_types!r}: expected one of 'full_attention' / "
                                 f"'sliding_attention' per layer ({self.num_hidden_layers})")
        if self.pretraining_tp != 1:
            raise InputError(f"LlamaConfig.pretraining_tp {self.pretraining_tp} is not supported", hint="use 1")

    def _check_rope_scaling(self) -> None:
        rope = dict(self.rope_scaling or {})
        rope_type = rope.pop("rope_type", rope.pop("type", None))
        needed = self.ROPE_TYPES.get(str(rope_type))
        if needed is None:
            raise InputError(f"LlamaConfig.rope_scaling {self.rope_scaling!r} is not supported",
                             hint=f"rope types porttax implements: {', '.join(self.ROPE_TYPES)} (or none)")
        missing, extra = sorted(needed - set(rope)), sorted(set(rope) - needed)
        if missing or extra:
            raise InputError(f"LlamaConfig.rope_scaling {self.rope_scaling!r}: "
                             + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"),
                             hint=f"{rope_type} takes {', '.join(sorted(needed))}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in rope.values()):
            raise InputError(f"LlamaConfig.rope_scaling {self.rope_scaling!r}: parameters must be positive numbers")
        self.rope_scaling = {"rope_type": rope_type, **rope}

    def window_of(self, layer: int) -> int | None:
        """The attention window of decoder layer `layer` (None: full causal attention)."""
        if self.sliding_window is None:
            return None
        if self.layer_types is not None and self.layer_types[layer] != "sliding_attention":
            return None
        return self.sliding_window

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LlamaConfig":
        """Reads transformers 4 and 5 configs (5 moves rope_theta and the rope scaling into
        `rope_parameters`), and Mistral and Qwen2 configs as Llama variants."""
        if not isinstance(data, Mapping):
            return super().from_dict(data)
        data = dict(data)
        if data.get("rope_parameters") is not None:
            original = data.pop("rope_parameters")
            if not isinstance(original, Mapping):
                raise InputError(f"LlamaConfig.rope_parameters must be a dict, got {original!r}")
            rope = dict(original)
            theta = rope.pop("rope_theta", None)
            if theta is not None:
                data["rope_theta"] = theta  # rope_parameters is the newer field, so it wins
            if rope.get("rope_type", rope.get("type", "default")) != "default" or set(rope) - {"rope_type", "type"}:
                data["rope_scaling"] = rope
        elif isinstance(data.get("rope_scaling"), Mapping) and data["rope_scaling"].get(
                "rope_type", data["rope_scaling"].get("type")) == "default":
            data["rope_scaling"] = None
        model_type = data.get("model_type")
        if model_type == "qwen2":
            data["qkv_bias"] = True
            uses = data.pop("use_sliding_window", False)
            first_sliding = data.pop("max_window_layers", 0)
            if not uses:
                data["sliding_window"] = None  # Qwen2 keeps the number but turns the window off
                data.pop("layer_types", None)
            elif data.get("layer_types") is None:  # transformers 4: windows from max_window_layers on
                n = int(data.get("num_hidden_layers", cls.num_hidden_layers))
                data["layer_types"] = ["sliding_attention" if i >= first_sliding else "full_attention" for i in range(n)]
        elif model_type == "mistral":
            data.pop("layer_types", None)  # Mistral slides in every layer
        return super().from_dict(data)

    @property
    def resolved_head_dim(self) -> int:
        """head_dim after defaulting (always set once constructed); kept for readability at call sites."""
        assert self.head_dim is not None
        return self.head_dim

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec("input_ids", ("batch", "seq"), "int64", (0, self.vocab_size))]
