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
