"""A continuation for the inversion's clone: it starts as a linear network and becomes the client's architecture.

With `InversionConfig.linear_start` = R the attack fits a view of its clone in which every ReLU layer is blended
with the identity and every max-pooling layer with an average pool of the same window, by a weight that is 1 in
round 1 and falls by 1/R each round to 0 from round R + 1 on: the client's own architecture. The joint problem of
pictures and clone is smoother for a linear client, so the attack meets a rough solution first and carries it
through as the non-linearities come in (docs/ALGORITHMS.md). The server still knows only the architecture; the
path is its own choice. The view shares every weight with the clone, which stays a plain copy of the architecture.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class LinearStart:
    """The blend of one attack: `view` builds the blended view of a clone, `enter` sets the weight for a round."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.weight = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="linear_start_weight")

    def enter(self, round_index: int) -> None:
        """Set the blend for `round_index` (1-based): 1 in the first round, 0 from round `rounds` + 1 on."""
        self.weight.assign(max(0.0, 1.0 - (round_index - 1) / self.rounds))

    def view(self, clone: keras.Model) -> keras.Model:
        """`clone` with its ReLU and max-pooling layers blended by `weight`, sharing all its weights.

        ValueError if it has neither: nothing would start linear."""
        blended = []

        def share(layer: keras.layers.Layer) -> keras.layers.Layer:
            if _is_relu(layer):
                blended.append(layer.name)
                return _BlendedReLU(self.weight, name=f"{layer.name}_linear_start")
            if isinstance(layer, keras.layers.MaxPooling2D):
                blended.append(layer.name)
                return _BlendedMaxPool(layer, self.weight, name=f"{layer.name}_linear_start")
            return layer

        view = keras.models.clone_model(clone, clone_function=share)
        if not blended:
            raise ValueError(f"linear_start={self.rounds} blends the clone's ReLU and MaxPooling2D layers in from linear ones, "
                             f"but {clone.name} has none (activations fused into other layers do not count); "
                             "use linear_start=0")
        return view


def _is_relu(layer: keras.layers.Layer) -> bool:
    """A plain ReLU layer: keras.layers.ReLU with its defaults, or an Activation("relu")."""
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return config.get("max_value") is None and not config.get("negative_slope") and not config.get("threshold")
    return isinstance(layer, keras.layers.Activation) and layer.get_config().get("activation") == "relu"


class _BlendedReLU(keras.layers.Layer):
    """relu(z) + w * (z - relu(z)): the identity at w = 1, ReLU at w = 0."""

    def __init__(self, weight: tf.Variable, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blend = weight

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        rectified = tf.nn.relu(inputs)
        return rectified + tf.cast(self.blend, inputs.dtype) * (inputs - rectified)


class _BlendedMaxPool(keras.layers.Layer):
    """The clone's max pool blended with an average pool of the same window: average at w = 1, max at w = 0."""

    def __init__(self, pool: keras.layers.MaxPooling2D, weight: tf.Variable, **kwargs) -> None:
        super().__init__(**kwargs)
        settings = {key: value for key, value in pool.get_config().items() if key not in ("name", "trainable", "dtype")}
        self.max_pool, self.average_pool, self.blend = pool, keras.layers.AveragePooling2D(**settings), weight

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        largest = self.max_pool(inputs)
        return largest + tf.cast(self.blend, inputs.dtype) * (self.average_pool(inputs) - largest)
