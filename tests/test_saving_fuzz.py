"""Damaged and hostile Keras files: every read either succeeds (harmless damage) or raises
KerasFileError, never another exception, a crash, a hang or unbounded memory.

Mutations of corpus copies: flipped and truncated bytes, HDF5 edits made with h5py (attributes
dropped or corrupted, weights reshaped, removed or duplicated, links, absurd declared sizes),
hostile ZIP archives (`../` members, zip bombs, duplicates, encryption), mutated configs, text
files named `.h5`, empty files.
"""
import json
import os
import shutil
import struct
import tempfile
import time
import zipfile
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from conftest import CONFORMANCE
from kcompile.saving import config_dialects as cd
from kcompile.saving.errors import KerasFileError, UnsafeFileError
from kcompile.saving.h5_format import (read_h5_model, read_h5_weights, read_keras3_weights,
                                       read_sharded_weights)
from kcompile.saving.json_yaml import read_json_config, read_yaml_config
from kcompile.saving.keras_zip import read_keras_zip, read_keras_zip_asset, write_keras_zip
from kcompile.saving.sniff import detect_format

TIME_LIMIT = 10.0   # seconds for one read of one damaged file
PROBE_TIMEOUT = 3.0  # HDF5 metadata probe limit while fuzzing (the default is 30 s)


@pytest.fixture(autouse=True, scope="module")
def _short_probe_timeout():
    from kcompile.saving import h5_format
    saved = h5_format.HDF5_PROBE_TIMEOUT
    h5_format.HDF5_PROBE_TIMEOUT = PROBE_TIMEOUT
    yield
    h5_format.HDF5_PROBE_TIMEOUT = saved

SOURCES = {
    "h5_model_k2": CONFORMANCE / "formats/k2/func_merge.h5",
    "h5_model_k3": CONFORMANCE / "formats/k3/func_nested.h5",
    "h5_legacy": CONFORMANCE / "formats/k2/seq_cnn_weights.h5",
    "h5_keras3": CONFORMANCE / "formats/k3/func_gru.weights.h5",
    "keras_zip": CONFORMANCE / "formats/k3/seq_lstm.keras",
    "json": CONFORMANCE / "formats/k3/func_merge.json",
    "yaml": CONFORMANCE / "formats/k2/seq_cnn_legacy_to_yaml.yaml",
}
H5_SOURCES = ["h5_model_k2", "h5_model_k3", "h5_legacy", "h5_keras3"]


@contextmanager
def scratch_copy(source, name=None):
    directory = tempfile.mkdtemp(prefix="kfuzz")
    try:
        target = os.path.join(directory, name or os.path.basename(source))
        shutil.copyfile(source, target)
        yield target
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def read_everything(path):
    """What a loader does: detect, read, normalise configs."""
    fmt = detect_format(path)
    if fmt == "h5_model":
        m = read_h5_model(path)
        can = cd.normalize_model_config(m.model_config, source=path)
        cd.to_keras3_config(can)
        if m.training_config is not None:
            cd.normalize_training_config(m.training_config, source=path)
        read_h5_weights(path)
    elif fmt == "h5_weights_legacy":
        read_h5_weights(path)
    elif fmt == "h5_weights_keras3":
        read_keras3_weights(path)
    elif fmt == "weights_sharded":
        read_sharded_weights(path)
    elif fmt == "keras_zip":
        z = read_keras_zip(path)
        cd.normalize_model_config(z.config, source=path)
        for name in z.assets:
            read_keras_zip_asset(path, name)
    elif fmt == "json":
        cd.normalize_model_config(read_json_config(path), source=path)
    else:
        cd.normalize_model_config(read_yaml_config(path), source=path)
    return fmt


def outcome(path):
    """'ok' or the KerasFileError; any other exception propagates and fails the test."""
    start = time.monotonic()
    try:
        read_everything(path)
        result = "ok"
    except KerasFileError as exc:
        assert str(exc).strip()
        result = exc
    assert time.monotonic() - start < TIME_LIMIT
    return result


