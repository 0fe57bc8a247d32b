"""Keras metrics as state (variables in the state pool) plus an IR update rule.

A metric's `update_nodes(y_true, y_pred, sample_weight)` emits the new values of its state
variables; the compiled train/eval step applies them, so metrics cost no Python per batch.
`result()` reads the state in Python once per log. Used standalone, `update_state` runs the same
rule eagerly through the reference interpreter.
"""
from __future__ import annotations

import numpy as np

from . import losses as losses_mod
from . import ops
from .ir.graph import Graph
from .ir.interpreter import evaluate
from .tracing import KerasTensor, Trace, trace_scope
from .variables import Variable
from .naming import to_snake_case


class Metric:
    def __init__(self, name=None, dtype=None):
        self.name = name or _snake(type(self).__name__)
        self._state = []

    def add_variable(self, shape, initializer="zeros", dtype="float32", name=None):
        value = np.zeros(shape, dtype) if initializer == "zeros" else np.full(shape, initializer, dtype)
        var = Variable(value, shape=shape, dtype=dtype, trainable=False, name=name or "var",
                       path=f"{self.name}/{name}", kind="metric")
        var._initial = value.copy()
        self._state.append(var)
        return var

    add_weight = add_variable

    @property
    def variables(self):
        return list(self._state)

    def reset_state(self):
        for v in self._state:
            v.assign(v._initial)

    def update_nodes(self, y_true, y_pred, sample_weight=None):
        """dict Variable -> KerasTensor of its new value (symbolic)."""
        raise NotImplementedError(f"{type(self).__name__} must implement update_nodes")

    def result_from(self, values):
        """The metric's value from a dict Variable -> numpy value."""
        raise NotImplementedError(f"{type(self).__name__} must implement result_from")

    def result(self):
        return self.result_from({v: v.numpy() for v in self._state})

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Eager update with concrete arrays (runs the IR rule with the interpreter)."""
        from .ir import builder as irb
        from .ir.graph import BATCH
        feeds, inputs = {}, []

        def placeholder(name, arr):
            arr = np.asarray(arr)
            dtype = "int32" if arr.dtype.kind in "iu" else "float32"
            node = irb.input(name, (BATCH,) + arr.shape[1:], dtype, len(inputs))
            inputs.append(node)
            feeds[name] = arr.astype(dtype)
            return KerasTensor(node)
        yt, yp = placeholder("y_true", y_true), placeholder("y_pred", y_pred)
        sw = placeholder("sw", sample_weight) if sample_weight is not None else None
        with trace_scope(Trace(training=False)):
            updates = self.update_nodes(yt, yp, sw)
        graph = Graph(inputs, {}, [v.slot for v in self._state],
                      {v.slot.name: n.node for v, n in updates.items()})
        _, new = evaluate(graph, feeds, {v.slot.name: v.numpy() for v in self._state},
                          batch=np.shape(y_pred)[0])
        for v in self._state:
            if v.slot.name in new:
                v.assign(new[v.slot.name])

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": "float32"}

    @classmethod
    def from_config(cls, config):
        config = {k: v for k, v in config.items() if k != "dtype"}
        return cls(**config)


class Mean(Metric):
    """Weighted mean of values: state total and count."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name)
        self.total = self.add_variable((), name="total")
        self.count = self.add_variable((), name="count")

    def mean_updates(self, values, sample_weight=None):
        if sample_weight is not None:
            values, sample_weight = losses_mod.squeeze_or_expand_to_same_rank(values, sample_weight)
            weights = ops.multiply(ops.ones_like(values), sample_weight)
            values = ops.multiply(values, sample_weight)
            count = ops.sum(weights)
        else:
            count = ops.sum(ops.ones_like(values))
        return {self.total: ops.add(self.total, ops.sum(values)), self.count: ops.add(self.count, count)}

    def update_nodes(self, values, y_pred=None, sample_weight=None):
        return self.mean_updates(values, sample_weight)

    def result_from(self, values):
        count = float(values[self.count])
        return float(values[self.total]) / count if count else 0.0


