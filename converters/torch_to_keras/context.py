"""What a torch → Keras op converter works with.

A value in the converted graph is a `Val`: either a live Keras tensor or a constant known at
conversion time (parameters, buffers, and anything computed only from them, which the driver folds).
A live tensor may be held in a permuted layout: `perm` says that the Keras tensor equals
`torch_tensor.permute(perm)`. Convolutions want channels-last, the source speaks channels-first;
keeping the permutation as data instead of inserting transposes eagerly lets layout-agnostic ops
(elementwise, reductions, concatenation, norms) work in whatever layout their input is in, and a
transpose is emitted only where an op truly needs the source layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from porttax._frameworks import import_keras, import_torch
from porttax.converters.mapping_log import LayerRecord, MappingLog, WeightPort
from porttax.converters.torch_to_keras.symbolic import Sizes, dims_of, symbolic_reshape
from porttax.converters.transforms import Identity, Transform, Transpose
from porttax.dtype_policy import HALF_DTYPES, exactly_representable, is_narrowing, stores_narrower
from porttax.errors import UnsupportedError
from porttax.layer_map import keras_layer_name  # the naming rule lives in the base: parity matches by it too
from porttax.torch_ir import size_hints

Perm = tuple[int, ...] | None


def channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def invert(perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def is_identity(perm: Perm) -> bool:
    return perm is None or tuple(perm) == tuple(range(len(perm)))


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def permute(ops: Any, x: Any, perm: Sequence[int]) -> Any:
    """`transpose(x, perm)` written as a one-operand einsum.

    Same result on every backend, but on TensorFlow with oneDNN (the default CPU build) a Transpose
    of a small tensor costs ~40 µs while the Einsum kernel costs ~5 µs; a transformer block has
    several of these, which made them the largest single cost of a converted small LLM.
    """
    letters = _LETTERS[: len(perm)]
    return ops.einsum(f"{letters}->{''.join(letters[p] for p in perm)}", x)


def layout_letters(torch_letters: str, perm: Perm) -> str:
    """Einsum subscripts of a tensor held in layout `perm`, given its subscripts in the source layout."""
    return torch_letters if perm is None else "".join(torch_letters[p] for p in perm)


@dataclass(eq=False)
class Val:
    tensor: Any = None  # a Keras tensor when live
    const: Any = None  # a torch value when known at conversion time
    perm: Perm = None
    shape: tuple[int, ...] | None = None  # shape in the source (torch) layout
    param: str | None = None  # source state_dict key, when the constant is a parameter/buffer
    items: list["Val | None"] | None = None  # results of multi-output ops
    perm_from_source: bool = False  # the permutation is a permute the source model itself asked for
    # (value, repeats, source dim) when this is value.repeat_interleave(repeats, dim): attention with
    # grouped-query heads reads the unrepeated keys/values instead of materialising the copies
    repeat_of: tuple["Val", int, int] | None = None
    # the shape in the source layout as ints and sympy expressions of the export's size symbols, when
    # the source was captured with symbolic dims (see converters.torch_to_keras.symbolic)
    dims: tuple[Any, ...] | None = None
    _views: dict = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.tensor is not None

    @property
    def rank(self) -> int:
        return len(self.shape) if self.shape is not None else 0

    def axis(self, dim: int) -> int:
        """The tensor axis that holds torch dim `dim` (negative counts from the end) in this value's layout."""
        dim = int(dim) % self.rank
        return self.perm.index(dim) if self.perm else dim


def const_to_numpy(value: Any) -> Any:
    """A torch constant as a NumPy array (bf16/fp16 widened to float32), Python scalars unchanged."""
    torch = import_torch()
    if isinstance(value, torch.Tensor):
        from porttax.lazy_weights import lazy_of

        lazy = lazy_of(value)
        if lazy is not None:  # a streamed checkpoint: read this one weight now (porttax.lazy_weights)
            return lazy.numpy_float()
        t = value.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()
    return value


