"""Recurrent layers: SimpleRNN, LSTM, GRU (and their cells), the generic RNN wrapper, Bidirectional.

Every recurrent layer is one `scan` node in the IR (ir/scan.py), not T copies of its cell, so a
100-step LSTM compiles as fast as a 1-step one. The built-in cells split their work the way fast
RNN kernels do: the input projection x·W + b of every time step is one large matmul before the
loop, and only h·U and the gate arithmetic run per step. A user cell (`RNN(cell)`) runs its whole
`call` per step.

Inside the loop the row of each step is [state_0 | state_1 | ... | output (if not state_0)];
sequences are time-major there (time, batch, ...) so each step reads a contiguous slab.

A stateful layer keeps its final states in non-trainable variables of the model's declared batch
size (as Keras 3, not among the layer's weights): the compiled predict, train and evaluate steps
all start from them and write them back, and `reset_states()` zeroes them.
"""
from __future__ import annotations

import numpy as np

from .. import activations, initializers, ops, random_state, regularizers
from ..ir import builder as irb
from ..ir.graph import BATCH, static_size
from ..ir.scan import scan
from ..tracing import KerasTensor, current_trace
from ..variables import Variable
from .base import InputSpec, Layer
from .core import dropout_mask
from .serialization import serialize_layer

_CONSTRAINT_ARGS = ("kernel_constraint", "recurrent_constraint", "bias_constraint")


def _kt(node):
    return KerasTensor(node)


def _node(x):
    return x.node if isinstance(x, KerasTensor) else ops._to_node(x)


def _width(shape):
    return static_size([d for d in shape if d is not None])


# ---------------------------------------------------------------- cells

class _BuiltinCell(Layer):
    """Shared arguments and weights of SimpleRNNCell, LSTMCell and GRUCell."""

    gates = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None, **kwargs):
        for arg, value in zip(_CONSTRAINT_ARGS, (kernel_constraint, recurrent_constraint, bias_constraint)):
            if value is not None:
                raise ValueError(f"{type(self).__name__}: argument {arg}={value!r} is not supported")
        kwargs.pop("implementation", None)   # Keras 2 kernel-choice hint; one implementation here
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Received an invalid value for argument `units`, expected a positive "
                             f"integer, got {units}.")
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{type(self).__name__}: `{name}` must be in [0, 1), got {rate}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.seed = seed
        self._rng_seed = int(seed) if seed is not None else random_state.next_seed()

    @property
    def state_size(self):
        return [self.units]

    @property
    def output_size(self):
        return self.units

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        dim = input_shape[-1]
        g = self.gates * self.units
        self.kernel = self.add_weight(shape=(dim, g), name="kernel", initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer)
        self.recurrent_kernel = self.add_weight(shape=(self.units, g), name="recurrent_kernel",
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer)
        self.bias = self.add_weight(shape=self._bias_shape(), name="bias", initializer=self._bias_initializer(),
                                    regularizer=self.bias_regularizer) if self.use_bias else None
        self.built = True

    # the compiled path: project all inputs at once, then step
    def project_inputs(self, x):
        """x·W (+ input bias) for every step at once; x is (..., features)."""
        z = ops.matmul(x, self.kernel)
        if self.bias is not None:
            z = ops.add(z, self._input_bias())
        return z

    def _input_bias(self):
        return self.bias

    def dropout_masks(self, x, training):
        """(input mask (batch, features) or None, recurrent mask (batch, units) or None), fixed over time."""
        if not training:
            return None, None
        dp = rec = None
        if self.dropout > 0:
            probe = _kt(irb.broadcast_to(irb.const(0.0), (BATCH, x.shape[-1])))
            dp = dropout_mask(probe, self.dropout, self._rng_seed)
        if self.recurrent_dropout > 0:
            probe = _kt(irb.broadcast_to(irb.const(0.0), (BATCH, self.units)))
            rec = dropout_mask(probe, self.recurrent_dropout, self._rng_seed + 1)
        return dp, rec

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units, "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": None, "recurrent_constraint": None, "bias_constraint": None,
            "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout, "seed": self.seed,
        })
        return config

    # the generic cell API (used eagerly and by RNN(cell) users): one step from raw inputs
    def call(self, inputs, states, training=False):
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        z = self.project_inputs(inputs)
        new_states = self.step(z, states, None)
        return new_states[0], new_states


