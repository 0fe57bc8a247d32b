"""The state pool: every weight, optimizer slot, counter and metric accumulator of a model lives
at a fixed byte offset in one contiguous, 64-byte-aligned buffer. Native code takes one pointer;
Python sees each slot as a numpy view, so get_weights/set_weights are plain copies.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Slot

ALIGN = 64


class StatePool:
    def __init__(self):
        self.slots: dict[str, Slot] = {}
        self.offsets: dict[str, int] = {}
        self._size = 0
        self._raw = np.zeros(ALIGN, dtype=np.uint8)
        self.buffer = self._raw[:0]

    def add(self, slot, initial=None):
        """Register a slot (idempotent for the same name and shape) and set its initial value."""
        if slot.name in self.slots:
            old = self.slots[slot.name]
            if old.shape != slot.shape or old.dtype != slot.dtype:
                raise ValueError(f"state slot {slot.name!r} re-registered as {slot.shape} {slot.dtype}, "
                                 f"was {old.shape} {old.dtype}")
        else:
            self.slots[slot.name] = slot
            self.offsets[slot.name] = self._size
            nbytes = 4 * int(np.prod(slot.shape, dtype=np.int64))
            self._size += -(-max(nbytes, 4) // ALIGN) * ALIGN
            self._grow()
        if initial is not None:
            self.view(slot.name)[...] = initial
        return slot

    def _grow(self):
        if self._size <= self.buffer.size:
            return
        old = self.buffer
        raw = np.zeros(2 * self._size + ALIGN, dtype=np.uint8)
        start = (-raw.ctypes.data) % ALIGN
        self._raw = raw
        self.buffer = raw[start:start + 2 * self._size]
        self.buffer[:old.size] = old

    def view(self, name):
        slot = self.slots[name]
        off = self.offsets[name]
        nbytes = 4 * int(np.prod(slot.shape, dtype=np.int64))
        return self.buffer[off:off + nbytes].view(slot.dtype).reshape(slot.shape)

    def values(self, names=None):
        return {k: self.view(k).copy() for k in (names or self.slots)}

    @property
    def address(self):
        return self.buffer.ctypes.data
