"""Global seeding: `set_random_seed` makes initializers, Dropout and shuffling reproducible."""
from __future__ import annotations

import random

import numpy as np

_state = {"seed": None, "counter": 0}


def set_random_seed(seed):
    """Seed kcompile, numpy's global RNG and Python's `random`, as keras.utils.set_random_seed does."""
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Expected `seed` argument to be an integer. Received: seed={seed!r}")
    _state["seed"] = int(seed)
    _state["counter"] = 0
    random.seed(int(seed))
    np.random.seed(int(seed) % (2 ** 32))


def next_seed():
    """A fresh 31-bit seed; a reproducible sequence after set_random_seed, random otherwise."""
    if _state["seed"] is None:
        return int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    _state["counter"] += 1
    return int(np.random.SeedSequence([_state["seed"], _state["counter"]]).generate_state(1)[0] >> 1)


def make_rng(seed=None):
    return np.random.default_rng(next_seed() if seed is None else int(seed))
