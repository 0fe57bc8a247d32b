"""Keras losses: per-sample functions (traced into IR with ops) and Loss classes that apply
sample weights and the reduction, with Keras 3's formulas and shape handling."""
from __future__ import annotations

import numpy as np

from . import ops
from .tracing import KerasTensor
from .naming import to_snake_case

EPSILON = 1e-7


def _rank(x):
    return len(x.shape)


def squeeze_or_expand_to_same_rank(x1, x2):
    """As Keras: drop a trailing size-1 axis from whichever operand has one rank too many."""
    r1, r2 = _rank(x1), _rank(x2)
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        x1 = ops.squeeze(x1, axis=-1)
    elif r2 == r1 + 1 and x2.shape[-1] == 1:
        x2 = ops.squeeze(x2, axis=-1)
    return x1, x2


def _check(name, y_true, y_pred):
    """Targets must broadcast against predictions after Keras's rank alignment (a trailing size-1
    axis dropped). Ranks that still differ are refused: broadcasting them would pair every sample
    with every other one (Keras does so silently)."""
    yt, yp = tuple(y_true.shape), tuple(y_pred.shape)
    a, b = yt[1:], yp[1:]
    if len(a) == len(b) + 1 and a[-1:] == (1,):
        a = a[:-1]
    elif len(b) == len(a) + 1 and b[-1:] == (1,):
        b = b[:-1]
    if len(a) != len(b):
        raise ValueError(f"{name}: targets of shape {yt} do not match predictions of shape {yp} (a target "
                         f"array per sample of rank {len(yt) - 1} for predictions of rank {len(yp) - 1})")
    for p, q in zip(a, b):
        if p not in (q, 1) and q != 1:
            raise ValueError(f"{name}: targets of shape {yt} do not match predictions of shape {yp}")


def mean_squared_error(y_true, y_pred):
    return ops.mean(ops.square(ops.subtract(y_pred, y_true)), axis=-1)