class MeanMetricWrapper(Mean):
    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or fn.__name__)
        self._fn = fn
        self._fn_kwargs = kwargs

    def update_nodes(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = losses_mod.squeeze_or_expand_to_same_rank(y_true, y_pred) \
            if self._fn is not sparse_categorical_accuracy and self._fn is not sparse_top_k_categorical_accuracy \
            and self._fn is not losses_mod.sparse_categorical_crossentropy else (y_true, y_pred)
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        return self.mean_updates(values, sample_weight)

    def get_config(self):
        return dict(super().get_config(), **self._fn_kwargs)


# ------------------------------------------------------------ metric functions

def binary_accuracy(y_true, y_pred, threshold=0.5):
    return ops.equal(y_true, ops.cast(ops.greater(y_pred, threshold), "float32"))


def categorical_accuracy(y_true, y_pred):
    return ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1))


def sparse_categorical_accuracy(y_true, y_pred):
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    return ops.equal(ops.cast(y_true, "float32"), ops.cast(ops.argmax(y_pred, axis=-1), "float32"))


def _in_top_k(y_pred, target_index, k):
    """1 where the target's score is among the k largest (ties count as in, like tf.math.in_top_k)."""
    target_score = ops.sum(ops.multiply(ops.one_hot(target_index, y_pred.shape[-1]), y_pred), axis=-1, keepdims=True)
    higher = ops.sum(ops.greater(y_pred, target_score), axis=-1)
    return ops.less(higher, float(k))


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    return _in_top_k(y_pred, ops.argmax(y_true, axis=-1), k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    return _in_top_k(y_pred, y_true, k)


def _mw_class(class_name, fn, default_name, **defaults):
    def __init__(self, name=default_name, dtype=None, **kwargs):
        MeanMetricWrapper.__init__(self, fn, name=name, **dict(defaults, **kwargs))
    return type(class_name, (MeanMetricWrapper,), {"__init__": __init__})


BinaryAccuracy = _mw_class("BinaryAccuracy", binary_accuracy, "binary_accuracy", threshold=0.5)
CategoricalAccuracy = _mw_class("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy")
SparseCategoricalAccuracy = _mw_class("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                      "sparse_categorical_accuracy")
TopKCategoricalAccuracy = _mw_class("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                    "top_k_categorical_accuracy", k=5)
SparseTopKCategoricalAccuracy = _mw_class("SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
                                          "sparse_top_k_categorical_accuracy", k=5)
MeanAbsoluteError = _mw_class("MeanAbsoluteError", losses_mod.mean_absolute_error, "mean_absolute_error")
MeanSquaredError = _mw_class("MeanSquaredError", losses_mod.mean_squared_error, "mean_squared_error")
MeanAbsolutePercentageError = _mw_class("MeanAbsolutePercentageError", losses_mod.mean_absolute_percentage_error,
                                        "mean_absolute_percentage_error")
MeanSquaredLogarithmicError = _mw_class("MeanSquaredLogarithmicError", losses_mod.mean_squared_logarithmic_error,
                                        "mean_squared_logarithmic_error")
BinaryCrossentropy = _mw_class("BinaryCrossentropy", losses_mod.binary_crossentropy, "binary_crossentropy",
                               from_logits=False, label_smoothing=0.0)
CategoricalCrossentropy = _mw_class("CategoricalCrossentropy", losses_mod.categorical_crossentropy,
                                    "categorical_crossentropy", from_logits=False, label_smoothing=0.0)
SparseCategoricalCrossentropy = _mw_class("SparseCategoricalCrossentropy",
                                          losses_mod.sparse_categorical_crossentropy,
                                          "sparse_categorical_crossentropy", from_logits=False)
KLDivergence = _mw_class("KLDivergence", losses_mod.kl_divergence, "kl_divergence")
Poisson = _mw_class("Poisson", losses_mod.poisson, "poisson")
Hinge = _mw_class("Hinge", losses_mod.hinge, "hinge")
SquaredHinge = _mw_class("SquaredHinge", losses_mod.squared_hinge, "squared_hinge")
CategoricalHinge = _mw_class("CategoricalHinge", losses_mod.categorical_hinge, "categorical_hinge")
LogCoshError = _mw_class("LogCoshError", losses_mod.log_cosh, "logcosh")


class CosineSimilarity(MeanMetricWrapper):
    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        super().__init__(lambda t, p, axis=-1: ops.negative(losses_mod.cosine_similarity(t, p, axis)),
                         name=name, axis=axis)


class RootMeanSquaredError(Mean):
    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name)

    def update_nodes(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = losses_mod.squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.mean_updates(ops.square(ops.subtract(y_pred, y_true)), sample_weight)

    def result_from(self, values):
        return float(np.sqrt(super().result_from(values)))


class _ConfusionMetric(Metric):
    """Counts of true/false positives/negatives at fixed thresholds (Precision, Recall, AUC)."""

    def __init__(self, thresholds, name, class_id=None, top_k=None):
        super().__init__(name=name)
        if class_id is not None or top_k is not None:
            raise ValueError(f"{type(self).__name__}: class_id and top_k are not supported yet")
        self.thresholds = np.asarray(thresholds, dtype=np.float32)
        n = len(self.thresholds)
        self.tp = self.add_variable((n,), name="true_positives")
        self.fp = self.add_variable((n,), name="false_positives")
        self.tn = self.add_variable((n,), name="true_negatives")
        self.fn = self.add_variable((n,), name="false_negatives")

    def update_nodes(self, y_true, y_pred, sample_weight=None):
        t = ops.reshape(ops.cast(y_true, "float32"), (-1, 1))
        p = ops.reshape(y_pred, (-1, 1))
        pred_pos = ops.greater(p, self.thresholds)           # (N*, T)
        pos, neg = t, ops.subtract(1.0, t)
        if sample_weight is not None:
            w = ops.reshape(ops.multiply(ops.ones_like(y_pred), ops.reshape(sample_weight, (-1,) + (1,) * (len(y_pred.shape) - 1))
                                         if len(y_pred.shape) > 1 else sample_weight), (-1, 1))
            pos, neg = ops.multiply(pos, w), ops.multiply(neg, w)
        pred_neg = ops.subtract(1.0, pred_pos)
        return {self.tp: ops.add(self.tp, ops.sum(ops.multiply(pred_pos, pos), axis=0)),
                self.fp: ops.add(self.fp, ops.sum(ops.multiply(pred_pos, neg), axis=0)),
                self.tn: ops.add(self.tn, ops.sum(ops.multiply(pred_neg, neg), axis=0)),
                self.fn: ops.add(self.fn, ops.sum(ops.multiply(pred_neg, pos), axis=0))}


class Precision(_ConfusionMetric):
    def __init__(self, thresholds=None, top_k=None, class_id=None, name="precision", dtype=None):
        self._thr_arg = thresholds
        super().__init__([0.5] if thresholds is None else np.atleast_1d(thresholds), name, class_id, top_k)

    def result_from(self, v):
        tp, fp = v[self.tp], v[self.fp]
        r = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-30), 0.0)
        return float(r[0]) if self._thr_arg is None or np.ndim(self._thr_arg) == 0 else r.tolist()


class Recall(_ConfusionMetric):
    def __init__(self, thresholds=None, top_k=None, class_id=None, name="recall", dtype=None):
        self._thr_arg = thresholds
        super().__init__([0.5] if thresholds is None else np.atleast_1d(thresholds), name, class_id, top_k)

    def result_from(self, v):
        tp, fn = v[self.tp], v[self.fn]
        r = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1e-30), 0.0)
        return float(r[0]) if self._thr_arg is None or np.ndim(self._thr_arg) == 0 else r.tolist()