class SimpleRNNCell(_BuiltinCell):
    def __init__(self, units, activation="tanh", **kwargs):
        kwargs.pop("recurrent_activation", None)
        super().__init__(units, activation=activation, **kwargs)

    def step(self, z, states, rec_mask):
        (h,) = states
        if rec_mask is not None:
            h = ops.multiply(h, rec_mask)
        return [self.activation(ops.add(z, ops.matmul(h, self.recurrent_kernel)))]

    def get_config(self):
        return super().get_config()


class LSTMCell(_BuiltinCell):
    gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", unit_forget_bias=True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    @property
    def state_size(self):
        return [self.units, self.units]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, u = self.bias_initializer, self.units

        def forget_one(shape, dtype="float32"):
            return np.concatenate([np.asarray(base((u,), dtype)), np.ones(u, np.float32),
                                   np.asarray(base((2 * u,), dtype))]).astype(np.float32)
        return forget_one

    def step(self, z, states, rec_mask):
        h, c = states
        if rec_mask is not None:
            h = ops.multiply(h, rec_mask)
        z = ops.add(z, ops.matmul(h, self.recurrent_kernel))
        u = self.units
        zi, zf, zc, zo = (_kt(irb.slice(z.node, ((0, None), (k * u, (k + 1) * u)))) for k in range(4))
        i, f, o = self.recurrent_activation(zi), self.recurrent_activation(zf), self.recurrent_activation(zo)
        c = ops.add(ops.multiply(f, c), ops.multiply(i, self.activation(zc)))
        return [ops.multiply(o, self.activation(c)), c]

    def get_config(self):
        config = super().get_config()
        config.update({"recurrent_activation": activations.serialize(self.recurrent_activation),
                       "unit_forget_bias": self.unit_forget_bias})
        return config


class GRUCell(_BuiltinCell):
    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        # reset_after keeps a separate bias for the recurrent product (2 rows), as Keras does
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        return _kt(irb.slice(self.bias.node(), ((0, 1), (0, 3 * self.units)))) if self.reset_after else self.bias

    def step(self, z, states, rec_mask):
        (h,) = states
        u = self.units
        hm = ops.multiply(h, rec_mask) if rec_mask is not None else h
        cols = lambda t, k, n=1: _kt(irb.slice(t.node, ((0, None), (k * u, (k + n) * u))))  # noqa: E731
        if self.reset_after:
            inner = ops.matmul(hm, self.recurrent_kernel)
            if self.bias is not None:
                inner = ops.add(inner, _kt(irb.reshape(irb.slice(self.bias.node(), ((1, 2), (0, 3 * u))), (3 * u,))))
            zr = self.recurrent_activation(ops.add(cols(z, 0, 2), cols(inner, 0, 2)))
            zt, r = cols(zr, 0), cols(zr, 1)
            hh = self.activation(ops.add(cols(z, 2), ops.multiply(r, cols(inner, 2))))
        else:
            u_zr = _kt(irb.slice(self.recurrent_kernel.node(), ((0, u), (0, 2 * u))))
            u_h = _kt(irb.slice(self.recurrent_kernel.node(), ((0, u), (2 * u, 3 * u))))
            zr = self.recurrent_activation(ops.add(cols(z, 0, 2), ops.matmul(hm, u_zr)))
            zt, r = cols(zr, 0), cols(zr, 1)
            hh = self.activation(ops.add(cols(z, 2), ops.matmul(ops.multiply(r, hm), u_h)))
        return [ops.add(ops.multiply(zt, h), ops.multiply(ops.subtract(1.0, zt), hh))]

    def get_config(self):
        config = super().get_config()
        config.update({"recurrent_activation": activations.serialize(self.recurrent_activation),
                       "reset_after": self.reset_after})
        return config


# ---------------------------------------------------------------- the layer

