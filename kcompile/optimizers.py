"""Keras 3 optimizers as IR update rules.

An optimizer owns its state as variables (learning rate, iteration counter, one or more slots per
trained variable) and emits, for a list of (variable, gradient) pairs, the new value of every
variable and slot. Those nodes become part of the compiled training step, so an update costs no
Python. The formulas follow Keras 3's `update_step` implementations; Keras 2 spellings (`lr`,
`decay`) are accepted.
"""
from __future__ import annotations

import numpy as np

from . import ops
from . import schedules  # noqa: F401 - keras.optimizers.schedules
from .variables import Variable
from .naming import to_snake_case


class Optimizer:
    _slot_names: tuple = ()

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
                 loss_scale_factor=None, gradient_accumulation_steps=None, name=None, **kwargs):
        if "lr" in kwargs:
            learning_rate = kwargs.pop("lr")
        decay = kwargs.pop("decay", 0.0) or 0.0
        kwargs.pop("jit_compile", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unexpected arguments {sorted(kwargs)}")
        for arg, value in (("use_ema", use_ema), ("loss_scale_factor", loss_scale_factor),
                           ("gradient_accumulation_steps", gradient_accumulation_steps)):
            if value:
                raise ValueError(f"{type(self).__name__}: argument {arg}={value!r} is not supported")
        if sum(x is not None for x in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set.")
        self.name = name or _snake(type(self).__name__)
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.decay = float(decay)
        from .schedules import LearningRateSchedule
        self._schedule = learning_rate if isinstance(learning_rate, LearningRateSchedule) else None
        lr0 = 0.0 if self._schedule is not None else float(learning_rate)
        self._lr = Variable(np.float32(lr0), shape=(), name="learning_rate", path=f"{self.name}/learning_rate",
                            trainable=False, kind="optimizer")
        self.iterations = Variable(np.int32(0), shape=(), dtype="int32", name="iteration",
                                   path=f"{self.name}/iteration", trainable=False, kind="optimizer")
        self._slots = {}        # id(variable) -> {slot name: Variable}
        self._built_for = []
        self._exclude_from_wd = set()

    # ------------------------------------------------------------ learning rate
    @property
    def learning_rate(self):
        if self._schedule is not None:
            return self._schedule
        return float(self._lr.numpy())

    @learning_rate.setter
    def learning_rate(self, value):
        from .schedules import LearningRateSchedule
        if isinstance(value, LearningRateSchedule) or self._schedule is not None:
            raise ValueError("Setting a learning-rate schedule after compile is not supported; recompile instead")
        self._lr.assign(np.float32(value))

    lr = learning_rate

    def _current_lr(self):
        """The learning rate for this step, as a tensor (schedules are evaluated in the graph)."""
        if self._schedule is not None:
            lr = self._schedule(ops.cast(self.iterations, "float32"))
        else:
            lr = self._lr
        if self.decay:
            lr = ops.divide(lr, ops.add(1.0, ops.multiply(self.decay, ops.cast(self.iterations, "float32"))))
        return lr

    # ------------------------------------------------------------ state
    def build(self, var_list):
        for v in var_list:
            if id(v) in self._slots:
                continue
            self._slots[id(v)] = {name: self._make_slot(v, name) for name in self._slot_names}
            self._built_for.append(v)

    def _slot_initial(self, name, var):
        return np.zeros(var.shape, np.float32)

    def _make_slot(self, var, name):
        return Variable(self._slot_initial(name, var), shape=var.shape, name=name,
                        path=f"{self.name}/{var.path.replace('/', '_')}_{name}", trainable=False, kind="optimizer")

    @property
    def variables(self):
        out = [self.iterations, self._lr]
        for v in self._built_for:
            out += list(self._slots[id(v)].values())
        return out

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        for v in var_list or []:
            self._exclude_from_wd.add(id(v))
        self._exclude_names = list(var_names or [])

    # ------------------------------------------------------------ update rules
    def _clip(self, grads):
        if self.clipvalue is not None:
            return [ops.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            out = []
            for g in grads:
                norm = ops.sqrt(ops.sum(ops.square(g)))
                out.append(ops.where(ops.greater(norm, self.clipnorm),
                                     ops.multiply(g, ops.divide(self.clipnorm, norm)), g))
            return out
        if self.global_clipnorm is not None:
            total = None
            for g in grads:
                s = ops.sum(ops.square(g))
                total = s if total is None else ops.add(total, s)
            norm = ops.sqrt(total)
            scale = ops.divide(self.global_clipnorm, ops.maximum(norm, self.global_clipnorm))
            return [ops.multiply(g, scale) for g in grads]
        return grads

    def update_nodes(self, variables, grads):
        """dict Variable -> new value tensor, for the variables, their slots and the counter."""
        self.build(variables)
        grads = self._clip(grads)
        lr = self._current_lr()
        step = ops.add(ops.cast(self.iterations, "float32"), 1.0)    # Keras's local_step
        updates = {}
        for var, g in zip(variables, grads):
            value = var
            if self.weight_decay and id(var) not in self._exclude_from_wd and \
                    not any(n in var.path for n in getattr(self, "_exclude_names", [])):
                value = ops.subtract(value, ops.multiply(value, ops.multiply(lr, float(self.weight_decay))))
            new_var, new_slots = self.update_step(g, value, self._slots[id(var)], lr, step)
            updates[var] = new_var
            for name, node in new_slots.items():
                updates[self._slots[id(var)][name]] = node
        updates[self.iterations] = ops.add(self.iterations, np.int32(1))
        return updates

    def update_step(self, g, var, slots, lr, step):
        raise NotImplementedError(f"{type(self).__name__} must implement update_step")

    def get_config(self):
        config = {"name": self.name, "learning_rate": self.learning_rate if self._schedule is None else
                  _serialize_schedule(self._schedule), "weight_decay": self.weight_decay,
                  "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                  "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                  "loss_scale_factor": None, "gradient_accumulation_steps": None}
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            from . import schedules
            config["learning_rate"] = schedules.deserialize(lr)
        config.pop("is_legacy_optimizer", None)
        return cls(**config)


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self._slot_names = ("momentum",) if self.momentum else ()

    def update_step(self, g, var, slots, lr, step):
        if not self.momentum:
            return ops.subtract(var, ops.multiply(g, lr)), {}
        m = ops.add(ops.multiply(ops.negative(g), lr), ops.multiply(slots["momentum"], self.momentum))
        if self.nesterov:
            new = ops.add(var, ops.add(ops.multiply(ops.negative(g), lr), ops.multiply(m, self.momentum)))
        else:
            new = ops.add(var, m)
        return new, {"momentum": m}

    def get_config(self):
        return dict(super().get_config(), momentum=self.momentum, nesterov=self.nesterov)


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = float(beta_1), float(beta_2), float(epsilon), bool(amsgrad)
        self._slot_names = ("m", "v", "vhat") if amsgrad else ("m", "v")

    def update_step(self, g, var, slots, lr, step):
        b1p = ops.power(self.beta_1, step)
        b2p = ops.power(self.beta_2, step)
        alpha = ops.divide(ops.multiply(lr, ops.sqrt(ops.subtract(1.0, b2p))), ops.subtract(1.0, b1p))
        m = ops.add(slots["m"], ops.multiply(ops.subtract(g, slots["m"]), 1.0 - self.beta_1))
        v = ops.add(slots["v"], ops.multiply(ops.subtract(ops.square(g), slots["v"]), 1.0 - self.beta_2))
        new_slots = {"m": m, "v": v}
        if self.amsgrad:
            v = ops.maximum(slots["vhat"], v)
            new_slots["vhat"] = v
        new = ops.subtract(var, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)))
        return new, new_slots

    def get_config(self):
        return dict(super().get_config(), beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                    amsgrad=self.amsgrad)


class AdamW(Adam):
    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), bool(centered)
        names = ["velocity"]
        if self.momentum:
            names.append("momentum")
        if self.centered:
            names.append("average_gradient")
        self._slot_names = tuple(names)

    def update_step(self, g, var, slots, lr, step):
        rho = self.rho
        velocity = ops.add(ops.multiply(slots["velocity"], rho), ops.multiply(ops.square(g), 1.0 - rho))
        new_slots = {"velocity": velocity}
        if self.centered:
            avg = ops.add(ops.multiply(slots["average_gradient"], rho), ops.multiply(g, 1.0 - rho))
            new_slots["average_gradient"] = avg
            denominator = ops.add(ops.subtract(velocity, ops.square(avg)), self.epsilon)
        else:
            denominator = ops.add(velocity, self.epsilon)
        increment = ops.divide(ops.multiply(lr, g), ops.sqrt(denominator))
        if self.momentum:
            m = ops.add(ops.multiply(slots["momentum"], self.momentum), increment)
            new_slots["momentum"] = m
            return ops.subtract(var, m), new_slots
        return ops.subtract(var, increment), new_slots

    def get_config(self):
        return dict(super().get_config(), rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                    centered=self.centered)


