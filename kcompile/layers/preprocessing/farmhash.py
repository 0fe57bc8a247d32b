"""The string hashes TensorFlow (and so Keras's Hashing and StringLookup) uses, over numpy batches.

`fingerprint64` is FarmHash's Fingerprint64 (farmhashna::Hash64), which is what
`tf.strings.to_hash_bucket_fast` reduces modulo the bucket count; `siphash64` is SipHash-2-4 with
a 128-bit key, what `tf.strings.to_hash_bucket_strong(key=...)` reduces. Both take a list of
`bytes` and return a uint64 array. They are vectorized: the strings are concatenated into one
byte buffer and every 8-byte load is one gather over all strings of a length class, so the only
per-string Python is building that buffer. uint64 numpy arithmetic wraps modulo 2**64 as C does.
"""
from __future__ import annotations

import numpy as np

_U64 = np.uint64
K0 = _U64(0xC3A5C85C97CB3127)
K1 = _U64(0xB492B66FBE98F273)
K2 = _U64(0x9AE16A3B2F90404F)
_PAD = 64          # zero bytes after the buffer: loads past a short string stay inside it


class _Bytes:
    """All strings in one uint8 buffer; `load64/load32/load8` read at per-string byte offsets."""

    def __init__(self, strings):
        self.lengths = np.fromiter((len(s) for s in strings), np.int64, len(strings))
        self.starts = np.zeros(len(strings), np.int64)
        if len(strings) > 1:
            np.cumsum(self.lengths[:-1], out=self.starts[1:])
        self.buf = np.frombuffer(b"".join(strings) + bytes(_PAD), np.uint8)

    def load(self, pos, width):
        # little-endian assembly of `width` bytes per row (Fetch64 / Fetch32 of farmhash)
        cols = self.buf[pos[:, None] + np.arange(width)].astype(_U64)
        shifts = (np.arange(width, dtype=_U64) * _U64(8))
        return np.bitwise_or.reduce(cols << shifts, axis=1)


def _rot(v, shift):
    shift = int(shift)
    return v if shift == 0 else (v >> _U64(shift)) | (v << _U64(64 - shift))


def _shift_mix(v):
    return v ^ (v >> _U64(47))


def _hash_len16(u, v, mul):
    a = (u ^ v) * mul
    a ^= a >> _U64(47)
    b = (v ^ a) * mul
    b ^= b >> _U64(47)
    return b * mul


def _len0to16(data, start, length):
    out = np.full(start.shape, K2, _U64)
    n = length.astype(_U64)
    mul = K2 + n * _U64(2)
    big = length >= 8
    if big.any():
        s, ln, m = start[big], length[big], mul[big]
        a = data.load(s, 8) + K2
        b = data.load(s + ln - 8, 8)
        c = _rot(b, 37) * m + a
        d = (_rot(a, 25) + b) * m
        out[big] = _hash_len16(c, d, m)
    mid = (length >= 4) & ~big
    if mid.any():
        s, ln, m = start[mid], length[mid], mul[mid]
        a = data.load(s, 4)
        out[mid] = _hash_len16(ln.astype(_U64) + (a << _U64(3)), data.load(s + ln - 4, 4), m)
    small = (length > 0) & (length < 4)
    if small.any():
        s, ln = start[small], length[small]
        a = data.buf[s].astype(np.uint32)
        b = data.buf[s + (ln >> 1)].astype(np.uint32)
        c = data.buf[s + ln - 1].astype(np.uint32)
        y = (a + (b << np.uint32(8))).astype(_U64)                   # uint32 arithmetic in farmhash
        z = (ln.astype(np.uint32) + (c << np.uint32(2))).astype(_U64)
        out[small] = _shift_mix(y * K2 ^ z * K0) * K2
    return out