def expect_error(path, cls=KerasFileError, match=None):
    result = outcome(path)
    assert isinstance(result, cls), f"expected {cls.__name__}, got {result!r}"
    if match is not None:
        assert match in str(result), str(result)
    assert os.fsdecode(path) in str(result) or os.path.basename(path) in str(result)
    return result


# -------------------------------------------------------------------------- byte mutations

@settings(suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SOURCES)),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8))
def test_flipped_bytes(source, flips):
    with scratch_copy(SOURCES[source]) as path:
        data = bytearray(open(path, "rb").read())
        for where, value in flips:
            data[int(where * len(data))] = value
        open(path, "wb").write(bytes(data))
        outcome(path)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SOURCES)), keep=st.floats(0, 1, exclude_max=True))
def test_truncated_files(source, keep):
    with scratch_copy(SOURCES[source]) as path:
        data = open(path, "rb").read()
        open(path, "wb").write(data[:int(keep * len(data))])
        result = outcome(path)
        if not data[:int(keep * len(data))]:
            assert isinstance(result, KerasFileError) and "empty" in str(result)


# ------------------------------------------------------------------------------ HDF5 edits

def all_objects(f):
    names = []
    f.visit(names.append)
    return sorted(names)


def edit_attribute(f, rng_choice, value_choice):
    holders = [f] + [f[n] for n in all_objects(f)]
    holders = [h for h in holders if len(h.attrs)]
    holder = holders[rng_choice % len(holders)]
    keys = sorted(holder.attrs)
    key = keys[rng_choice % len(keys)]
    values = [None, 7, 2.5, np.arange(3), b"\xff\xfe", "not json", "[]", '{"class_name": 3}',
              np.array([b"ghost"]), np.array([], dtype=np.float64), np.array(["a", "a"], dtype=object),
              "{" + '"a":' * 50]
    value = values[value_choice % len(values)]
    if value is None:
        del holder.attrs[key]
    else:
        holder.attrs[key] = value


def edit_dataset(f, rng_choice, value_choice):
    datasets = [n for n in all_objects(f) if isinstance(f[n], h5py.Dataset)]
    if not datasets:
        return
    name = datasets[rng_choice % len(datasets)]
    old = f[name]
    dtype = old.dtype
    del f[name]
    kind = value_choice % 7
    if kind == 0:
        return                                                  # weight removed
    if kind == 1:
        f.create_dataset(name, data=np.zeros((value_choice % 5 + 1, 3), dtype))   # new shape
    elif kind == 2:
        f.create_dataset(name, data=np.array(["text"], dtype=h5py.string_dtype()))
    elif kind == 3:
        f.create_dataset(name, shape=(2 ** 20, 2 ** 20), dtype="f4", chunks=(16, 16))  # absurd
    elif kind == 4:
        f[name] = h5py.SoftLink("/" + datasets[0])
    elif kind == 5:
        f[name] = h5py.ExternalLink("/etc/passwd", "/x")
    else:
        f.create_group(name)


def edit_group(f, rng_choice, value_choice):
    groups = [n for n in all_objects(f) if isinstance(f[n], h5py.Group)]
    name = groups[rng_choice % len(groups)]
    kind = value_choice % 3
    if kind == 0:
        del f[name]
    elif kind == 1:
        del f[name]
        f[name] = h5py.SoftLink("/" + groups[0])
    elif "extra_entry" not in f[name]:
        f[name].create_dataset("extra_entry", data=np.ones(2))   # an entry no reader expects


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(H5_SOURCES), edit=st.sampled_from(["attr", "dataset", "group"]),
       which=st.integers(0, 10 ** 6), value=st.integers(0, 10 ** 6))
