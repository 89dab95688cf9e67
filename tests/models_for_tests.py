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


def batch_norm_residual_model(input_shape: tuple[int, int, int] = (28, 28, 1), classes: int = 10, width: int = 8) -> keras.Model:
    """A user's own model: conv-BN-relu stem, two residual blocks with BatchNormalization, global pooling.

    Cut after the first block with layer='block1_out'. The first conv has no bias (BN follows), so an
    affine change of the input is absorbed by the stem: the attack's clone cannot tell x from 1 - x.
    """
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for block in (1, 2):
        branch = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_conv")(x)
        branch = layers.BatchNormalization(name=f"block{block}_bn")(branch)
        x = layers.Add(name=f"block{block}_add")([x, branch])
        x = layers.ReLU(name=f"block{block}_out")(x)
        if block == 1:
            x = layers.MaxPooling2D(name="pool")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    return keras.Model(inputs, layers.Dense(classes, name="logits")(x))
