"""Weight and activity regularizers (L1, L2, L1L2, OrthogonalRegularizer-free): each returns a
scalar penalty built with `kcompile.ops`, added to the training loss."""
from __future__ import annotations

from . import ops


class Regularizer:
    def __call__(self, x):
        return 0.0

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, x):
        total = 0.0
        if self.l1:
            total = ops.multiply(self.l1, ops.sum(ops.abs(x)))
        if self.l2:
            sq = ops.multiply(self.l2, ops.sum(ops.square(x)))
            total = sq if isinstance(total, float) else ops.add(total, sq)
        return total

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1(l1=0.01):
    return L1(l1)


def l2(l2=0.01):
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1, l2)


ALL = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier):
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier not in ALL:
            raise ValueError(f"Unknown regularizer: '{identifier}'. Valid names are: {sorted(ALL)}")
        return ALL[identifier]()
    if isinstance(identifier, dict):
        cls = ALL.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Unknown regularizer: '{identifier.get('class_name')}'. Valid names are: {sorted(ALL)}")
        return cls.from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret regularizer identifier: {identifier!r}")


def serialize(reg):
    if reg is None:
        return None
    return {"module": "keras.regularizers", "class_name": type(reg).__name__,
            "config": reg.get_config(), "registered_name": None}
