"""Detection ops: NonMaxSuppression (greedy, as ONNX orders it), RoiAlign and DeformConv (torchvision's
kernels, which ONNX's definitions follow).

NonMaxSuppression's output length depends on the data: the converted module computes it eagerly, but a
static-shaped target (torch.export with fixed sizes, Keras) may refuse it.
"""

from __future__ import annotations

import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall


def _edges(boxes: torch.Tensor, center: bool) -> tuple[torch.Tensor, ...]:
    """(x_min, x_max, y_min, y_max) of [y1, x1, y2, x2] boxes (either diagonal) or [x, y, w, h] centres."""
    if center:
        x, y, w, h = boxes.unbind(-1)
        return x - w / 2, x + w / 2, y - h / 2, y + h / 2
    y1, x1, y2, x2 = boxes.unbind(-1)
    return torch.minimum(x1, x2), torch.maximum(x1, x2), torch.minimum(y1, y2), torch.maximum(y1, y2)


def _suppresses(boxes: torch.Tensor, center: bool, threshold: float) -> torch.Tensor:
    """(boxes, boxes) bool: box i suppresses box j (IoU above the threshold, both with an area)."""
    x0, x1, y0, y1 = _edges(boxes, center)
    width = (torch.minimum(x1[:, None], x1[None]) - torch.maximum(x0[:, None], x0[None])).clamp(min=0)
    height = (torch.minimum(y1[:, None], y1[None]) - torch.maximum(y0[:, None], y0[None])).clamp(min=0)
    inter = width * height
    area = (x1 - x0) * (y1 - y0)
    union = area[:, None] + area[None] - inter
    valid = (inter > 0) & (area[:, None] > 0) & (area[None] > 0) & (union > 0)
    return valid & (inter / torch.where(union > 0, union, torch.ones_like(union)) > threshold)


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou_threshold: float,
                        score_threshold: float | None, center: bool) -> torch.Tensor:
    """ONNX NonMaxSuppression: per batch and class, boxes by descending score (the lower index first on
    ties), each kept unless a kept box suppresses it, at most max_per_class; rows (batch, class, box)."""
    rows: list[list[int]] = []
    for b in range(scores.shape[0]):
        suppress = _suppresses(boxes[b], center, iou_threshold)
        for c in range(scores.shape[1]):
            ordered, order = torch.sort(scores[b, c], descending=True, stable=True)
            if score_threshold is not None:
                order = order[ordered > score_threshold]
            kept: list[int] = []
            for box in order.tolist():
                if len(kept) >= max_per_class:
                    break
                if not kept or not bool(suppress[kept, box].any()):
                    kept.append(box)
            rows.extend([b, c, box] for box in kept)
    return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)


@onnx_to_torch("NonMaxSuppression", since=11)
def nms(call: OnnxCall):
    def scalar(i: int, default):
        return call.const(i).reshape(-1)[0].item() if call.has(i) and call.const(i).size else default

    score = scalar(4, None)
    return call.call(non_max_suppression, call.value(0), call.value(1), max(int(scalar(2, 0)), 0),
                     float(scalar(3, 0.0)), None if score is None else float(score),
                     bool(call.attrs.get("center_point_box", 0)))


def roi_align(x: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor, output_size: tuple[int, int],
              spatial_scale: float, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """ONNX RoiAlign (mode avg) with torchvision's kernel: rois (x1, y1, x2, y2) plus their batch index."""
    from porttax._frameworks import import_torchvision

    boxes = torch.cat((batch_indices.to(rois.dtype).reshape(-1, 1), rois), 1)
    return import_torchvision().ops.roi_align(x, boxes, output_size, spatial_scale, sampling_ratio, aligned)


@onnx_to_torch("RoiAlign", since=16)
def roi_align_node(call: OnnxCall):
    if call.attrs.get("mode", "avg") != "avg":
        raise call.unsupported(f"mode={call.attrs['mode']!r}: only the average of the samples is converted")
    aligned = call.attrs.get("coordinate_transformation_mode", "half_pixel") == "half_pixel"
    size = (int(call.attrs.get("output_height", 1)), int(call.attrs.get("output_width", 1)))
    return call.call(roi_align, call.value(0), call.value(1), call.value(2), size,
                     float(call.attrs.get("spatial_scale", 1.0)), int(call.attrs.get("sampling_ratio", 0)), aligned)


def deform_conv(x, weight, offset, bias, mask, strides, pads, dilations):
    """ONNX DeformConv (2-D) with torchvision's kernel; groups and offset groups follow from the shapes."""
    from porttax._frameworks import import_torchvision

    return import_torchvision().ops.deform_conv2d(x, offset, weight, bias, stride=strides, padding=pads,
                                                  dilation=dilations, mask=mask)


@onnx_to_torch("DeformConv", since=19)
def deform_conv_node(call: OnnxCall):
    weight_shape = call.shape(1)
    if weight_shape is None or len(weight_shape) != 4:
        raise call.unsupported("only 2-D DeformConv (torchvision's deform_conv2d)")
    pads = list(call.attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise call.unsupported(f"asymmetric pads {pads}")
    bias = call.tensor(3) if call.has(3) else None
    mask = call.tensor(4) if call.has(4) else None
    return call.call(deform_conv, call.value(0), call.tensor(1), call.tensor(2), bias, mask,
                     tuple(call.attrs.get("strides", [1, 1])), tuple(pads[:2]),
                     tuple(call.attrs.get("dilations", [1, 1])))