def test_h5_edits(source, edit, which, value):
    with scratch_copy(SOURCES[source]) as path:
        with h5py.File(path, "r+") as f:
            {"attr": edit_attribute, "dataset": edit_dataset, "group": edit_group}[edit](f, which, value)
        outcome(path)


def test_specific_h5_damage(tmp_path):
    def damaged(source, fn, name="m.h5"):
        path = tmp_path / name
        shutil.copyfile(SOURCES[source], path)
        with h5py.File(path, "r+") as f:
            fn(f)
        return path

    p = damaged("h5_model_k2", lambda f: f["model_weights/dense_a"].attrs.__setitem__(
        "weight_names", [b"dense_a/kernel:0", b"dense_a/ghost:0"]))
    expect_error(p, match="'dense_a/ghost:0' not found")
    p = damaged("h5_model_k2", lambda f: f.attrs.__setitem__("model_config", "{"))
    expect_error(p, match="model_config")
    p = damaged("h5_model_k2", lambda f: f["model_weights"].attrs.__delitem__("layer_names"))
    expect_error(p, match="layer_names")

    def huge(f):
        del f["model_weights/dense_a/dense_a/kernel:0"]
        f.create_dataset("model_weights/dense_a/dense_a/kernel:0", shape=(2 ** 24, 2 ** 24),
                         dtype="f4", chunks=(64, 64))
    expect_error(damaged("h5_model_k2", huge), UnsafeFileError, "declares shape")

    def sneaky(f):
        del f["model_weights/dense_a/dense_a/kernel:0"]
        f.create_dataset("model_weights/dense_a/dense_a/kernel:0", shape=(2 ** 12, 2 ** 12),
                         dtype="f8", chunks=(64, 64))        # 128 MiB declared, nothing stored
    expect_error(damaged("h5_model_k2", sneaky), UnsafeFileError, "expand")

    def linked(f):
        del f["model_weights/dense_a"]
        f["model_weights/dense_a"] = h5py.ExternalLink("/etc/passwd", "/")
    expect_error(damaged("h5_model_k2", linked), UnsafeFileError, "ExternalLink")

    def vars_gap(f):
        f.move("layers/gru/cell/vars/2", "layers/gru/cell/vars/5")
    expect_error(damaged("h5_keras3", vars_gap, "w.weights.h5"), match="not 0..2")

    def vars_name(f):
        f.move("layers/gru/cell/vars/2", "layers/gru/cell/vars/bias")
    expect_error(damaged("h5_keras3", vars_name, "w.weights.h5"), match="not a variable index")

    def strings(f):
        del f["model_weights/dense_a/dense_a/bias:0"]
        f["model_weights/dense_a/dense_a/bias:0"] = np.array([b"x"], dtype=object).astype(
            h5py.string_dtype())
    expect_error(damaged("h5_model_k2", strings), match="non-numeric")


# ------------------------------------------------------------------------------- ZIP archives

def make_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name)            # ZipInfo keeps names like '../x' verbatim
            info.compress_type = compression
            z.writestr(info, data)


def keras_members():
    with zipfile.ZipFile(SOURCES["keras_zip"]) as z:
        return [(n, z.read(n)) for n in z.namelist()]


@pytest.mark.parametrize("bad_name", ["../evil.txt", "assets/../../evil", "/abs/path", "C:/x",
                                      "assets\\x", "a/./../../b"])
def test_zip_unsafe_member_names(tmp_path, bad_name):
    path = tmp_path / "m.keras"
    make_zip(path, keras_members() + [(bad_name, b"x")])
    expect_error(path, UnsafeFileError)