class RNN(Layer):
    """Runs a cell over the time axis (axis 1) of (batch, time, features) inputs."""

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, time_major=False, **kwargs):
        if isinstance(cell, (list, tuple)):
            raise ValueError("RNN: stacked cells (a list of cells) are not supported; stack RNN layers instead")
        if time_major:
            raise ValueError(f"{type(self).__name__}: time_major=True is not supported")
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards, self.stateful = bool(go_backwards), bool(stateful)
        self.states = None                  # stateful: the state variables, made on the first run
        self.unroll = bool(unroll)          # a hint only: the loop is always a compiled loop
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.supports_masking = True
        self.input_spec = InputSpec(ndim=3)

    @property
    def state_size(self):
        size = self.cell.state_size
        return list(size) if isinstance(size, (list, tuple)) else [size]

    def build(self, input_shape):
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        if not self.cell.built:
            self.cell._maybe_build((input_shape[0], input_shape[-1]))
        self.built = True

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, list):
            mask = mask[0]
        out = mask if self.return_sequences else None
        return [out] + [None] * len(self.state_size) if self.return_state else out

    def call(self, inputs, initial_state=None, mask=None, training=False):
        seq, last, states = self.run(inputs, initial_state, mask, training)
        output = seq if self.return_sequences else last
        return [output] + states if self.return_state else output

    # shared with Bidirectional
    def run(self, inputs, initial_state=None, mask=None, training=False, aligned=False):
        """(output sequence (batch, time, units), last output, final states).

        aligned=True keeps a go_backwards sequence in input order (Bidirectional merges it so).
        """
        if isinstance(mask, list):
            mask = mask[0]
        x = inputs
        if x.ndim != 3:
            raise ValueError(f"Input 0 of layer \"{self.name}\" is incompatible with the layer: expected "
                             f"ndim=3, found ndim={x.ndim}. Full shape received: {x.shape}")
        steps, sizes = x.shape[1], self.state_size
        builtin = isinstance(self.cell, _BuiltinCell)
        dp, rec = self.cell.dropout_masks(x, training) if builtin else (None, None)
        if dp is not None:
            x = ops.multiply(x, _kt(irb.reshape(dp.node, (BATCH, 1, x.shape[-1]))))
        xt = _kt(irb.transpose(_node(x), (1, 0, 2)))                   # time-major
        per_step = self.cell.project_inputs(xt) if builtin else xt
        per_step = _node(per_step)
        if per_step.dtype != "float32":
            per_step = irb.cast(per_step, "float32")
        width = per_step.shape[-1]
        if mask is not None:
            m = irb.cast(_node(mask), "float32")
            m = irb.reshape(irb.transpose(m, (1, 0)), (steps, BATCH, 1))
            per_step = irb.concat([per_step, m], 2)

        state_vars = self._state_variables(x) if self.stateful else None
        if initial_state is None and state_vars is not None:
            initial_state = [_kt(irb.rebatch(v.node(), None)) for v in state_vars]
        init = self._initial_row(initial_state, sizes)
        R = sum(sizes)
        out_width = self.cell.output_size if not builtin else sizes[0]
        extra = 0 if builtin else int(out_width)
        if extra:
            init = irb.concat([init, irb.broadcast_to(irb.const(0.0), (BATCH, extra))], 1)

        def step(prev, x_t, _consts):
            states, start = [], 0
            for s in sizes:
                states.append(_kt(irb.slice(prev, ((0, None), (start, start + s)))))
                start += s
            z = _kt(irb.slice(x_t, ((0, None), (0, width)))) if mask is not None else _kt(x_t)
            if builtin:
                new_states = self.cell.step(z, states, rec)
                pieces = [_node(s) for s in new_states]
            else:
                out, new_states = self.cell.call(z, states if len(states) > 1 else states[0],
                                                 **({"training": training} if self.cell._call_accepts("training") else {}))
                new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
                pieces = [_node(s) for s in new_states] + [_node(out)]
            row = irb.concat(pieces, 1) if len(pieces) > 1 else pieces[0]
            if row.shape != prev.shape:
                raise ValueError(f"{type(self).__name__} '{self.name}': the cell returned states of widths "
                                 f"{[p.shape[-1] for p in pieces]}, but its state_size is {sizes}")
            if mask is not None:
                keep = irb.slice(x_t, ((0, None), (width, width + 1)))
                row = irb.add(prev, irb.mul(keep, irb.sub(row, prev)))
            return row

        rows = scan(step, init, per_step, (), reverse=self.go_backwards)   # (time, batch, R + extra)
        out_lo = R if extra else 0
        out_hi = out_lo + int(out_width)
        outputs = irb.slice(rows, ((0, steps), (0, None), (out_lo, out_hi)))
        final_t = 0 if self.go_backwards else steps - 1
        final = irb.reshape(irb.slice(rows, ((final_t, final_t + 1), (0, None), (0, R + extra))), (BATCH, R + extra))
        last = _kt(irb.slice(final, ((0, None), (out_lo, out_hi))))
        states, start = [], 0
        for s in sizes:
            states.append(_kt(irb.slice(final, ((0, None), (start, start + s)))))
            start += s
        if state_vars is not None:
            trace = current_trace()
            for var, new in zip(state_vars, states):
                trace.add_update(var.slot.name, irb.rebatch(new.node, var.shape[0]))
        if self.go_backwards and not aligned:
            outputs = irb.reverse(outputs, 0)
        seq = irb.transpose(outputs, (1, 0, 2))
        if mask is not None and self.zero_output_for_mask:
            m = _node(mask)
            seq = irb.mul(seq, irb.reshape(irb.cast(m, "float32"), (BATCH, steps, 1)))
        return _kt(seq), last, states

    def _initial_row(self, initial_state, sizes):
        if initial_state is None:
            return irb.broadcast_to(irb.const(0.0), (BATCH, sum(sizes)))
        given = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(given) != len(sizes):
            raise ValueError(f"Layer {self.name} expects {len(sizes)} state(s), but it received "
                             f"{len(given)} initial state(s).")
        nodes = []
        for s, g in zip(sizes, given):
            n = _node(g)
            if n.shape != (BATCH, s):
                raise ValueError(f"Layer {self.name}: an initial state must have shape (batch, {s}), "
                                 f"got {tuple(None if d is BATCH else d for d in n.shape)}")
            nodes.append(n)
        return irb.concat(nodes, 1)

    # ------------------------------------------------------------ stateful
    def _state_variables(self, x):
        """The state variables a running (not shape-probing) trace reads and updates; None otherwise."""
        trace = current_trace()
        if not trace.executes:
            return None
        batch = trace.static_batch
        if batch is None:
            raise ValueError(f"Layer '{self.name}': when using `stateful=True` in a RNN, the batch size must be "
                             f"static. Found dynamic batch size: sequence.shape={x.shape}. Give the model a "
                             f"fixed batch size: `Input(..., batch_size=N)`, or `batch_input_shape`/`batch_size` "
                             f"on the first layer of a Sequential model.")
        if self.states is None:
            self._make_states([np.zeros((batch, s), np.float32) for s in self.state_size])
        elif self.states[0].shape[0] != batch:
            raise ValueError(f"Layer '{self.name}': if an RNN is stateful, the batch size of the input sequences "
                             f"must be the same as the batch size of the initial state.\n"
                             f"- Expected batch size: {self.states[0].shape[0]}\n- Received batch size: {batch}")
        return self.states

    def _make_states(self, values):
        self.states = [Variable(v, trainable=False, name="rnn_state", path=f"{self.name}/rnn_state_{i}",
                                kind="rnn_state") for i, v in enumerate(values)]

    def _persistent_state(self):
        return list(self.states or [])

    def reset_states(self, states=None):
        """Zero the states of a stateful layer, or set them to `states` (one array per state, as Keras 2)."""
        if not self.stateful:
            raise AttributeError(f"Layer '{self.name}' is not stateful: construct it with stateful=True")
        if states is None:
            for v in self.states or []:
                v.assign(np.zeros(v.shape, v.dtype))
            return
        given = list(states) if isinstance(states, (list, tuple)) else [states]
        if len(given) != len(self.state_size):
            raise ValueError(f"Layer '{self.name}' expects {len(self.state_size)} state(s), "
                             f"but it received {len(given)} state value(s)")
        values = []
        for i, (value, size) in enumerate(zip(given, self.state_size)):
            value = np.asarray(value, np.float32)
            expected_batch = self.states[0].shape[0] if self.states else value.shape[0] if value.ndim else None
            if value.shape != (expected_batch, size):
                raise ValueError(f"State {i} is incompatible with layer '{self.name}': expected shape "
                                 f"{(expected_batch, size)}, got {value.shape}")
            values.append(value)
        if self.states is None:
            self._make_states(values)
        else:
            for v, value in zip(self.states, values):
                v.assign(value)

    reset_state = reset_states

    def get_config(self):
        config = super().get_config()
        config.update({"return_sequences": self.return_sequences, "return_state": self.return_state,
                       "go_backwards": self.go_backwards, "stateful": self.stateful, "unroll": self.unroll,
                       "zero_output_for_mask": self.zero_output_for_mask})
        if type(self) is RNN:
            config["cell"] = serialize_layer(self.cell)
        return config