class Context:
    """Shared state of one conversion: layer naming, layout moves, weight assignment, the log."""

    def __init__(self, log: MappingLog, reuse: dict[str, Any] | None = None) -> None:
        self.keras = import_keras()
        self.ops = self.keras.ops
        self.log = log
        self._names: set[str] = set()
        self.current: LayerRecord | None = None
        # built layers of an earlier conversion of the same module (another entry point of it, e.g. an
        # LLM's decode step), by name: a layer configured the same is called again, not rebuilt, so
        # both Keras models share its variables and no weight is read twice
        self.reuse = reuse or {}
        self.sizes = Sizes(self.ops)  # where each symbolic size is read at run time

    # ---- naming ------------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        base = keras_layer_name(base) or "layer"
        name, n = base, 1
        while name in self._names:
            name = f"{base}_{n}"
            n += 1
        self._names.add(name)
        return name

    def track(self, layer: Any) -> Any:
        if self.current is not None:
            self.current.targets.append(layer.name)
        return layer

    # ---- layout ------------------------------------------------------------------------------
    def torch_layout(self, val: Val) -> Any:
        """The value as a Keras tensor in the source layout (or a NumPy constant)."""
        return self.in_layout(val, None)

    def in_layout(self, val: Val, perm: Perm) -> Any:
        """The value in layout `perm`, inserting one transpose (or a free reshape) if needed."""
        if not val.live:
            c = const_to_numpy(val.const)
            if isinstance(c, np.ndarray) and not is_identity(perm):
                return np.transpose(c, perm)
            return c
        want = None if is_identity(perm) else tuple(perm)
        have = None if is_identity(val.perm) else tuple(val.perm)
        if want == have:
            return val.tensor
        if want in val._views:
            return val._views[want]
        rank = val.rank
        src = have or tuple(range(rank))
        dst = want or tuple(range(rank))
        # keras_have = torch.permute(src); keras_want = torch.permute(dst) = keras_have.permute(move)
        move = tuple(src.index(d) for d in dst)
        out_shape = [val.shape[d] for d in dst]
        non_unit = [m for m in move if val.shape[src[m]] != 1]
        if non_unit == sorted(non_unit) and sum(d is None for d in tuple(val.tensor.shape)) <= 1:
            out = self.reshape(val.tensor, [val.shape[d] for d in src], out_shape)
            self.log.reshapes_for_layout += 1
        else:
            out = permute(self.ops, val.tensor, move)
            # porttax's own layout moves are to or from channels-last, or between time-major and
            # batch-major around recurrent layers; any other permutation is one the source model
            # computes (q/k/v head splits, for instance).
            layouts = (channels_last(rank),) + (((1, 0, 2),) if rank == 3 else ())
            ours = any(p in (src, dst) for p in layouts) and not val.perm_from_source
            if ours:
                self.log.transposes_inserted += 1
            else:
                self.log.source_transposes += 1
        val._views[want] = out
        return out

    def reshape(self, x: Any, source: Sequence[int], target: Sequence[int], target_dims: Sequence[Any] | None = None,
                what: str = "reshape") -> Any:
        """`ops.reshape` that keeps symbolic sizes open (see symbolic.reshape)."""
        return symbolic_reshape(self, x, source, target, target_dims, what)

    def align(self, vals: Sequence[Any], out_rank: int) -> tuple[list[Any], Perm]:
        """Operands of a broadcasting op in one common layout.

        When every live operand of full rank shares a permutation, the op runs in that layout and
        constants are permuted at conversion time (free). Otherwise everything goes to the source
        layout.
        """
        lives = [v for v in vals if isinstance(v, Val) and v.live]
        perms = {None if is_identity(v.perm) else tuple(v.perm) for v in lives}
        perm: Perm = None
        if len(perms) == 1 and None not in perms and all(v.rank == out_rank for v in lives):
            perm = perms.pop()
        out = []
        for v in vals:
            if not isinstance(v, Val):
                out.append(v)
            elif v.live:
                out.append(self.in_layout(v, perm))
            else:
                c = const_to_numpy(v.const)
                if perm is not None and isinstance(c, np.ndarray) and c.ndim > 0:
                    c = c.reshape((1,) * (out_rank - c.ndim) + c.shape)
                    c = np.transpose(c, perm)
                out.append(c)
        return out, perm

    # ---- weights -----------------------------------------------------------------------------
    def set_weight(
        self, layer: Any, var_name: str, value: Val | Any, transform: Transform | None = None
    ) -> None:
        """Assign a built layer's variable from a source constant, recording the port."""
        transform = transform or Identity()
        array = self._weight_array(value, transform, layer.dtype_policy.variable_dtype)
        var = self._port(layer, var_name, value, transform, array.shape)
        if _would_round(layer, array):
            self.log.rounded_weights.append(f"{layer.name}/{var_name}")
        var.assign(array.astype(var.dtype))

    def _port(self, layer: Any, var_name: str, value: Any, transform: Transform, shape: tuple) -> Any:
        """The layer's variable `var_name`, checked against the ported weight's shape; records the port."""
        source_key = value.param if isinstance(value, Val) else None
        for var in layer.weights:
            if var.name == var_name or var.path.endswith("/" + var_name):
                if tuple(var.shape) != tuple(shape):
                    raise UnsupportedError(
                        f"weight {source_key or var_name} has shape {tuple(shape)} after "
                        f"{transform.describe()}, but Keras layer {layer.name!r} expects {tuple(var.shape)}"
                    )
                target = f"{layer.name}/{var_name}"
                raw = value.const if isinstance(value, Val) else value
                held = value.shape if isinstance(value, Val) and value.shape is not None else tuple(raw.shape)
                self.log.ports.append(WeightPort(source_key, target, transform.describe(), tuple(shape),
                                                 tuple(int(d) for d in held)))
                self.log.transforms[target] = transform
                return var
        names = [v.name for v in layer.weights]
        raise UnsupportedError(f"Keras layer {layer.name!r} has no variable {var_name!r} (has {names})")

    def apply_layer(self, layer: Any, x: Any, weights: dict[str, tuple[Any, Transform | None]]) -> Any:
        """Build `layer` on `x` with its variables created from the source weights.

        Where the layer has an initializer for a variable (`kernel` → `kernel_initializer`), the
        transformed source array is handed over as that initializer for the build, so the variable is
        made from it directly: one copy, never a placeholder plus an assigned copy — what keeps a
        streamed 1B-parameter model to one copy in memory. The layer's own initializer is put back
        afterwards, so its config (and a saved `.keras`) stays plain Keras. Other variables are
        assigned after the build."""
        shared = self.reuse.get(layer.name)
        if shared is not None and type(shared) is type(layer) and _config_key(shared) == _config_key(layer):
            self.track(shared)
            return shared(x)
        given: dict[str, tuple[Any, Any, tuple[int, ...]]] = {}
        if not layer.built:
            arrays = {name: self._weight_array(value, transform or Identity(), layer.dtype_policy.variable_dtype)
                      for name, (value, transform) in weights.items() if hasattr(layer, f"{name}_initializer")}
            if any(_would_round(layer, a) for a in arrays.values()):
                # a weight the converter derived (not a checkpoint tensor moved as is) would round
                layer.dtype_policy = layer.dtype_policy.compute_dtype
                self.log.widened_layers.append(layer.name)
            for name, (value, transform) in weights.items():
                attr = f"{name}_initializer"
                if name not in arrays:
                    continue
                original = getattr(layer, attr)
                array = arrays.pop(name)
                try:
                    setattr(layer, attr, _Given(array))
                except AttributeError:  # a read-only proxy (an RNN layer's cell owns it): assign after
                    continue
                given[name] = (original, value, array.shape)
                del array  # the initializer holds the only reference, and lets it go once used
        try:
            out = layer(x)
        finally:
            for name, (original, _, _) in given.items():
                setattr(layer, f"{name}_initializer", original)
        self.track(layer)
        for name, (value, transform) in weights.items():
            if name in given:  # built from the array already: check and record only
                self._port(layer, name, value, transform or Identity(), given[name][2])
            else:
                self.set_weight(layer, name, value, transform)
        return out

    def _weight_array(self, value: Any, transform: Transform, variable_dtype: str = "float32") -> Any:
        """The source weight in the layout (and, streamed, the dtype) its Keras variable holds."""
        raw = value.const if isinstance(value, Val) else value
        if isinstance(transform, (Transpose, Identity)) and isinstance(raw, import_torch().Tensor):
            from porttax.lazy_weights import lazy_of

            lazy = lazy_of(raw)
            perm = transform.perm if isinstance(transform, Transpose) else None
            if lazy is not None:  # a streamed weight: read and transpose in one pass, widened if need be
                return lazy.numpy_float(perm, keep=str(variable_dtype) == lazy.torch_dtype)
            held = str(raw.dtype).removeprefix("torch.")
            if held in HALF_DTYPES and held == str(variable_dtype):
                return _half_numpy(raw, perm)  # kept as the checkpoint stores it: no widening, no check
        # contiguous here, so TensorFlow takes the buffer as is instead of copying a transposed view
        return np.ascontiguousarray(transform.apply(np.asarray(const_to_numpy(raw), dtype=np.float32)))