def test_zip_bombs_refused_without_inflating(tmp_path):
    # 1) a real deflate bomb: 8 MB of zeros compresses ~1000x
    path = tmp_path / "bomb.keras"
    members = keras_members()
    make_zip(path, [(n, d) for n, d in members if n != "model.weights.h5"]
             + [("model.weights.h5", b"\0" * (8 << 20))], compression=zipfile.ZIP_DEFLATED)
    start = time.monotonic()
    expect_error(path, UnsafeFileError, "zip bomb")
    assert time.monotonic() - start < 1.0
    # 2) a central directory declaring an absurd size (patched; nothing behind it)
    path2 = tmp_path / "declared.keras"
    make_zip(path2, members)
    data = bytearray(path2.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        name = bytes(data[central + 46:central + 46 + name_len])
        if name == b"model.weights.h5":
            struct.pack_into("<I", data, central + 24, 0xFFFFFFF0)       # uncompressed size
        central = data.rfind(b"PK\x01\x02", 0, central)
    path2.write_bytes(bytes(data))
    start = time.monotonic()
    expect_error(path2, KerasFileError)
    assert time.monotonic() - start < 1.0
    # 3) a member that inflates beyond its declared size is cut off
    path3 = tmp_path / "liar.keras"
    make_zip(path3, members, compression=zipfile.ZIP_DEFLATED)
    data = bytearray(path3.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46:central + 46 + name_len]) == b"config.json":
            struct.pack_into("<I", data, central + 24, 10)
        central = data.rfind(b"PK\x01\x02", 0, central)
    path3.write_bytes(bytes(data))
    expect_error(path3, KerasFileError)


def test_zip_structure_errors(tmp_path):
    members = keras_members()
    cases = {
        "noconfig": ([(n, d) for n, d in members if n != "config.json"], "config.json"),
        "badjson": ([(n, d if n != "config.json" else b'{"class_name": ') for n, d in members],
                    "JSON"),
        "listjson": ([(n, d if n != "config.json" else b"[1, 2]") for n, d in members],
                     "expected a JSON object"),
        "dup": (members + [("config.json", b"{}")], "twice"),
        "npz": ([(n, d) for n, d in members if n != "model.weights.h5"]
                + [("model.weights.npz", b"PK")], "pickle"),
        "badweights": ([(n, d if n != "model.weights.h5" else b"not hdf5") for n, d in members],
                       "HDF5"),
    }
    for name, (content, match) in cases.items():
        path = tmp_path / f"{name}.keras"
        with pytest.warns(UserWarning) if name == "dup" else _nullcontext():
            make_zip(path, content)
        expect_error(path, match=match)
    path = tmp_path / "enc.keras"
    make_zip(path, members)
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1                                          # "encrypted" flag
    path.write_bytes(bytes(data))
    expect_error(path, match="encrypted")


@contextmanager
def _nullcontext():
    yield


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(st.sampled_from("ab./\\:\x00 "), min_size=1, max_size=12))
def test_zip_member_names_fuzz(name):
    directory = tempfile.mkdtemp(prefix="kfuzz")
    try:
        path = os.path.join(directory, "m.keras")
        try:
            make_zip(path, keras_members() + [(name, b"x")])
        except (ValueError, UserWarning):
            assume(False)
        result = outcome(path)
        name = name.split("\x00")[0]                  # zipfile cuts names at the first NUL
        unsafe = (name.startswith("/") or "\\" in name or "\x00" in name or ".." in name.split("/")
                  or (len(name) > 1 and name[1] == ":"))
        if unsafe:
            assert isinstance(result, UnsafeFileError), (name, result)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------- not a Keras file at all