def _len17to32(data, s, ln):
    mul = K2 + ln.astype(_U64) * _U64(2)
    a = data.load(s, 8) * K1
    b = data.load(s + 8, 8)
    c = data.load(s + ln - 8, 8) * mul
    d = data.load(s + ln - 16, 8) * K2
    return _hash_len16(_rot(a + b, 43) + _rot(c, 30) + d, a + _rot(b + K2, 18) + c, mul)


def _len33to64(data, s, ln):
    mul = K2 + ln.astype(_U64) * _U64(2)
    a = data.load(s, 8) * K2
    b = data.load(s + 8, 8)
    c = data.load(s + ln - 8, 8) * mul
    d = data.load(s + ln - 16, 8) * K2
    y = _rot(a + b, 43) + _rot(c, 30) + d
    z = _hash_len16(y, a + _rot(b + K2, 18) + c, mul)
    e = data.load(s + 16, 8) * mul
    f = data.load(s + 24, 8)
    g = (y + data.load(s + ln - 32, 8)) * mul
    h = (z + data.load(s + ln - 24, 8)) * mul
    return _hash_len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)


def _weak32(data, s, a, b):
    w, x, y, z = (data.load(s + off, 8) for off in (0, 8, 16, 24))
    a = a + w
    b = _rot(b + a + z, 21)
    c = a
    a = a + x + y
    b = b + _rot(a, 44)
    return a + z, b + c


def _len_over64(data, start, ln):
    seed = _U64(81)
    n = start.shape[0]
    x = np.full(n, seed, _U64)
    y = np.full(n, seed * K1 + _U64(113), _U64)
    z = _shift_mix(y * K2 + _U64(113)) * K2
    v0, v1, w0, w1 = (np.zeros(n, _U64) for _ in range(4))
    x = x * K2 + data.load(start, 8)
    blocks = (ln - 1) // 64                     # 64-byte blocks before the last 64 bytes
    for k in range(int(blocks.max())):
        act = blocks > k                          # strings that still have a block k
        s = start[act] + 64 * k
        xa, ya, za = x[act], y[act], z[act]
        v0a, v1a, w0a, w1a = v0[act], v1[act], w0[act], w1[act]
        xa = _rot(xa + ya + v0a + data.load(s + 8, 8), 37) * K1
        ya = _rot(ya + v1a + data.load(s + 48, 8), 42) * K1
        xa ^= w1a
        ya = ya + v0a + data.load(s + 40, 8)
        za = _rot(za + w0a, 33) * K1
        nv0, nv1 = _weak32(data, s, v1a * K1, xa + w0a)
        nw0, nw1 = _weak32(data, s + 32, za + w1a, ya + data.load(s + 16, 8))
        x[act], y[act], z[act] = za, ya, xa          # swap(z, x)
        v0[act], v1[act], w0[act], w1[act] = nv0, nv1, nw0, nw1
    mul = K1 + ((z & _U64(0xFF)) << _U64(1))
    s = start + ln - 64                           # the last 64 bytes
    w0 = w0 + ((ln - 1) & 63).astype(_U64)
    v0 = v0 + w0
    w0 = w0 + v0
    x = _rot(x + y + v0 + data.load(s + 8, 8), 37) * mul
    y = _rot(y + v1 + data.load(s + 48, 8), 42) * mul
    x ^= w1 * _U64(9)
    y = y + v0 * _U64(9) + data.load(s + 40, 8)
    z = _rot(z + w0, 33) * mul
    v0, v1 = _weak32(data, s, v1 * mul, x + w0)
    w0, w1 = _weak32(data, s + 32, z + w1, y + data.load(s + 16, 8))
    x, z = z, x
    return _hash_len16(_hash_len16(v0, w0, mul) + _shift_mix(y) * K0 + z,
                       _hash_len16(v1, w1, mul) + x, mul)


