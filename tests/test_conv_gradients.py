import keras
import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.attacks.inversion._conv_gradients import conv2d, eligible, fast_input_gradients
from unsplit_tf.models import cifar_net, mnist_net
from unsplit_tf.split import split_model


@pytest.mark.parametrize(
    "kernel_shape, padding",
    [((5, 5, 1, 8), "valid"), ((3, 3, 1, 16), "same"), ((4, 3, 1, 5), "same"), ((4, 3, 1, 5), "valid"), ((2, 2, 1, 3), "same")],
)
def test_conv_and_both_its_gradients_equal_tensorflows(rng, kernel_shape, padding):
    inputs = tf.constant(rng.normal(size=(3, 9, 7, kernel_shape[2])), tf.float32)
    kernel = tf.constant(rng.normal(size=kernel_shape), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([inputs, kernel])
        stock, fast = tf.nn.conv2d(inputs, kernel, 1, padding.upper()), conv2d(inputs, kernel, padding)
        upstream = tf.constant(rng.normal(size=stock.shape), tf.float32)
        losses = [tf.reduce_sum(upstream * outputs) for outputs in (stock, fast)]
    np.testing.assert_array_equal(fast.numpy(), stock.numpy())
    for expected, got in zip(tape.gradient(losses[0], [inputs, kernel]), tape.gradient(losses[1], [inputs, kernel])):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_only_plain_stride_one_convs_of_one_input_channel_are_eligible():
    def conv(channels=1, **options):
        layer = keras.layers.Conv2D(4, 3, **options)
        layer.build((None, 8, 8, channels))
        return layer

    assert eligible(conv()) and eligible(conv(padding="same"))
    assert not eligible(conv(3))  # the depthwise form is slower than TensorFlow's kernel from two channels on
    assert not eligible(conv(strides=2)) and not eligible(conv(dilation_rate=2))
    depthwise = keras.layers.DepthwiseConv2D(3)
    depthwise.build((None, 8, 8, 1))
    assert not eligible(depthwise)


def test_the_view_computes_the_same_and_shares_the_weights(rng):
    client = split_model(mnist_net(), depth=4).client
    view = fast_input_gradients(client)
    assert view is not client and [id(v) for v in view.trainable_variables] == [id(v) for v in client.trainable_variables]
    images = rng.random((2, *client.input.shape[1:])).astype(np.float32)
    np.testing.assert_allclose(view(images).numpy(), client(images).numpy(), rtol=1e-6, atol=1e-6)
    client.layers[1].kernel.assign(client.layers[1].kernel * 2)
    np.testing.assert_allclose(view(images).numpy(), client(images).numpy(), rtol=1e-6, atol=1e-6)


def test_a_model_without_an_eligible_conv_is_returned_unchanged():
    colour = split_model(cifar_net(), depth=4).client
    assert fast_input_gradients(colour) is colour