def test_wrong_or_empty_files(tmp_path):
    text = tmp_path / "model.h5"
    text.write_text("this is not an HDF5 file\n")
    err = expect_error(text, match="name suggests HDF5")
    for reader in (read_h5_model, read_h5_weights, read_keras3_weights, read_keras_zip):
        with pytest.raises(KerasFileError):
            reader(text)
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    expect_error(empty, match="empty")
    for reader in (read_h5_model, read_keras_zip, read_json_config, read_yaml_config):
        with pytest.raises(KerasFileError, match="empty"):
            reader(empty)
    with pytest.raises(KerasFileError, match="not found"):
        detect_format(tmp_path / "missing.h5")
    with pytest.raises(KerasFileError, match="directory"):
        detect_format(tmp_path)
    binary = tmp_path / "junk.bin"
    binary.write_bytes(b"\x00\x01\x02garbage" * 100)
    expect_error(binary, match="binary")
    other_h5 = tmp_path / "other.h5"
    with h5py.File(other_h5, "w") as f:
        f["data"] = np.ones(3)
    expect_error(other_h5, match="not a Keras file")
    weights_as_model = CONFORMANCE / "formats/k2/seq_mlp_weights.h5"
    with pytest.raises(KerasFileError, match="model_config"):
        read_h5_model(weights_as_model)
    with pytest.raises(KerasFileError, match="legacy"):
        read_keras3_weights(weights_as_model)
    assert isinstance(err, KerasFileError)


def test_yaml_and_json_bombs(tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(1, 9):
        laughs += f"l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = f"l{i}"
    laughs += "class_name: Sequential\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(laughs)
    start = time.monotonic()
    expect_error(path, UnsafeFileError)
    assert time.monotonic() - start < 5.0
    recursive = tmp_path / "rec.yaml"
    recursive.write_text("class_name: &a [*a]\nconfig: 1\n")
    expect_error(recursive)
    deep = tmp_path / "deep.json"
    deep.write_text('{"class_name": "Sequential", "config": ' + "[" * 5000 + "]" * 5000 + "}")
    expect_error(deep, UnsafeFileError)
    sharded = tmp_path / "x.weights.json"
    sharded.write_text(json.dumps({"metadata": {}, "weight_map": {"/layers/d/vars": ["../../etc/passwd"]}}))
    expect_error(sharded, UnsafeFileError, "plain file name")


# -------------------------------------------------------------------------- config mutations

def json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers(-3, 10 ** 13) | st.floats(allow_nan=True)
        | st.text(max_size=6),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=6)


