"""Data-parallel training of the Keras guide's MLP over MPI.

    pip install -e ".[mpi]"
    mpiexec -n 2 python examples/data_parallel.py

Every rank runs this same script; rank 0 prints the progress and writes the checkpoint. Run it
without mpiexec and it trains as one process, on the same global batches, to the same weights.
"""
import numpy as np

import kcompile as keras
from kcompile import layers

keras.utils.set_random_seed(0)
strategy = keras.distribute.MultiWorkerMirroredStrategy()
print(f"worker {strategy.cluster_resolver.task_id} of {strategy.num_replicas_in_sync}")

with strategy.scope():
    model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)), layers.Dropout(0.5),
                              layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                  optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True))

rng = np.random.default_rng(0)
x = rng.random((4096, 20), dtype=np.float32)
y = keras.utils.to_categorical((x[:, :10].argmax(axis=1)), 10)      # a learnable task
model.fit(x, y, batch_size=256, epochs=20,                              # 256 = the global batch
          callbacks=[keras.callbacks.ModelCheckpoint("data_parallel.weights.h5", save_weights_only=True)])
loss, accuracy = model.evaluate(x, y, batch_size=256, verbose=0)
if strategy.cluster_resolver.task_id == 0:
    print(f"global loss {loss:.4f}, accuracy {accuracy:.3f}")