class Adagrad(Optimizer):
    _slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def _slot_initial(self, name, var):
        return np.full(var.shape, self.initial_accumulator_value, np.float32)

    def update_step(self, g, var, slots, lr, step):
        acc = ops.add(slots["accumulator"], ops.square(g))
        return ops.subtract(var, ops.divide(ops.multiply(lr, g), ops.sqrt(ops.add(acc, self.epsilon)))), \
            {"accumulator": acc}

    def get_config(self):
        return dict(super().get_config(), initial_accumulator_value=self.initial_accumulator_value,
                    epsilon=self.epsilon)


class Adadelta(Optimizer):
    _slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def update_step(self, g, var, slots, lr, step):
        rho, eps = self.rho, self.epsilon
        acc_g = ops.add(ops.multiply(slots["accumulated_grad"], rho), ops.multiply(ops.square(g), 1.0 - rho))

        def rms(x):
            return ops.sqrt(ops.add(x, eps))
        delta = ops.negative(ops.divide(ops.multiply(rms(slots["accumulated_delta_var"]), g), rms(acc_g)))
        acc_d = ops.add(ops.multiply(slots["accumulated_delta_var"], rho), ops.multiply(ops.square(delta), 1.0 - rho))
        return ops.add(var, ops.multiply(lr, delta)), {"accumulated_grad": acc_g, "accumulated_delta_var": acc_d}

    def get_config(self):
        return dict(super().get_config(), rho=self.rho, epsilon=self.epsilon)


