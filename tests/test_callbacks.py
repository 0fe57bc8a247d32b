"""Callbacks: EarlyStopping, ModelCheckpoint, BackupAndRestore, TensorBoard event files, CSVLogger.

One small model definition is shared; each fit is a few tiny epochs.
"""
import csv
import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kcompile as keras
from kcompile.callbacks import event_file

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype("float32")


def make_model(dropout=True, optimizer="adam"):
    keras.set_random_seed(1)
    layers = [keras.Input((3,)), keras.layers.Dense(4, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(0.3))
    layers.append(keras.layers.Dense(1))
    model = keras.Sequential(layers)
    model.compile(optimizer, "mse", metrics=["mae"])
    return model


class ScriptedLoss(keras.callbacks.Callback):
    """Overwrites logs[monitor] with a scripted sequence, so stopping rules can be checked exactly."""

    def __init__(self, values, key="val_loss"):
        super().__init__()
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


# ------------------------------------------------------------------ EarlyStopping
@pytest.fixture(scope="module")
def model():
    return make_model(dropout=False)


def test_early_stopping_patience_min_delta(model):
    values = [1.0, 0.9, 0.89, 0.885, 0.7, 0.7, 0.7]
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, min_delta=0.05)
    h = model.fit(X, Y, epochs=7, verbose=0, callbacks=[ScriptedLoss(values), stop])
    # 0.9 improves on 1.0 by more than min_delta; 0.89 and 0.885 do not -> stop at epoch 3
    assert h.epoch == [0, 1, 2, 3]
    assert stop.stopped_epoch == 3 and stop.best == 0.9


def test_early_stopping_baseline_and_start_from_epoch(model):
    values = [0.9, 0.8, 0.85, 0.7, 0.6, 0.5]
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, baseline=0.5)
    h = model.fit(X, Y, epochs=6, verbose=0, callbacks=[ScriptedLoss(values), stop])
    assert h.epoch == [0, 1, 2]   # improvements that miss the baseline do not reset the wait
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2)
    h = model.fit(X, Y, epochs=6, verbose=0, callbacks=[ScriptedLoss(values), stop])
    assert h.epoch == [0, 1, 2, 3, 4, 5]
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, start_from_epoch=3)
    h = model.fit(X, Y, epochs=6, verbose=0, callbacks=[ScriptedLoss([1, 2, 3, 4, 5, 6]), stop])
    assert h.epoch == [0, 1, 2, 3, 4]   # epochs before 3 are ignored; 4 does not improve on 4


def test_early_stopping_mode_max_and_auto():
    assert keras.callbacks.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert keras.callbacks.EarlyStopping(monitor="val_loss").mode == "min"
    with pytest.warns(UserWarning, match="unknown"):
        assert keras.callbacks.EarlyStopping(mode="sideways").mode == "min"


def test_early_stopping_restores_best_weights_even_without_stopping(model, capsys):
    snapshots = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(model.get_weights()))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True, verbose=1)
    model.fit(X, Y, epochs=4, verbose=0, callbacks=[ScriptedLoss([3.0, 1.0, 2.0, 2.5]), record, stop])
    assert stop.stopped_epoch == 0 and stop.best_epoch == 1
    for a, b in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)
    assert "Restoring model weights from the end of the best epoch: 2." in capsys.readouterr().out


def test_early_stopping_verbose_message(model, capsys):
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, verbose=1)
    model.fit(X, Y, epochs=5, verbose=0, callbacks=[ScriptedLoss([1, 2, 3, 4, 5], "loss"), stop])
    assert "Epoch 2: early stopping" in capsys.readouterr().out


# ------------------------------------------------------------------ ModelCheckpoint
class SaveRecorder:
    """Stands in for model.save/save_weights to check which files the callback decides to write."""

    def __init__(self, model):
        self.paths = []
        model.save_weights = lambda path, overwrite=True: self.paths.append(("weights", path))
        model.save = lambda path, overwrite=True: self.paths.append(("model", path))


