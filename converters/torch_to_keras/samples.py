"""Sample cases for the torch → Keras converters: one parametrised test runs them all.

Each `Sample` is a tiny PyTorch module, inputs for it, the registry op keys its exported graph
(after `run_decompositions({})`, as the driver sees it) really contains, and the tolerance its
converted model must meet (‖keras − torch‖ / ‖torch‖, compared in float64). Adding a converter
means adding a sample here; the battery test fails for any registered op no sample exercises.

Importing this module imports no framework: torch is reached through lazy stand-ins (`torch`,
`nn`, `F`, `aten` below) that resolve on first use, inside a build or inputs function.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

from porttax._frameworks import import_torch


class _Lazy:
    """A torch namespace resolved on first attribute access, so this module imports without torch."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Any:
        obj: Any = import_torch()
        for part in self._path.split(".")[1:]:
            obj = getattr(obj, part)
        return getattr(obj, name)


torch: Any = _Lazy("torch")
nn: Any = _Lazy("torch.nn")
F: Any = _Lazy("torch.nn.functional")
aten: Any = _Lazy("torch.ops.aten")


@dataclass(frozen=True)
class Sample:
    name: str
    ops: tuple[str, ...]  # registry op keys the exported graph contains
    build: Callable[[], Any]  # -> nn.Module
    inputs: Callable[[], tuple[Any, ...]]  # -> tuple of tensors
    tol: float = 1e-5  # max ‖keras − torch‖ / ‖torch‖
    note: str = ""
    # captured with these axes open (per input {axis: name}; torch.export's Dim.AUTO), and checked again
    # at `resized` inputs: the converted model must take other sizes there
    open_axes: tuple[dict[int, str], ...] | None = None
    resized: Callable[[], tuple[Any, ...]] | None = None

    def make(self) -> tuple[Any, tuple[Any, ...]]:
        """The model in eval mode and its inputs, both deterministic.

        Norm layers get non-trivial statistics and affine parameters (fresh ones are 0/1, which
        would hide a mean/variance or gamma/beta swap).
        """
        t = import_torch()
        t.manual_seed(0)
        model = self.build()
        with t.no_grad():
            for m in model.modules():
                if getattr(m, "running_var", None) is not None:
                    m.running_mean.copy_(0.5 * t.randn_like(m.running_mean))
                    m.running_var.copy_(0.5 + t.rand_like(m.running_var))
                if "Norm" in type(m).__name__:
                    for p in m.parameters(recurse=False):
                        p.add_(0.3 * t.randn_like(p))
        t.manual_seed(1)
        return model.eval(), tuple(self.inputs())


@cache
def _fn_module_class() -> type:
    t = import_torch()

    class FnModule(t.nn.Module):
        """A module whose forward is a plain function of (module, *inputs)."""

        def __init__(self, forward: Callable[..., Any]) -> None:
            super().__init__()
            self._forward = forward

        def forward(self, *xs: Any) -> Any:
            return self._forward(self, *xs)

    return FnModule


def _fn(forward: Callable[..., Any], **parts: Callable[[], Any]) -> Callable[[], Any]:
    """A build function for a module computing `forward(module, *inputs)`.

    Each keyword is a factory called at build time (after seeding); an `nn.Module` becomes a
    submodule, an `nn.Parameter` a parameter, any other tensor a buffer.
    """

    def build() -> Any:
        t = import_torch()
        module = _fn_module_class()(forward)
        for name, make in parts.items():
            value = make()
            if isinstance(value, t.nn.Module):
                module.add_module(name, value)
            elif isinstance(value, t.nn.Parameter):
                module.register_parameter(name, value)
            else:
                module.register_buffer(name, value)
        return module

    return build


def _x(*shapes: tuple[int, ...], scale: float = 1.0) -> Callable[[], tuple[Any, ...]]:
    """Inputs: one standard-normal float32 tensor per shape, times `scale`."""
    return lambda: tuple(torch.randn(s) * scale for s in shapes)


def _param(*shape: int) -> Callable[[], Any]:
    return lambda: nn.Parameter(torch.randn(shape))


