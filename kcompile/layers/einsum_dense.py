"""EinsumDense: a dense layer whose contraction is an einsum equation between the input and a kernel.

The equation takes one of Keras's three forms, `X,W->O`, `...X,W->...O` or `X...,W->O...`; the
kernel's shape comes from the input and output sizes of its letters, the bias covers the output
axes from the first `bias_axes` letter on. The contraction lowers to transpose + reshape + one
matrix product (the GEMM kernels) when no letter is shared by all three operands, and to
`kcompile.ops.einsum` otherwise.
"""
from __future__ import annotations

import re

import numpy as np

from .. import activations, initializers, ops, regularizers
from ..ir.graph import static_size
from .base import InputSpec, Layer

_FORMS = (("([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)", None),
          ("0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)", "left"),
          ("([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0", "right"))


def parse_equation(equation):
    """(input spec, kernel spec, output spec, elided side: None / "left" / "right") of an equation."""
    plain = equation.replace(" ", "").replace("...", "0")
    for pattern, side in _FORMS:
        match = re.fullmatch(pattern, plain)
        if match:
            return match.group(1), match.group(2), match.group(3), side
    raise ValueError(f"Invalid einsum equation '{equation}'. Equations must be in the form "
                     "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]....")


def analyze(equation, bias_axes, input_shape, output_shape):
    """Keras's shape analysis: (kernel shape, bias shape or None, full output shape, the kernel's
    input axes, the kernel's output axes)."""
    in_spec, w_spec, out_spec, side = parse_equation(equation)
    input_shape = list(input_shape)
    elided = len(input_shape) - len(in_spec)
    if elided < 0:
        raise ValueError(f"EinsumDense equation '{equation}' needs inputs of rank at least {len(in_spec)}, "
                         f"got shape {tuple(input_shape)}")
    full = [int(output_shape)] if isinstance(output_shape, (int, np.integer)) else list(output_shape)
    full.insert(0, input_shape[0])
    if elided > 0 and side == "left":
        for i in range(1, elided):
            full.insert(1, input_shape[i])
    elif elided > 0:
        full += input_shape[len(input_shape) - elided:]
    if side == "left":
        in_pos = {c: i + elided - len(input_shape) for i, c in enumerate(in_spec)}
        out_pos = {c: i + elided for i, c in enumerate(out_spec)}
    else:
        in_pos = {c: i for i, c in enumerate(in_spec)}
        out_pos = {c: i for i, c in enumerate(out_spec)}
    if len(full) != len(out_spec) + elided:
        raise ValueError(f"EinsumDense equation '{equation}': output_shape {output_shape} does not match the "
                         f"output spec '{out_spec}'")
    for c in in_spec:
        if c in out_pos and full[out_pos[c]] is not None and full[out_pos[c]] != input_shape[in_pos[c]]:
            raise ValueError(f"Input shape and output shape do not match at shared dimension '{c}'. Input shape is "
                             f"{input_shape[in_pos[c]]}, and output shape is {full[out_pos[c]]}.")
        if c in out_pos:
            full[out_pos[c]] = input_shape[in_pos[c]]
    for c in out_spec:
        if c not in in_spec and c not in w_spec:
            raise ValueError(f"Dimension '{c}' was specified in the output '{out_spec}' but has no corresponding dim "
                             f"in the input spec '{in_spec}' or weight spec '{w_spec}'")
    kernel, input_axes, output_axes = [], [], []
    for i, c in enumerate(w_spec):
        if c in out_pos:
            kernel.append(full[out_pos[c]])
            output_axes.append(i)
        elif c in in_pos:
            kernel.append(input_shape[in_pos[c]])
            input_axes.append(i)
        else:
            raise ValueError(f"Weight dimension '{c}' did not have a match in either the input spec '{in_spec}' or "
                             f"the output spec '{out_spec}'. For this layer, the weight must be fully specified.")
    if any(d is None for d in kernel):
        raise ValueError(f"EinsumDense equation '{equation}': the kernel's sizes must be known, got {kernel} from "
                         f"input shape {tuple(input_shape)} and output shape {tuple(full)}")
    bias = None
    if bias_axes is not None:
        for c in bias_axes:
            if c not in out_spec:
                raise ValueError(f"Bias dimension '{c}' was requested, but is not part of the output spec '{out_spec}'")
        offset = elided if side == "left" else 0
        sizes = {c: full[i + offset] for i, c in enumerate(out_spec)}
        tail = out_spec[min(out_spec.find(c) for c in bias_axes):]
        bias = [sizes[c] if c in bias_axes else 1 for c in tail]
        if side != "left":
            bias += [1] * elided
    return kernel, bias, full, input_axes, output_axes


