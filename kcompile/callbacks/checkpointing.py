"""Callbacks that write the model to disk during training: ModelCheckpoint and BackupAndRestore."""
from __future__ import annotations

import io
import os
import warnings

import numpy as np

from .base import WRITES_EVERY_HOOK, Callback
from .monitoring import _monitor_op


def _valid_save_freq(save_freq, who, allow_false=False):
    if save_freq == "epoch" or (allow_false and save_freq is False):
        return save_freq
    if isinstance(save_freq, (int, np.integer)) and not isinstance(save_freq, bool) and save_freq > 0:
        return int(save_freq)
    raise ValueError(f"{who}: unrecognized save_freq {save_freq!r}; expected 'epoch' or a positive integer "
                     f"(a number of batches){' or False' if allow_false else ''}")


class ModelCheckpoint(Callback):
    """Save the model (`model.save`) or its weights (`model.save_weights`) every epoch or every
    `save_freq` batches; `filepath` may hold `{epoch:02d}`, `{batch}` and logged values such as
    `{val_loss:.2f}`."""

    _chief_only_hooks = WRITES_EVERY_HOOK   # only rank 0 of a data-parallel job writes the files

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = bool(save_best_only), bool(save_weights_only)
        self.save_freq = _valid_save_freq(save_freq, "ModelCheckpoint")
        if self.save_weights_only and not self.filepath.endswith(".weights.h5"):
            raise ValueError("When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must "
                             f"end in `.weights.h5` (Keras weights format). Received: filepath={self.filepath}")
        if not self.save_weights_only and not self.filepath.endswith((".keras", ".h5")) or \
                not self.save_weights_only and self.filepath.endswith(".weights.h5"):
            raise ValueError("The filepath provided must end in `.keras` (Keras model format) or `.h5` (legacy "
                             f"HDF5). Received: filepath={self.filepath}")
        self.mode = _monitor_op(mode, monitor)
        self.initial_value_threshold = initial_value_threshold
        self.best = initial_value_threshold if initial_value_threshold is not None else \
            (-np.inf if self.mode == "max" else np.inf)
        self._current_epoch = 0
        self._batches_seen_since_last_saving = 0
        self._needs_batch_hooks = self.save_freq != "epoch"

    def _better(self, current):
        return current > self.best if self.mode == "max" else current < self.best

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_seen_since_last_saving += 1
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            self._save(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _file_path(self, epoch, batch, logs):
        try:
            if batch is not None and "batch" not in (logs or {}):
                return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **(logs or {}))
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except KeyError as exc:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {exc}') from None

    def _save(self, epoch, batch, logs):
        logs = logs or {}
        filepath = self._file_path(epoch, batch, logs)
        directory = os.path.dirname(filepath)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available, skipping.", stacklevel=2)
                return
            current = float(current)
            if not self._better(current):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {filepath}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)


class BackupAndRestore(Callback):
    """Back up the whole training state (weights, optimizer slots, step counters, the epoch) to
    `backup_dir`, so that a fit() interrupted by an exception or a kill resumes where the last backup
    was taken when it is run again with the same callback.

    Backups are written atomically (a crash while saving leaves the previous backup intact).
    With `save_freq=N` a backup is also taken every N batches; resuming from such a backup restarts
    the epoch it was taken in, from the backed-up state.
    """

    _LATEST, _PREVIOUS = "training_state.npz", "training_state.prev.npz"
    # every worker of a data-parallel job restores; only rank 0 writes and deletes backups
    _chief_only_hooks = frozenset({"on_train_batch_end", "on_epoch_end", "on_train_end"})

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = _valid_save_freq(save_freq, "BackupAndRestore", allow_false=True)
        self.double_checkpoint, self.delete_checkpoint = bool(double_checkpoint), bool(delete_checkpoint)
        self._current_epoch = 0
        self._batches_seen = 0
        self._needs_batch_hooks = isinstance(self.save_freq, int) and self.save_freq is not False

    @property
    def _latest(self):
        return os.path.join(self.backup_dir, self._LATEST)

    @property
    def _previous(self):
        return os.path.join(self.backup_dir, self._PREVIOUS)

    # -------------------------------------------------------- restore
    def on_train_begin(self, logs=None):
        for path in (self._latest, self._previous):
            if not os.path.exists(path):
                continue
            try:
                names, arrays, epoch = _read_backup(path)
            except (OSError, ValueError, KeyError) as exc:
                warnings.warn(f"BackupAndRestore: the backup {path} cannot be read ({exc}); trying an older one")
                continue
            self._restore(names, arrays)
            self.model._initial_epoch_override = epoch
            return

    def _restore(self, names, arrays):
        model = self.model
        if getattr(model, "_compiled_model", None) is None and hasattr(model, "_ensure_compiled_model"):
            model._ensure_compiled_model()
        if getattr(model, "_compiled_model", None) is None:
            raise ValueError(f"BackupAndRestore cannot restore the backup in {self.backup_dir} into model "
                             f"'{model.name}': it is not built yet. Give the model an Input (or call build()) "
                             f"before fit().")
        current = model.get_training_state()
        keys = list(current)
        saved = _by_stable_name(names, arrays)
        stable = _stable_names(keys)
        if all(k in saved for k in stable):
            values = [saved[k] for k in stable]
        elif len(arrays) == len(keys) and all(a.shape == np.shape(current[k]) for a, k in zip(arrays, keys)):
            # the same architecture built under other auto-generated layer names: match by position
            values = arrays
        else:
            missing = [k for k in stable if k not in saved]
            raise ValueError(f"BackupAndRestore: the backup in {self.backup_dir} was written by a different model "
                             f"(it has no value for {missing[:5]})")
        state = {}
        for key, name, value in zip(keys, stable, values):
            if value.shape != np.shape(current[key]):
                raise ValueError(f"BackupAndRestore: '{name}' has shape {value.shape} in the backup but "
                                 f"{np.shape(current[key])} in the model")
            state[key] = value
        model.set_training_state(state)

    # -------------------------------------------------------- backup
    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not self._needs_batch_hooks:
            return
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            # a mid-epoch backup resumes at the start of this epoch
            self._backup(self._current_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._backup(epoch + 1)

    def _backup(self, next_epoch):
        from ..saving.atomic import atomic_write
        os.makedirs(self.backup_dir, exist_ok=True)
        state = self.model.get_training_state()
        buf = io.BytesIO()
        payload = {f"v{i}": np.asarray(v) for i, v in enumerate(state.values())}
        np.savez(buf, __names__=np.array(list(state), dtype=np.str_), __epoch__=np.int64(next_epoch), **payload)
        if self.double_checkpoint and os.path.exists(self._latest):
            os.replace(self._latest, self._previous)
        with atomic_write(self._latest, "wb") as fh:
            fh.write(buf.getvalue())

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            for path in (self._latest, self._previous):
                if os.path.exists(path):
                    os.remove(path)


def _read_backup(path):
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["__names__"]]
        arrays = [data[f"v{i}"] for i in range(len(names))]
        return names, arrays, int(data["__epoch__"])


def _stable_names(keys):
    """State keys without their process-specific '#<uid>' suffix, numbered when repeated, so a backup
    written by one process restores into the same model rebuilt in another."""
    seen, out = {}, []
    for key in keys:
        base = key.split("#", 1)[0]
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}@{n}")
    return out


def _by_stable_name(names, arrays):
    return dict(zip(_stable_names(names), arrays))
