"""One replica of data-parallel training runs (tests/test_distributed.py launches it).

    mpiexec -n R python tests/distributed/worker.py OUT_DIR MODEL:MODE [MODEL:MODE ...]
    python tests/distributed/worker.py OUT_DIR MODEL:MODE ...      (the single-process reference)

For each job, builds a guide model (tests/model_suites.py) in a MultiWorkerMirroredStrategy scope,
trains it for 3 epochs on fixed data with a checkpoint and a CSV log in OUT_DIR/MODEL_MODE/,
evaluates it, and writes OUT_DIR/MODEL_MODE/result_RANK.npz: the weights, History and evaluate()
figures. Several jobs share one launch (process start-up and MPI set-up are most of a small run).
MODE: "fit" (arrays: whole epochs natively), "dataset" (a kcompile.data.Dataset, with a callback
with batch hooks: one call per batch), "kill" (rank 1 kills itself in the second epoch).
"""
import os
import pathlib
import signal
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # tests/: model_suites

import kcompile as keras  # noqa: E402
from model_suites import DISTRIBUTED_MODELS  # noqa: E402

SAMPLES, BATCH, EPOCHS = 200, 32, 3


def data(model):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((SAMPLES,) + tuple(t.shape[1:])).astype(np.float32) for t in model.inputs]
    ys = []
    for out in model.outputs:
        k = out.shape[-1]
        ys.append(np.eye(k, dtype=np.float32)[rng.integers(0, k, SAMPLES)] if k > 1 else
                  rng.standard_normal((SAMPLES, k)).astype(np.float32))
    return (xs if len(xs) > 1 else xs[0]), (ys if len(ys) > 1 else ys[0])


class BatchHook(keras.callbacks.Callback):
    """Per-batch hooks force one native call per batch; in "kill" mode rank 1 dies mid-epoch."""

    def __init__(self, kill):
        super().__init__()
        self.kill, self.epoch = kill, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.kill and self.epoch == 1 and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)


def main(out, *jobs):
    strategy = keras.distribute.MultiWorkerMirroredStrategy()
    for job in jobs:
        name, mode = job.split(":")
        folder = pathlib.Path(out) / f"{name}_{mode}"
        folder.mkdir(parents=True, exist_ok=True)
        train(strategy, name, mode, folder)


def train(strategy, name, mode, out):
    keras.utils.set_random_seed(3)
    rank = strategy.cluster_resolver.task_id
    with strategy.scope():
        model = DISTRIBUTED_MODELS[name]()
    x, y = data(model)
    # file names carry the rank: the test checks that only rank 0's exist
    callbacks = [keras.callbacks.ModelCheckpoint(str(out / f"ckpt_{rank}.weights.h5"), save_weights_only=True),
                 keras.callbacks.CSVLogger(str(out / f"log_{rank}.csv"))]
    if mode in ("dataset", "kill"):
        callbacks.append(BatchHook(kill=(mode == "kill" and rank == 1)))
    if mode == "dataset":
        history = model.fit(keras.data.Dataset.from_tensor_slices((x, y)).batch(BATCH), epochs=EPOCHS,
                            verbose=0, callbacks=callbacks)
    else:
        history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks, shuffle=True)
    evaluated = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    np.savez(out / f"result_{rank}.npz", *model.get_weights(),
             history=np.array([history.history[k] for k in sorted(history.history)]),
             history_keys=np.array(sorted(history.history)),
             evaluated=np.array([evaluated[k] for k in sorted(evaluated)]),
             replicas=np.int64(strategy.num_replicas_in_sync))


if __name__ == "__main__":
    main(*sys.argv[1:])
