"""The state pool: every weight, optimizer slot, counter and metric accumulator of a model lives
at a fixed byte offset in one contiguous, 64-byte-aligned buffer. Native code takes one pointer;
Python sees each slot as a numpy view, so get_weights/set_weights are plain copies.

The pool's `lock` orders the threads that share it: calls that only read the state run at
once; a call that writes it (a train step, metric accumulation, loading weights) runs alone, so
a reader sees the weights of one whole step, never a torn update.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..codegen.manifest import SlotInfo
from ..ir.graph import Slot

ALIGN = 64


class _Guard:
    """A reusable `with` block around an acquire/release pair (cheaper than a generator per call)."""
    __slots__ = ("_enter", "_exit")

    def __init__(self, enter, exit_):
        self._enter, self._exit = enter, exit_

    def __enter__(self):
        self._enter()

    def __exit__(self, *exc):
        self._exit()


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers (no writer starves).
    The writing thread may take either lock again (a writer may read what it is writing)."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = None          # the thread holding the write lock
        self._depth = 0              # re-entries of that thread
        self._writers_waiting = 0
        self._read_guard = _Guard(self._acquire_read, self._release_read)
        self._write_guard = _Guard(self._acquire_write, self._release_write)

    def read(self):
        return self._read_guard

    # the read lock without the context manager's frames, for the small-call path (native.run_one):
    # acquire_read() must be paired with release_read() in a finally
    def acquire_read(self):
        self._acquire_read()

    def release_read(self):
        self._release_read()

    def write(self):
        return self._write_guard

    def _acquire_read(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return
            while self._writer is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def _release_read(self):
        with self._cond:
            if self._writer == threading.get_ident():
                self._release_write_locked()
                return
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def _acquire_write(self):
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._depth += 1
                return
            self._writers_waiting += 1
            while self._writer is not None or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer, self._depth = me, 1

    def _release_write(self):
        with self._cond:
            self._release_write_locked()

    def _release_write_locked(self):
        self._depth -= 1
        if not self._depth:
            self._writer = None
            self._cond.notify_all()


class StatePool:
    def __init__(self):
        self.slots: dict[str, Slot] = {}
        self.offsets: dict[str, int] = {}
        self._size = 0
        self._raw = np.zeros(ALIGN, dtype=np.uint8)
        self.buffer = self._raw[:0]
        self.lock = ReadWriteLock()

    @classmethod
    def from_layout(cls, slots):
        """A pool with exactly the given SlotInfo layout (a built library's state)."""
        pool = cls()
        for info in sorted(slots, key=lambda s: s.offset):
            pool.add(Slot(info.name, info.shape, info.dtype, info.kind))
            if pool.offsets[info.name] != info.offset:
                raise ValueError(f"state slot {info.name!r} at offset {info.offset} does not follow kcompile's "
                                 f"layout (expected {pool.offsets[info.name]})")
        return pool

    def layout(self):
        """(SlotInfo list, total bytes): the state layout written into a manifest."""
        slots = [SlotInfo(name, self.offsets[name], slot.shape, slot.dtype, slot.kind)
                 for name, slot in self.slots.items()]
        return slots, self._size

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
            self._size += _aligned_bytes(slot)
            self._grow()
        if initial is not None:
            self.view(slot.name)[...] = initial
        return slot

    def reserve(self, slots):
        """Make room for these slots in one allocation (before adding them one by one: each add
        past the capacity would reallocate and copy the pool, ~0.2 s for the VGG-like model's 64 MB)."""
        extra = sum(_aligned_bytes(slot) for slot in slots if slot.name not in self.slots)
        self._grow(self._size + extra)

    def _grow(self, capacity=None):
        """Reallocate when the slots no longer fit: to `capacity` bytes, or twice the size."""
        needed = max(self._size, capacity or 0)
        if needed <= self.buffer.size:
            return
        size = needed if capacity else 2 * self._size
        old = self.buffer
        raw = np.zeros(size + ALIGN, dtype=np.uint8)
        start = (-raw.ctypes.data) % ALIGN
        self._raw = raw
        self.buffer = raw[start:start + size]
        self.buffer[:old.size] = old

    def view(self, name):
        slot = self.slots[name]
        off = self.offsets[name]
        nbytes = 4 * math.prod(slot.shape)      # (math.prod: np.prod costs ~3 us, and fit reads metrics per epoch)
        return self.buffer[off:off + nbytes].view(slot.dtype).reshape(slot.shape)

    def values(self, names=None):
        return {k: self.view(k).copy() for k in (names or self.slots)}

    @property
    def address(self):
        return self.buffer.__array_interface__["data"][0]


def _aligned_bytes(slot):
    """Bytes a slot takes in the pool: its 4-byte elements, at least one, rounded up to ALIGN."""
    nbytes = 4 * math.prod(slot.shape)
    return -(-max(nbytes, 4) // ALIGN) * ALIGN
