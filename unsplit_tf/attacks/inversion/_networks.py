"""The attacker's own networks, shared by the auxiliary-data attacks (SDAR, inverse networks).

A decoder maps cut-layer features back to images; a discriminator scores how "real" a batch of features
or images looks; a generic simulator is a client-shaped model of a different architecture, for an
attacker who does not know the client's. Every builder works for any feature shape a cut gives:
a feature map (H', W', C') or a flat vector (D,). Widths follow SDAR's (16/32/64 decoder, LeakyReLU 0.2
discriminators with dropout 0.4), scaled down to these small images. Each step of the attacks trains
them with `train_step`, one GradientTape per network.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers


def _base_size(image_side: int, feature_side: int) -> tuple[int, int]:
    """(side the decoder starts at, how many 2x upsamplings reach the image): the coarsest power-of-two
    fraction of the image no smaller than the features (28 from 4x4: start at 7, two upsamplings)."""
    ups = max(0, math.floor(math.log2(image_side / feature_side))) if feature_side < image_side else 0
    while ups and image_side % 2**ups:
        ups -= 1
    return image_side // 2**ups, ups


def _conv_block(x, filters: int):
    x = layers.Conv2D(filters, 3, padding="same")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
    return layers.ReLU()(x)


def decoder(
    feature_shape: tuple[int, ...], image_shape: tuple[int, int, int], *, width: int = 64, classes: int | None = None,
    blocks: int = 1, name: str = "decoder"
) -> keras.Model:
    """Features -> images in [0, 1] (sigmoid): resize to the starting grid, then `blocks` conv-BN-ReLU at
    it and, per octave, (upsample, `blocks` conv-BN-ReLU), halving the width, and a final conv (SDAR's
    decoders stack two or three convolutions per resolution). Flat features are first projected onto the grid.
    With `classes`, a second input of class probabilities is projected onto the grid and joins the
    features (SDAR's label-conditional decoder); the model then takes [features, probabilities]."""
    height, wide, channels = image_shape
    features = keras.Input(feature_shape, name="features")
    if len(feature_shape) == 1:
        side, ups = _base_size(height, max(1, height // 4))  # flat features start at a quarter of the image
        x = layers.Dense(side * (wide * side // height) * width)(features)
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        x = layers.ReLU()(x)
        x = layers.Reshape((side, wide * side // height, width))(x)
    elif len(feature_shape) == 3:
        side, ups = _base_size(height, feature_shape[0])
        x = features
        if feature_shape[:2] != (side, wide * side // height):
            x = layers.Resizing(side, wide * side // height, interpolation="bilinear")(x)
    else:
        raise ValueError(f"a decoder inverts feature maps (H, W, C) or flat features (D,), got shape {feature_shape}")
    inputs = features
    if classes is not None:
        probabilities = keras.Input((classes,), name="class_probabilities")
        grid = (side, wide * side // height)
        label_map = layers.Reshape((*grid, 1))(layers.Dense(grid[0] * grid[1])(probabilities))
        x = layers.Concatenate()([x, label_map])
        inputs = [features, probabilities]
    for _ in range(blocks):
        x = _conv_block(x, width)
    for octave in range(ups):
        x = layers.UpSampling2D(2)(x)
        for _ in range(blocks):
            x = _conv_block(x, max(16, width // 2 ** (octave + 1)))
    outputs = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="image")(x)
    return keras.Model(inputs, outputs, name=name)


def discriminator(input_shape: tuple[int, ...], *, width: int = 32, name: str = "discriminator") -> keras.Model:
    """A batch of feature maps, images or flat features -> one logit each ("real" > 0): strided
    conv-LeakyReLU layers down to a few pixels (or two dense layers for flat inputs), dropout, a dense logit."""
    inputs = keras.Input(input_shape, name="inputs")
    if len(input_shape) == 1:
        x = layers.Dense(2 * width)(inputs)
        x = layers.LeakyReLU(0.2)(x)
        x = layers.Dense(width)(x)
        x = layers.LeakyReLU(0.2)(x)
    elif len(input_shape) == 3:
        stride = 2 if input_shape[0] > 8 else 1  # halve large inputs at once: the critic only needs a coarse view
        x = layers.Conv2D(width, 3, strides=stride, padding="same")(inputs)
        x = layers.LeakyReLU(0.2)(x)
        side, filters = math.ceil(input_shape[0] / stride), width
        while side > 4:
            filters = min(filters * 2, 2 * width)
            x = layers.Conv2D(filters, 3, strides=2, padding="same")(x)
            x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
            x = layers.LeakyReLU(0.2)(x)
            side = math.ceil(side / 2)
        x = layers.Flatten()(x)
    else:
        raise ValueError(f"a discriminator scores feature maps (H, W, C) or flat features (D,), got shape {input_shape}")
    x = layers.Dropout(0.4)(x)
    return keras.Model(inputs, layers.Dense(1, name="logit")(x), name=name)


def generic_simulator(image_shape: tuple[int, int, int], feature_shape: tuple[int, ...], *, width: int = 32, name: str = "generic_simulator") -> keras.Model:
    """A client of a different architecture than the victim's (two conv-BN-ReLU blocks, pooled down to the
    feature grid, or flattened into a dense layer): the simulator of an attacker who does not know the client."""
    images = keras.Input(image_shape, name="image")
    x = _conv_block(images, width)
    x = _conv_block(x, 2 * width)
    if len(feature_shape) == 3:
        x = layers.Resizing(*feature_shape[:2], interpolation="bilinear")(x)
        outputs = layers.Conv2D(feature_shape[2], 3, padding="same")(x)
    elif len(feature_shape) == 1:
        x = layers.MaxPooling2D(2)(x)
        outputs = layers.Dense(feature_shape[0])(layers.Flatten()(x))
    else:
        raise ValueError(f"a simulator outputs feature maps (H, W, C) or flat features (D,), got shape {feature_shape}")
    return keras.Model(images, outputs, name=name)


def real_fake_losses(discriminator: keras.Model, real: tf.Tensor, fake: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(the discriminator's loss: real -> 1, fake -> 0; the generator's loss: fake -> 1), non-saturating GAN losses."""
    real_logits = discriminator(real, training=True)
    fake_logits = discriminator(fake, training=True)
    bce = keras.losses.binary_crossentropy
    discriminator_loss = tf.reduce_mean(bce(tf.ones_like(real_logits), real_logits, from_logits=True)) + tf.reduce_mean(
        bce(tf.zeros_like(fake_logits), fake_logits, from_logits=True)
    )
    generator_loss = tf.reduce_mean(bce(tf.ones_like(fake_logits), fake_logits, from_logits=True))
    return discriminator_loss, generator_loss


def apply(tape: tf.GradientTape, loss: tf.Tensor, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """One optimiser step of `model`'s trainable weights on `loss` recorded by `tape`."""
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


def decoder_mse(decoder: keras.Model, features: tf.Tensor, images: tf.Tensor) -> tf.Tensor:
    """Mean squared error of decoder(features) against the images they came from (training mode)."""
    return tf.reduce_mean(tf.square(decoder(features, training=True) - images))


def decode(decoder: keras.Model, observed, batch_size: int = 512, conditioner=None) -> np.ndarray:
    """decoder(observed) in inference mode, in batches, as a float32 numpy array; a conditional decoder
    also gets `conditioner(batch)` (the class probabilities it was trained with)."""
    observed = np.asarray(observed, np.float32)
    parts = []
    for start in range(0, len(observed), batch_size):
        batch = tf.constant(observed[start : start + batch_size])
        parts.append(decoder(batch if conditioner is None else [batch, conditioner(batch)], training=False).numpy())
    return np.concatenate(parts)


def _squared_distances(rows: tf.Tensor) -> tf.Tensor:
    """Pairwise squared Euclidean distances between the rows of a matrix."""
    squared = tf.reduce_sum(rows**2, axis=1)
    return tf.maximum(squared[:, None] + squared[None, :] - 2.0 * tf.matmul(rows, rows, transpose_b=True), 0.0)


def mmd(first: tf.Tensor, second: tf.Tensor, classes: tuple[tf.Tensor, tf.Tensor] | None = None, class_width: float = 0.0) -> tf.Tensor:
    """Squared maximum mean discrepancy between two batches of features under a sum of Gaussian kernels
    (bandwidths 1/4, 1 and 4 times the mean squared distance; FORA's multi-kernel alignment of features).

    With `classes` (each batch's class probabilities or one-hot labels) and `class_width` > 0 the kernel is
    multiplied by exp(-|p - q|^2 / class_width): features are compared mostly within a class, so the MMD
    matches the two batches class by class rather than only as wholes. It is then divided by that factor's mean
    between the two batches, so it keeps the class-blind MMD's scale (with one-hot classes only a class's share
    of the pairs counts: about a tenth of them with ten balanced classes) and one weight serves both."""
    a = tf.reshape(first, [tf.shape(first)[0], -1])
    b = tf.reshape(second, [tf.shape(second)[0], -1])
    distances = _squared_distances(tf.concat([a, b], axis=0))
    bandwidth = tf.stop_gradient(tf.reduce_mean(distances)) + 1e-8
    kernel = tf.add_n([tf.exp(-distances / (scale * bandwidth)) for scale in (0.25, 1.0, 4.0)])
    n = tf.shape(a)[0]
    scale = 1.0
    if classes is not None and class_width > 0:
        factor = tf.stop_gradient(tf.exp(-_squared_distances(tf.concat(classes, axis=0)) / class_width))
        kernel *= factor
        scale = tf.reduce_mean(factor[:n, n:]) + 1e-8
    return (tf.reduce_mean(kernel[:n, :n]) + tf.reduce_mean(kernel[n:, n:]) - 2.0 * tf.reduce_mean(kernel[:n, n:])) / scale
