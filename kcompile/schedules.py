"""Learning-rate schedules (keras.optimizers.schedules), written with ops so that inside a
compiled training step they are evaluated from the iteration counter with no Python per batch;
called with a number they evaluate eagerly."""
from __future__ import annotations

import math

from . import ops


class LearningRateSchedule:
    def __call__(self, step):
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(step)")

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} must implement get_config")

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items() if k != "name"}
        return cls(**config)


def _f(step):
    return ops.cast(step, "float32")


class ExponentialDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        if decay_steps <= 0:
            raise ValueError(f"ExponentialDecay: decay_steps must be > 0, got {decay_steps}")
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), float(decay_steps)
        self.decay_rate, self.staircase, self.name = float(decay_rate), bool(staircase), name

    def __call__(self, step):
        p = ops.divide(_f(step), self.decay_steps)
        if self.staircase:
            p = ops.floor(p)
        return ops.multiply(self.initial_learning_rate, ops.power(self.decay_rate, p))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(values) != len(boundaries) + 1:
            raise ValueError("PiecewiseConstantDecay: the length of values must be one more than boundaries")
        self.boundaries, self.values, self.name = [float(b) for b in boundaries], [float(v) for v in values], name

    def __call__(self, step):
        s = _f(step)
        result = ops.multiply(ops.ones_like(s), self.values[-1])
        for b, v in reversed(list(zip(self.boundaries, self.values[:-1]))):
            result = ops.where(ops.less_equal(s, b), ops.multiply(ops.ones_like(s), v), result)
        return result

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), float(decay_steps)
        self.end_learning_rate, self.power, self.cycle, self.name = float(end_learning_rate), float(power), bool(cycle), name

    def __call__(self, step):
        s = _f(step)
        if self.cycle:
            mult = ops.maximum(ops.ceil(ops.divide(s, self.decay_steps)), 1.0)
            steps = ops.multiply(self.decay_steps, mult)
        else:
            s = ops.minimum(s, self.decay_steps)
            steps = self.decay_steps
        frac = ops.power(ops.subtract(1.0, ops.divide(s, steps)), self.power)
        return ops.add(ops.multiply(self.initial_learning_rate - self.end_learning_rate, frac), self.end_learning_rate)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle,
                "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), float(decay_steps)
        self.decay_rate, self.staircase, self.name = float(decay_rate), bool(staircase), name

    def __call__(self, step):
        p = ops.divide(_f(step), self.decay_steps)
        if self.staircase:
            p = ops.floor(p)
        return ops.divide(self.initial_learning_rate, ops.add(1.0, ops.multiply(self.decay_rate, p)))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class CosineDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        self.initial_learning_rate, self.decay_steps, self.alpha = float(initial_learning_rate), float(decay_steps), float(alpha)
        self.name, self.warmup_target, self.warmup_steps = name, warmup_target, float(warmup_steps)

    def _cos(self, s, initial):
        frac = ops.divide(ops.minimum(s, self.decay_steps), self.decay_steps)
        cosine = ops.multiply(0.5, ops.add(1.0, _cos(ops.multiply(math.pi, frac))))
        return ops.multiply(initial, ops.add(ops.multiply(1.0 - self.alpha, cosine), self.alpha))

    def __call__(self, step):
        s = _f(step)
        if self.warmup_target is None:
            return self._cos(s, self.initial_learning_rate)
        target = float(self.warmup_target)
        warm = ops.add(self.initial_learning_rate, ops.multiply(
            (target - self.initial_learning_rate) / max(self.warmup_steps, 1.0), s))
        decayed = self._cos(ops.subtract(s, self.warmup_steps), target)
        return ops.where(ops.less(s, self.warmup_steps), warm, decayed)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0,
                 name="SGDRDecay"):
        self.initial_learning_rate, self.first_decay_steps = float(initial_learning_rate), float(first_decay_steps)
        self.t_mul, self.m_mul, self.alpha, self.name = float(t_mul), float(m_mul), float(alpha), name

    def __call__(self, step):
        frac = ops.divide(_f(step), self.first_decay_steps)
        if self.t_mul == 1.0:
            i_restart = ops.floor(frac)
            frac = ops.subtract(frac, i_restart)
        else:
            i_restart = ops.floor(ops.divide(ops.log(ops.add(1.0, ops.multiply(frac, self.t_mul - 1.0))),
                                             math.log(self.t_mul)))
            sum_r = ops.divide(ops.subtract(1.0, ops.power(self.t_mul, i_restart)), 1.0 - self.t_mul)
            frac = ops.divide(ops.subtract(frac, sum_r), ops.power(self.t_mul, i_restart))
        m_fac = ops.power(self.m_mul, i_restart)
        cosine = ops.multiply(ops.multiply(0.5, m_fac), ops.add(1.0, _cos(ops.multiply(math.pi, frac))))
        return ops.multiply(self.initial_learning_rate, ops.add(ops.multiply(1.0 - self.alpha, cosine), self.alpha))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "first_decay_steps": self.first_decay_steps,
                "t_mul": self.t_mul, "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


def _cos(x):
    """cos(x) for x in [0, pi] as 1 - 2 sin^2(x/2) via tanh-free ops: uses exp of imaginary-free identity
    cos(x) = (e^{ix}+e^{-ix})/2 is unavailable, so a Taylor-accurate form: cos(x) = 1 - 2*s^2 with
    s = sin(x/2) from an odd polynomial (|x/2| <= pi/2, error < 1e-7)."""
    h = ops.multiply(x, 0.5)
    h2 = ops.square(h)
    # sin(h) Taylor to h^13 (max error on [0, pi/2] ~ 6e-11)
    coeffs = [1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880, -1 / 39916800, 1 / 6227020800]
    poly = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        poly = ops.add(ops.multiply(poly, h2), c)
    s = ops.multiply(h, poly)
    return ops.subtract(1.0, ops.multiply(2.0, ops.square(s)))


_CLASSES = {c.__name__: c for c in (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay,
                                    InverseTimeDecay, CosineDecay, CosineDecayRestarts)}


def serialize(schedule):
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config):
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"Unknown learning rate schedule {config.get('class_name')!r}; known: {sorted(_CLASSES)}")
    return cls.from_config(config.get("config", {}))