def _would_round(layer: Any, array: np.ndarray) -> bool:
    """Whether storing `array` in `layer`'s variables would round it, under porttax's store-narrow policy
    (porttax.dtype_policy); a policy that computes narrow too rounds by request."""
    policy = layer.dtype_policy
    return (stores_narrower(policy) and is_narrowing(array.dtype, policy.variable_dtype)
            and not exactly_representable(array, policy.variable_dtype))


def _half_numpy(tensor: Any, perm: tuple[int, ...] | None) -> np.ndarray:
    """A bf16/fp16 torch tensor as a contiguous NumPy array of the same dtype (bf16 as ml_dtypes')."""
    torch = import_torch()
    t = tensor.detach().cpu()
    t = (t.permute(*perm) if perm is not None else t).contiguous()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _config_key(layer: Any) -> Any:
    """A layer's config, compared as built and unbuilt layers both give it (a build turns some
    settings into lists: RMSNormalization's axis -1 becomes [-1])."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return plain(value[0]) if len(value) == 1 else tuple(plain(v) for v in value)
        return value

    return plain(layer.get_config())


class _Given:
    """An initializer that returns one given array, once (then lets it go)."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        array, self.array = self.array, None
        if array is None or tuple(array.shape) != tuple(shape):
            got = "nothing left" if array is None else tuple(array.shape)
            raise UnsupportedError(f"a Keras variable of shape {tuple(shape)} was built from a source weight of "
                                   f"shape {got}")
        if dtype is not None and str(array.dtype) != str(dtype):
            array = array.astype(str(dtype))
        return _adopted(array)