class _FanShaped(initializers.Initializer):
    """A variance-scaling initializer drawn as (fan_in, fan_out) = (product of the kernel's input
    axes, product of its output axes), as Keras 3 computes the fans of an EinsumDense kernel."""

    def __init__(self, base, input_axes, output_axes):
        self.base, self.input_axes, self.output_axes = base, input_axes, output_axes

    def __call__(self, shape, dtype="float32"):
        fans = (static_size([shape[a] for a in self.input_axes]), static_size([shape[a] for a in self.output_axes]))
        return np.reshape(self.base(fans, dtype), shape)


class EinsumDense(Layer):
    def __init__(self, equation, output_shape, activation=None, bias_axes=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, lora_rank=None, gptq_unpacked_column_size=None, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("kernel_constraint", kernel_constraint), ("bias_constraint", bias_constraint),
                           ("lora_rank", lora_rank), ("gptq_unpacked_column_size", gptq_unpacked_column_size)):
            if value is not None:
                raise ValueError(f"EinsumDense '{self.name}': argument {arg}={value!r} is not supported")
        parse_equation(equation)
        self.equation = equation
        self.partial_output_shape = (int(output_shape),) if isinstance(output_shape, (int, np.integer)) else \
            tuple(None if d is None else int(d) for d in output_shape)
        self.bias_axes = bias_axes
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        kernel_shape, bias_shape, self.full_output_shape, in_axes, out_axes = analyze(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape)
        init = self.kernel_initializer
        if isinstance(init, initializers.VarianceScaling):
            init = _FanShaped(init, in_axes, out_axes)
        self.kernel = self.add_weight(name="kernel", shape=tuple(kernel_shape), initializer=init,
                                      regularizer=self.kernel_regularizer)
        self.bias = None if bias_shape is None else self.add_weight(
            name="bias", shape=tuple(bias_shape), initializer=self.bias_initializer, regularizer=self.bias_regularizer)
        self.input_spec = InputSpec(ndim=len(input_shape))
        self.built = True

    def call(self, inputs):
        x = contract(self.equation, inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return self.activation(x)

    def get_config(self):
        config = super().get_config()
        config.update({
            "output_shape": list(self.partial_output_shape), "equation": self.equation,
            "activation": activations.serialize(self.activation), "bias_axes": self.bias_axes,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": None, "bias_constraint": None,
        })
        return config


def contract(equation, x, kernel):
    """einsum(equation, x, kernel) for an EinsumDense equation (x's first axis is the batch)."""
    in_spec, w_spec, out_spec, side = parse_equation(equation)
    rank = len(x.shape)
    dots = "".join(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation)[:rank - len(in_spec)]
    if side == "left":
        in_spec, out_spec = dots + in_spec, dots + out_spec
    elif side == "right":
        in_spec, out_spec = in_spec + dots, out_spec + dots
    shared = set(in_spec) & set(w_spec) & set(out_spec)
    if shared or out_spec[:1] != in_spec[:1] or len(set(in_spec)) < len(in_spec) or len(set(w_spec)) < len(w_spec):
        return ops.einsum(f"{in_spec},{w_spec}->{out_spec}", x, kernel)
    # letters of one operand only, not in the output: summed there first
    x_only = [i for i, c in enumerate(in_spec) if c not in w_spec and c not in out_spec]
    if x_only:
        x = ops.sum(x, axis=x_only)
        in_spec = "".join(c for c in in_spec if c in w_spec or c in out_spec)
    w_only = [i for i, c in enumerate(w_spec) if c not in in_spec and c not in out_spec]
    if w_only:
        kernel = ops.sum(kernel, axis=w_only)
        w_spec = "".join(c for c in w_spec if c in in_spec or c in out_spec)
    free_x = [c for c in out_spec if c in in_spec]
    free_w = [c for c in out_spec if c in w_spec]
    summed = [c for c in in_spec if c in w_spec]
    x = ops.transpose(x, [in_spec.index(c) for c in free_x + summed])
    kernel = ops.transpose(kernel, [w_spec.index(c) for c in summed + free_w])
    x_sizes = dict(zip(free_x + summed, x.shape))
    w_sizes = dict(zip(summed + free_w, kernel.shape))
    k = static_size([w_sizes[c] for c in summed])
    n = static_size([w_sizes[c] for c in free_w])
    x = ops.reshape(x, [None] + [x_sizes[c] for c in free_x[1:]] + [k])
    y = ops.matmul(x, ops.reshape(kernel, (k, n)))
    y = ops.reshape(y, [None] + [x_sizes[c] for c in free_x[1:]] + [w_sizes[c] for c in free_w])
    order = free_x + free_w
    perm = [order.index(c) for c in out_spec]
    return y if perm == list(range(len(perm))) else ops.transpose(y, perm)
