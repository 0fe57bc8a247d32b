"""Models shared by several test files."""
import kcompile as keras
from kcompile import layers

# The compiled-vs-interpreter suite (test_aot.py runs it through a built C library too).
INTERPRETER_SUITE = {
    "bn_conv_stack": lambda: [keras.Input((6, 6, 2)), layers.BatchNormalization(), layers.ZeroPadding2D(1),
                              layers.Conv2D(2, 3), layers.LeakyReLU(), layers.UpSampling2D(), layers.Cropping2D(2),
                              layers.Flatten(), layers.Dense(1)],
    "ln_timedistributed": lambda: [keras.Input((5, 3)), layers.LayerNormalization(),
                                   layers.TimeDistributed(layers.Dense(4)), layers.PReLU(), layers.Permute((2, 1)),
                                   layers.Flatten(), layers.Dense(1)],
}


# The guide models, compiled as the guides compile them (test_aot.py builds them to C libraries;
# tests/distributed/worker.py trains them data-parallel).
def guide_mlp():
    model = keras.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)), layers.Dropout(0.5),
                              layers.Dense(64, activation="relu"), layers.Dropout(0.5),
                              layers.Dense(10, activation="softmax")], name="guide_mlp")
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
                  metrics=["accuracy"])
    return model


def vgg_like():
    model = keras.Sequential([
        # 32 filters first: its kernel gradient's B (the output gradient, 32 wide) is read in place
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(12, 12, 3)), layers.Conv2D(8, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)), layers.Dropout(0.25), layers.Conv2D(16, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dense(32, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax")], name="vgg_like")
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9))
    return model


def lstm_model():
    model = keras.Sequential([layers.LSTM(8, input_shape=(5, 4)), layers.Dense(3)], name="lstm_model")
    model.compile(loss="mse", optimizer="adam")
    return model


def gru_bidirectional():
    model = keras.Sequential([layers.Embedding(20, 6, input_length=5),
                              layers.Bidirectional(layers.GRU(4, return_sequences=True)), layers.GRU(4),
                              layers.Dense(2, activation="sigmoid")], name="gru_bi")
    model.build((None, 5))
    model.compile(loss="binary_crossentropy", optimizer="rmsprop")
    return model


def two_in_two_out():
    a, b = keras.Input((6,), name="a"), keras.Input((3,), name="b")
    h = layers.Dense(8, activation="tanh")(layers.Concatenate()([a, b]))
    out1 = layers.Dense(1, name="score")(h)
    out2 = layers.Dense(4, activation="softmax", name="label")(h)
    model = keras.Model([a, b], [out1, out2], name="two_io")
    model.compile(optimizer="adam", loss=["mse", "categorical_crossentropy"], loss_weights=[1.0, 0.5])
    return model


def sync_bn():
    """BatchNormalization over the global batch in data-parallel training (tests/test_distributed.py)."""
    # no bias before the normalization: its gradient is round-off, which Adam would amplify
    model = keras.Sequential([layers.Dense(16, use_bias=False, input_shape=(8,)), layers.BatchNormalization(synchronized=True),
                              layers.Activation("relu"), layers.Dense(3, activation="softmax")], name="sync_bn")
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


MODELS = {"guide_mlp": guide_mlp, "vgg_like": vgg_like, "lstm_model": lstm_model, "gru_bi": gru_bidirectional,
          "two_io": two_in_two_out}
# tests/distributed/worker.py trains these data-parallel
DISTRIBUTED_MODELS = dict(MODELS, sync_bn=sync_bn)