class AUC(_ConfusionMetric):
    """ROC or PR AUC by Keras's interpolation over `num_thresholds` thresholds."""

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name="auc",
                 dtype=None, thresholds=None, multi_label=False, num_labels=None, label_weights=None,
                 from_logits=False):
        if multi_label or label_weights is not None or num_labels is not None:
            raise ValueError("AUC: multi_label, num_labels and label_weights are not supported yet")
        if curve not in ("ROC", "PR") or summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"AUC: invalid curve={curve!r} or summation_method={summation_method!r}")
        eps = 1e-7
        if thresholds is None:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            thresholds = [0.0 - eps] + inner + [1.0 + eps]
        self.curve, self.summation_method, self.from_logits = curve, summation_method, from_logits
        self.num_thresholds = len(thresholds)
        super().__init__(thresholds, name)

    def update_nodes(self, y_true, y_pred, sample_weight=None):
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred)
        return super().update_nodes(y_true, y_pred, sample_weight)

    def result_from(self, v):
        tp, fp, tn, fn = (v[x].astype(np.float64) for x in (self.tp, self.fp, self.tn, self.fn))
        if self.curve == "PR" and self.summation_method == "interpolation":
            dtp = tp[:-1] - tp[1:]
            p = tp + fp
            dp = p[:-1] - p[1:]
            prec_slope = np.divide(dtp, np.maximum(dp, 0), out=np.zeros_like(dtp), where=dp > 0)
            intercept = tp[1:] - prec_slope * p[1:]
            safe_p_ratio = np.where((p[:-1] > 0) & (p[1:] > 0),
                                    np.divide(p[:-1], np.maximum(p[1:], 0), out=np.ones_like(dtp), where=p[1:] > 0),
                                    np.ones_like(p[1:]))
            pr_auc_inc = np.divide(prec_slope * (dtp + intercept * np.log(safe_p_ratio)),
                                   np.maximum(tp[1:] + fn[1:], 0), out=np.zeros_like(dtp),
                                   where=(tp[1:] + fn[1:]) > 0)
            return float(np.sum(pr_auc_inc))
        tpr = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
        if self.curve == "ROC":
            x = np.divide(fp, fp + tn, out=np.zeros_like(fp), where=(fp + tn) > 0)
            y = tpr
        else:
            x = tpr
            y = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))


