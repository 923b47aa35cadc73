"""The ONNX → torch converters against ONNX's own node conformance cases (onnx.backend.test.case.node), plus
the layers they are meant to produce on models torch itself exports, checked against onnxruntime.

Each conformance case is one small model with input and expected output arrays. The case's model is
converted in memory; inputs the converter needs at conversion time (a Reshape's shape, a weight, Resize
scales: values real models carry as initializers) are made initializers, exactly those the converter names,
and never all of them — at least one input stays a run-time input, so the converted op really runs. Outputs
are compared at the case's own tolerance (ONNX's runner: rtol 1e-3, atol 1e-7), shape and dtype exactly.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest

from porttax._frameworks import import_torch

torch = import_torch()

import onnx  # noqa: E402  (after torch: the import order porttax._frameworks keeps)
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from porttax.converters.onnx_to_torch.context import NeedsConstant, to_torch  # noqa: E402
from porttax.converters.onnx_to_torch.driver import convert_onnx_model  # noqa: E402
from porttax.errors import UnsupportedError  # noqa: E402


@functools.cache
def _cases() -> dict:
    """ONNX's node cases by name, collected once per session (collecting takes a few seconds)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cases' own generators warn about casts they mean to overflow
        return {case.name: case for case in collect_testcases()}


def _walk(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for body in ([attr.g] if attr.type == attr.GRAPH else list(attr.graphs)):
                yield from _walk(body)


def _graph_inputs_behind(model, value: str) -> set[str]:
    """The graph inputs `value` is computed from, not through Shape/Size (static here), bodies included."""
    inputs = {i.name for i in model.graph.input}
    producer = {out: node for node in _walk(model.graph) for out in node.output}
    found, todo, seen = set(), [value], set()
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in inputs:
            found.add(name)
            continue
        node = producer.get(name)
        if node is None or node.op_type in ("Shape", "Size"):
            continue
        todo.extend(node.input)
        for attr in node.attribute:
            for body in ([attr.g] if attr.type == attr.GRAPH else list(attr.graphs)):
                todo.extend(i for inner in _walk(body) for i in inner.input)
    return found


def _with_initializers(model, names: set[str], arrays: dict):
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    kept = [i for i in frozen.graph.input if i.name not in names]
    frozen.graph.initializer.extend(numpy_helper.from_array(arrays[n], n) for n in sorted(names))
    del frozen.graph.input[:]
    frozen.graph.input.extend(kept)
    return frozen


def _array(value) -> np.ndarray:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


def convert_case(case):
    """(converted module, its inputs as tensors, expected outputs) for one conformance case."""
    inputs, expected = case.data_sets[0]
    arrays = {i.name: _array(a) for i, a in zip(case.model.graph.input, inputs)}
    frozen: set[str] = set()
    while True:
        model = _with_initializers(case.model, frozen, arrays)
        try:
            conversion = convert_onnx_model(model, name=case.name)
            break
        except NeedsConstant as exc:
            more = _graph_inputs_behind(model, exc.input_name) - frozen
            if not more:
                raise
            frozen |= more
    assert set(arrays) - frozen, f"{case.name}: every input had to be fixed; the op would only be folded"
    feeds = [to_torch(arrays[name]) for name in conversion.input_names]
    return conversion.module, feeds, [_array(e) for e in expected]


def _numpy(tensor) -> np.ndarray:
    if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2,
                        torch.float8_e5m2fnuz):
        import ml_dtypes

        bits = tensor.view(torch.uint8 if tensor.element_size() == 1 else torch.int16).numpy()
        return bits.view(getattr(ml_dtypes, str(tensor.dtype).removeprefix("torch.")))
    return tensor.numpy()