def _seq(*layers: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: nn.Sequential(*(make() for make in layers))


IMG = (2, 3, 8, 8)  # a small NCHW batch
SEQ = (2, 3, 10)  # a small NCL batch

def _sized_tensors(x: Any) -> Any:
    """Tensors made from x's (open) sizes by every factory op: what a captured model computes from
    its batch and sequence length (positions, causal masks, identity masks, zero states)."""
    b, s = x.shape[0], x.shape[1]
    positions = torch.arange(s) + torch.arange(1, s + 1) + torch.arange(0, 2 * s, 2)
    square = (torch.full((s, s), 2.0) + torch.eye(s) + torch.zeros(s, s) + torch.ones(s, s)
              + torch.empty(s, s).fill_(0.5)).triu(1)
    like = torch.zeros_like(x) + torch.ones_like(x) + torch.full_like(x, 3.0) + torch.empty_like(x).fill_(1.0)
    rows = x.new_zeros((b, s)) + x.new_ones((b, s)) + x.new_full((b, s), 4.0) + x.new_empty((b, s)).fill_(1.0)
    return x * positions[None, :, None] + square.sum(-1)[None, :, None] + like + rows[..., None]


SAMPLES: list[Sample] = [
    # ---- linear ---------------------------------------------------------------------------------
    Sample("linear", ("aten.linear",), lambda: nn.Linear(6, 5), _x((3, 6))),
    Sample("linear_3d_no_bias", ("aten.linear",), lambda: nn.Linear(6, 5, bias=False), _x((2, 3, 6))),
    Sample("linear_computed_weight", ("aten.linear",),
           _fn(lambda m, x, w: F.linear(x, w, m.b), b=_param(5)), _x((3, 6), (5, 6)),
           note="a weight that is an input (tied or generated weights) cannot become a Dense kernel"),
    Sample("linear_dropout_eval", ("aten.linear", "aten.relu"),
           _seq(lambda: nn.Linear(6, 8), lambda: nn.Dropout(0.5), lambda: nn.ReLU(), lambda: nn.Dropout(0.2)),
           _x((3, 6)), note="eval-mode dropout leaves no op in the graph"),
    Sample("addmm", ("aten.addmm",),
           _fn(lambda m, x: torch.addmm(m.b, x, m.w), w=_param(6, 4), b=_param(4)), _x((3, 6))),
    Sample("addmm_scaled", ("aten.addmm",),
           _fn(lambda m, x, y: torch.addmm(y, x, m.w, beta=0.5, alpha=2.0), w=_param(6, 4)),
           _x((3, 6), (3, 4))),
    Sample("mm", ("aten.mm",), _fn(lambda m, x: torch.mm(x, m.w), w=_param(6, 4)), _x((3, 6))),
    Sample("matmul", ("aten.matmul",),
           _fn(lambda m, x, y: (torch.matmul(x, y) + torch.matmul(x, m.w)[..., :1], torch.matmul(x, m.v)),
               w=_param(4, 3), v=_param(4)),
           _x((2, 3, 4), (2, 4, 5))),
    Sample("bmm", ("aten.bmm",), _fn(lambda m, x, y: torch.bmm(x, y)), _x((2, 3, 4), (2, 4, 5))),
    Sample("baddbmm", ("aten.baddbmm",),
           _fn(lambda m, b, x, y: torch.baddbmm(b, x, y, beta=0.5, alpha=2.0)), _x((2, 3, 5), (2, 3, 4), (2, 4, 5))),
    Sample("einsum", ("aten.einsum",),
           _fn(lambda m, x, y: torch.einsum("bij,bjk->bik", x, y) + torch.einsum("bik,k->bi", x @ y, m.v)[..., None],
               v=_param(5)),
           _x((2, 3, 4), (2, 4, 5))),
    # ---- convolution ----------------------------------------------------------------------------
    Sample("conv1d_stride_pad_dilation", ("aten.conv1d",),
           lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=2), _x(SEQ)),
    Sample("conv1d_same_even_kernel", ("aten.conv1d",), lambda: nn.Conv1d(3, 4, 4, padding="same"), _x(SEQ)),
    Sample("conv1d_depthwise_x2", ("aten.conv1d",), lambda: nn.Conv1d(3, 6, 3, groups=3, padding=1), _x(SEQ)),
    Sample("conv2d_stride_pad", ("aten.conv2d",), lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), _x(IMG)),
    Sample("conv2d_same_dilated", ("aten.conv2d",),
           lambda: nn.Conv2d(3, 4, 3, padding="same", dilation=2), _x(IMG)),
    Sample("conv2d_asymmetric", ("aten.conv2d",),
           lambda: nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), bias=False), _x(IMG)),
    Sample("conv2d_groups", ("aten.conv2d",), lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1), _x((2, 4, 6, 6))),
    Sample("conv2d_depthwise", ("aten.conv2d",), lambda: nn.Conv2d(4, 4, 3, groups=4, padding=1), _x((2, 4, 6, 6))),
    Sample("conv2d_depthwise_x2_stride", ("aten.conv2d",),
           lambda: nn.Conv2d(3, 6, 3, groups=3, stride=2), _x(IMG)),
    Sample("conv2d_depthwise_stride_dilation", ("aten.conv2d",),
           lambda: nn.Conv2d(3, 3, 3, groups=3, stride=2, dilation=2, padding=2), _x(IMG),
           note="Keras refuses stride > 1 with dilation > 1"),
    Sample("conv3d", ("aten.conv3d",), lambda: nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1)), _x((1, 2, 3, 5, 5))),
    Sample("conv_transpose1d", ("aten.conv_transpose1d",),
           lambda: nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1), _x(SEQ)),
    Sample("conv_transpose2d", ("aten.conv_transpose2d.input",),
           lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), _x((2, 3, 5, 5))),
    Sample("conv_transpose3d", ("aten.conv_transpose3d",),
           lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), _x((1, 2, 2, 3, 3))),
    Sample("convolution", ("aten.convolution",),
           _fn(lambda m, x: aten.convolution(x, m.w, m.b, [1, 1], [1, 1], [1, 1], False, [0, 0], 1),
               w=_param(4, 3, 3, 3), b=_param(4)),
           _x(IMG), note="called directly: nn layers export as conv1d/conv2d/conv3d"),
    # ---- normalisation --------------------------------------------------------------------------
    Sample("batchnorm1d_nc", ("aten._native_batch_norm_legit_no_training",), lambda: nn.BatchNorm1d(5), _x((4, 5))),
    Sample("batchnorm1d_ncl", ("aten._native_batch_norm_legit_no_training",), lambda: nn.BatchNorm1d(3), _x(SEQ)),
    Sample("batchnorm2d", ("aten._native_batch_norm_legit_no_training",), lambda: nn.BatchNorm2d(3), _x(IMG)),
    Sample("conv_batchnorm2d", ("aten.conv2d", "aten._native_batch_norm_legit_no_training"),
           _seq(lambda: nn.Conv2d(3, 4, 3), lambda: nn.BatchNorm2d(4, affine=False)), _x(IMG)),
    Sample("layernorm", ("aten.layer_norm",), lambda: nn.LayerNorm(6), _x((2, 3, 6))),
    Sample("layernorm_no_affine", ("aten.layer_norm",),
           lambda: nn.LayerNorm(6, elementwise_affine=False, eps=1e-3), _x((2, 3, 6))),
    Sample("layernorm_2d_no_bias", ("aten.layer_norm",), lambda: nn.LayerNorm((3, 6), bias=False), _x((2, 3, 6))),
    Sample("layernorm_channels_after_conv", ("aten.conv2d", "aten.permute", "aten.layer_norm"),
           _fn(lambda m, x: m.ln(m.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
               conv=lambda: nn.Conv2d(3, 4, 3), ln=lambda: nn.LayerNorm(4)),
           _x(IMG), note="the ConvNeXt pattern: permute to channels-last, norm, permute back"),
    Sample("groupnorm", ("aten.group_norm",), lambda: nn.GroupNorm(2, 4), _x((2, 4, 5))),
    Sample("groupnorm_after_conv", ("aten.conv2d", "aten.group_norm"),
           _seq(lambda: nn.Conv2d(3, 6, 3), lambda: nn.GroupNorm(3, 6)), _x(IMG)),
    Sample("rmsnorm", ("aten.rms_norm",), lambda: nn.RMSNorm(6, eps=1e-6), _x((2, 3, 6))),
    Sample("rmsnorm_default_eps_no_affine", ("aten.rms_norm",),
           lambda: nn.RMSNorm(6, elementwise_affine=False), _x((2, 3, 6))),
    # ---- embedding ------------------------------------------------------------------------------
    Sample("embedding", ("aten.embedding",), lambda: nn.Embedding(10, 4),
           lambda: (torch.randint(0, 10, (2, 5)),)),
    Sample("embedding_computed_table", ("aten.embedding",), _fn(lambda m, ids, table: F.embedding(ids, table * 2)),
           lambda: (torch.randint(0, 10, (2, 5)), torch.randn(10, 4))),
    # ---- activations ----------------------------------------------------------------------------
    Sample("relu", ("aten.relu",), lambda: nn.ReLU(), _x((2, 3, 4))),
    Sample("gelu", ("aten.gelu",), lambda: nn.GELU(), _x((2, 3, 4), scale=3.0)),
    Sample("gelu_tanh", ("aten.gelu",), lambda: nn.GELU(approximate="tanh"), _x((2, 3, 4), scale=3.0)),
    Sample("silu", ("aten.silu",), lambda: nn.SiLU(), _x((2, 3, 4), scale=3.0)),
    Sample("sigmoid", ("aten.sigmoid",), lambda: nn.Sigmoid(), _x((2, 3, 4), scale=3.0)),
    Sample("tanh", ("aten.tanh",), lambda: nn.Tanh(), _x((2, 3, 4), scale=3.0)),
    Sample("leaky_relu", ("aten.leaky_relu",), lambda: nn.LeakyReLU(0.2), _x((2, 3, 4))),
    Sample("hardswish", ("aten.hardswish",), lambda: nn.Hardswish(), _x((2, 3, 4), scale=4.0)),
    Sample("hardsigmoid", ("aten.hardsigmoid",), lambda: nn.Hardsigmoid(), _x((2, 3, 4), scale=4.0)),
    Sample("elu", ("aten.elu",), lambda: nn.ELU(alpha=0.5), _x((2, 3, 4), scale=3.0)),
    Sample("softplus", ("aten.softplus",), lambda: nn.Softplus(beta=2.0, threshold=3.0), _x((2, 3, 4), scale=3.0)),
    Sample("mish", ("aten.mish",), lambda: nn.Mish(), _x((2, 3, 4), scale=3.0)),
    Sample("relu6_functional", ("aten.relu6",), _fn(lambda m, x: F.relu6(x)), _x((2, 3, 4), scale=5.0)),
    Sample("relu6_module_hardtanh", ("aten.hardtanh",),
           _seq(lambda: nn.ReLU6(), lambda: nn.Hardtanh(-0.5, 4.0)), _x((2, 3, 4), scale=5.0),
           note="nn.ReLU6 exports as hardtanh(0, 6)"),
    Sample("softmax", ("aten.softmax",), lambda: nn.Softmax(dim=-1), _x((2, 3, 4), scale=3.0)),
    Sample("softmax_channels_after_conv", ("aten.conv2d", "aten.softmax"),
           _seq(lambda: nn.Conv2d(3, 4, 3), lambda: nn.Softmax(dim=1)), _x(IMG)),
    Sample("log_softmax", ("aten.log_softmax",), _fn(lambda m, x: F.log_softmax(x, dim=1)), _x((2, 3, 4), scale=3.0)),
    Sample("softmax_aten", ("aten._softmax", "aten._log_softmax"),
           _fn(lambda m, x: aten._softmax(x, 1, False) + aten._log_softmax(x, -1, False)), _x((2, 3, 4)),
           note="the decomposed spellings, called directly"),
    # ---- elementwise ----------------------------------------------------------------------------
    Sample("arith_broadcast", ("aten.add", "aten.sub", "aten.mul", "aten.div", "aten.rsub"),
           _fn(lambda m, x, y, z: ((x + y) * z - x / (z.abs() + 1)).sub(y, alpha=0.5).add(z, alpha=2.0)
               + (1.0 - x) + torch.rsub(y, 2.0, alpha=3.0)),
           _x((2, 3, 4), (3, 1), (4,))),
    Sample("add_of_bias_shaped_broadcasts", ("aten.add",),
           _fn(lambda m, x, y: (x + m.b, y + m.c, m.c + y, x + m.v), b=lambda: torch.randn(4, 1, 1),
               c=lambda: torch.randn(3, 1), v=lambda: torch.randn(4)),
           _x((2, 4, 6, 4), (2, 3, 3)), tol=1e-6,
           note="operands Keras' TF add would take for a bias along the wrong axis"),
    Sample("arith_conv_output_and_channel_param", ("aten.conv2d", "aten.mul", "aten.add", "aten.sub", "aten.div"),
           _fn(lambda m, x: (m.conv(x) * m.scale + m.shift) / 2.0 - 0.5 + m.conv(x) * 3.0,
               conv=lambda: nn.Conv2d(3, 4, 3), scale=_param(4, 1, 1), shift=_param(4, 1, 1)),
           _x(IMG), note="a channels-last conv output against (C, 1, 1) parameters and scalars"),
    Sample("arith_conv_output_and_input", ("aten.conv2d", "aten.add", "aten.mul"),
           _fn(lambda m, x: m.conv(x) + x[:, :1] * m.w, conv=lambda: nn.Conv2d(3, 4, 3, padding=1), w=_param(8)),
           _x(IMG), note="a layout-permuted value against a source-layout one"),
    Sample("div_rounding", ("aten.div",),
           _fn(lambda m, x, y: torch.div(x, y, rounding_mode="floor") + torch.div(x, 0.3, rounding_mode="trunc")),
           lambda: (torch.randn(2, 3, 4) * 5, torch.rand(2, 3, 4) + 0.5)),
    Sample("pow", ("aten.pow",),
           _fn(lambda m, x, y: x.pow(3) + x.pow(2) + torch.pow(2.0, x) + x.abs().pow(y)), _x((2, 3, 4), (2, 3, 4))),
    Sample("maximum_minimum", ("aten.maximum", "aten.minimum"),
           _fn(lambda m, x, y: torch.maximum(x, y) * torch.minimum(x, m.c), c=lambda: torch.randn(4)),
           _x((2, 3, 4), (2, 3, 4))),
    Sample("unary_math", ("aten.exp", "aten.log", "aten.sqrt", "aten.rsqrt", "aten.reciprocal", "aten.sin",
                          "aten.cos", "aten.erf", "aten.log1p", "aten.expm1", "aten.neg", "aten.abs",
                          "aten.square"),
           _fn(lambda m, x: torch.stack([
               x.exp(), (x.abs() + 0.1).log(), x.abs().sqrt(), (x.abs() + 0.1).rsqrt(), (x.abs() + 0.5).reciprocal(),
               x.sin(), x.cos(), torch.erf(x), x.abs().log1p(), torch.expm1(x), -x, x.square()])),
           _x((2, 3, 4))),
    Sample("unary_rounding", ("aten.floor", "aten.ceil", "aten.round", "aten.trunc", "aten.sign"),
           _fn(lambda m, x: torch.stack([x.floor(), x.ceil(), x.round(), torch.round(x, decimals=1), x.trunc(),
                                         x.sign(), torch.round(m.halves + x.floor())]),
               halves=lambda: torch.tensor([0.5, 1.5, 2.5, -0.5])),
           _x((2, 3, 4), scale=3.0), note="round is half-to-even in both frameworks"),
    Sample("unary_trig_hyperbolic_log_bases",
           ("aten.tan", "aten.asin", "aten.acos", "aten.atan", "aten.sinh", "aten.cosh", "aten.asinh",
            "aten.acosh", "aten.atanh", "aten.log2", "aten.log10"),
           _fn(lambda m, x: torch.stack([
               x.tan(), (x / (x.abs() + 1)).asin(), (x / (x.abs() + 1)).acos(), x.atan(), x.sinh(), x.cosh(),
               x.asinh(), (x.abs() + 1).acosh(), (x / (x.abs() + 1)).atanh(), (x.abs() + 0.1).log2(),
               (x.abs() + 0.1).log10()])),
           _x((2, 3, 4))),
    Sample("isinf", ("aten.isinf", "aten.where.ScalarSelf"),
           _fn(lambda m, x: (torch.isinf(m.c * x).float(), torch.where(torch.isinf(m.c * x), 0.0, x)),
               c=lambda: torch.tensor([1.0, float("inf"), -float("inf"), 2.0])),
           _x((2, 3, 4))),
    Sample("remainder_fmod_atan2", ("aten.remainder", "aten.fmod", "aten.atan2"),
           _fn(lambda m, x, y: torch.stack([
               torch.remainder(x * 3, m.d), torch.fmod(x * 3, m.d), torch.remainder(x * 3, 2.0),
               torch.fmod(x * 3, -2.0), torch.atan2(x, y), torch.atan2(x, m.d)]),
               d=lambda: torch.tensor([0.7, -1.3, 2.0, -0.6])),
           _x((2, 3, 4), (2, 3, 4)), note="remainder takes the divisor's sign, fmod the dividend's"),
    Sample("remainder_fmod_integers", ("aten.remainder", "aten.fmod"),
           _fn(lambda m, i, j: (torch.remainder(i, j), torch.fmod(i, j), torch.remainder(i, 3), torch.fmod(i, -3))),
           lambda: (torch.randint(-9, 9, (2, 5)), torch.tensor([[2, -3, 4, -1, 5], [-2, 3, -4, 7, -5]]))),
    Sample("flip_after_conv", ("aten.conv2d", "aten.flip"),
           _fn(lambda m, x: (m.conv(x).flip(1), m.conv(x).flip((2, 3)), x.flip(-1)), conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG), note="the dims of a channels-last value map through its permutation"),
    Sample("roll_after_conv", ("aten.conv2d", "aten.roll"),
           _fn(lambda m, x: (torch.roll(m.conv(x), shifts=(-2, 3), dims=(2, 3)), torch.roll(x, 5),
                             torch.roll(x, shifts=-1, dims=1)), conv=lambda: nn.Conv2d(3, 4, 3, padding=1)),
           _x((2, 3, 6, 7)), tol=1e-6, note="channels-last (Swin's shifted windows), flattened, one dim"),
    Sample("argmax_argmin", ("aten.conv2d", "aten.argmax", "aten.argmin"),
           _fn(lambda m, x, y: (m.conv(x).argmax(1), m.conv(x).argmin(1, keepdim=True), m.conv(x).argmax(),
                                y.argmax(-1), y.argmin(), y.argmax(0, keepdim=True)), conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG, (3, 7)), note="argmax() without dim counts in torch's element order, channels-first"),
    Sample("max_min_any", ("aten.conv2d", "aten.max", "aten.min", "aten.any"),
           _fn(lambda m, x, y: (m.conv(x).max(1).values, m.conv(x).max(1).indices, m.conv(x).min(2, keepdim=True),
                                y.max(), y.min(-1), torch.any(y > 1.0, dim=1), torch.any(y > 2.5),
                                torch.any(m.conv(x) > 0.5, dim=1, keepdim=True)), conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG, (3, 7))),
    Sample("xor_not", ("aten.bitwise_not", "aten.__xor__", "aten.bitwise_xor", "aten.logical_xor"),
           _fn(lambda m, i, j, x: (~i, ~(x > 0), i ^ j, (x > 0) ^ (x > 1), torch.bitwise_xor(i, j),
                                   torch.logical_xor(x > 0, j > 0),
                                   torch.logical_xor(x, i))),
           lambda: (torch.randint(-9, 9, (2, 5)), torch.randint(-4, 4, (2, 5)), torch.randn(2, 5))),
    Sample("clamp", ("aten.clamp", "aten.clamp_min", "aten.clamp_max"),
           _fn(lambda m, x, lo: x.clamp(-0.5, 0.7) + x.clamp(min=0.1) + x.clamp_min(-0.2) + x.clamp_max(0.3)
               + torch.clamp(x, min=lo, max=lo + 1.0)),
           _x((2, 3, 4), (2, 3, 4))),
    Sample("compare", ("aten.eq", "aten.ne", "aten.lt", "aten.le", "aten.gt", "aten.ge"),
           _fn(lambda m, x, y: torch.stack([x == y, x != 0.5, x < y, x <= 0.0, x > y, x >= 0.1, x.round() == 1.0])),
           _x((2, 3, 4), (2, 3, 4))),
    Sample("logical", ("aten.logical_and", "aten.logical_or", "aten.logical_not", "aten.__and__", "aten.__or__",
                       "aten.bitwise_and", "aten.bitwise_or"),
           _fn(lambda m, x, y: torch.stack([
               torch.logical_and(x > 0, y > 0), torch.logical_or(x > 0, y > 1), torch.logical_not(x > 0),
               (x > 0) & (y < 0), (x > 1) | (y < 0), torch.bitwise_and(x > 0, y > 0), torch.bitwise_or(x > 0, y > 0)])),
           _x((2, 3, 4), (2, 3, 4))),
    Sample("bitwise_ints", ("aten.bitwise_and", "aten.bitwise_or", "aten.__and__", "aten.__or__"),
           _fn(lambda m, a, b: torch.stack([a & b, a | b, torch.bitwise_and(a, 6), torch.bitwise_or(a, 8)])),
           lambda: (torch.randint(0, 16, (2, 5)), torch.randint(0, 16, (2, 5))),
           note="on integers these are bitwise, not logical"),
    Sample("where_masked_fill", ("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf",
                                 "aten.where.Scalar", "aten.masked_fill"),
           _fn(lambda m, x, y: torch.stack([
               torch.where(x > 0, x, y), torch.where(x > 0, x, 0.0), torch.where(x > 0, 1.0, y),
               torch.where(y > 0, 2.0, -1.0), x.masked_fill(y > 0, -3.0), x.masked_fill(y < 0, torch.tensor(0.5))])),
           _x((2, 3, 4), (2, 3, 4))),
    Sample("where_after_conv", ("aten.conv2d", "aten.where.self", "aten.gt"),
           _fn(lambda m, x: torch.where(m.conv(x) > m.t, m.conv(x), m.t * 2),
               conv=lambda: nn.Conv2d(3, 4, 3), t=_param(4, 1, 1)),
           _x(IMG)),
    Sample("isnan", ("aten.isnan", "aten.log", "aten.where.ScalarSelf"),
           _fn(lambda m, x: torch.stack([torch.isnan(torch.log(x)).float(), torch.where(torch.isnan(x.log()), 0.0, x),
                                         x.log()])),
           _x((2, 3, 4)), note="the last output holds NaNs: the masks must agree"),
    Sample("casts", ("aten._to_copy", "aten.type_as"),
           _fn(lambda m, x, i: (x.to(torch.int64), (x > 0).float() + i.float(), x.double() * 2, (x * 3).int(),
                                i.type_as(x) + x, (x * 3).to(torch.int32).to(torch.float32))),
           lambda: (torch.randn(2, 3, 4) * 3, torch.randint(-5, 5, (2, 3, 4)))),
    Sample("integer_arithmetic", ("aten.mul", "aten.add", "aten.div", "aten.sub", "aten.neg", "aten.abs",
                                  "aten.where.ScalarOther", "aten.masked_fill", "aten.clamp", "aten.pow"),
           _fn(lambda m, i, j, x: (i * 2, i + 1, i / 2, i / j, torch.div(i, 3, rounding_mode="floor"),
                                   torch.div(i, j, rounding_mode="trunc"), i * 2.5, -i, i.abs(), i - j, i * x, i + x,
                                   torch.where(i > 0, i, 0.5), torch.where(i > 0, i, j), i.masked_fill(i > 0, 7),
                                   i.clamp(-2, 3), i.pow(2), i.pow(3), i.clamp(min=j))),
           lambda: (torch.randint(-9, 9, (2, 5)), torch.randint(1, 4, (2, 5)), torch.randn(2, 5)),
           note="torch's type promotion: int / int is float32, int op float32 is float32"),
    Sample("copies", ("aten.clone", "aten.detach", "aten.alias", "aten.native_dropout"),
           _fn(lambda m, x: x.clone() + x.detach() + aten.alias(x) + aten.native_dropout(x, 0.5, False)[0]),
           _x((2, 3, 4)), note="native_dropout with train=False is what direct aten calls produce"),
    # ---- pooling --------------------------------------------------------------------------------
    Sample("max_pool2d", ("aten.max_pool2d",), lambda: nn.MaxPool2d(2), _x(IMG)),
    Sample("max_pool2d_padding", ("aten.max_pool2d",), lambda: nn.MaxPool2d(3, stride=2, padding=1), _x(IMG)),
    Sample("max_pool2d_ceil", ("aten.max_pool2d",), lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True),
           _x((2, 3, 8, 7))),
    Sample("max_pool2d_ceil_padding", ("aten.max_pool2d",),
           lambda: nn.MaxPool2d((3, 2), stride=2, padding=1, ceil_mode=True), _x((2, 3, 7, 8))),
    Sample("max_pool2d_with_indices", ("aten.max_pool2d_with_indices",),
           _fn(lambda m, x: F.max_pool2d(x, 2, return_indices=True)[0]), _x(IMG)),
    Sample("max_pool1d", ("aten.max_pool1d", "aten.max_pool1d_with_indices"),
           _fn(lambda m, x: (F.max_pool1d(x, 3, 2, 1), F.max_pool1d(x, 2, return_indices=True)[0])), _x(SEQ)),
    Sample("max_pool3d", ("aten.max_pool3d", "aten.max_pool3d_with_indices"),
           _fn(lambda m, x: (F.max_pool3d(x, 2), F.max_pool3d(x, 2, return_indices=True)[0])), _x((1, 2, 4, 4, 4))),
    Sample("avg_pool2d", ("aten.avg_pool2d",), lambda: nn.AvgPool2d(2), _x(IMG)),
    Sample("avg_pool2d_padding", ("aten.avg_pool2d",), lambda: nn.AvgPool2d(3, stride=2, padding=1), _x(IMG)),
    Sample("avg_pool2d_exclude_pad", ("aten.avg_pool2d",),
           lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), _x(IMG)),
    Sample("avg_pool2d_ceil", ("aten.avg_pool2d",), lambda: nn.AvgPool2d(3, stride=2, ceil_mode=True),
           _x((2, 3, 8, 7))),
    Sample("avg_pool2d_ceil_padding_exclude", ("aten.avg_pool2d",),
           lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), _x((2, 3, 8, 7))),
    Sample("avg_pool2d_ceil_padding_include", ("aten.avg_pool2d",),
           lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), _x((2, 3, 8, 7))),
    Sample("avg_pool1d", ("aten.avg_pool1d",),
           _fn(lambda m, x: F.avg_pool1d(x, 3, 2, 1, count_include_pad=False)), _x(SEQ)),
    Sample("avg_pool3d", ("aten.avg_pool3d",), lambda: nn.AvgPool3d(2), _x((1, 2, 4, 4, 4))),
    Sample("adaptive_avg_pool2d_global", ("aten.adaptive_avg_pool2d",), lambda: nn.AdaptiveAvgPool2d(1), _x(IMG)),
    Sample("adaptive_avg_pool2d_divisible", ("aten.adaptive_avg_pool2d",), lambda: nn.AdaptiveAvgPool2d(4), _x(IMG)),
    Sample("adaptive_avg_pool2d_7_to_3", ("aten.adaptive_avg_pool2d",),
           lambda: nn.AdaptiveAvgPool2d((3, None)), _x((2, 3, 7, 5))),
    Sample("adaptive_avg_pool2d_uneven", ("aten.adaptive_avg_pool2d",),
           lambda: nn.AdaptiveAvgPool2d((3, 2)), _x((2, 3, 7, 5))),
    Sample("adaptive_avg_pool2d_aten", ("aten._adaptive_avg_pool2d",),
           _fn(lambda m, x: aten._adaptive_avg_pool2d(x, [2, 2])), _x(IMG), note="the decomposed spelling"),
    Sample("adaptive_avg_pool1d", ("aten.adaptive_avg_pool1d",), lambda: nn.AdaptiveAvgPool1d(5), _x(SEQ)),
    Sample("adaptive_avg_pool3d", ("aten.adaptive_avg_pool3d",), lambda: nn.AdaptiveAvgPool3d(1), _x((1, 2, 4, 4, 4))),
    Sample("adaptive_max_pool2d", ("aten.adaptive_max_pool2d",),
           _fn(lambda m, x: (F.adaptive_max_pool2d(x, 1), F.adaptive_max_pool2d(x, (4, 2)))), _x(IMG)),
    Sample("adaptive_max_pool1d", ("aten.adaptive_max_pool1d",), lambda: nn.AdaptiveMaxPool1d(5), _x(SEQ)),
    Sample("adaptive_max_pool3d", ("aten.adaptive_max_pool3d",), lambda: nn.AdaptiveMaxPool3d(2), _x((1, 2, 4, 4, 4))),
    # ---- reductions -----------------------------------------------------------------------------
    Sample("reductions", ("aten.mean", "aten.sum", "aten.amax", "aten.amin", "aten.prod"),
           _fn(lambda m, x: (x.mean(1), x.mean((0, 2), keepdim=True), x.sum(-1), x.sum(1, keepdim=True), x.sum(),
                             x.mean(), x.amax(1), x.amax((1, 2), keepdim=True), x.amin(-1), x.amin(0, keepdim=True),
                             x.prod(1), x.prod())),
           _x((2, 3, 4))),
    Sample("reductions_of_masks", ("aten.sum", "aten.cumsum", "aten.mean"),
           _fn(lambda m, x: ((x > 0).sum(-1), (x > 0).sum(), (x > 0).cumsum(1), (x > 0).float().mean(1))),
           _x((2, 3, 4)), note="torch sums booleans into int64"),
    Sample("reductions_after_conv", ("aten.conv2d", "aten.mean", "aten.sum", "aten.amax", "aten.amin"),
           _fn(lambda m, x: (m.conv(x).mean((2, 3)), m.conv(x).mean((-1, -2), keepdim=True), m.conv(x).sum(1),
                             m.conv(x).amax(3), m.conv(x).amin((1, 2), keepdim=True), m.conv(x).sum(2, keepdim=True)),
               conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG), note="reduced axes pass through the channels-last layout"),
    Sample("var_std", ("aten.var", "aten.std"),
           _fn(lambda m, x: (x.var(1), x.var(-1, keepdim=True), x.std(1, unbiased=False), x.std(),
                             torch.var(x, (0, 2), correction=0), torch.std(x, 2, correction=2, keepdim=True))),
           _x((2, 3, 4))),
    Sample("var_std_after_conv", ("aten.conv2d", "aten.var", "aten.std"),
           _fn(lambda m, x: (m.conv(x).var((2, 3)), m.conv(x).std(1, keepdim=True)), conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG)),
    # ---- shapes ---------------------------------------------------------------------------------
    Sample("view_reshape_flatten", ("aten.view",),
           _fn(lambda m, x: x.reshape(2, -1).view(2, 4, 3).flatten(1).unflatten(1, (6, 2)).view_as(torch.zeros(2, 12))),
           _x((2, 3, 4))),
    Sample("flatten_after_conv", ("aten.conv2d", "aten.view", "aten.linear"),
           _seq(lambda: nn.Conv2d(3, 4, 3), lambda: nn.Flatten(), lambda: nn.Linear(144, 5)), _x(IMG),
           note="flatten must read the conv output in NCHW order"),
    Sample("unsafe_view", ("aten._unsafe_view",), _fn(lambda m, x: aten._unsafe_view(x * 2, [2, 12])), _x((2, 3, 4))),
    Sample("squeeze_unsqueeze", ("aten.squeeze", "aten.unsqueeze"),
           _fn(lambda m, x: x.unsqueeze(1).unsqueeze(-1).squeeze(1) + x[:, :1].squeeze(1)[:, None, :, None]),
           _x((2, 3, 4))),
    Sample("permute_transpose_t", ("aten.permute", "aten.transpose.int", "aten.t"),
           _fn(lambda m, x, y: (x.permute(2, 0, 1) * 2, x.transpose(0, 2).transpose(1, 2), y.t() + 1)),
           _x((2, 3, 4), (3, 5))),
    Sample("permute_after_conv", ("aten.conv2d", "aten.permute", "aten.view"),
           _fn(lambda m, x: m.conv(x).permute(0, 2, 3, 1).reshape(2, -1, 4), conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG)),
    Sample("cat_concat_stack", ("aten.cat", "aten.concat", "aten.stack"),
           _fn(lambda m, x, y: (torch.cat([x, y], 1), torch.concat([x, m.c.expand(2, 1, 4)], dim=1),
                                torch.stack([x, x * 2], -1), torch.stack([x, x], 0)),
               c=lambda: torch.randn(1, 1, 4)),
           _x((2, 3, 4), (2, 2, 4))),
    Sample("cat_after_conv", ("aten.conv2d", "aten.cat"),
           _fn(lambda m, x: torch.cat([m.a(x), m.b(x), m.c], 1),
               a=lambda: nn.Conv2d(3, 4, 3, padding=1), b=lambda: nn.Conv2d(3, 2, 1),
               c=lambda: torch.randn(2, 1, 8, 8)),
           _x(IMG), note="channel concat of channels-last values and a constant"),
    Sample("split_chunk_unbind", ("aten.split", "aten.split_with_sizes", "aten.unbind"),
           _fn(lambda m, x: (*torch.split(x, 3, dim=2), *torch.split(x, [1, 2], dim=1), *torch.chunk(x, 2, dim=0),
                             *torch.unbind(x, 1))),
           _x((2, 3, 5)), note="chunk exports as split"),
    Sample("split_after_conv", ("aten.conv2d", "aten.split"),
           _fn(lambda m, x: torch.chunk(m.conv(x), 2, 1)[1] * 2, conv=lambda: nn.Conv2d(3, 4, 3)), _x(IMG)),
    Sample("slice_select", ("aten.slice.Tensor", "aten.select.int"),
           _fn(lambda m, x: (x[:, 1:], x[..., ::2], x[:, -2:, 1:3], x[:, 1], x[-1], x[:, :, -1], x[:, ::2, 1::2],
                             torch.narrow(x, 2, 1, 2), torch.tensor_split(x, 3, dim=2)[2])),
           _x((2, 4, 5)), note="narrow and tensor_split export as slice"),
    Sample("slice_after_conv", ("aten.conv2d", "aten.slice.Tensor", "aten.select.int"),
           _fn(lambda m, x: (m.conv(x)[:, 1:3], m.conv(x)[:, ::2, 1:], m.conv(x)[:, 2]),
               conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG)),
    Sample("index_tensor", ("aten.index.Tensor",),
           _fn(lambda m, x, i: (x[:, torch.tensor([0, 2, -1])], x[i], x[:, :, m.idx]),
               idx=lambda: torch.tensor([[4, 0], [1, 1]])),
           lambda: (torch.randn(3, 4, 5), torch.tensor([2, 0, 1, 0]))),
    Sample("index_select_gather", ("aten.index_select", "aten.gather"),
           _fn(lambda m, x, i: (torch.index_select(x, 1, torch.tensor([3, 0, 0])), torch.gather(x, 2, i),
                                torch.gather(x, 1, i[:, :2, :2]))),
           lambda: (torch.randn(2, 4, 5), torch.randint(0, 4, (2, 4, 3))),
           note="gather's index may be smaller than the input in the other dimensions"),
    Sample("expand_repeat", ("aten.expand", "aten.repeat", "aten.repeat_interleave.self_int",
                             "aten.repeat_interleave.self_Tensor"),
           _fn(lambda m, x: (x[:, :1].expand(2, 4, 3), x.expand(3, 2, 1, 3), x.repeat(1, 2, 2), x.repeat(2, 1, 1, 1),
                             x.repeat_interleave(2, dim=1),
                             torch.repeat_interleave(x, torch.tensor([1, 0, 2]), dim=2, output_size=3))),
           _x((2, 1, 3)), note="tensor repeats need output_size, or the exported length is data-dependent"),
    Sample("pad", ("aten.pad",),
           _fn(lambda m, x: (F.pad(x, (1, 2)), F.pad(x, (1, 0, 0, 2), value=-1.0), F.pad(x, (2, 1), mode="reflect"),
                             F.pad(x, (2, 3), mode="replicate"), F.pad(x, (1, 2), mode="circular"))),
           _x((2, 3, 5))),
    Sample("pad_2d_after_conv", ("aten.conv2d", "aten.pad"),
           _fn(lambda m, x: (F.pad(m.conv(x), (1, 2, 0, 1)), F.pad(m.conv(x), (1, 1, 2, 0), mode="reflect"),
                             nn.functional.pad(m.conv(x), (0, 0, 1, 1), mode="replicate")),
               conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG)),
    Sample("conv2d_padding_modes", ("aten.pad", "aten.conv2d"),
           _seq(lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"),
                lambda: nn.Conv2d(4, 4, 3, padding=(2, 1), padding_mode="reflect")), _x(IMG)),
    Sample("reflection_replication_pads", ("aten.conv2d", "aten.reflection_pad1d", "aten.reflection_pad2d",
                                           "aten.replication_pad1d", "aten.replication_pad2d", "aten.reflection_pad3d",
                                           "aten.replication_pad3d"),
           _fn(lambda m, x: (aten.reflection_pad2d(m.conv(x), [1, 2, 2, 0]), aten.replication_pad2d(m.conv(x), [0, 3, 1, 1]),
                             aten.reflection_pad1d(x[:, 0], [2, 1]), aten.replication_pad1d(x[:, 0], [1, 3]),
                             aten.reflection_pad3d(x[None], [1, 1, 0, 2, 1, 0]),
                             aten.replication_pad3d(x[None], [2, 0, 1, 1, 0, 1])),
               conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG), note="called directly: they appear in graphs decomposed to core ATen"),
    Sample("constant_pad_nd", ("aten.constant_pad_nd",),
           _fn(lambda m, x: aten.constant_pad_nd(x, [1, 2, 0, 1], 0.5)), _x((2, 3, 5)),
           note="called directly: F.pad exports as aten.pad"),
    Sample("upsample_nearest", ("aten.conv2d", "aten.upsample_nearest2d", "aten._upsample_nearest_exact2d",
                                "aten.upsample_nearest1d", "aten.upsample_nearest3d", "aten._upsample_nearest_exact1d",
                                "aten._upsample_nearest_exact3d"),
           _fn(lambda m, x: (F.interpolate(m.conv(x), scale_factor=2), F.interpolate(m.conv(x), size=(5, 13)),
                             F.interpolate(x, scale_factor=1.7), F.interpolate(x, size=(3, 11), mode="nearest-exact"),
                             F.interpolate(x[:, 0], scale_factor=3), F.interpolate(x[None], size=(3, 4, 12)),
                             F.interpolate(x[:, 0], size=13, mode="nearest-exact"),
                             F.interpolate(x[None], scale_factor=(1, 0.5, 1.5), mode="nearest-exact")),
               conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG), note="upsampling and downsampling, integer and fractional factors"),
    Sample("upsample_linear", ("aten.conv2d", "aten.upsample_bilinear2d", "aten.upsample_linear1d",
                               "aten.upsample_trilinear3d"),
           _fn(lambda m, x: (F.interpolate(m.conv(x), scale_factor=2, mode="bilinear"),
                             F.interpolate(m.conv(x), size=(9, 4), mode="bilinear", align_corners=True),
                             F.interpolate(x, scale_factor=1.5, mode="bilinear"),
                             F.interpolate(x, size=(3, 5), mode="bilinear"),
                             F.interpolate(x[:, 0], scale_factor=2.5, mode="linear", align_corners=True),
                             F.interpolate(x[None], size=(2, 6, 10), mode="trilinear")),
               conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG), note="half-pixel centres clamped at 0 (torch) and align_corners=True"),
    Sample("pixel_shuffle_unshuffle", ("aten.conv2d", "aten.pixel_shuffle", "aten.pixel_unshuffle", "aten.add"),
           _fn(lambda m, x: (F.pixel_shuffle(m.conv(x), 2), F.pixel_unshuffle(x, 2) + m.conv(x)[:, :12, ::2, ::2],
                             F.pixel_shuffle(m.conv(x).permute(0, 1, 3, 2) * 2, 2)),
               conv=lambda: nn.Conv2d(3, 12, 3, padding=1)),
           _x((2, 3, 6, 8)), tol=1e-6, note="after a conv (channels-last), on a raw input, and after a permute"),
    Sample("tril_triu_cumsum", ("aten.tril", "aten.triu", "aten.cumsum"),
           _fn(lambda m, x: (x.tril(), torch.tril(x, -1), x.triu(1), torch.triu(x, -2), x.cumsum(1), x.cumsum(-1),
                             torch.cumsum(x, 0))),
           _x((2, 4, 5))),
    # ---- recurrent ------------------------------------------------------------------------------
    Sample("lstm_stacked_bidirectional_time_major", ("aten.lstm.input",),
           lambda: nn.LSTM(4, 5, num_layers=2, bidirectional=True), _x((7, 2, 4)),
           note="returns output, (h_n, c_n); zero initial states fold to constants"),
    Sample("lstm_batch_first_given_states", ("aten.lstm.input",),
           _fn(lambda m, x, h, c: m.rnn(x, (h, c)), rnn=lambda: nn.LSTM(4, 5, batch_first=True)),
           _x((2, 7, 4), (1, 2, 5), (1, 2, 5))),
    Sample("gru_stacked_batch_first", ("aten.gru.input",),
           lambda: nn.GRU(4, 5, num_layers=2, batch_first=True), _x((2, 7, 4)),
           note="torch gates r|z|n, Keras z|r|h: kernels and biases go through a gate reorder"),
    Sample("gru_bidirectional_given_state_no_bias", ("aten.gru.input",),
           _fn(lambda m, x, h: m.rnn(x, h), rnn=lambda: nn.GRU(4, 5, bidirectional=True, bias=False)),
           _x((7, 2, 4), (2, 2, 5))),
    Sample("rnn_tanh_bidirectional", ("aten.rnn_tanh.input",),
           lambda: nn.RNN(4, 5, bidirectional=True, batch_first=True), _x((2, 7, 4))),
    Sample("rnn_relu_stacked_given_state", ("aten.rnn_relu.input",),
           _fn(lambda m, x, h: m.rnn(x, h), rnn=lambda: nn.RNN(4, 5, num_layers=2, nonlinearity="relu")),
           _x((7, 2, 4), (2, 2, 5))),
    # ---- attention ------------------------------------------------------------------------------
    Sample("sdpa_causal", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
           _x((2, 2, 5, 4), (2, 2, 5, 4), (2, 2, 5, 4))),
    Sample("sdpa_causal_rectangular_scaled", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)),
           _x((2, 2, 3, 4), (2, 2, 6, 4), (2, 2, 6, 4))),
    Sample("sdpa_bool_mask", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)),
           lambda: (torch.randn(2, 2, 5, 4), torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4),
                    torch.rand(2, 1, 5, 6) > 0.3)),
    Sample("sdpa_float_mask", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=m.bias),
               bias=lambda: torch.randn(5, 6)),
           _x((2, 2, 5, 4), (2, 2, 6, 4), (2, 2, 6, 4))),
    Sample("sdpa_bool_mask_buffer", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=m.keep),
               keep=lambda: torch.rand(5, 6) > 0.3),
           _x((2, 2, 5, 4), (2, 2, 6, 4), (2, 2, 6, 4))),
    Sample("sdpa_many_heads_batched_einsum", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
           _x((2, 9, 5, 4), (2, 9, 5, 4), (2, 9, 5, 4)), note="more heads than attention is unrolled for"),
    Sample("sdpa_gqa", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)),
           _x((2, 4, 5, 4), (2, 2, 5, 4), (2, 2, 5, 4))),
    Sample("sdpa_gqa_bool_mask", ("aten.scaled_dot_product_attention",),
           _fn(lambda m, q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)),
           lambda: (torch.randn(2, 6, 5, 4), torch.randn(2, 2, 7, 4), torch.randn(2, 2, 7, 4),
                    torch.rand(2, 1, 5, 7) > 0.3)),
    Sample("sdpa_repeated_kv_heads", ("aten.repeat_interleave.self_int", "aten.scaled_dot_product_attention"),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(
               q, k.repeat_interleave(3, dim=1), v.repeat_interleave(3, dim=1), is_causal=True)),
           _x((2, 6, 5, 4), (2, 2, 5, 4), (2, 2, 5, 4)), note="grouped-query attention as HF's repeat_kv"),
    Sample("sdpa_repeated_kv_per_head_mask", ("aten.repeat_interleave.self_int", "aten.scaled_dot_product_attention"),
           _fn(lambda m, q, k, v: F.scaled_dot_product_attention(
               q, k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1), attn_mask=m.bias),
               bias=lambda: torch.randn(4, 5, 6)),
           _x((2, 4, 5, 4), (2, 2, 6, 4), (2, 2, 6, 4)), note="a per-head mask keeps the repeated heads"),
    # ---- compositions: layouts carried through several ops ----------------------------------------
    Sample("convnext_block",
           ("aten.conv2d", "aten.permute", "aten.layer_norm", "aten.linear", "aten.gelu", "aten.add"),
           _fn(lambda m, x: x + m.mlp(m.dw(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
               dw=lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4),
               mlp=_seq(lambda: nn.LayerNorm(4), lambda: nn.Linear(4, 8), lambda: nn.GELU(), lambda: nn.Linear(8, 4))),
           _x((2, 4, 6, 6))),
    # ---- open sizes: batch and sequence captured symbolic (converters.torch_to_keras.symbolic) --------
    Sample("factories_of_open_sizes",
           ("aten.arange", "aten.full", "aten.eye",
            "aten.zeros", "aten.ones", "aten.empty", "aten.fill.Scalar", "aten.zeros_like", "aten.ones_like",
            "aten.full_like", "aten.empty_like", "aten.new_zeros", "aten.new_ones", "aten.new_full",
            "aten.new_empty"),
           _fn(lambda m, x: _sized_tensors(x)), _x((2, 5, 3)), open_axes=({0: "batch", 1: "seq"},),
           resized=_x((3, 9, 3))),
    Sample("open_seq_views_and_cut_table",
           ("aten.view", "aten.slice.Tensor", "aten.expand", "aten.select.int", "aten.linear"),
           _fn(lambda m, x: (m.proj(x).view(x.shape[0], x.shape[1], 2, 4) * m.table[: x.shape[1], None, :]
                             ).reshape(x.shape[0], x.shape[1], 8)[:, -1] + m.bias.expand(x.shape[0], 8),
               proj=lambda: nn.Linear(6, 8), table=lambda: torch.randn(32, 4), bias=lambda: torch.randn(1, 8)),
           _x((2, 5, 6)), open_axes=({0: "batch", 1: "seq"},), resized=_x((4, 11, 6)),
           note="two open sizes through a reshape, a rotary-style table cut to the sequence"),
    Sample("attention_block",
           ("aten.linear", "aten.view", "aten.transpose.int", "aten.scaled_dot_product_attention"),
           _fn(lambda m, x: m.o(F.scaled_dot_product_attention(
               *(t.view(2, 5, 2, 4).transpose(1, 2) for t in m.qkv(x).split(8, dim=-1)), is_causal=True,
           ).transpose(1, 2).reshape(2, 5, 8)),
               qkv=lambda: nn.Linear(8, 24), o=lambda: nn.Linear(8, 8)),
           _x((2, 5, 8)), note="head split and merge around attention"),
    # ---- core ATen: sorting, scatter and strided views (sorting.py, scatter.py, strided.py) ----------
    Sample("sort_stable_ties_nan_ints", ("aten.sort",),
           _fn(lambda m, t, y, i: (torch.sort(t, dim=1, descending=True, stable=True), torch.sort(t, stable=True),
                                   torch.sort(y, 0), y.sort(-1, descending=True),
                                   torch.sort(torch.cat([t[0], m.special]), dim=0, stable=True),
                                   torch.sort(torch.cat([t[0], m.special]), dim=0, descending=True, stable=True),
                                   torch.sort(torch.cat([i, m.extremes]), dim=-1, descending=True, stable=True),
                                   torch.sort(torch.cat([i, m.extremes]), dim=0, stable=True)),
               special=lambda: torch.tensor([[float("nan"), -0.0, float("inf"), 1.0],
                                             [0.0, -float("inf"), float("nan"), -0.0]]),
               extremes=lambda: torch.tensor([[-2 ** 63, 2 ** 63 - 1, 0, -1, 2, -2 ** 63]])),
           lambda: (torch.randint(0, 3, (2, 5, 4)).float(), torch.randn(3, 4, 5), torch.randint(-3, 3, (3, 6))),
           tol=1e-6, note="ties keep index order (stable=True); NaN sorts above +inf, -0.0 ties +0.0; int64 extremes"),
    Sample("topk_largest_smallest_any_dim", ("aten.conv2d", "aten.topk", "aten.sort"),
           _fn(lambda m, x, y: (torch.topk(y, 3, dim=1), torch.topk(y, 2, dim=-1, largest=False), torch.topk(y, 1, 0),
                                torch.topk(m.conv(x), 2, dim=1), torch.topk(m.conv(x), 3, dim=2, largest=False),
                                torch.topk(y, 4, dim=-1, sorted=False).values.sort(-1).values,
                                torch.topk(torch.cat([y[0], m.special]), 2, dim=0),
                                torch.topk(torch.cat([y[0], m.special]), 2, dim=0, largest=False)),
               conv=lambda: nn.Conv2d(3, 4, 3),
               special=lambda: torch.tensor([[float("nan"), float("inf"), -float("inf"), 0.0, 1.0, -5.0]])),
           _x(IMG, (3, 5, 6)), tol=1e-6,
           note="sorted=False promises no order, so that result is compared sorted; NaN counts as the largest"),
    Sample("nonzero_data_dependent_length", ("aten.nonzero",),
           _fn(lambda m, x, i: (torch.nonzero(x > 0.3), torch.nonzero(i), torch.nonzero(x[0, 0] < 0))),
           lambda: (torch.randn(2, 3, 4), torch.randint(-1, 2, (3, 5))), tol=1e-6,
           note="the row count is data-dependent: an open dim of the Keras output"),
    Sample("scatter_src_value_and_reduce", ("aten.scatter", "aten.scatter_add"),
           _fn(lambda m, x, src, p, d: (x.scatter(1, p[:, :3], src), x.scatter(1, p, 2.5), x.scatter(1, m.idx, src),
                                        x.scatter(0, d[:, :4] % 3, src, reduce="add"),
                                        x.scatter(1, d, 1.5, reduce="multiply"),
                                        x.scatter(1, d, src, reduce="multiply"),
                                        x.scatter_add(1, d, src), torch.scatter_add(x, 0, d[:2, :4] % 3, src * 2)),
               idx=lambda: torch.tensor([[4, 0], [1, 3], [0, 2]])),
           lambda: (torch.randn(3, 5), torch.randn(4, 6), torch.stack([torch.randperm(5) for _ in range(3)]),
                    torch.randint(0, 5, (3, 5))),
           tol=1e-6, note="plain scatter with unique indices (torch's order for duplicates is undefined); "
                          "the reductions take duplicates"),
    Sample("scatter_reduce_every_reduction", ("aten.scatter_reduce",),
           _fn(lambda m, x, src, d, i, isrc, z, dz: tuple(
               aten.scatter_reduce(x, 1, d, src, r, include_self=s)
               for r in ("sum", "prod", "mean", "amax", "amin") for s in (True, False)) + tuple(
               aten.scatter_reduce(x, 1, d, src * m.nan, r, include_self=s)
               for r in ("amax", "amin") for s in (True, False)
           ) + tuple(aten.scatter_reduce(i, 1, d, isrc, r, include_self=s)
                     for r in ("mean", "amax", "amin", "prod") for s in (True, False)) + (
               aten.scatter_reduce(z, 2, dz, z * 3, "sum"), aten.scatter_reduce(z, 0, dz % 2, z, "amin")),
               nan=lambda: torch.tensor([[1.0, float("nan"), 1.0, 1.0, 1.0, 1.0]] * 3)),
           lambda: (torch.randn(3, 5), torch.randn(3, 6), torch.randint(0, 5, (3, 4)), torch.randint(-9, 9, (3, 5)),
                    torch.randint(-9, 9, (3, 4)), torch.randn(2, 3, 4), torch.randint(0, 4, (2, 3, 3))),
           tol=1e-6, note="duplicate indices combine; include_self=False leaves untouched elements as they are; "
                          "NaN propagates through amax/amin; an integer mean floor-divides"),
    Sample("index_put_indices_masks_accumulate", ("aten.index_put",),
           _fn(lambda m, x, v, i, j, y, z: (
               aten.index_put(x, [i], v, True), aten.index_put(x, [None, m.cols], y[:2]),
               aten.index_put(x, [j, m.cols[:1]], v[:3]), aten.index_put(x, [m.rows_neg], v),
               aten.index_put(z, [m.a, None, m.b], z[0, :, 0], True), aten.index_put(z, [None, m.cols[:1], m.b], y[:1]),
               aten.index_put(x, [m.mask], y), aten.index_put(x, [m.row_mask], v, True),
               aten.index_put(x, [x > 0], m.three), aten.index_put(x, [x[:, 0] > 0], v, True),
               aten.index_put(z, [None, z[0, :, 0] > 0], m.three, True)),
               cols=lambda: torch.tensor([3, 0]), rows_neg=lambda: torch.tensor([-1, 0, -3]),
               a=lambda: torch.tensor([2, 0, 2]), b=lambda: torch.tensor([4, 1, 4]),
               mask=lambda: torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]).bool(),
               row_mask=lambda: torch.tensor([False, True, False, True, False]), three=lambda: torch.tensor(3.0)),
           lambda: (torch.randn(5, 4), torch.randn(4), torch.randint(-5, 5, (6,)), torch.randperm(5)[:3],
                    torch.randn(5), torch.randn(3, 4, 5)),
           tol=1e-6, note="None entries, broadcast values, negative and duplicate (accumulated) indices, index "
                          "tensors on non-adjacent dims, constant masks, masks from the inputs with shared values"),
    Sample("select_slice_scatter_open_batch", ("aten.select_scatter", "aten.slice_scatter"),
           _fn(lambda m, x, y: (torch.select_scatter(x, y[:, 0], 1, 0), torch.select_scatter(x, y[:, :, 1] * 2, 2, -1),
                                torch.slice_scatter(x, y[:, ::2], 1, 0, None, 2),
                                torch.slice_scatter(x, y[:, :, :3], 2, 1, 4),
                                torch.slice_scatter(x, y[:, :, 1:3], -1, -2),
                                torch.slice_scatter(x, y[:, 1:3], 1, 1, 5, 2))),
           _x((2, 4, 5), (2, 4, 5)), tol=1e-6, open_axes=({0: "batch"}, {0: "batch"}),
           resized=_x((3, 4, 5), (3, 4, 5))),
    Sample("masked_scatter_broadcast_masks", ("aten.masked_scatter",),
           _fn(lambda m, x, s: (x.masked_scatter(x > 0, s), x.masked_scatter(m.rows, s.reshape(4, 5) * 2),
                                x.masked_scatter(x[0] < 0, s)),
               rows=lambda: torch.tensor([[True], [False], [True]])),
           _x((3, 4), (20,)), tol=1e-6, note="the i-th True element takes source's i-th element in row-major order"),
    Sample("diagonal_offsets_and_dims", ("aten.conv2d", "aten.diagonal"),
           _fn(lambda m, x, y: (torch.diagonal(y), torch.diagonal(y, 1, 1, 2), torch.diagonal(y, -1, 2, 0),
                                torch.diagonal(y, 2, -1, -2), torch.diagonal(m.conv(x), 1, 2, 3),
                                torch.diagonal(m.conv(x), -2, 3, 1), torch.diagonal(m.conv(x), 0, 0, 1)),
               conv=lambda: nn.Conv2d(3, 4, 3)),
           _x(IMG, (3, 4, 5)), tol=1e-6, note="a channels-last conv output's dims map through its layout"),
    Sample("as_strided_contiguous", ("aten.as_strided",),
           _fn(lambda m, x: (torch.as_strided(x, (2, 2), (1, 2), 1), torch.as_strided(x * 2, (3, 3, 2), (4, 1, 0)),
                             torch.as_strided(x[1:], (2, 3), (4, 1)), torch.as_strided(x[1:], (2, 3), (4, 1), 5),
                             x.flatten().as_strided((5, 4), (2, 1)))),
           _x((3, 4)), tol=1e-6, note="a view of a slice reads from the slice's own storage offset"),
    # (end of sorting/scatter/strided samples)
    # ---- core ATen: norms, sampling, distances, bags, folds (norm.py, sampling.py, distance.py, ...) ---
    Sample("native_layer_norm_with_statistics", ("aten.native_layer_norm",),
           _fn(lambda m, x: (*aten.native_layer_norm(x, [6], m.w, m.b, 1e-5),
                             *aten.native_layer_norm(x * 3 + 1, [3, 6], None, None, 1e-3)[::2]),
               w=_param(6), b=_param(6)),
           _x((2, 3, 6)), tol=1e-6, note="mean and rstd keep the normalised dims as 1s"),
    Sample("native_group_norm_with_statistics_after_conv", ("aten.conv2d", "aten.native_group_norm"),
           _fn(lambda m, x, y: (*aten.native_group_norm(m.conv(x), m.w, m.b, 2, 6, 36, 3, 1e-5),
                                aten.native_group_norm(y, None, None, 2, 4, 5, 2, 1e-3)[0],
                                aten.native_group_norm(y, None, m.c, 2, 4, 5, 4, 1e-5)[2]),
               conv=lambda: nn.Conv2d(3, 6, 3), w=_param(6), b=_param(6), c=_param(4)),
           _x(IMG, (2, 4, 5)), tol=1e-6, note="the conv output is channels-last; mean and rstd are (N, group)"),
    Sample("batch_norm_batch_statistics",
           ("aten.conv2d", "aten._native_batch_norm_legit", "aten._native_batch_norm_legit_functional"),
           _fn(lambda m, x, y: (m.bn(m.conv(x)), *aten._native_batch_norm_legit.no_stats(y, m.w, None, True, 0.1, 1e-5),
                                *aten._native_batch_norm_legit_functional(m.conv(x), m.w, m.b, m.rm, m.rv, True, 0.3,
                                                                          1e-3),
                                *aten._native_batch_norm_legit_functional(y, None, m.b, m.rm, m.rv, False, 0.1,
                                                                          1e-5)[::3]),
               conv=lambda: nn.Conv2d(3, 4, 3), bn=lambda: nn.BatchNorm2d(4, track_running_stats=False),
               w=_param(4), b=_param(4), rm=lambda: torch.randn(4), rv=lambda: torch.rand(4) + 0.5),
           _x(IMG, (2, 4, 3, 4)), tol=1e-6,
           note="training=True (and track_running_stats=False) normalise with the batch's own statistics; the "
                "functional form also returns the updated running statistics; (2, 4, 3, 4) has C = W, where "
                "keras.ops.add on TensorFlow would take a per-channel add for a bias_add along the last axis"),
    Sample("copy_broadcast_and_cast", ("aten.conv2d", "aten.copy"),
           _fn(lambda m, x, y, i: (aten.copy(y, y[0, 0]), aten.copy(i, y * 4), aten.copy(m.conv(x), m.conv(x) * 2),
                                   aten.copy(y, m.c), y.clone().copy_(y[:, :1] * 3), aten.copy(i > 0, y)),
               conv=lambda: nn.Conv2d(3, 4, 3), c=lambda: torch.randn(3, 1)),
           lambda: (torch.randn(IMG), torch.randn(2, 3, 3), torch.randint(-5, 5, (2, 3, 3))), tol=1e-6,
           note="src broadcast to self's shape and cast to its dtype (float to int truncates); (3, 1) into "
                "(2, 3, 3) is the broadcast keras.ops.add would misread as a bias_add"),
    Sample("grid_sample_every_mode_padding_and_alignment", ("aten.conv2d", "aten.grid_sampler_2d", "aten.grid_sampler"),
           _fn(lambda m, x, g: (*(aten.grid_sampler_2d(m.conv(x), g, mode, padding, align)
                                  for mode in (0, 1, 2) for padding in (0, 1, 2) for align in (False, True)),
                                F.grid_sample(x, g * 0.5, mode="bilinear", align_corners=False)),
               conv=lambda: nn.Conv2d(3, 2, 3, padding=(1, 0))),
           lambda: (torch.randn(2, 3, 5, 8), torch.rand(2, 4, 7, 2) * 3 - 1.5), tol=1e-6,
           note="grid points up to 1.5 outside the image exercise every padding mode"),
    Sample("adaptive_avg_pool3d_aten", ("aten._adaptive_avg_pool3d",),
           _fn(lambda m, x: (aten._adaptive_avg_pool3d(x, [2, 3, 4]), aten._adaptive_avg_pool3d(x, [1, 1, 1]),
                             aten._adaptive_avg_pool3d(x, [3, 2, 3]))),
           _x((2, 3, 3, 5, 6)), tol=1e-6, note="called directly: F.adaptive_avg_pool3d exports as adaptive_avg_pool3d"),
    Sample("cdist_pdist_every_p", ("aten.cdist", "aten._cdist_forward", "aten.pdist", "aten._pdist_forward"),
           _fn(lambda m, x, y, z: (torch.cdist(x, y), torch.cdist(x, y, p=1), torch.cdist(x, y, p=float("inf")),
                                   torch.cdist(x, y, p=0.5), torch.cdist(x, y[0], p=3),
                                   torch.cdist(x, y, compute_mode="use_mm_for_euclid_dist"),
                                   torch.cdist(z, y[0]),
                                   torch.cdist(z, y[0], compute_mode="donot_use_mm_for_euclid_dist"),
                                   aten._cdist_forward(x, y, 2.0, None), aten._cdist_forward(x, y, 0.0, 2),
                                   F.pdist(z), F.pdist(x[0], p=1), aten._pdist_forward(z, float("inf")),
                                   aten._pdist_forward(x[1], 1.5))),
           _x((2, 4, 3), (2, 5, 3), (30, 3)), tol=1e-6,
           note="p=2 takes torch's matmul form above 25 points (z) or when asked, the difference form otherwise"),
    Sample("embedding_bag_modes_offsets_padding", ("aten.embedding_bag", "aten._embedding_bag"),
           _fn(lambda m, i, o, w: (m.bag_sum(i, o, per_sample_weights=w), m.bag_mean(i, torch.cat([o, m.end])),
                                   m.bag_max(i.view(2, 4)), aten._embedding_bag(m.table, i, m.o, False, 2, False, None,
                                                                            False, 2)[0],
                                   aten._embedding_bag(m.table, i, o, False, 1, False, None, False, -1)[0]),
               bag_sum=lambda: nn.EmbeddingBag(10, 3, mode="sum"),
               bag_mean=lambda: nn.EmbeddingBag(10, 3, mode="mean", include_last_offset=True, padding_idx=4),
               bag_max=lambda: nn.EmbeddingBag(10, 3, mode="max", padding_idx=2),
               table=lambda: torch.randn(10, 3), o=lambda: torch.tensor([0, 3, 3, 6]), end=lambda: torch.tensor([8])),
           lambda: (torch.tensor([1, 2, 4, 5, 4, 3, 2, 2]), torch.tensor([0, 2, 2, 5]), torch.rand(8)), tol=1e-6,
           note="offsets as an input and as constants, an empty bag, a bag of padding only (max: zeros)"),
    Sample("fold_col2im", ("aten.col2im", "aten.conv2d"),
           _fn(lambda m, x, y: (m.conv(F.fold(x, (5, 6), (2, 3), dilation=(1, 2), padding=(1, 0), stride=(2, 1))),
                                F.fold(y, (4, 4), 2, stride=2), F.fold(y[0], (3, 3), 2),
                                F.fold(y, (3, 3), 2, padding=1, stride=2)),
               conv=lambda: nn.Conv2d(2, 3, 1)),
           _x((2, 12, 6), (2, 8, 4)), tol=1e-6, note="overlapping, strided, dilated and padded blocks; unbatched"),
    Sample("scalar_tensor_empty_strided_of_open_sizes",
           ("aten.scalar_tensor", "aten.empty_strided", "aten.fill.Scalar"),
           _fn(lambda m, x: x * torch.scalar_tensor(x.shape[1])
               + torch.empty_strided((x.shape[0], x.shape[1]), (x.shape[1], 1)).fill_(2.0)[..., None]),
           _x((2, 5, 3)), open_axes=({0: "batch", 1: "seq"},), resized=_x((3, 7, 3)), tol=1e-6,
           note="with fixed sizes both fold to constants; an open size is read at run time"),
    # (end of core numeric samples)
]