def test_model_checkpoint_filename_formatting_and_best_only(tmp_path):
    m = make_model(dropout=False)
    rec = SaveRecorder(m)
    path = str(tmp_path / "ck" / "m-{epoch:02d}-{val_loss:.2f}.weights.h5")
    ck = keras.callbacks.ModelCheckpoint(path, save_best_only=True, save_weights_only=True)
    m.fit(X, Y, epochs=5, verbose=0, callbacks=[ScriptedLoss([0.5, 0.7, 0.25, 0.25, 0.1]), ck])
    names = [os.path.basename(p) for _, p in rec.paths]
    assert names == ["m-01-0.50.weights.h5", "m-03-0.25.weights.h5", "m-05-0.10.weights.h5"]
    assert (tmp_path / "ck").is_dir()   # the directory is created


def test_model_checkpoint_threshold_mode_and_batch_freq(tmp_path):
    m = make_model(dropout=False)
    rec = SaveRecorder(m)
    ck = keras.callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}.keras"), monitor="val_acc", mode="max",
                                         save_best_only=True, initial_value_threshold=0.6)
    m.fit(X, Y, epochs=4, verbose=0, callbacks=[ScriptedLoss([0.5, 0.7, 0.65, 0.9], "val_acc"), ck])
    assert [os.path.basename(p) for _, p in rec.paths] == ["e2.keras", "e4.keras"]
    rec.paths.clear()
    ck = keras.callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}b{batch}.keras"), save_freq=3)
    m.fit(X, Y, epochs=2, batch_size=8, verbose=0, callbacks=[ck])   # 5 batches per epoch
    assert [os.path.basename(p) for _, p in rec.paths] == ["e1b3.keras", "e2b1.keras", "e2b4.keras"]


def test_model_checkpoint_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="weights.h5"):
        keras.callbacks.ModelCheckpoint(str(tmp_path / "w.keras"), save_weights_only=True)
    with pytest.raises(ValueError, match=".keras"):
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m.txt"))
    with pytest.raises(ValueError, match="save_freq"):
        keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq="sometimes")
    m = make_model(dropout=False)
    SaveRecorder(m)
    ck = keras.callbacks.ModelCheckpoint(str(tmp_path / "{nope}.keras"))
    with pytest.raises(KeyError, match="Failed to format"):
        m.fit(X, Y, epochs=1, verbose=0, callbacks=[ck])


def test_model_checkpoint_writes_loadable_weights(tmp_path):
    m = make_model(dropout=False)
    path = str(tmp_path / "best.weights.h5")
    m.fit(X, Y, epochs=2, verbose=0, validation_split=0.25,
          callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)])
    fresh = make_model(dropout=False)
    fresh.load_weights(path)
    for a, b in zip(m.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ BackupAndRestore
class Crash(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def uninterrupted_weights():
    m = make_model()
    m.fit(X, Y, epochs=5, batch_size=8, shuffle=False, verbose=0)
    return m.get_weights()


@pytest.mark.parametrize("fresh_model", [False, True])
def test_backup_and_restore_resumes_identically(tmp_path, uninterrupted_weights, fresh_model):
    backup = str(tmp_path / "backup")
    m = make_model()
    with pytest.raises(RuntimeError, match="simulated crash"):
        m.fit(X, Y, epochs=5, batch_size=8, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(backup), Crash(3)])
    assert os.listdir(backup) == ["training_state.npz"]
    if fresh_model:   # as after a kill: a new process builds the model again
        m = make_model()
    history = m.fit(X, Y, epochs=5, batch_size=8, shuffle=False, verbose=0,
                    callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert history.epoch == [3, 4]
    for a, b in zip(m.get_weights(), uninterrupted_weights):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(backup) == []   # delete_checkpoint=True after a completed fit


def test_backup_and_restore_double_checkpoint_and_corrupt_latest(tmp_path):
    backup = str(tmp_path / "b")
    m = make_model()
    with pytest.raises(RuntimeError):
        m.fit(X, Y, epochs=5, batch_size=8, shuffle=False, verbose=0,
              callbacks=[keras.callbacks.BackupAndRestore(backup, double_checkpoint=True,
                                                          delete_checkpoint=False), Crash(3)])
    assert sorted(os.listdir(backup)) == ["training_state.npz", "training_state.prev.npz"]
    with open(os.path.join(backup, "training_state.npz"), "wb") as fh:
        fh.write(b"garbage")
    m2 = make_model()
    with pytest.warns(UserWarning, match="cannot be read"):
        h = m2.fit(X, Y, epochs=5, batch_size=8, shuffle=False, verbose=0,
                   callbacks=[keras.callbacks.BackupAndRestore(backup, double_checkpoint=True)])
    assert h.epoch == [2, 3, 4]   # resumed from the previous backup (taken after epoch 2)


def test_backup_and_restore_batch_freq_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="Empty"):
        keras.callbacks.BackupAndRestore("")
    with pytest.raises(ValueError, match="save_freq"):
        keras.callbacks.BackupAndRestore(str(tmp_path), save_freq=0)
    cb = keras.callbacks.BackupAndRestore(str(tmp_path / "b"), save_freq=2, delete_checkpoint=False)
    assert keras.callbacks.uses_batch_hooks(cb)
    m = make_model()
    m.fit(X, Y, epochs=1, batch_size=8, shuffle=False, verbose=0, callbacks=[cb])
    with np.load(tmp_path / "b" / "training_state.npz") as data:
        assert int(data["__epoch__"]) == 0   # a mid-epoch backup resumes at the start of its epoch
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.compile("sgd", "mse")
    with pytest.raises(ValueError, match="different model"):
        other.fit(X, np.zeros((40, 2), np.float32), verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "b"))])


