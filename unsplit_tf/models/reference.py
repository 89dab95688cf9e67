"""The paper's reference nets as Keras functional models.

Layer for layer as in UnSplit (see docs/ALGORITHMS.md): every conv, activation and
pooling layer is its own Keras layer, so the depth count of `split.py` gives
the same cut as the authors' code. The nets output logits (no softmax).
"""

from __future__ import annotations

import keras
from keras import layers

from unsplit_tf.data import canonical_name


def mnist_net(input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10) -> keras.Model:
    """The MNIST / Fashion-MNIST net: 45,278 parameters, split depths 1..6."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(8, 5, name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, name="conv2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, name="dense1")(x)
    x = layers.ReLU(name="relu3")(x)
    x = layers.Dense(84, name="dense2")(x)
    x = layers.ReLU(name="relu4")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mnist_net")


def cifar_net(input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10) -> keras.Model:
    """The CIFAR-10 net (VGG-like, sigmoid after the 512-unit layer): 1,609,546 parameters, depths 1..8."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for block, filters in enumerate((64, 128, 128), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", name=f"block{block}_conv{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, name="dense1")(x)
    x = layers.Activation("sigmoid", name="sigmoid")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="cifar_net")


_NETS = {"mnist": mnist_net, "f_mnist": mnist_net, "cifar": cifar_net}

# The split depths the paper evaluates for each reference net.
PAPER_DEPTHS = {"mnist": range(1, 7), "f_mnist": range(1, 7), "cifar": range(1, 9)}


def reference_net(dataset: str) -> keras.Model:
    """A fresh, randomly initialised reference net for `dataset` (any name `canonical_name` accepts)."""
    return _NETS[canonical_name(dataset)]()


def paper_depths(dataset: str) -> range:
    """The split depths the paper evaluates for `dataset`'s reference net."""
    return PAPER_DEPTHS[canonical_name(dataset)]
