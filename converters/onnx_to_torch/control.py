"""Control flow: If, Loop and Scan, converted by running their bodies inline (the converted module is a
straight-line graph).

If with a condition known at conversion time (typically computed from static shapes) keeps only the branch
taken; with a run-time condition both branches are computed and `torch.where` picks, when they give the
same shapes and types. Loop is unrolled where its trip count and its continuation condition are known at
conversion time, every iteration; Scan is unrolled over its (static) sequence length. A loop whose exit
depends on computed values is refused by name.
"""

from __future__ import annotations

import numpy as np
import torch

from porttax.converters.onnx_to_torch._register import onnx_to_torch
from porttax.converters.onnx_to_torch.context import Const, Live, OnnxCall

MAX_UNROLL = 4096  # iterations; a longer loop would make a graph nobody could read or compile


def _as_node(call: OnnxCall, value, hint: str):
    return value.node if isinstance(value, Live) else call.ctx.tensor(value.value, hint)


def _shape(value) -> tuple[int, ...] | None:
    return tuple(value.value.shape) if isinstance(value, Const) else value.shape


def _dtype(value) -> str | None:
    return value.value.dtype.name if isinstance(value, Const) else value.dtype


@onnx_to_torch("If")
def if_node(call: OnnxCall):
    then_branch, else_branch = call.attrs["then_branch"], call.attrs["else_branch"]
    if call.is_const(0):
        return call.ctx.subgraph(then_branch if bool(call.const(0).reshape(-1)[0]) else else_branch, {})
    taken, other = call.ctx.subgraph(then_branch, {}), call.ctx.subgraph(else_branch, {})
    outputs = []
    for k, (a, b) in enumerate(zip(taken, other)):
        if _shape(a) is None or _shape(a) != _shape(b) or _dtype(a) != _dtype(b):
            raise call.unsupported(f"a condition computed at run time, and output {k} differs between the branches "
                                   f"({_shape(a)} {_dtype(a)} vs {_shape(b)} {_dtype(b)})",
                                   hint="fix the input sizes so the condition folds")
        then_value, else_value = _as_node(call, a, "if_then"), _as_node(call, b, "if_else")
        outputs.append(call.call(torch.where, call.value(0), then_value, else_value))
    return outputs


def _stack(call: OnnxCall, values: list, axis: int, hint: str):
    if all(isinstance(v, Const) for v in values):
        return Const(np.stack([v.value for v in values], axis))
    return call.call(torch.stack, [_as_node(call, v, hint) for v in values], axis)


@onnx_to_torch("Loop")
def loop(call: OnnxCall):
    body = call.attrs["body"]
    trips = int(call.const(0).reshape(-1)[0]) if call.has(0) else None
    keep_going = bool(call.const(1).reshape(-1)[0]) if call.has(1) else True
    carried = list(call.inputs[2:])
    n_scan = len(body.output) - 1 - len(carried)
    if trips is None and not call.has(1):
        raise call.unsupported("neither a trip count nor a condition: an endless loop")
    scans: list[list] = [[] for _ in range(n_scan)]
    i = 0
    while keep_going and (trips is None or i < trips):
        if i >= MAX_UNROLL:
            raise call.unsupported(f"more than {MAX_UNROLL} iterations to unroll")
        bindings = {body.input[0].name: Const(np.array(i, dtype=np.int64)),
                    body.input[1].name: Const(np.array(keep_going))}
        bindings.update({inp.name: v for inp, v in zip(body.input[2:], carried)})
        outs = call.ctx.subgraph(body, bindings)
        if not isinstance(outs[0], Const):
            raise call.unsupported("the loop's continuation condition is computed at run time",
                                   hint="fix the input sizes so the number of iterations is known")
        keep_going = bool(outs[0].value.reshape(-1)[0])
        carried = outs[1:1 + len(carried)]
        for k in range(n_scan):
            scans[k].append(outs[1 + len(carried) + k])
        i += 1
    if n_scan and i == 0:
        raise call.unsupported("a loop that runs zero times has scan outputs of unknown shape")
    return carried + [_stack(call, values, 0, "loop_scan") for values in scans]


def _select(call: OnnxCall, value, axis: int, index: int):
    if isinstance(value, Const):
        return Const(np.take(value.value, index, axis=axis))
    node = call.call(torch.select, value.node, axis, index)
    shape = value.shape[:axis] + value.shape[axis + 1:] if value.shape is not None else None
    return Live(node, shape, value.dtype)


@onnx_to_torch("Scan", since=9)
def scan(call: OnnxCall):
    body = call.attrs["body"]
    n_in = int(call.attrs["num_scan_inputs"])
    states = list(call.inputs[: len(call.inputs) - n_in])
    sequences = call.inputs[len(call.inputs) - n_in:]
    in_axes = list(call.attrs.get("scan_input_axes", [0] * n_in))
    in_dirs = list(call.attrs.get("scan_input_directions", [0] * n_in))
    n_out = len(body.output) - len(states)
    out_axes = list(call.attrs.get("scan_output_axes", [0] * n_out))
    out_dirs = list(call.attrs.get("scan_output_directions", [0] * n_out))
    shapes = [_shape(v) for v in sequences]
    if any(s is None for s in shapes):
        raise call.unsupported("scan inputs need static shapes")
    in_axes = [a % len(s) for a, s in zip(in_axes, shapes)]
    length = shapes[0][in_axes[0]]
    if length > MAX_UNROLL:
        raise call.unsupported(f"more than {MAX_UNROLL} steps to unroll")
    collected: list[list] = [[] for _ in range(n_out)]
    for t in range(length):
        bindings = {inp.name: v for inp, v in zip(body.input, states)}
        for k, (seq, axis, backwards) in enumerate(zip(sequences, in_axes, in_dirs)):
            bindings[body.input[len(states) + k].name] = _select(call, seq, axis, length - 1 - t if backwards else t)
        outs = call.ctx.subgraph(body, bindings)
        states = outs[: len(states)]
        for k in range(n_out):
            collected[k].append(outs[len(states) + k])
    results = list(states)
    for values, axis, backwards in zip(collected, out_axes, out_dirs):
        values = values[::-1] if backwards else values
        rank = len(_shape(values[0]) or ()) + 1
        results.append(_stack(call, values, axis % rank, "scan_output"))
    return results