def check_case(name: str) -> float:
    """Convert and run case `name`, assert it matches; the largest absolute error over its outputs."""
    case = _cases()[name]
    module, feeds, expected = convert_case(case)
    with torch.no_grad():
        got = module(*feeds)
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(expected), f"{name}: {len(got)} outputs, expected {len(expected)}"
    worst = 0.0
    for k, (out, ref) in enumerate(zip(got, expected)):
        out = _numpy(out)
        assert out.shape == ref.shape, f"{name} output {k}: shape {out.shape}, expected {ref.shape}"
        assert out.dtype == ref.dtype, f"{name} output {k}: dtype {out.dtype}, expected {ref.dtype}"
        if ref.dtype.kind in "biu":
            np.testing.assert_array_equal(out, ref, err_msg=f"{name} output {k}")
            worst = max(worst, float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max(initial=0)))
            continue
        wide, ref_wide = out.astype(np.float64), ref.astype(np.float64)
        rtol = max(case.rtol, 2**-6) if ref.dtype.name == "bfloat16" else case.rtol
        np.testing.assert_allclose(wide, ref_wide, rtol=rtol, atol=case.atol, err_msg=f"{name} output {k}")
        finite = np.isfinite(ref_wide)
        worst = max(worst, float(np.abs(wide[finite] - ref_wide[finite]).max(initial=0)))
    return worst


