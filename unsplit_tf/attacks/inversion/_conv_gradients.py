"""A faster input gradient for the convolution the inversion attack differentiates most.

The attack's input steps take the gradient of the matching loss with respect to `x_hat` through the
clone's first convolution. For a grey-scale input (one channel) TensorFlow's CPU kernel for that
gradient (Conv2DBackpropInput) is slow: on this project's 2-core CPU, for 100 images through the MNIST
net's first conv (5x5, 1 -> 8), it took 3.3 ms where the same sum written as a depthwise convolution of
the padded output gradient with the flipped kernel took 1.4 ms (1.7-2.5x at 16-64 filters and batches
10-1000). With two or more input channels the depthwise form lost (3x slower for CIFAR's 3 -> 64),
so only one-channel convolutions take it. `fast_input_gradients(model)` is a view of a model whose
eligible Conv2D layers compute their input gradient this way; it shares every weight with the model,
and the forward pass and the kernel's gradient are TensorFlow's own.
"""

from __future__ import annotations

import keras
import tensorflow as tf

def eligible(layer: keras.layers.Layer) -> bool:
    """Whether `layer` is a plain stride-1 Conv2D, channels last, that reads one channel."""
    return (
        type(layer) is keras.layers.Conv2D
        and layer.built
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.data_format == "channels_last"
        and layer.padding in ("valid", "same")
        and layer.kernel.shape[2] == 1
    )


def conv2d(inputs: tf.Tensor, kernel: tf.Tensor, padding: str) -> tf.Tensor:
    """`tf.nn.conv2d(inputs, kernel, 1, padding)` whose input gradient is a depthwise convolution."""

    @tf.custom_gradient
    def convolve(inputs, kernel):
        def gradients(upstream):
            return input_gradient(upstream, kernel, padding), tf.raw_ops.Conv2DBackpropFilter(
                input=inputs, filter_sizes=tf.shape(kernel), out_backprop=upstream, strides=[1, 1, 1, 1], padding=padding.upper()
            )

        return tf.nn.conv2d(inputs, kernel, 1, padding.upper()), gradients

    return convolve(inputs, kernel)


def input_gradient(upstream: tf.Tensor, kernel: tf.Tensor, padding: str) -> tf.Tensor:
    """d(loss)/d(inputs) of a stride-1 conv of one input channel, from d(loss)/d(outputs) `upstream` (NHWC).

    It is the full correlation of `upstream` with the spatially flipped kernel, summed over the conv's
    output channels: a depthwise convolution (it pads inside, cheaper than a separate pad) and a sum.
    """
    height, width = kernel.shape[:2]
    pads = [[0, 0], _gradient_pad(height, padding), _gradient_pad(width, padding), [0, 0]]
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])  # (h, w, out, 1)
    return tf.reduce_sum(tf.nn.depthwise_conv2d(upstream, flipped, [1, 1, 1, 1], pads), axis=3, keepdims=True)


def _gradient_pad(size: int, padding: str) -> list[int]:
    """Padding of the output gradient before and after, along one axis of a `size` kernel."""
    if padding == "valid":
        return [size - 1, size - 1]
    before = (size - 1) // 2  # TensorFlow's "same" pads this much before the input, the rest after
    return [size - 1 - before, before]


class _FastInputGradientConv2D(keras.layers.Layer):
    """A Conv2D computed through `conv2d`, sharing the layer's kernel, bias and activation."""

    def __init__(self, conv: keras.layers.Conv2D, **kwargs) -> None:
        super().__init__(name=f"{conv.name}_fast_input_gradient", **kwargs)
        self.conv = conv

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        conv = self.conv
        outputs = conv2d(inputs, tf.convert_to_tensor(conv.kernel), conv.padding)
        if conv.use_bias:
            outputs = outputs + conv.bias
        return conv.activation(outputs) if conv.activation is not None else outputs


def fast_input_gradients(model: keras.Model) -> keras.Model:
    """`model` with its eligible Conv2D layers taking the depthwise input gradient; all weights shared.

    Models without such a layer are returned unchanged.
    """
    if not any(eligible(layer) for layer in model.layers):
        return model

    def share(layer: keras.layers.Layer) -> keras.layers.Layer:
        return _FastInputGradientConv2D(layer) if eligible(layer) else layer

    return keras.models.clone_model(model, clone_function=share)