_BY_NAME = {
    "binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mape": MeanAbsolutePercentageError, "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError, "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "rmse": RootMeanSquaredError, "root_mean_squared_error": RootMeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy, "kl_divergence": KLDivergence,
    "kld": KLDivergence, "poisson": Poisson, "hinge": Hinge, "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge, "logcosh": LogCoshError, "cosine_similarity": CosineSimilarity,
    "precision": Precision, "recall": Recall, "auc": AUC, "AUC": AUC,
}
_CLASSES = {c.__name__: c for c in list(_BY_NAME.values()) + [Mean]}


def get(identifier, y_true_shape=None, y_pred_shape=None, loss=None):
    """Resolve a metric identifier; 'accuracy'/'acc' and 'crossentropy' depend on shapes and loss."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        cls = _CLASSES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Unknown metric: {identifier.get('class_name')!r}. Valid names are: {sorted(_BY_NAME)}")
        return cls.from_config(identifier.get("config", {}))
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            return _accuracy_for(identifier, y_true_shape, y_pred_shape, loss)
        if identifier in ("crossentropy", "ce"):
            cls = {"binary": BinaryCrossentropy, "sparse": SparseCategoricalCrossentropy,
                   "categorical": CategoricalCrossentropy}[_kind(y_true_shape, y_pred_shape, loss)]
            return cls(name=identifier)
        cls = _BY_NAME.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"Unknown metric function: '{identifier}'. Valid names are: "
                             f"{sorted(set(_BY_NAME) | {'accuracy', 'acc', 'crossentropy'})}")
        metric = cls()
        metric.name = identifier if identifier in _BY_NAME else metric.name
        return metric
    if callable(identifier):
        known = {binary_accuracy: BinaryAccuracy, categorical_accuracy: CategoricalAccuracy,
                 sparse_categorical_accuracy: SparseCategoricalAccuracy}
        if identifier in known:
            return known[identifier]()
        return MeanMetricWrapper(identifier, name=getattr(identifier, "__name__", "metric"))
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}")


def _kind(y_true_shape, y_pred_shape, loss):
    loss_name = getattr(loss, "name", "") or ""
    if "sparse" in loss_name:
        return "sparse"
    if "binary" in loss_name:
        return "binary"
    if "categorical" in loss_name:
        return "categorical"
    if y_pred_shape is not None and (y_pred_shape[-1] == 1 or len(y_pred_shape) == 1):
        return "binary"
    if y_true_shape is not None and y_pred_shape is not None and (
            len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] != 1)):
        return "sparse"
    return "categorical"


def _accuracy_for(name, y_true_shape, y_pred_shape, loss):
    cls = {"binary": BinaryAccuracy, "sparse": SparseCategoricalAccuracy,
           "categorical": CategoricalAccuracy}[_kind(y_true_shape, y_pred_shape, loss)]
    return cls(name=name)


def serialize(metric):
    return {"module": "keras.metrics", "class_name": type(metric).__name__, "config": metric.get_config(),
            "registered_name": None}


def _snake(name):
    return to_snake_case(name)


mse = MSE = losses_mod.mean_squared_error
mae = MAE = losses_mod.mean_absolute_error