def fingerprint64(strings):
    """FarmHash Fingerprint64 of each `bytes` in `strings` (a uint64 array)."""
    data = _Bytes(list(strings))
    ln, start = data.lengths, data.starts
    out = np.empty(ln.shape, _U64)
    with np.errstate(over="ignore"):
        for lo, hi, fn in ((0, 16, _len0to16), (17, 32, _len17to32), (33, 64, _len33to64),
                           (65, None, _len_over64)):
            sel = (ln >= lo) & (ln <= hi) if hi is not None else ln >= lo
            if sel.any():
                out[sel] = fn(data, start[sel], ln[sel])
    return out


# ---------------------------------------------------------------------------- SipHash-2-4
def _sip_round(v0, v1, v2, v3):
    v0 = v0 + v1
    v2 = v2 + v3
    v1 = _rot_left(v1, 13) ^ v0
    v3 = _rot_left(v3, 16) ^ v2
    v0 = _rot_left(v0, 32)
    v2 = v2 + v1
    v0 = v0 + v3
    v1 = _rot_left(v1, 17) ^ v2
    v3 = _rot_left(v3, 21) ^ v0
    v2 = _rot_left(v2, 32)
    return v0, v1, v2, v3


def _rot_left(v, shift):
    return (v << _U64(shift)) | (v >> _U64(64 - shift))


def siphash64(strings, key):
    """SipHash-2-4 of each `bytes` in `strings` under the 128-bit key (k0, k1) (a uint64 array)."""
    data = _Bytes(list(strings))
    ln, start = data.lengths, data.starts
    k0, k1 = (_U64(int(k) & 0xFFFFFFFFFFFFFFFF) for k in key)
    n = ln.shape[0]
    v0 = np.full(n, k0 ^ _U64(0x736F6D6570736575), _U64)
    v1 = np.full(n, k1 ^ _U64(0x646F72616E646F6D), _U64)
    v2 = np.full(n, k0 ^ _U64(0x6C7967656E657261), _U64)
    v3 = np.full(n, k1 ^ _U64(0x7465646279746573), _U64)
    words = ln // 8
    with np.errstate(over="ignore"):
        for k in range(int(words.max()) if n else 0):
            act = words > k
            m = data.load(start[act] + 8 * k, 8)
            a0, a1, a2, a3 = v0[act], v1[act], v2[act], v3[act] ^ m
            for _ in range(2):
                a0, a1, a2, a3 = _sip_round(a0, a1, a2, a3)
            v0[act], v1[act], v2[act], v3[act] = a0 ^ m, a1, a2, a3
        # the last word: the 0..7 remaining bytes, the length's low byte on top
        tail = ln & 7
        raw = data.load(start + 8 * words, 8) if n else np.zeros(0, _U64)
        keep = np.where(tail > 0, (_U64(1) << (tail.astype(_U64) * _U64(8))) - _U64(1), _U64(0))
        m = (raw & keep) | ((ln.astype(_U64) & _U64(0xFF)) << _U64(56))
        v3 ^= m
        for _ in range(2):
            v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= m
        v2 ^= _U64(0xFF)
        for _ in range(4):
            v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def to_bytes(values, encoding="utf-8"):
    """The bytes TensorFlow hashes for each value: strings encoded, integers as their decimal text
    (tf.as_string), bytes as they are."""
    out = []
    for v in values:
        if isinstance(v, bytes):
            out.append(v)
        elif isinstance(v, str):
            out.append(v.encode(encoding))
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(str(int(v)).encode("ascii"))
        else:
            raise TypeError(f"can only hash strings, bytes or integers, got {type(v).__name__} {v!r}")
    return out


def hash_buckets(values, num_buckets, key=None, encoding="utf-8"):
    """to_hash_bucket_fast (key None) or to_hash_bucket_strong(key) of a flat sequence of values:
    the hash of each value's bytes modulo `num_buckets`, as int64."""
    strings = to_bytes(values, encoding)
    h = fingerprint64(strings) if key is None else siphash64(strings, key)
    return (h % _U64(int(num_buckets))).astype(np.int64)