# ------------------------------------------------------------------ TensorBoard
def test_crc32c_known_vectors():
    assert event_file.crc32c(b"123456789") == 0xE3069283
    assert event_file.crc32c(b"") == 0
    assert event_file.crc32c(bytes(32)) == 0x8A9136AA


@given(st.binary(max_size=300), st.integers(0, 2 ** 40), st.floats(-1e6, 1e6, width=32))
def test_event_record_round_trip(tag_bytes, step, value):
    tag = tag_bytes.hex()
    record = event_file.frame_record(event_file.encode_event(1.5, step=step,
                                                             summary_values=[event_file.scalar_value(tag, value)]))
    (length,) = struct.unpack("<Q", record[:8])
    assert length == len(record) - 16
    assert struct.unpack("<I", record[8:12])[0] == event_file.masked_crc32c(record[:8])
    event = event_file.decode_event(record[12:-4])
    assert event["step"] == step and event["wall_time"] == 1.5
    assert event["scalars"] == {tag: value}


def test_tensorboard_writes_train_and_validation_scalars(tmp_path):
    m = make_model(dropout=False)
    m.fit(X, Y, epochs=3, batch_size=8, verbose=0, validation_split=0.25,
          callbacks=[keras.callbacks.TensorBoard(str(tmp_path), histogram_freq=2, write_steps_per_second=True)])
    logs = m.history.history
    files = {}
    for sub in ("train", "validation"):
        (name,) = os.listdir(tmp_path / sub)
        assert name.startswith("events.out.tfevents.")
        files[sub] = event_file.read_events(tmp_path / sub / name)
    train, val = files["train"], files["validation"]
    assert train[0]["file_version"] == "brain.Event:2"
    assert [n[1] for n in train[1]["graph_nodes"]] == ["InputLayer", "Dense", "Dense"]
    epoch_events = [e for e in train if e.get("scalars")]
    assert [e["step"] for e in epoch_events] == [0, 1, 2]
    for e in epoch_events:
        s = e["scalars"]
        assert s["epoch_loss"] == pytest.approx(logs["loss"][e["step"]], rel=1e-6)
        assert s["epoch_mae"] == pytest.approx(logs["mae"][e["step"]], rel=1e-6)
        assert s["epoch_learning_rate"] == pytest.approx(0.001)
        assert s["epoch_steps_per_second"] > 0
    hists = [e for e in train if e.get("histograms")]
    assert [e["step"] for e in hists] == [0, 2]
    h = next(v for k, v in hists[-1]["histograms"].items() if k.endswith("/kernel/histogram"))
    assert h["num"] == 12 and sum(h["bucket"]) == 12
    val_scalars = [e["scalars"] for e in val if e.get("scalars")]
    assert [v["epoch_loss"] for v in val_scalars] == pytest.approx(logs["val_loss"], rel=1e-6)