def _adopted(array: np.ndarray) -> Any:
    """The array as a backend tensor, on TensorFlow without a copy.

    `tf.convert_to_tensor` of a NumPy array briefly holds two more copies of it; for a 250 MB
    embedding that is the peak of a streamed conversion. TensorFlow adopts a 64-byte-aligned buffer
    through DLPack as is, and a variable made from that tensor keeps the same buffer: one copy of the
    weight from file to variable."""
    keras = import_keras()
    bf16 = array.dtype.name == "bfloat16"  # ml_dtypes': DLPack has no such NumPy type, so it goes as its bits
    if keras.backend.backend() != "tensorflow" or not (array.dtype.kind in "fiu" or bf16) or not array.size:
        return keras.ops.convert_to_tensor(array)
    from porttax._frameworks import import_tf
    from porttax.lazy_weights import ALIGNMENT, aligned_empty

    tf = import_tf()
    if bf16:
        array = array.view(np.uint16)
    if array.ctypes.data % ALIGNMENT or not array.flags.c_contiguous:
        aligned = aligned_empty(array.shape, array.dtype)
        aligned[...] = array
        array = aligned
    tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.bitcast(tensor, tf.bfloat16) if bf16 else tensor


@dataclass
class Call:
    """One source op as a converter sees it: arguments by schema name, resolved to `Val`s."""

    node: Any
    args: dict[str, Any]  # raw FX arguments by schema name
    ctx: Context
    env: Callable[[Any], Any]  # resolves FX nodes (and nested lists) to Vals
    module_path: str
    module_type: str

    def val(self, name: str) -> Any:
        return self.env(self.args[name])

    def has(self, name: str) -> bool:
        return self.args.get(name) is not None

    def const(self, name: str) -> Any:
        """A torch value that must be known at conversion time."""
        v = self.val(name)
        if isinstance(v, Val):
            if v.live:
                raise UnsupportedError(
                    f"{self.op}: argument {name!r} is computed from the model inputs; porttax needs it "
                    "to be a constant (a parameter, buffer or literal) for this op",
                    hint="compute it from parameters only, or open an issue with the model",
                )
            return v.const
        return v

    def tensor(self, name: str) -> Any:
        """The argument in the source layout (Keras tensor or NumPy constant)."""
        v = self.val(name)
        return self.ctx.torch_layout(v) if isinstance(v, Val) else v

    def layer_name(self, suffix: str = "") -> str:
        base = self.module_path or self.op.split(".")[1]
        return self.ctx.unique_name(base + suffix)

    @property
    def op(self) -> str:
        return str(self.node.target)

    @property
    def out_shape(self) -> tuple[int, ...]:
        meta = self.node.meta.get("val")
        return size_hints(meta.shape)

    @property
    def out_dims(self) -> tuple[Any, ...]:
        """The output shape as ints and symbolic sizes (sympy expressions)."""
        return dims_of(self.node.meta["val"].shape)

    @property
    def out_dtype(self) -> str:
        return str(self.node.meta["val"].dtype).replace("torch.", "")

    def unsupported(self, why: str, hint: str | None = None) -> UnsupportedError:
        where = f" in {self.module_path} ({self.module_type})" if self.module_path else ""
        return UnsupportedError(f"{self.op}{where}: {why}", hint=hint)


def live_val(tensor: Any, shape: Sequence[int], perm: Perm = None) -> Val:
    return Val(tensor=tensor, shape=tuple(int(s) for s in shape), perm=None if is_identity(perm) else tuple(perm))