# A sample of the cases for the ops this registry converts, a few per op (the functions ONNX defines as
# other ops, "_expanded", check the building blocks too). All ~1,880 cases take about 15 s; the count over
# all of them is measured outside the suite.
SAMPLE = {
    "elementwise": ["test_acos", "test_acosh", "test_asin", "test_asinh", "test_atan", "test_atanh", "test_cosh",
                    "test_sinh", "test_tan", "test_celu", "test_celu_expanded", "test_selu", "test_selu_default",
                    "test_shrink_hard", "test_shrink_soft", "test_softsign", "test_thresholdedrelu",
                    "test_thresholdedrelu_default", "test_swish", "test_swiglu_alpha", "test_isinf_negative",
                    "test_mean_two_inputs", "test_prelu_example", "test_prelu_broadcast",
                    "test_clip_default_int8_min", "test_pow_types_int64_float32", "test_det_nd",
                    "test_elu_example_expanded_ver18", "test_softplus_example_expanded_ver18"],
    "unsigned": ["test_add_uint32", "test_sub_uint64", "test_div_uint16", "test_mod_uint32", "test_max_uint64",
                 "test_less_uint64", "test_greater_equal_uint32", "test_bitshift_right_uint64",
                 "test_bitshift_left_uint16", "test_bitwise_and_ui64_bcast_3v1d", "test_bitwise_not_4d",
                 "test_bitwise_xor_i16_3d"],
    "cast": ["test_cast_FLOAT_to_BFLOAT16", "test_cast_FLOAT_to_FLOAT8E4M3FN", "test_cast_FLOAT_to_FLOAT8E5M2FNUZ",
             "test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN", "test_castlike_FLOAT16_to_FLOAT_expanded",
             "test_bitcast_float32_to_int32"],
    "reduce": ["test_reduce_l1_keep_dims_random", "test_reduce_log_sum_asc_axes",
               "test_reduce_log_sum_exp_keepdims_random", "test_reduce_prod_do_not_keepdims_random",
               "test_reduce_max_empty_set", "test_reduce_min_empty_set", "test_reduce_sum_square_empty_set_expanded",
               "test_argmax_keepdims_random_select_last_index", "test_argmin_no_keepdims_example_select_last_index",
               "test_cumsum_1d_reverse_exclusive", "test_cumprod_1d_exclusive", "test_cumsum_2d_int32",
               "test_hardmax_axis_0", "test_hardmax_one_hot"],
    "layers": ["test_convtranspose", "test_convtranspose_1d", "test_convtranspose_3d", "test_convtranspose_pads",
               "test_convtranspose_output_shape", "test_convtranspose_kernel_shape", "test_convtranspose_dilations",
               "test_convtranspose_autopad_same", "test_convtranspose_group_2", "test_instancenorm_epsilon",
               "test_group_normalization_example", "test_group_normalization_epsilon_expanded", "test_lrn",
               "test_lrn_default", "test_l2normalization_axis_1", "test_l1normalization_axis_last", "test_mvn",
               "test_layer_normalization_4d_axis1", "test_batchnorm_epsilon_training_mode"],
    "pooling": ["test_lppool_2d_pads", "test_lppool_2d_dilations", "test_lppool_2d_same_upper",
                "test_averagepool_2d_same_lower", "test_averagepool_2d_pads", "test_averagepool_2d_dilations",
                "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True",
                "test_maxpool_with_argmax_2d_precomputed_strides", "test_maxunpool_export_without_output_shape"],
    "space": ["test_depthtospace_example", "test_depthtospace_crd_mode_example", "test_spacetodepth_example",
              "test_spacetodepth_crd_mode_example", "test_col2im_pads", "test_col2im_5d",
              "test_center_crop_pad_crop_and_pad", "test_center_crop_pad_crop_axes_chw_expanded", "test_edge_pad",
              "test_reflect_pad", "test_wrap_pad"],
    "resize": ["test_resize_upsample_scales_nearest", "test_resize_downsample_scales_nearest",
               "test_resize_upsample_sizes_nearest_floor_align_corners",
               "test_resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric",
               "test_resize_upsample_scales_linear", "test_resize_upsample_scales_linear_align_corners",
               "test_resize_downsample_scales_linear_antialias", "test_resize_upsample_scales_cubic",
               "test_resize_upsample_scales_cubic_A_n0p5_exclude_outside",
               "test_resize_downsample_sizes_cubic_antialias", "test_resize_tf_crop_and_resize",
               "test_resize_tf_crop_and_resize_axes_3_2", "test_resize_downsample_sizes_nearest_not_larger",
               "test_resize_upsample_scales_linear_half_pixel_symmetric", "test_resize_upsample_sizes_cubic",
               "test_upsample_nearest", "test_gridsample_bicubic",
               "test_gridsample_nearest_align_corners_0_additional_1",
               "test_gridsample_volumetric_bilinear_align_corners_1", "test_gridsample_reflection_padding",
               "test_affine_grid_3d_align_corners", "test_affine_grid_2d_expanded"],
    "indexing": ["test_gathernd_example_int32_batch_dim1", "test_gathernd_example_float32", "test_gather_2d_indices",
                 "test_gather_elements_negative_indices", "test_scatternd_multiply", "test_scatternd_max",
                 "test_scatter_elements_with_duplicate_indices", "test_scatter_elements_with_reduction_min",
                 "test_scatter_with_axis", "test_tensorscatter_circular", "test_onehot_negative_indices",
                 "test_onehot_with_axis", "test_top_k_same_values_2d", "test_top_k_smallest", "test_top_k_uint64",
                 "test_nonzero_example", "test_compress_negative_axis", "test_compress_default_axis",
                 "test_unique_not_sorted_without_axis", "test_unique_sorted_with_axis_3d",
                 "test_reversesequence_batch", "test_reversesequence_time"],
    "recurrent": ["test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
                  "test_lstm_batchwise", "test_lstm_reverse", "test_gru_defaults", "test_gru_seq_length",
                  "test_gru_batchwise", "test_gru_reverse", "test_simple_rnn_defaults", "test_rnn_seq_length",
                  "test_simple_rnn_reverse"],
    "quantize": ["test_quantizelinear", "test_quantizelinear_axis", "test_quantizelinear_blocked_asymmetric",
                 "test_quantizelinear_e4m3fn", "test_quantizelinear_int16", "test_dequantizelinear_axis",
                 "test_dequantizelinear_blocked", "test_dequantizelinear_e5m2",
                 "test_dynamicquantizelinear_min_adjusted", "test_dynamicquantizelinear_expanded",
                 "test_matmulinteger", "test_convinteger_with_padding", "test_qlinearmatmul_3D_int8_float32",
                 "test_qlinearconv"],
    "attention": ["test_attention_4d_with_past_and_present", "test_attention_4d_gqa_with_past_and_present",
                  "test_attention_4d_softcap", "test_attention_4d_with_qk_matmul_softmax",
                  "test_attention_4d_with_qk_matmul_bias", "test_attention_local_window",
                  "test_attention_4d_diff_heads_mask4d_padded_kv", "test_attention_causal_boolmask_nan_robustness",
                  "test_attention_3d_causal_bf16", "test_linear_attention_gated_delta_gqa",
                  "test_linear_attention_prefill_with_past", "test_linear_attention_delta_expanded",
                  "test_causal_conv_with_state_with_past_state", "test_causal_conv_with_state_silu"],
    "losses": ["test_nllloss_NCd1d2d3_none_no_weight_negative_ii", "test_nllloss_NCd1_weight_ii",
               "test_nllloss_NCd1d2_with_weight_reduction_mean", "test_sce_mean_weight_ii_3d_log_prob",
               "test_sce_NCd1d2d3d4d5_mean_weight", "test_sce_none_weights_log_prob_expanded"],
    "detection": ["test_nonmaxsuppression_suppress_by_IOU_and_scores", "test_nonmaxsuppression_center_point_box_format",
                  "test_nonmaxsuppression_two_batches", "test_nonmaxsuppression_iou_threshold_boundary",
                  "test_roialign_aligned_true", "test_roialign_aligned_false", "test_deform_conv_with_mask_bias",
                  "test_deform_conv_with_multiple_offset_groups"],
    "spectral": ["test_dft", "test_dft_axis_opset19", "test_dft_rfft", "test_dft_irfft", "test_stft_with_window"],
    "control": ["test_if", "test_loop11", "test_scan9_sum", "test_scan9_multi_state", "test_dropout_default_mask",
                "test_training_dropout_zero_ratio_mask", "test_eyelike_with_dtype", "test_size_example"],
}