class Adamax(Optimizer):
    _slot_names = ("m", "u")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update_step(self, g, var, slots, lr, step):
        b1p = ops.power(self.beta_1, step)
        m = ops.add(slots["m"], ops.multiply(ops.subtract(g, slots["m"]), 1.0 - self.beta_1))
        u = ops.maximum(ops.multiply(slots["u"], self.beta_2), ops.abs(g))
        new = ops.subtract(var, ops.divide(ops.multiply(ops.divide(lr, ops.subtract(1.0, b1p)), m),
                                           ops.add(u, self.epsilon)))
        return new, {"m": m, "u": u}

    def get_config(self):
        return dict(super().get_config(), beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)


class Nadam(Optimizer):
    _slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._u_product = Variable(np.float32(1.0), shape=(), name="u_product", path=f"{self.name}/u_product",
                                   trainable=False, kind="optimizer")

    @property
    def variables(self):
        return super().variables + [self._u_product]

    def update_nodes(self, variables, grads):
        # u_product advances once per step (Keras updates it in the first variable's update)
        step = ops.add(ops.cast(self.iterations, "float32"), 1.0)
        u_t = ops.multiply(self.beta_1, ops.subtract(1.0, ops.multiply(0.5, ops.power(0.96, ops.multiply(0.004, step)))))
        self._step_terms = (u_t, ops.multiply(self._u_product, u_t))
        updates = super().update_nodes(variables, grads)
        updates[self._u_product] = self._step_terms[1]
        return updates

    def update_step(self, g, var, slots, lr, step):
        u_t, u_product_t = self._step_terms
        next_step = ops.add(step, 1.0)
        u_t_1 = ops.multiply(self.beta_1, ops.subtract(1.0, ops.multiply(0.5, ops.power(0.96, ops.multiply(0.004, next_step)))))
        u_product_t_1 = ops.multiply(u_product_t, u_t_1)
        b2p = ops.power(self.beta_2, step)
        m = ops.add(slots["m"], ops.multiply(ops.subtract(g, slots["m"]), 1.0 - self.beta_1))
        v = ops.add(slots["v"], ops.multiply(ops.subtract(ops.square(g), slots["v"]), 1.0 - self.beta_2))
        m_hat = ops.add(ops.divide(ops.multiply(u_t_1, m), ops.subtract(1.0, u_product_t_1)),
                        ops.divide(ops.multiply(ops.subtract(1.0, u_t), g), ops.subtract(1.0, u_product_t)))
        v_hat = ops.divide(v, ops.subtract(1.0, b2p))
        new = ops.subtract(var, ops.divide(ops.multiply(m_hat, lr), ops.add(ops.sqrt(v_hat), self.epsilon)))
        return new, {"m": m, "v": v}

    def get_config(self):
        return dict(super().get_config(), beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
            "adadelta": Adadelta, "adamax": Adamax, "nadam": Nadam}
_CLASSES = {c.__name__: c for c in _BY_NAME.values()}


def get(identifier):
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: '{identifier}'. "
                             f"Valid names are: {sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict):
        name = identifier.get("class_name", "")
        for prefix in ("Custom>", "keras.optimizers.legacy.", "keras.optimizers."):
            name = name.replace(prefix, "")
        cls = _CLASSES.get(name) or _BY_NAME.get(name.lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {identifier.get('class_name')!r}. "
                             f"Valid names are: {sorted(_CLASSES)}")
        return cls.from_config(identifier.get("config", {}))
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")


def serialize(opt):
    return {"module": "keras.optimizers", "class_name": type(opt).__name__, "config": opt.get_config(),
            "registered_name": None}


def _serialize_schedule(schedule):
    from . import schedules
    return schedules.serialize(schedule)


def _snake(name):
    return to_snake_case(name)
