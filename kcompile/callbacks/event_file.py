"""TensorBoard event files without TensorFlow: TFRecord framing around hand-encoded protobufs.

A file `events.out.tfevents.<time>.<host>` is a sequence of records, each
    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
(little endian), where data is a serialized `tensorflow.Event`. Only the fields TensorBoard
needs for scalars, histograms and a layer graph are encoded:
    Event:  wall_time (1, double), step (2, int64), file_version (3, string), graph_def (4, bytes),
            summary (5, Summary)
    Summary: value (1, repeated Value);  Value: tag (1), simple_value (2, float), histo (5)
    HistogramProto: min 1, max 2, num 3, sum 4, sum_squares 5 (doubles),
                    bucket_limit 6, bucket 7 (packed doubles)
    GraphDef: node (1, NodeDef: name 1, op 2, input 3 repeated), versions (4, VersionDef: producer 1)
`read_events` decodes such files back (checking every CRC), which the tests rely on and which
lets a user inspect logs with no TensorBoard installed.
"""
from __future__ import annotations

import os
import socket
import struct
import time

import numpy as np

# ---------------------------------------------------------------- CRC32C (Castagnoli), table driven
_POLY = 0x82F63B78   # the reflected Castagnoli polynomial


def _make_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord masks the CRC so that CRCs of data containing CRCs stay well distributed."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


# ---------------------------------------------------------------- protobuf encoding
def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF   # negative int64 values are encoded as their two's complement
    out = bytearray()
    while True:
        bits = n & 0x7F
        n >>= 7
        if n:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field, wire):
    return _varint((field << 3) | wire)