@pytest.mark.parametrize("name", [n for names in SAMPLE.values() for n in names])
def test_conformance_case(name: str) -> None:
    check_case(name)


def test_sample_names_exist_and_cover_the_families() -> None:
    """A renamed case must not silently drop out of the sample."""
    names = [n for group in SAMPLE.values() for n in group]
    assert len(names) == len(set(names))
    missing = [n for n in names if n not in _cases()]
    assert not missing, missing


# ---------------------------------------------------------------- what real exports become

def _ort(path: Path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _legacy_export(module, example: tuple, path: Path, names: list[str], outputs: list[str]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module.eval(), example, str(path), dynamo=False, opset_version=17, input_names=names,
                          output_names=outputs)
    return path


def _matches_ort(path: Path, example: tuple, rtol: float = 1e-5) -> object:
    model = onnx.load(str(path))
    conversion = convert_onnx_model(model, name=path.stem)
    feeds = {name: t.numpy() for name, t in zip(conversion.input_names, example)}
    with torch.no_grad():
        got = conversion.module(*example)
    got = got if isinstance(got, (tuple, list)) else [got]
    for out, ref in zip(got, _ort(path, feeds)):
        np.testing.assert_allclose(out.numpy(), ref, rtol=rtol, atol=1e-6)
    return conversion.module


class _Recurrent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(5, 6, bidirectional=True)
        self.gru = torch.nn.GRU(12, 4)

    def forward(self, x):
        y, _ = self.lstm(x)
        z, h = self.gru(y)
        return z, h


def test_exported_lstm_and_gru_become_torch_layers(tmp_path: Path) -> None:
    """torch's exporter writes LSTM (iofc gates) and GRU (zrh, linear_before_reset=1): they come back as
    nn.LSTM (bidirectional) and nn.GRU with the gates reordered, matching onnxruntime."""
    torch.manual_seed(0)
    example = (torch.randn(7, 2, 5),)
    path = _legacy_export(_Recurrent(), example, tmp_path / "rnn.onnx", ["x"], ["z", "h"])
    module = _matches_ort(path, example)
    kinds = {type(m) for m in module.modules()}
    assert torch.nn.LSTM in kinds and torch.nn.GRU in kinds, kinds
    lstm = next(m for m in module.modules() if isinstance(m, torch.nn.LSTM))
    assert lstm.bidirectional and lstm.hidden_size == 6


class _Decoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.act = torch.nn.PReLU(8)
        self.norm = torch.nn.InstanceNorm2d(8, affine=True)
        self.group = torch.nn.GroupNorm(4, 8)

    def forward(self, x):
        y = self.group(self.norm(self.act(self.up(x))))
        y = torch.nn.functional.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.nn.functional.pixel_shuffle(y, 2)


def test_exported_decoder_layers_become_torch_modules(tmp_path: Path) -> None:
    torch.manual_seed(1)
    decoder = _Decoder()
    with torch.no_grad():
        decoder.norm.weight.uniform_(0.5, 1.5)
        decoder.group.bias.uniform_(-0.5, 0.5)
    example = (torch.randn(2, 4, 5, 5),)
    path = _legacy_export(decoder, example, tmp_path / "decoder.onnx", ["x"], ["y"])
    module = _matches_ort(path, example, rtol=1e-4)
    kinds = {type(m) for m in module.modules()}
    assert {torch.nn.ConvTranspose2d, torch.nn.PReLU} <= kinds, kinds
    up = next(m for m in module.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    assert up.groups == 2 and up.output_padding == (1, 1)


def _qdq_model(path: Path) -> Path:
    """x → QuantizeLinear → DequantizeLinear (uint8, per-channel weights too) → Conv: the QDQ form."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w_scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "x_zp"),
             numpy_helper.from_array(w_q, "conv.weight_q"), numpy_helper.from_array(w_scale, "w_scale"),
             numpy_helper.from_array(np.zeros(4, np.int8), "w_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="quant_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dequant_x"),
             helper.make_node("DequantizeLinear", ["conv.weight_q", "w_scale", "w_zp"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]).SerializeToString())
    return path


def test_qdq_pair_stays_fake_quantisation_as_onnxruntime_computes(tmp_path: Path) -> None:
    """The activation's Q→DQ pair becomes one QDQFakeQuantize module (the weight's DQ folds to a constant):
    the output matches onnxruntime on the QDQ file, and keeps the quantisation error a float conv lacks."""
    path = _qdq_model(tmp_path / "qdq.onnx")
    x = torch.from_numpy(np.random.default_rng(1).uniform(-3, 3, (1, 3, 8, 8)).astype(np.float32))
    module = _matches_ort(path, (x,))
    fake = [m for m in module.modules() if type(m).__name__ == "QDQFakeQuantize"]
    assert len(fake) == 1 and (fake[0].qmin, fake[0].qmax) == (0, 255)
    model = onnx.load(str(path))
    w_q, w_scale = (numpy_helper.to_array(t) for t in model.graph.initializer if t.name in ("conv.weight_q", "w_scale"))
    weight = torch.from_numpy(w_q.astype(np.float32) * w_scale[:, None, None, None])
    with torch.no_grad():
        unquantised = torch.nn.functional.conv2d(x, weight, padding=1)
        quantised = module(x)
    assert (quantised - unquantised).abs().max() > 1e-3  # x was rounded to steps of 0.02 (and clipped at ±2.56)


def _single_node(node, inputs: list, outputs: list, opset: int = 17, inits=()):
    graph = helper.make_graph([node], "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _float_io(name: str, shape: list[int]):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# nodes no conformance case covers, each through the converter's own path (not torch's layer), vs onnxruntime
HAND_BUILT = {
    "global_lp_pool_p3": (helper.make_node("GlobalLpPool", ["x"], ["y"], p=3), [2, 3, 5, 4], [2, 3, 1, 1], {}),
    "conv_transpose_extends": (helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2],
                                                output_padding=[1, 0], pads=[0, 1, 0, 0]),
                               [1, 2, 3, 3], [1, 3, 8, 6], {"w": (2, 3, 2, 2), "b": (3,)}),
    "resize_linear_asymmetric": (helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                                                  coordinate_transformation_mode="asymmetric"),
                                 [1, 2, 3, 4], [1, 2, 6, 6], {"scales": np.array([1, 1, 2, 1.5], np.float32)}),
    "space_to_depth": (helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2), [1, 2, 4, 6], [1, 8, 2, 3], {}),
}


@pytest.mark.parametrize("case", sorted(HAND_BUILT))
def test_hand_built_nodes_match_onnxruntime(case: str, tmp_path: Path) -> None:
    node, in_shape, out_shape, extra = HAND_BUILT[case]
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(v if isinstance(v, np.ndarray) else rng.standard_normal(v).astype(np.float32), k)
             for k, v in extra.items()]
    path = tmp_path / f"{case}.onnx"
    path.write_bytes(_single_node(node, [_float_io("x", in_shape)], [_float_io("y", out_shape)], opset=19,
                                  inits=inits).SerializeToString())
    _matches_ort(path, (torch.from_numpy(rng.standard_normal(in_shape).astype(np.float32)),), rtol=1e-5)


def test_lrn_with_an_even_size_uses_onnx_window() -> None:
    """Even LRN sizes: torch's nn.LocalResponseNorm centres the window differently and onnxruntime refuses
    them, so the expected values are the spec's formula written in NumPy."""
    size, alpha, beta, bias = 4, 0.3, 0.6, 1.5
    x = np.random.default_rng(3).standard_normal((2, 6, 3, 3)).astype(np.float32)
    model = _single_node(helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias),
                         [_float_io("x", list(x.shape))], [_float_io("y", list(x.shape))])
    module = convert_onnx_model(model).module
    sums = np.stack([(x[:, max(0, c - (size - 1) // 2): c + -(-(size - 1) // 2) + 1] ** 2).sum(1)
                     for c in range(x.shape[1])], 1)
    expected = x / (bias + alpha / size * sums) ** beta
    assert not any(isinstance(m, torch.nn.LocalResponseNorm) for m in module.modules())
    np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-7)


def test_refusals_name_the_node_and_the_reason() -> None:
    f = TensorProto.FLOAT
    lengths = numpy_helper.from_array(np.array([3, 2], np.int32), "lens")
    w = numpy_helper.from_array(np.ones((1, 8, 3), np.float32), "W")
    r = numpy_helper.from_array(np.ones((1, 8, 2), np.float32), "R")
    gru = _single_node(helper.make_node("GRU", ["x", "W", "R", "", "lens"], ["y"], hidden_size=2, name="enc"),
                       [helper.make_tensor_value_info("x", f, [3, 2, 3])],
                       [helper.make_tensor_value_info("y", f, [3, 1, 2, 2])], inits=[w, r, lengths])
    with pytest.raises(UnsupportedError, match=r"GRU node 'enc'.*sequence_lens \[3, 2\]"):
        convert_onnx_model(gru)
    nearest_aa = _single_node(
        helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest", antialias=1, name="up"),
        [helper.make_tensor_value_info("x", f, [1, 1, 4, 4])], [helper.make_tensor_value_info("y", f, [1, 1, 2, 2])],
        opset=18, inits=[numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32), "scales")])
    with pytest.raises(UnsupportedError, match=r"Resize node 'up'.*antialias"):
        convert_onnx_model(nearest_aa)
    loop_body = helper.make_graph(
        [helper.make_node("Less", ["v_in", "limit"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c", TensorProto.BOOL, []), helper.make_tensor_value_info("v_in", f, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("v_out", f, [])])
    loop = _single_node(helper.make_node("Loop", ["", "go", "x"], ["y"], body=loop_body, name="until"),
                        [helper.make_tensor_value_info("x", f, [])], [helper.make_tensor_value_info("y", f, [])],
                        inits=[numpy_helper.from_array(np.array(True), "go"),
                               numpy_helper.from_array(np.array(5.0, np.float32), "limit"),
                               numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    with pytest.raises(UnsupportedError, match=r"Loop node 'until'.*continuation condition is computed at run time"):
        convert_onnx_model(loop)
