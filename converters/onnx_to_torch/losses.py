"""Loss ops training graphs export: NegativeLogLikelihoodLoss → F.nll_loss and SoftmaxCrossEntropyLoss →
log_softmax + F.nll_loss (its optional second output is the log-probabilities). ONNX's and torch's
definitions agree: class weights, ignore_index, and a weighted mean divided by the weights of the targets
that count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import OnnxCall

_NO_IGNORE = -(2**62)  # ONNX without ignore_index ignores nothing; torch always has one, so one no target uses


def nll_loss(log_prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, ignore_index: int,
             reduction: str) -> torch.Tensor:
    return F.nll_loss(log_prob, target.to(torch.int64), weight, ignore_index=ignore_index, reduction=reduction)


def _reduction(call: OnnxCall) -> str:
    reduction = call.attrs.get("reduction", "mean")
    if reduction not in ("mean", "sum", "none"):
        raise call.unsupported(f"reduction={reduction!r}")
    return reduction


@onnx_to_torch("NegativeLogLikelihoodLoss", since=13)
def negative_log_likelihood(call: OnnxCall):
    weight = call.tensor(2) if call.has(2) else None
    return call.call(nll_loss, call.value(0), call.value(1), weight, int(call.attrs.get("ignore_index", _NO_IGNORE)),
                     _reduction(call))


@onnx_to_torch("SoftmaxCrossEntropyLoss", since=13)
def softmax_cross_entropy(call: OnnxCall):
    log_prob = call.call(torch.log_softmax, call.value(0), 1)
    weight = call.tensor(2) if call.has(2) else None
    loss = call.call(nll_loss, log_prob, call.value(1), weight, int(call.attrs.get("ignore_index", _NO_IGNORE)),
                     _reduction(call))
    return [loss, log_prob]