def mean_absolute_error(y_true, y_pred):
    return ops.mean(ops.abs(ops.subtract(y_pred, y_true)), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    diff = ops.abs(ops.divide(ops.subtract(y_true, y_pred), ops.maximum(ops.abs(y_true), EPSILON)))
    return ops.multiply(100.0, ops.mean(diff, axis=-1))


def mean_squared_logarithmic_error(y_true, y_pred):
    a = ops.log(ops.add(ops.maximum(y_pred, EPSILON), 1.0))
    b = ops.log(ops.add(ops.maximum(y_true, EPSILON), 1.0))
    return ops.mean(ops.square(ops.subtract(a, b)), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    if label_smoothing:
        y_true = ops.add(ops.multiply(y_true, 1.0 - label_smoothing), 0.5 * label_smoothing)
    if from_logits:
        # -(t*log_sigmoid(x) + (1-t)*log_sigmoid(-x)) = softplus(x) - t*x
        bce = ops.subtract(ops.softplus(y_pred), ops.multiply(y_true, y_pred))
    else:
        out = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        bce = ops.negative(ops.add(ops.multiply(y_true, ops.log(out)),
                                   ops.multiply(ops.subtract(1.0, y_true), ops.log(ops.subtract(1.0, out)))))
    return ops.mean(bce, axis=axis)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    if label_smoothing:
        classes = y_pred.shape[-1]
        y_true = ops.add(ops.multiply(y_true, 1.0 - label_smoothing), label_smoothing / classes)
    if from_logits:
        log_prob = ops.log_softmax(y_pred, axis=axis)
    else:
        out = ops.divide(y_pred, ops.sum(y_pred, axis=axis, keepdims=True))
        log_prob = ops.log(ops.clip(out, EPSILON, 1.0 - EPSILON))
    return ops.negative(ops.sum(ops.multiply(y_true, log_prob), axis=axis))


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    if ignore_class is not None:
        raise ValueError("sparse_categorical_crossentropy: ignore_class is not supported yet")
    if _rank(y_true) == _rank(y_pred) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if _rank(y_true) != _rank(y_pred) - 1:
        raise ValueError(f"sparse_categorical_crossentropy: integer targets of shape {y_true.shape} do not "
                         f"match predictions of shape {y_pred.shape} (expected targets of shape {y_pred.shape[:-1]})")
    if from_logits:
        log_prob = ops.log_softmax(y_pred, axis=axis)
    else:
        out = ops.divide(y_pred, ops.sum(y_pred, axis=axis, keepdims=True))
        log_prob = ops.log(ops.clip(out, EPSILON, 1.0 - EPSILON))
    classes = y_pred.shape[axis]
    target = ops.one_hot(y_true, classes)
    loss = ops.negative(ops.sum(ops.multiply(target, log_prob), axis=axis))
    # A label that is no class index (out of range or fractional) would score as "no class", a loss
    # of 0: it scores NaN instead, so TerminateOnNaN and the logs show it (host arrays are refused
    # before this by check_sparse_labels).
    bad = ops.logical_or(ops.logical_or(ops.less(y_true, 0.0), ops.greater_equal(y_true, float(classes))),
                         ops.not_equal(y_true, ops.floor(y_true)))
    return ops.where(bad, float("nan"), loss)


def check_sparse_labels(loss, y, num_classes):
    """Refuse host labels that are not class indices in [0, num_classes) for a sparse categorical
    crossentropy loss; the compiled loss would silently score such a label as no class at all.
    Other losses, and outputs whose class count is unknown, are not checked."""
    if getattr(loss, "fn", None) is not sparse_categorical_crossentropy or num_classes is None:
        return
    y = np.asarray(y)
    valid = (y >= 0) & (y < num_classes) & (y == np.floor(y))    # False for NaN too
    if not valid.all():
        bad = y[~valid].flat[0]
        which = "" if loss.name == "sparse_categorical_crossentropy" else f" (loss '{loss.name}')"
        raise ValueError(f"sparse_categorical_crossentropy{which}: the label {bad} is not a class index. Labels "
                         f"must be integers in the range [0, {num_classes}) for an output of {num_classes} "
                         f"classes")


def _hinge_labels(y_true):
    # {0, 1} labels become {-1, 1}, as Keras does when every label is 0 or 1.
    is01 = ops.maximum(ops.equal(y_true, 0.0), ops.equal(y_true, 1.0))
    all01 = ops.min(is01)
    return ops.where(all01, ops.subtract(ops.multiply(y_true, 2.0), 1.0), y_true)


def hinge(y_true, y_pred):
    y_true = _hinge_labels(y_true)
    return ops.mean(ops.maximum(ops.subtract(1.0, ops.multiply(y_true, y_pred)), 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    y_true = _hinge_labels(y_true)
    return ops.mean(ops.square(ops.maximum(ops.subtract(1.0, ops.multiply(y_true, y_pred)), 0.0)), axis=-1)


def categorical_hinge(y_true, y_pred):
    pos = ops.sum(ops.multiply(y_true, y_pred), axis=-1)
    neg = ops.max(ops.multiply(ops.subtract(1.0, y_true), y_pred), axis=-1)
    return ops.maximum(ops.add(ops.subtract(neg, pos), 1.0), 0.0)


def kl_divergence(y_true, y_pred):
    t = ops.clip(y_true, EPSILON, 1.0)
    p = ops.clip(y_pred, EPSILON, 1.0)
    return ops.sum(ops.multiply(t, ops.log(ops.divide(t, p))), axis=-1)


def poisson(y_true, y_pred):
    return ops.mean(ops.subtract(y_pred, ops.multiply(y_true, ops.log(ops.add(y_pred, EPSILON)))), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    err = ops.subtract(y_pred, y_true)
    abs_err = ops.abs(err)
    quad = ops.multiply(0.5, ops.square(err))
    lin = ops.subtract(ops.multiply(delta, abs_err), 0.5 * delta * delta)
    return ops.mean(ops.where(ops.less_equal(abs_err, delta), quad, lin), axis=-1)


def log_cosh(y_true, y_pred):
    x = ops.subtract(y_pred, y_true)
    return ops.mean(ops.subtract(ops.add(x, ops.softplus(ops.multiply(-2.0, x))), float(np.log(2.0))), axis=-1)


def _l2_normalize(x, axis=-1):
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return ops.divide(x, ops.sqrt(ops.maximum(sq, 1e-12)))


def cosine_similarity(y_true, y_pred, axis=-1):
    return ops.negative(ops.sum(ops.multiply(_l2_normalize(y_true, axis), _l2_normalize(y_pred, axis)), axis=axis))


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kullback_leibler_divergence = kl_divergence
logcosh = log_cosh


class Loss:
    """Base loss: `call(y_true, y_pred)` gives per-sample values; `__call__` weights and reduces."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in ("sum_over_batch_size", "sum", "none", "mean", "auto", None):
            raise ValueError(f"Invalid value for argument `reduction`: {reduction!r}. Valid values are "
                             "'sum_over_batch_size', 'sum', 'mean', 'none'")
        self.name = name or _snake(type(self).__name__)
        self.reduction = "sum_over_batch_size" if reduction in ("auto", None) else reduction

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred)")

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.call(y_true, y_pred)
        sample_weight = _apply_mask(values, sample_weight, getattr(y_pred, "_keras_mask", None), self.reduction)
        return reduce_weighted_values(values, sample_weight, self.reduction)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _apply_mask(values, sample_weight, mask, reduction):
    """Fold a Keras mask (e.g. from Embedding(mask_zero=True) through an RNN) into the weights.

    As Keras does, a mean over the batch becomes a mean over the unmasked entries only.
    """
    if mask is None:
        return sample_weight
    from .ir import builder as irb
    mask = ops.cast(mask, "float32")
    if reduction in ("mean", "sum_over_batch_size"):
        total = KerasTensor(irb.count(mask.node, tuple(range(len(mask.node.shape)))))
        mask = ops.multiply(mask, ops.divide(total, ops.add(ops.sum(mask), 1e-7)))
    if sample_weight is None:
        return mask
    mask, sample_weight = squeeze_or_expand_to_same_rank(mask, sample_weight)
    return ops.multiply(_expand_to_rank(sample_weight, _rank(mask)), mask)


def _expand_to_rank(weight, rank):
    """Per-sample weights (batch,) broadcast over per-step values (batch, steps, ...)."""
    while _rank(weight) < rank:
        weight = ops.expand_dims(weight, -1)
    return weight


def reduce_weighted_values(values, sample_weight, reduction):
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        sample_weight = _expand_to_rank(sample_weight, _rank(values))
        values = ops.multiply(values, sample_weight)
    if reduction == "none":
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    if isinstance(values, KerasTensor) or hasattr(values, "node"):
        from .ir import builder as irb
        count = KerasTensor(irb.count(values.node, tuple(range(len(values.node.shape)))))
        if reduction == "mean" and sample_weight is not None:
            return ops.divide(total, ops.maximum(ops.sum(ops.multiply(ops.ones_like(values), sample_weight)), 1e-7))
        return ops.divide(total, count)
    return ops.divide(total, float(np.size(values)))


class LossFunctionWrapper(Loss):
    def __init__(self, fn, name=None, reduction="sum_over_batch_size", **fn_kwargs):
        super().__init__(name=name or fn.__name__, reduction=reduction)
        self.fn = fn
        self.fn_kwargs = fn_kwargs

    def call(self, y_true, y_pred):
        if self.fn is not sparse_categorical_crossentropy:    # (which checks its class-index targets itself)
            _check(self.name, y_true, y_pred)
            y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self.fn_kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(self.fn_kwargs)
        return config


def _wrapper(fn, default_name, **defaults):
    def __init__(self, reduction="sum_over_batch_size", name=default_name, dtype=None, **kwargs):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        LossFunctionWrapper.__init__(self, fn, name=name, reduction=reduction, **dict(defaults, **kwargs))
    return __init__


def _loss_class(class_name, fn, default_name, **defaults):
    return type(class_name, (LossFunctionWrapper,), {"__init__": _wrapper(fn, default_name, **defaults)})


MeanSquaredError = _loss_class("MeanSquaredError", mean_squared_error, "mean_squared_error")
MeanAbsoluteError = _loss_class("MeanAbsoluteError", mean_absolute_error, "mean_absolute_error")
MeanAbsolutePercentageError = _loss_class("MeanAbsolutePercentageError", mean_absolute_percentage_error,
                                          "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _loss_class("MeanSquaredLogarithmicError", mean_squared_logarithmic_error,
                                          "mean_squared_logarithmic_error")
BinaryCrossentropy = _loss_class("BinaryCrossentropy", binary_crossentropy, "binary_crossentropy",
                                 from_logits=False, label_smoothing=0.0, axis=-1)
CategoricalCrossentropy = _loss_class("CategoricalCrossentropy", categorical_crossentropy,
                                      "categorical_crossentropy", from_logits=False, label_smoothing=0.0, axis=-1)
SparseCategoricalCrossentropy = _loss_class("SparseCategoricalCrossentropy", sparse_categorical_crossentropy,
                                            "sparse_categorical_crossentropy", from_logits=False,
                                            ignore_class=None, axis=-1)
Hinge = _loss_class("Hinge", hinge, "hinge")
SquaredHinge = _loss_class("SquaredHinge", squared_hinge, "squared_hinge")
CategoricalHinge = _loss_class("CategoricalHinge", categorical_hinge, "categorical_hinge")
KLDivergence = _loss_class("KLDivergence", kl_divergence, "kl_divergence")
Poisson = _loss_class("Poisson", poisson, "poisson")
Huber = _loss_class("Huber", huber, "huber_loss", delta=1.0)
LogCosh = _loss_class("LogCosh", log_cosh, "log_cosh")
CosineSimilarity = _loss_class("CosineSimilarity", cosine_similarity, "cosine_similarity", axis=-1)

_BY_NAME = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError, "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError, "msle": MeanSquaredLogarithmicError,
    "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy, "hinge": Hinge,
    "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge, "kl_divergence": KLDivergence,
    "kld": KLDivergence, "kullback_leibler_divergence": KLDivergence, "poisson": Poisson,
    "huber": Huber, "huber_loss": Huber, "log_cosh": LogCosh, "logcosh": LogCosh,
    "cosine_similarity": CosineSimilarity,
}
_CLASSES = {c.__name__: c for c in set(_BY_NAME.values())}
_FUNCTIONS = {
    mean_squared_error: "mean_squared_error", mean_absolute_error: "mean_absolute_error",
    mean_absolute_percentage_error: "mean_absolute_percentage_error",
    mean_squared_logarithmic_error: "mean_squared_logarithmic_error", binary_crossentropy: "binary_crossentropy",
    categorical_crossentropy: "categorical_crossentropy",
    sparse_categorical_crossentropy: "sparse_categorical_crossentropy", hinge: "hinge",
    squared_hinge: "squared_hinge", categorical_hinge: "categorical_hinge", kl_divergence: "kl_divergence",
    poisson: "poisson", huber: "huber", log_cosh: "log_cosh", cosine_similarity: "cosine_similarity",
}


def get(identifier):
    """A Loss object from a name, a Loss instance or class, a serialized dict or a function."""
    if identifier is None:
        return None
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name")) or _BY_NAME.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Unknown loss: {identifier.get('class_name')!r}. Valid names are: {sorted(_BY_NAME)}")
        config = {k: v for k, v in identifier.get("config", {}).items() if k not in ("fn", "dtype")}
        return cls(**config)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Unknown loss: '{identifier}'. Valid names are: {sorted(_BY_NAME)}")
        return cls()
    if identifier in _FUNCTIONS:
        return _BY_NAME[_FUNCTIONS[identifier]]()
    if callable(identifier):
        return LossFunctionWrapper(identifier, name=getattr(identifier, "__name__", "loss"))
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")


def serialize(loss):
    return {"module": "keras.losses", "class_name": type(loss).__name__, "config": loss.get_config(),
            "registered_name": None}


def _snake(name):
    return to_snake_case(name)