class _CellLayer(RNN):
    """SimpleRNN/LSTM/GRU: an RNN whose cell is built from the layer's own arguments."""

    cell_class = None
    _cell_args = ("units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
                  "recurrent_initializer", "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
                  "bias_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint",
                  "dropout", "recurrent_dropout", "seed", "unit_forget_bias", "reset_after", "implementation")

    def __init__(self, units, **kwargs):
        cell_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in self._cell_args}
        kwargs.pop("use_cudnn", None)          # a backend kernel choice; the result is the same
        cell_kwargs["dtype"] = kwargs.get("dtype")
        super().__init__(self.cell_class(units, name=f"{self._cell_name()}", **cell_kwargs), **kwargs)

    @classmethod
    def _cell_name(cls):
        from .base import to_snake_case
        return to_snake_case(cls.cell_class.__name__)

    def __getattr__(self, name):
        # units, activation, ... read through to the cell, as in Keras
        if name != "cell" and "cell" in self.__dict__ and hasattr(self.__dict__["cell"], name):
            return getattr(self.__dict__["cell"], name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def get_config(self):
        config = super().get_config()
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        config.update(cell_config)
        return config


class SimpleRNN(_CellLayer):
    cell_class = SimpleRNNCell


class LSTM(_CellLayer):
    cell_class = LSTMCell


class GRU(_CellLayer):
    cell_class = GRUCell


# ---------------------------------------------------------------- Bidirectional

_MERGES = {"concat": lambda a, b: ops.concatenate([a, b], axis=-1), "sum": ops.add, "mul": ops.multiply,
           "ave": lambda a, b: ops.multiply(ops.add(a, b), 0.5), None: None}


class Bidirectional(Layer):
    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        if not isinstance(layer, RNN):
            raise ValueError(f"Please initialize `Bidirectional` layer with a RNN layer instance. Received: {layer}")
        if merge_mode not in _MERGES:
            raise ValueError(f"Invalid merge mode. Received: {merge_mode}. Merge mode should be one of "
                             "{'sum', 'mul', 'ave', 'concat', None}")
        super().__init__(**kwargs)
        # fresh copies named as Keras names them (forward_<name>, backward_<name>)
        config = layer.get_config()
        # a reloaded config already holds forward_<name>: the prefix is not added twice (as Keras)
        base = layer.name[len("forward_"):] if layer.name.startswith("forward_") else layer.name
        self.forward_layer = type(layer).from_config({**config, "name": "forward_" + base})
        if backward_layer is None:
            backward_layer = type(layer).from_config({**config, "name": "backward_" + base,
                                                      "go_backwards": not layer.go_backwards})
        if backward_layer.go_backwards == layer.go_backwards:
            raise ValueError("Forward layer and backward layer should have different `go_backwards` value.")
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences, self.return_state = layer.return_sequences, layer.return_state
        self.supports_masking = True
        if weights is not None:
            self._initial_weights = list(weights)

    def build(self, input_shape):
        self.forward_layer._maybe_build(input_shape)
        self.backward_layer._maybe_build(input_shape)
        self.built = True

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, list):
            mask = mask[0]
        out = mask if self.return_sequences else None
        if self.return_state:
            n = len(self.forward_layer.state_size) * 2
            return ([out] if self.merge_mode else [out, out]) + [None] * n
        return out if self.merge_mode else [out, out]

    def call(self, inputs, initial_state=None, mask=None, training=False):
        fw_init = bw_init = None
        if initial_state is not None:
            half = len(initial_state) // 2
            fw_init, bw_init = initial_state[:half], initial_state[half:]
        f_seq, f_last, f_states = self.forward_layer.run(inputs, fw_init, mask, training, aligned=True)
        b_seq, b_last, b_states = self.backward_layer.run(inputs, bw_init, mask, training, aligned=True)
        if self.return_sequences:
            fo, bo = f_seq, b_seq
        else:
            fo, bo = f_last, b_last
        merge = _MERGES[self.merge_mode]
        out = [fo, bo] if merge is None else [merge(fo, bo)]
        return out + f_states + b_states if self.return_state else (out if merge is None else out[0])

    @property
    def stateful(self):
        return self.forward_layer.stateful

    def reset_states(self):
        if not self.stateful:
            raise AttributeError(f"Layer '{self.name}' is not stateful: its RNN layer needs stateful=True")
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    reset_state = reset_states

    def get_config(self):
        config = super().get_config()
        config.update({"layer": serialize_layer(self.forward_layer), "merge_mode": self.merge_mode,
                       "backward_layer": serialize_layer(self.backward_layer)})
        return config
