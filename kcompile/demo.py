"""`kcompile demo`: the Keras guide's MLP, compiled to native code and trained end to end."""
from __future__ import annotations

import time

import numpy as np


def synthetic_task(samples, seed):
    """A learnable 10-class problem on 20 features: the class is the argmax of a fixed linear map."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((20, 10)).astype(np.float32)
    x = rng.standard_normal((samples, 20)).astype(np.float32)
    y = np.argmax(x @ w, axis=1)
    return x, y


def run_demo(epochs=20, samples=2000, seed=1, save_to="kcompile_demo.keras", build_to=None):
    import kcompile as keras
    from kcompile import layers

    keras.utils.set_random_seed(seed)
    x, labels = synthetic_task(samples + 500, seed)
    y = keras.utils.to_categorical(labels, 10)
    x_train, y_train, x_test, y_test = x[:samples], y[:samples], x[samples:], y[samples:]

    model = keras.Sequential([
        layers.Dense(64, activation="relu", input_shape=(20,)),
        layers.Dropout(0.5),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.summary()
    t0 = time.perf_counter()
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                  metrics=["accuracy"])
    print(f"compile() generated native code in {time.perf_counter() - t0:.3f} s")
    t0 = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=128, validation_split=0.1)
    print(f"training took {time.perf_counter() - t0:.3f} s")
    loss, acc = model.evaluate(x_test, y_test, batch_size=128)
    print(f"test loss {loss:.4f}, test accuracy {acc:.4f}")
    probs = model.predict(x_test[:5], verbose=0)
    print("predicted classes:", np.argmax(probs, axis=1).tolist(), " true:", labels[samples:samples + 5].tolist())
    if save_to:
        model.save(save_to)                       # Keras 3's .keras format, loadable by Keras itself
        reloaded = keras.models.load_model(save_to)
        same = np.array_equal(reloaded.predict(x_test[:5], verbose=0), probs)
        print(f"saved to {save_to} and reloaded: {'identical' if same else 'DIFFERENT'} predictions")
    if build_to:
        t0 = time.perf_counter()
        keras.build(model, build_to, name="demo_mlp")   # a C library: predict/train/evaluate without Python
        built = keras.load_built(build_to)
        same = np.array_equal(built.run("predict", 5, [x_test[:5]])[0], probs)
        print(f"built the C library {build_to}/libdemo_mlp.so (+ demo_mlp.h, demo_mlp.o) in "
              f"{time.perf_counter() - t0:.1f} s; its predictions: {'identical' if same else 'DIFFERENT'}"
              f" (try: make -C {build_to} && {build_to}/example)")
    return model, acc
