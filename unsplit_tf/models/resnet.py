"""ResNet-20 (He et al. 2016, the CIFAR variant) as a Keras functional model, the net SDAR attacks.

A 3x3 stem of 16 filters, then three stages of three residual blocks (16, 32, 64 filters; the first block
of stages 2 and 3 halves the grid and projects its shortcut with a strided 1x1 conv), global average
pooling and a dense logit layer: about 0.27M parameters. A block's skip connection crosses every layer
inside it, so a split can only cut between blocks: after the stem (`block_output(model, 0)`) or after
block b = 1..9 (`block_output(model, b)`), e.g. `split_model(model, layer=block_output(model, 4))`.
"""

from __future__ import annotations

import keras
from keras import layers

BLOCKS = 9  # three stages of three


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv")(x)
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)


def resnet20(input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10) -> keras.Model:
    """A fresh ResNet-20 for `input_shape` images, outputting logits; cut it at `block_output(model, b)`."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.ReLU(name="stem_out")(_conv_bn(inputs, 16, 3, 1, "stem"))
    block = 0
    for stage, filters in enumerate((16, 32, 64)):
        for index in range(3):
            block += 1
            stride = 2 if stage > 0 and index == 0 else 1
            branch = layers.ReLU(name=f"block{block}_relu1")(_conv_bn(x, filters, 3, stride, f"block{block}_1"))
            branch = _conv_bn(branch, filters, 3, 1, f"block{block}_2")
            shortcut = x if stride == 1 else _conv_bn(x, filters, 1, stride, f"block{block}_shortcut")
            x = layers.ReLU(name=f"block{block}_out")(layers.Add(name=f"block{block}_add")([shortcut, branch]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet20")


def block_output(model: keras.Model, block: int) -> str:
    """The name of the layer that ends residual block `block` (0: the stem): a valid `split_model(layer=...)` cut."""
    if not isinstance(block, int) or isinstance(block, bool) or not 0 <= block <= BLOCKS:
        raise ValueError(f"block must be 0 (after the stem) .. {BLOCKS} (after the last block), got {block!r}")
    name = "stem_out" if block == 0 else f"block{block}_out"
    if name not in {layer.name for layer in model.layers}:
        raise ValueError(f"model '{model.name}' has no layer '{name}'; build it with resnet20()")
    return name
