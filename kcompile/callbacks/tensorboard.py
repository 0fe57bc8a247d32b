"""TensorBoard: scalar, histogram and graph summaries in TensorBoard's event-file format.

Logs go to `<log_dir>/train` and `<log_dir>/validation`, one `events.out.tfevents.*` file each.
The writer is `event_file.EventFileWriter` (our own TFRecord + protobuf encoder), so no
TensorFlow or tensorboard package is needed to write logs that TensorBoard reads.
"""
from __future__ import annotations

import os
import time

from .base import WRITES_EVERY_HOOK, Callback
from .event_file import EventFileWriter


class TensorBoard(Callback):
    _chief_only_hooks = WRITES_EVERY_HOOK   # only rank 0 of a data-parallel job writes the files

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0, embeddings_freq=0,
                 embeddings_metadata=None):
        super().__init__()
        # the arguments below need TensorFlow's profiler / projector / image summaries
        if write_images:
            raise NotImplementedError("TensorBoard(write_images=True) is not supported by kcompile")
        if profile_batch not in (0, None, (0, 0)):
            raise NotImplementedError(f"TensorBoard(profile_batch={profile_batch!r}) is not supported by kcompile "
                                      "(there is no TensorFlow profiler); use profile_batch=0")
        if embeddings_freq:
            raise NotImplementedError("TensorBoard(embeddings_freq>0) is not supported by kcompile")
        if embeddings_metadata is not None:
            raise NotImplementedError("TensorBoard(embeddings_metadata=...) is not supported by kcompile")
        if update_freq == "steps":
            update_freq = "batch"   # the old alias
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (not isinstance(update_freq, int) or isinstance(update_freq, bool)
                                       or update_freq <= 0):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive integer; "
                             f"got {update_freq!r}")
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"TensorBoard: histogram_freq must be a non-negative integer; got {histogram_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq, self.write_graph = histogram_freq, bool(write_graph)
        self.write_steps_per_second, self.update_freq = bool(write_steps_per_second), update_freq
        self._train_dir = os.path.join(self.log_dir, "train")
        self._val_dir = os.path.join(self.log_dir, "validation")
        self._writers = {}
        self._global_train_batch = 0
        self._epoch_start = None
        # per-batch hooks (one native call per batch) only when batch summaries are asked for
        self._needs_batch_hooks = update_freq != "epoch"

    def _writer(self, which):
        if which not in self._writers:
            self._writers[which] = EventFileWriter(self._train_dir if which == "train" else self._val_dir)
        return self._writers[which]

    def _learning_rate(self):
        opt = getattr(self.model, "optimizer", None)
        lr = getattr(opt, "learning_rate", None)
        try:
            return float(lr)
        except (TypeError, ValueError):
            return None

    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        if self.write_graph:
            nodes = layer_graph_nodes(self.model)
            if nodes:
                self._writer("train").add_graph(nodes)
                self._writer("train").flush()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self._global_train_batch += 1
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        scalars = {"batch_" + k: v for k, v in (logs or {}).items() if _is_number(v)}
        lr = self._learning_rate()
        if lr is not None:
            scalars["batch_learning_rate"] = lr
        self._writer("train").add_scalars(self._global_train_batch, scalars)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_") and _is_number(v)}
        val = {k[4:]: v for k, v in logs.items() if k.startswith("val_") and _is_number(v)}
        lr = self._learning_rate()
        if lr is not None:
            train["learning_rate"] = lr
        if self.write_steps_per_second and self._epoch_start is not None:
            elapsed = max(time.time() - self._epoch_start, 1e-9)
            train["steps_per_second"] = (self.params.get("steps") or 0) / elapsed
        self._writer("train").add_scalars(epoch, {"epoch_" + k: v for k, v in train.items()})
        if val:
            self._writer("validation").add_scalars(epoch, {"epoch_" + k: v for k, v in val.items()})
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            hist = {}
            for layer in self.model.layers:
                for w in layer.weights:
                    hist[f"{getattr(w, 'path', w.name)}/histogram"] = w.numpy()
            self._writer("train").add_histograms(epoch, hist)
        for w in self._writers.values():
            w.flush()

    def on_train_end(self, logs=None):
        for w in self._writers.values():
            w.close()
        self._writers = {}


def _is_number(v):
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def layer_graph_nodes(model):
    """(name, op, inputs) for each layer of a model: the conceptual Keras graph TensorBoard shows."""
    from ..utils.model_visualization import layer_edges
    try:
        names, edges, classes = layer_edges(model)
    except ValueError:   # an unbuilt model has no graph yet
        return []
    inputs = {n: [] for n in names}
    for src, dst in edges:
        inputs[dst].append(src)
    return [(n, classes[n], inputs[n]) for n in names]