def _bytes_field(field, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _string_field(field, text: str) -> bytes:
    return _bytes_field(field, text.encode("utf-8"))


def _double_field(field, value) -> bytes:
    return _key(field, 1) + struct.pack("<d", float(value))


def _float_field(field, value) -> bytes:
    return _key(field, 5) + struct.pack("<f", float(value))


def _int_field(field, value) -> bytes:
    return _key(field, 0) + _varint(int(value))


def _packed_doubles(field, values) -> bytes:
    return _bytes_field(field, np.asarray(values, "<f8").tobytes())


def encode_event(wall_time, step=0, file_version=None, summary_values=(), graph_def=None) -> bytes:
    out = _double_field(1, wall_time)
    if step:
        out += _int_field(2, step)
    if file_version is not None:
        out += _string_field(3, file_version)
    if graph_def is not None:
        out += _bytes_field(4, graph_def)
    if summary_values:
        out += _bytes_field(5, b"".join(_bytes_field(1, v) for v in summary_values))
    return out


def scalar_value(tag, value) -> bytes:
    return _string_field(1, tag) + _float_field(2, value)


def histogram_value(tag, values, bucket_count=30) -> bytes:
    """A HistogramProto of `values`: `bucket_limit` holds each bucket's right edge, as TensorBoard expects."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        lo = hi = 0.0
        counts, limits = np.zeros(1), np.array([0.0])
    else:
        lo, hi = float(v.min()), float(v.max())
        if lo == hi:
            counts, limits = np.array([float(v.size)]), np.array([hi])
        else:
            counts, edges = np.histogram(v, bins=bucket_count, range=(lo, hi))
            limits = edges[1:]
    histo = (_double_field(1, lo) + _double_field(2, hi) + _double_field(3, v.size) + _double_field(4, v.sum())
             + _double_field(5, np.square(v).sum()) + _packed_doubles(6, limits) + _packed_doubles(7, counts))
    return _string_field(1, tag) + _bytes_field(5, histo)


def graph_def(nodes) -> bytes:
    """A GraphDef from (name, op, [input names]) triples."""
    out = b""
    for name, op, inputs in nodes:
        node = _string_field(1, name) + _string_field(2, op) + b"".join(_string_field(3, i) for i in inputs)
        out += _bytes_field(1, node)
    return out + _bytes_field(4, _int_field(1, 1))


# ---------------------------------------------------------------- writing
class EventFileWriter:
    """Appends events to `<logdir>/events.out.tfevents.<time>.<host>`, flushing after each epoch's batch."""

    def __init__(self, logdir):
        os.makedirs(logdir, exist_ok=True)
        self.path = os.path.join(logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}")
        self._file = open(self.path, "ab")
        self._write(encode_event(time.time(), file_version="brain.Event:2"))

    def _write(self, event: bytes):
        self._file.write(frame_record(event))

    def add_scalars(self, step, scalars: dict):
        values = [scalar_value(tag, v) for tag, v in scalars.items()]
        if values:
            self._write(encode_event(time.time(), step=step, summary_values=values))

    def add_histograms(self, step, arrays: dict):
        values = [histogram_value(tag, a) for tag, a in arrays.items()]
        if values:
            self._write(encode_event(time.time(), step=step, summary_values=values))

    def add_graph(self, nodes):
        self._write(encode_event(time.time(), graph_def=graph_def(nodes)))

    def flush(self):
        if self._file is not None:
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


# ---------------------------------------------------------------- reading back
class CorruptRecordError(ValueError):
    pass


def iter_records(path):
    """Yield each record's data from a TFRecord file, checking both CRCs."""
    with open(path, "rb") as fh:
        index = 0
        while True:
            header = fh.read(8)
            if not header:
                return
            crc_bytes = fh.read(4)
            if len(header) < 8 or len(crc_bytes) < 4:
                raise CorruptRecordError(f"{path}: record {index} is truncated in its length field")
            if struct.unpack("<I", crc_bytes)[0] != masked_crc32c(header):
                raise CorruptRecordError(f"{path}: record {index} has a bad length CRC")
            (length,) = struct.unpack("<Q", header)
            data = fh.read(length)
            tail = fh.read(4)
            if len(data) < length or len(tail) < 4:
                raise CorruptRecordError(f"{path}: record {index} is truncated")
            if struct.unpack("<I", tail)[0] != masked_crc32c(data):
                raise CorruptRecordError(f"{path}: record {index} has a bad data CRC")
            yield data
            index += 1


def _read_varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse_message(buf: bytes):
    """Decode a protobuf message into {field: [raw values]}: ints, bytes, or 8/4-byte little-endian blobs."""
    fields, pos = {}, 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise CorruptRecordError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(field, []).append(value)
    return fields


def decode_event(data: bytes) -> dict:
    """An Event as a dict: wall_time, step, and (when present) file_version, scalars {tag: value},
    histograms {tag: dict}, graph_nodes [(name, op, inputs)]."""
    f = parse_message(data)
    event = {"wall_time": struct.unpack("<d", f[1][0])[0] if 1 in f else 0.0, "step": f.get(2, [0])[0]}
    if 3 in f:
        event["file_version"] = f[3][0].decode()
    if 4 in f:
        g = parse_message(f[4][0])
        event["graph_nodes"] = []
        for node in g.get(1, []):
            n = parse_message(node)
            event["graph_nodes"].append((n[1][0].decode(), n[2][0].decode(), [i.decode() for i in n.get(3, [])]))
    if 5 in f:
        event["scalars"], event["histograms"] = {}, {}
        for raw in parse_message(f[5][0]).get(1, []):
            v = parse_message(raw)
            tag = v[1][0].decode()
            if 2 in v:
                event["scalars"][tag] = struct.unpack("<f", v[2][0])[0]
            if 5 in v:
                h = parse_message(v[5][0])
                d = {name: struct.unpack("<d", h[i][0])[0] for i, name in
                     enumerate(["min", "max", "num", "sum", "sum_squares"], 1) if i in h}
                d["bucket_limit"] = np.frombuffer(h[6][0], "<f8").tolist() if 6 in h else []
                d["bucket"] = np.frombuffer(h[7][0], "<f8").tolist() if 7 in h else []
                event["histograms"][tag] = d
    return event


def read_events(path):
    """All events of an event file, decoded (CRCs checked)."""
    return [decode_event(r) for r in iter_records(path)]