def test_tensorboard_batch_updates_and_arguments(tmp_path):
    m = make_model(dropout=False)
    m.fit(X, Y, epochs=2, batch_size=8, verbose=0,
          callbacks=[keras.callbacks.TensorBoard(str(tmp_path), update_freq=2, write_graph=False)])
    (name,) = os.listdir(tmp_path / "train")
    events = event_file.read_events(tmp_path / "train" / name)
    batch_steps = [e["step"] for e in events if "batch_loss" in e.get("scalars", {})]
    assert batch_steps == [2, 4, 6, 8, 10]
    assert not any("graph_nodes" in e for e in events)
    with pytest.raises(ValueError, match="update_freq"):
        keras.callbacks.TensorBoard(str(tmp_path), update_freq="hourly")
    with pytest.raises(NotImplementedError, match="profile_batch"):
        keras.callbacks.TensorBoard(str(tmp_path), profile_batch=2)


def test_event_file_corruption_is_detected(tmp_path):
    w = event_file.EventFileWriter(str(tmp_path))
    w.add_scalars(1, {"a": 1.0})
    w.close()
    data = bytearray(open(w.path, "rb").read())
    data[-6] ^= 0xFF
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(data))
    with pytest.raises(event_file.CorruptRecordError, match="CRC"):
        event_file.read_events(bad)
    bad.write_bytes(bytes(data[:-3]))
    with pytest.raises(event_file.CorruptRecordError, match="truncated"):
        event_file.read_events(bad)
    bad.write_bytes(bytes(data[:10]))
    with pytest.raises(event_file.CorruptRecordError, match="truncated"):
        event_file.read_events(bad)


# ------------------------------------------------------------------ CSVLogger
def test_csv_logger_append(tmp_path, model):
    path = str(tmp_path / "log.csv")
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[keras.callbacks.CSVLogger(path)])
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[keras.callbacks.CSVLogger(path, append=True)])
    with open(path) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["epoch", "loss", "mae"] and len(rows) == 4   # one header, three epochs
    assert [r[0] for r in rows[1:]] == ["0", "1", "0"]
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[keras.callbacks.CSVLogger(path, separator=";")])
    with open(path) as fh:
        assert fh.read().splitlines()[0] == "epoch;loss;mae"   # no append: overwritten


def test_lambda_callback_batch_hooks_run_on_fast_path(model):
    seen = []
    model.fit(X, Y, epochs=1, batch_size=10, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    assert seen == [0, 1, 2, 3]


def test_reduce_lr_on_plateau_rejects_unknown_arguments():
    with pytest.raises(TypeError, match="unexpected"):
        keras.callbacks.ReduceLROnPlateau(patience=1, colour="red")


def test_tensorboard_files_read_by_tensorboard_itself(tmp_path):
    """An independent reader: the tensorboard package's own event accumulator (skipped when not installed)."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    m = make_model(dropout=False)
    m.fit(X, Y, epochs=2, verbose=0, validation_split=0.25,
          callbacks=[keras.callbacks.TensorBoard(str(tmp_path), histogram_freq=1)])
    train = accumulator.EventAccumulator(str(tmp_path / "train"))
    train.Reload()
    assert [e.value for e in train.Scalars("epoch_loss")] == pytest.approx(m.history.history["loss"], rel=1e-6)
    assert any(t.endswith("/kernel/histogram") for t in train.Tags()["histograms"])
    assert [n.op for n in train.Graph().node] == ["InputLayer", "Dense", "Dense"]
    val = accumulator.EventAccumulator(str(tmp_path / "validation"))
    val.Reload()
    assert [e.step for e in val.Scalars("epoch_mae")] == [0, 1]
