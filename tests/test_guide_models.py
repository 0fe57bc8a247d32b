"""The models of the Keras functional-API guide, compiled and trained: the two-input two-output
headline model (list and dict forms) and the shared-LSTM twin on (280, 256) inputs."""
import numpy as np

import kcompile as keras
from kcompile import layers


def _headline_model():
    main_input = keras.Input(shape=(100,), dtype="int32", name="main_input")
    x = layers.Embedding(output_dim=512, input_dim=10000)(main_input)
    lstm_out = layers.LSTM(32)(x)
    auxiliary_output = layers.Dense(1, activation="sigmoid", name="aux_output")(lstm_out)
    auxiliary_input = keras.Input(shape=(5,), name="aux_input")
    x = layers.concatenate([lstm_out, auxiliary_input])
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(64, activation="relu")(x)
    main_output = layers.Dense(1, activation="sigmoid", name="main_output")(x)
    return keras.Model(inputs=[main_input, auxiliary_input], outputs=[main_output, auxiliary_output])


def test_headline_model_list_and_dict_forms_agree():
    rng = np.random.default_rng(0)
    headline = rng.integers(0, 10000, size=(32, 100))
    additional = rng.random((32, 5)).astype(np.float32)
    labels = rng.integers(0, 2, size=(32, 1)).astype(np.float32)
    histories = []
    for form in ("list", "dict"):
        keras.set_random_seed(1)
        model = _headline_model()
        if form == "list":
            model.compile(optimizer="rmsprop", loss="binary_crossentropy", loss_weights=[1.0, 0.2])
            h = model.fit([headline, additional], [labels, labels], epochs=2, batch_size=16, shuffle=False, verbose=0)
        else:
            model.compile(optimizer="rmsprop",
                          loss={"main_output": "binary_crossentropy", "aux_output": "binary_crossentropy"},
                          loss_weights={"main_output": 1.0, "aux_output": 0.2})
            h = model.fit({"main_input": headline, "aux_input": additional},
                          {"main_output": labels, "aux_output": labels}, epochs=2, batch_size=16, shuffle=False,
                          verbose=0)
        histories.append(h.history)
    assert set(histories[0]) == {"loss", "main_output_loss", "aux_output_loss"}
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]


def test_shared_lstm_twin_model():
    tweet_a, tweet_b = keras.Input(shape=(280, 256)), keras.Input(shape=(280, 256))
    shared_lstm = layers.LSTM(64)
    merged = layers.concatenate([shared_lstm(tweet_a), shared_lstm(tweet_b)], axis=-1)
    predictions = layers.Dense(1, activation="sigmoid")(merged)
    model = keras.Model(inputs=[tweet_a, tweet_b], outputs=predictions)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(2)
    data_a = rng.random((8, 280, 256)).astype(np.float32)
    data_b = rng.random((8, 280, 256)).astype(np.float32)
    labels = rng.integers(0, 2, size=(8, 1)).astype(np.float32)
    h = model.fit([data_a, data_b], labels, epochs=3, batch_size=8, verbose=0)
    assert len(model.trainable_weights) == 5           # one LSTM's three weights, shared, plus the Dense
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_time_distributed_of_a_whole_model_feeding_an_lstm():
    """The guide's video pattern: a per-frame convnet model applied with TimeDistributed, then an LSTM."""
    frame_model = keras.Sequential([keras.Input((4, 4, 1)), layers.Conv2D(2, 3), layers.Flatten(), layers.Dense(3)])
    video = keras.Input((5, 4, 4, 1))
    encoded = layers.TimeDistributed(frame_model)(video)
    model = keras.Model(video, layers.LSTM(2)(encoded))
    model.compile(optimizer="adam", loss="mse")
    data = np.random.default_rng(3).random((6, 5, 4, 4, 1)).astype(np.float32)
    per_frame = np.stack([frame_model.predict(data[:, t], verbose=0) for t in range(5)], 1)
    np.testing.assert_allclose(keras.Model(video, encoded).predict(data, verbose=0), per_frame, rtol=1e-5, atol=1e-6)
    history = model.fit(data, np.zeros((6, 2), np.float32), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert len(model.trainable_weights) == 4 + 3       # the frame model's weights once, then the LSTM's
