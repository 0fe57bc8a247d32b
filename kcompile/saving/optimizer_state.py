"""Optimizer state in files: kcompile's optimizer variables laid out and named as Keras writes them.

Keras restores optimizer state positionally, so the order is what matters (keras_formats.md §1.3,
§3.4): Keras 3 writes `iteration`, `learning_rate` (absent with a schedule), then the slots —
kinds created together are interleaved per model variable (Adam: momentum, velocity of v1, then
of v2 ...), kinds created later follow as whole blocks (Adam's velocity_hat, RMSprop's momentum
and average_gradient). tf-keras (>= 2.11) writes the same without `learning_rate`; tf.keras <= 2.10
and `optimizers.legacy.*` write every kind as its own block. Slot names follow Keras 3
(`adam/dense_kernel_momentum`), whatever kcompile calls the slot internally.
"""
from __future__ import annotations

import warnings

import numpy as np

# class name -> groups of (kcompile slot, Keras slot); a group's kinds interleave per variable,
# groups follow one another. Optimizers not listed keep kcompile's per-variable order and names.
_KERAS_LAYOUT = {
    "SGD": [[("momentum", "momentum")]],
    "Adam": [[("m", "momentum"), ("v", "velocity")], [("vhat", "velocity_hat")]],
    "AdamW": [[("m", "momentum"), ("v", "velocity")], [("vhat", "velocity_hat")]],
    "Nadam": [[("m", "momentum"), ("v", "velocity")]],
    "Adamax": [[("m", "momentum"), ("u", "norm")]],
    "RMSprop": [[("velocity", "velocity")], [("momentum", "momentum")], [("average_gradient", "average_gradient")]],
    "Adagrad": [[("accumulator", "accumulator")]],
}


def _layout(optimizer):
    for cls in type(optimizer).__mro__:
        if cls.__name__ in _KERAS_LAYOUT:
            return _KERAS_LAYOUT[cls.__name__]
    return [[(name, name) for name in optimizer._slot_names]]


def _slot_blocks(optimizer, trainable, blocked):
    """[(Keras slot name, model variable, slot Variable)] in Keras's order; `blocked` puts every
    kind in its own block (the legacy tf.keras order)."""
    groups = _layout(optimizer)
    if blocked:
        groups = [[kind] for group in groups for kind in group]
    out = []
    for group in groups:
        for var in trainable:
            slots = optimizer._slots.get(id(var), {})
            out += [(keras_name, var, slots[ours]) for ours, keras_name in group if ours in slots]
    return out


def _extras(optimizer):
    """Variables beyond iteration, learning rate and slots (Nadam's u_product), in their order."""
    known = {id(optimizer.iterations), id(optimizer._lr)}
    known.update(id(s) for slots in optimizer._slots.values() for s in slots.values())
    return [v for v in optimizer.variables if id(v) not in known]


def keras_optimizer_variables(optimizer, trainable):
    """[(name, Variable)] in Keras 3's order and naming, after building the optimizer for `trainable`."""
    optimizer.build(trainable)
    prefix = optimizer.name
    out = [(f"{prefix}/iteration", optimizer.iterations)]
    if getattr(optimizer, "_schedule", None) is None:
        out.append((f"{prefix}/learning_rate", optimizer._lr))
    out += [(f"{prefix}/{var.path.replace('/', '_')}_{kind}", slot)
            for kind, var, slot in _slot_blocks(optimizer, trainable, blocked=False)]
    out += [(v.path, v) for v in _extras(optimizer)]
    return _unique(out)


def _unique(named):
    """Variable paths need not be unique (two RNNs each have "gru_cell/kernel"); HDF5 names must be."""
    seen, out = {}, []
    for name, v in named:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append((name if n == 0 else f"{name}_{n}", v))
    return out


def restore_optimizer_state(optimizer, arrays, trainable, source):
    """Assign stored optimizer arrays; layouts tried: Keras 3, tf-keras (no learning rate), legacy
    tf.keras (kinds in blocks). An optimizer saved before its first step has no slots yet (Keras 3
    writes iteration and learning rate, tf-keras the iteration only): those are restored alone. Anything else warns and leaves the state fresh, as Keras does."""
    arrays = [np.asarray(a) for a in arrays]
    keras3 = [v for _, v in keras_optimizer_variables(optimizer, trainable)]
    slots = [s for _, _, s in _slot_blocks(optimizer, trainable, blocked=False)]
    blocked = [s for _, _, s in _slot_blocks(optimizer, trainable, blocked=True)]
    extras = _extras(optimizer)
    it = optimizer.iterations
    unbuilt = keras3[:2] if getattr(optimizer, "_schedule", None) is None else keras3[:1]
    candidates = [keras3, [it] + slots + extras, [it] + blocked + extras, unbuilt, [it]]
    for layout in candidates:
        if len(layout) == len(arrays) and all(a.shape == tuple(v.shape) for a, v in zip(arrays, layout)):
            for v, a in zip(layout, arrays):
                v.assign(a.astype(v.dtype))
            return True
    if arrays:
        warnings.warn(f"{source}: the optimizer state in the file ({len(arrays)} arrays) does not match this "
                      f"optimizer ({type(optimizer).__name__}, {len(keras3)} variables); it starts fresh",
                      stacklevel=3)
    return False
