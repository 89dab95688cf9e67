"""Small Keras models that several test files build."""

import keras
from keras import layers


def residual_model() -> keras.Model:
    """conv - relu - [residual block] - pool - flatten - dense - relu - dense.

    Cuts inside the block ('block_conv', 'block_relu') cross a skip connection; the block ends before 'pool'.
    """
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = layers.ReLU(name="stem_relu")(x)
    branch = layers.Conv2D(4, 3, padding="same", name="block_conv")(x)
    branch = layers.ReLU(name="block_relu")(branch)
    x = layers.Add(name="block_add")([x, branch])
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(8, name="hidden")(x)
    x = layers.ReLU(name="hidden_relu")(x)
    return keras.Model(inputs, layers.Dense(3, name="out")(x))