def paths_of(obj, prefix=()):
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(paths_of(v, prefix + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(paths_of(v, prefix + (i,)))
    return out


def mutate(obj, path, value, delete):
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


CONFIG_SOURCES = ["formats/k2/func_merge.h5", "formats/k3/func_nested.keras",
                  "formats/k2/func_nested.h5", "keras2/siamese_shared_lstm.h5",
                  "formats/k2/seq_cnn.h5"]


def load_raw(rel):
    p = CONFORMANCE / rel
    if p.suffix == ".keras":
        with zipfile.ZipFile(p) as z:
            return json.loads(z.read("config.json")), None
    with h5py.File(p, "r") as f:
        tc = f.attrs.get("training_config")
        return json.loads(f.attrs["model_config"]), (json.loads(tc) if tc else None)


RAW = {rel: load_raw(rel) for rel in CONFIG_SOURCES}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(rel=st.sampled_from(CONFIG_SOURCES), which=st.integers(0, 10 ** 6), value=json_values(),
       delete=st.booleans(), training=st.booleans())
def test_mutated_configs(rel, which, value, delete, training):
    model, tc = RAW[rel]
    target = json.loads(json.dumps(tc if training and tc else model))
    paths = paths_of(target)
    path = paths[which % len(paths)]
    target = mutate(target, path, value, delete and bool(path))
    try:
        if training and tc:
            canon = cd.normalize_training_config(target)
            cd.to_keras3_compile_config(canon)
            cd.to_keras3_training_config(canon)
            try:
                cd.to_keras2_training_config(canon)
            except KerasFileError:
                pass
        else:
            canon = cd.normalize_model_config(target)
            cd.to_keras3_config(canon)
            cd.to_keras3_config(canon, for_h5=True)
            try:
                cd.to_keras2_config(canon)
            except KerasFileError:
                pass
    except KerasFileError as exc:
        assert str(exc).strip()


def test_write_then_damage_then_read(tmp_path):
    """Files we write are subject to the same checks as Keras's own."""
    z = read_keras_zip(SOURCES["keras_zip"])
    path = tmp_path / "ours.keras"
    write_keras_zip(path, z.config, z.metadata, z.weights)
    assert outcome(path) == "ok"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path)


# ----------------------------------------------------------------- HDF5 library crashes/hangs

HANG_PATCH = (2192, 232)    # one byte of formats/k3/func_gru.weights.h5 that makes HDF5 2.0 spin


@pytest.fixture
def short_probe(monkeypatch):
    from kcompile.saving import h5_format
    monkeypatch.setattr(h5_format, "HDF5_PROBE_TIMEOUT", 2.0)
    monkeypatch.setattr(h5_format, "_PROBED_OK", set())     # probe again files that passed earlier
    return h5_format


def test_hdf5_hang_is_contained(tmp_path, short_probe):
    path = tmp_path / "hang.weights.h5"
    data = bytearray(SOURCES["h5_keras3"].read_bytes())
    data[HANG_PATCH[0]] = HANG_PATCH[1]
    path.write_bytes(bytes(data))
    start = time.monotonic()
    expect_error(path, match="did not finish")
    assert time.monotonic() - start < 8


def test_hdf5_hang_is_contained_from_threads(tmp_path, short_probe):
    """With other threads running, forking is unsafe: the probe runs in a fresh interpreter."""
    import threading
    path = tmp_path / "hang.weights.h5"
    data = bytearray(SOURCES["h5_keras3"].read_bytes())
    data[HANG_PATCH[0]] = HANG_PATCH[1]
    path.write_bytes(bytes(data))
    release = threading.Event()
    helper = threading.Thread(target=release.wait)
    helper.start()
    try:
        with pytest.raises(KerasFileError, match="did not finish"):
            read_keras3_weights(path)
        assert read_keras3_weights(SOURCES["h5_keras3"]).vars       # healthy file: fine
        with open(SOURCES["h5_keras3"], "rb") as fh:                 # file objects too
            assert read_keras3_weights(fh).vars
    finally:
        release.set()
        helper.join()


@pytest.mark.parametrize("behaviour,match", [
    ("segfault", "crashed (signal"), ("hang", "did not finish"), ("oom", "memory"),
    ("bug", "failed (ZeroDivisionError"), ("kerasfile", None)])
def test_probe_outcomes(monkeypatch, short_probe, behaviour, match):
    import signal

    def walk(source):
        if behaviour == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif behaviour == "hang":
            while True:
                time.sleep(1)
        elif behaviour == "oom":
            raise MemoryError
        elif behaviour == "bug":
            1 / 0
        raise KerasFileError("bad", source)

    monkeypatch.setitem(short_probe._PROBE_WALKS, "model", walk)
    path = SOURCES["h5_model_k2"]
    if match is None:                   # KerasFileError in the child: the parent reads itself
        assert read_h5_model(path).layer_weights
    else:
        with pytest.raises(KerasFileError, match=match.replace("(", r"\(")):
            read_h5_model(path)


def test_probe_memo_is_keyed_by_content(tmp_path, monkeypatch, short_probe):
    """A file that passed its probe is not forked for again, but any change to its bytes is."""
    import signal
    path = tmp_path / "m.h5"
    data = SOURCES["h5_model_k2"].read_bytes()
    path.write_bytes(data)
    assert read_h5_model(path).layer_weights

    def crash(source):
        os.kill(os.getpid(), signal.SIGSEGV)
    monkeypatch.setitem(short_probe._PROBE_WALKS, "model", crash)
    assert read_h5_model(path).layer_weights          # same bytes: the earlier probe stands
    path.write_bytes(data + b"\0")                    # changed bytes: probed again, and the probe crashes
    with pytest.raises(KerasFileError, match="crashed"):
        read_h5_model(path)
