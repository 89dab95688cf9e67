"""Defenses at the cut of a split model, as Keras layers.

Two things cross the wire. Activations go up from the client; model inversion
and model stealing feed on them. Gradients come back down; label inference
feeds on them (in a U-shaped split the server sends activations down to the
client's head and gets d loss / d activations back). Each defense is a layer
placed at the cut, so it composes with any functional model:

- `ActivationNoise`: Gaussian or Laplace noise on what the client sends, in
  training *and* inference (the client always perturbs what leaves it;
  `keras.layers.GaussianNoise` is training-only and would not protect).
- `NoPeek` (Vepakomma et al., 2020): identity on the activations that adds
  `weight * distance_correlation(inputs, activations)` to the client's loss,
  so training makes the activations less like the inputs.
- Gradient defenses, identity in the forward pass, transforming the gradient
  that flows back through them (`tf.custom_gradient`). Put at the input of the
  client's head, they perturb the dL/da the server receives while the head's
  own weights still get the true gradient: `GradientClipping` (per-example
  norm clipping), `GradientNoise` (isotropic Gaussian), `MaxNormNoise` (Li et
  al.'s max_norm) and `LabelSubspaceNoise` (a Marvell-style approximation).

`unsplit_tf.defenses.placement` puts them at the cut of a model; `unsplit_tf.defenses.registry`
names them with their strengths.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from keras import layers


DISTRIBUTIONS = ("gaussian", "laplace")


# ---------------------------------------------------------------- distance correlation


def distance_correlation(x: Any, z: Any) -> tf.Tensor:
    """Sample distance correlation (Székely et al., 2007) between two batches, each example flattened.

    0 when x and z are independent (in the large-sample limit; a finite batch
    gives a small positive value), 1 when z is a similarity transform of x
    (e.g. z = a x + b), invariant to scaling either side. Differentiable, in
    float32; NoPeek minimises it. A batch of one example, or a constant batch,
    has no distances and gives 0.
    """
    x, z = _flat(x), _flat(z)
    if x.shape[0] is not None and z.shape[0] is not None and x.shape[0] != z.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but z has {z.shape[0]}; pass the same batch on both sides")
    a, b = _centred_distances(x), _centred_distances(z)
    covariance = tf.reduce_mean(a * b)
    variances = tf.reduce_mean(a * a) * tf.reduce_mean(b * b)
    squared = tf.maximum(tf.math.divide_no_nan(covariance, tf.sqrt(variances)), 0.0)
    return _safe_sqrt(squared)


def _flat(tensor: Any) -> tf.Tensor:
    tensor = tf.convert_to_tensor(tensor, tf.float32)
    if tensor.shape.rank is not None and tensor.shape.rank < 1:
        raise ValueError("distance_correlation needs batches (one row per example), got a scalar")
    return tf.reshape(tensor, (tf.shape(tensor)[0], -1))


def _safe_sqrt(value: tf.Tensor) -> tf.Tensor:
    """sqrt with a zero (not infinite) gradient at 0."""
    positive = value > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, value, 1.0)), 0.0)


def _centred_distances(rows: tf.Tensor) -> tf.Tensor:
    """Double-centred Euclidean distance matrix of the rows (B, B)."""
    rows = rows - tf.reduce_mean(rows, axis=0, keepdims=True)  # distances do not change; float32 keeps its digits
    squared_norms = tf.reduce_sum(tf.square(rows), axis=1)
    squared = squared_norms[:, None] + squared_norms[None, :] - 2.0 * tf.matmul(rows, rows, transpose_b=True)
    distances = _safe_sqrt(tf.maximum(squared, 0.0))
    return (
        distances
        - tf.reduce_mean(distances, axis=0, keepdims=True)
        - tf.reduce_mean(distances, axis=1, keepdims=True)
        + tf.reduce_mean(distances)
    )


# ---------------------------------------------------------------- activation defenses


def _check_strength(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _per_example_norms(tensor: tf.Tensor) -> tf.Tensor:
    """Euclidean norm of each example (all axes but the first), shaped to broadcast against `tensor`."""
    axes = list(range(1, tensor.shape.rank))
    return tf.sqrt(tf.reduce_sum(tf.square(tensor), axis=axes, keepdims=True))


def _features(tensor: tf.Tensor) -> tf.Tensor:
    """Number of values per example, as a float."""
    return tf.cast(tf.reduce_prod(tf.shape(tensor)[1:]), tensor.dtype)


@keras.saving.register_keras_serializable(package="unsplit_tf")
class ActivationNoise(layers.Layer):
    """Adds zero-mean noise to what passes through, in training and in inference.

    stddev: the noise's standard deviation per value. With relative=True it is
        in units of each example's root-mean-square activation (not
        differentiated through), i.e. a noise-to-signal ratio the client cannot
        escape by scaling its activations up; else it is absolute.
    distribution: "gaussian", or "laplace" (heavier tails, the same stddev:
        scale b = stddev / sqrt(2)).
    seed: for the noise; each call draws new noise.
    """

    def __init__(
        self, stddev: float, distribution: str = "gaussian", *, relative: bool = False, seed: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.stddev = _check_strength("stddev", stddev)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown noise distribution {distribution!r}; choose one of {', '.join(DISTRIBUTIONS)}")
        self.distribution = distribution
        self.relative = bool(relative)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        noise = _unit_noise(tf.shape(inputs), self.distribution, self.seed_generator, inputs.dtype)
        scale = self.stddev
        if self.relative:
            scale *= tf.stop_gradient(_per_example_norms(inputs) / tf.sqrt(_features(inputs)))
        return inputs + scale * noise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "stddev": self.stddev,
            "distribution": self.distribution,
            "relative": self.relative,
            "seed": self.seed,
        }


def _unit_noise(shape, distribution: str, seed_generator, dtype) -> tf.Tensor:
    """Zero-mean, unit-variance noise of `shape`."""
    if distribution == "gaussian":
        return keras.random.normal(shape, dtype=dtype, seed=seed_generator)
    # Laplace(b = 1/sqrt(2)) as the difference of two exponentials; 1 - U lies in (0, 1], so the log is finite.
    first, second = (-tf.math.log(1.0 - keras.random.uniform(shape, dtype=dtype, seed=seed_generator)) for _ in range(2))
    return (first - second) / math.sqrt(2.0)


@keras.saving.register_keras_serializable(package="unsplit_tf")
class NoPeek(layers.Layer):
    """NoPeek (Vepakomma et al., 2020): takes [inputs, activations], returns the activations unchanged.

    In training it adds `weight * distance_correlation(inputs, activations)` to
    the model's losses (`add_loss`), so the client learns activations that
    carry less of its inputs. Split-learning training (`protocol`) adds the
    client's losses to the client's objective only; the penalty never crosses
    the wire. The distance correlation is per batch, so its strength depends on
    the batch size.
    """

    def __init__(self, weight: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.weight = _check_strength("weight", weight)

    def call(self, inputs, training=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("NoPeek takes [inputs, activations]: the client's input and the activations it sends")
        private, activations = inputs
        if training and self.weight:
            self.add_loss(self.weight * distance_correlation(private, activations))
        return activations

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight}


# ---------------------------------------------------------------- gradient defenses (identity forward)


class GradientDefense(layers.Layer):
    """An identity layer that transforms the gradient flowing back through it (`tf.custom_gradient`).

    Subclasses implement `transform_gradient(gradients) -> gradients`, where
    `gradients` holds one row per example.
    """

    def call(self, inputs):
        @tf.custom_gradient
        def identity(x):
            return tf.identity(x), self.transform_gradient

        return identity(inputs)

    def transform_gradient(self, gradients: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="unsplit_tf")
class GradientClipping(GradientDefense):
    """Scales each example's gradient down to at most `max_norm` (Euclidean, over all its values).

    Gradients already within the bound pass unchanged. It hides how large a
    gradient was (Li et al.'s norm attack), not which way it points.
    """

    def __init__(self, max_norm: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_norm = _check_strength("max_norm", max_norm)
        if self.max_norm == 0:
            raise ValueError("max_norm must be positive: 0 would send no gradient at all")

    def transform_gradient(self, gradients: tf.Tensor) -> tf.Tensor:
        norms = _per_example_norms(gradients)
        return gradients * tf.minimum(1.0, self.max_norm / tf.maximum(norms, 1e-30))

    def get_config(self) -> dict:
        return {**super().get_config(), "max_norm": self.max_norm}


class _NoisyGradientDefense(GradientDefense):
    """Shared by the noise defenses: a seed generator and its config."""

    def __init__(self, *, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _normal(self, shape, dtype) -> tf.Tensor:
        return keras.random.normal(shape, dtype=dtype, seed=self.seed_generator)

    def _noise_power(self, gradients: tf.Tensor, stddev: float, relative: bool) -> tf.Tensor:
        """Expected squared norm of one example's noise: stddev² x (the batch's largest squared norm, or the size)."""
        if relative:
            return stddev**2 * tf.reduce_max(tf.square(_per_example_norms(gradients)))
        return stddev**2 * _features(gradients)

    def get_config(self) -> dict:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="unsplit_tf")
class GradientNoise(_NoisyGradientDefense):
    """Adds isotropic Gaussian noise to each example's gradient.

    stddev: per value, absolute; or with relative=True in units of the batch's
        largest per-example gradient norm, spread over all values (per-value
        stddev = stddev * max_i ||g_i|| / sqrt(size)), as Li et al.'s "iso"
        baseline scales its noise by the largest gradient norm, so that the
        strength means the same as training shrinks the gradients.
    """

    def __init__(self, stddev: float, *, relative: bool = False, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed=seed, **kwargs)
        self.stddev = _check_strength("stddev", stddev)
        self.relative = bool(relative)

    def transform_gradient(self, gradients: tf.Tensor) -> tf.Tensor:
        per_value = tf.sqrt(self._noise_power(gradients, self.stddev, self.relative) / _features(gradients))
        return gradients + per_value * self._normal(tf.shape(gradients), gradients.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "stddev": self.stddev, "relative": self.relative}


@keras.saving.register_keras_serializable(package="unsplit_tf")
class MaxNormNoise(_NoisyGradientDefense):
    """Li et al.'s max_norm heuristic: noise that gives every gradient of a batch the same expected norm.

    Example i gets isotropic Gaussian noise of variance (max_j ||g_j||² - ||g_i||²) / size
    per value, so E||g_i + noise||² equals the batch's largest squared norm.
    It has no strength parameter, and with batches of one example it adds nothing.
    """

    def transform_gradient(self, gradients: tf.Tensor) -> tf.Tensor:
        squared = tf.square(_per_example_norms(gradients))
        per_value = tf.sqrt(tf.maximum(tf.reduce_max(squared) - squared, 0.0) / _features(gradients))
        return gradients + per_value * self._normal(tf.shape(gradients), gradients.dtype)


class LabelSubspaceNoise(_NoisyGradientDefense):
    """Marvell-style noise: the noise power of `GradientNoise`, all of it where the label lives.

    For a linear softmax head, logits = a W + b, the gradient the server
    receives is dL/da_i = W (p_i - onehot(y_i)) / B: the label moves it only
    within the span of W's class columns, centred (a (C-1)-dimensional
    subspace). This layer adds Gaussian noise isotropic *within that subspace*,
    with the same expected squared norm as `GradientNoise(stddev, relative=...)`.

    An approximation of Marvell (Li et al., ICLR 2022), not Marvell itself:
    Marvell solves an optimisation for per-class noise covariances that
    minimises the worst-case leakage for two classes, and has no multi-class
    form. This keeps its central idea (spend the noise budget along the
    directions that separate the classes) with one isotropic covariance.

    head: the client's head layer (a Dense on flat features); the layer reads
        its current kernel at every step. Place this layer directly before it.
        Not serialisable (it holds a reference to another layer).
    """

    def __init__(self, stddev: float, head: layers.Dense, *, relative: bool = False, seed: int | None = None, **kwargs) -> None:
        super().__init__(seed=seed, **kwargs)
        if not isinstance(head, layers.Dense):
            raise ValueError(f"head must be the client's Dense head layer, got {type(head).__name__}")
        self.stddev = _check_strength("stddev", stddev)
        self.relative = bool(relative)
        self._head = lambda: head  # not an attribute Keras tracks: the head's weights are not this layer's

    def build(self, input_shape) -> None:
        head = self._head()
        if not head.built:
            raise ValueError(f"head layer '{head.name}' is not built yet; build the model before adding this defense")
        if len(input_shape) != 2 or input_shape[-1] != head.kernel.shape[0]:
            raise ValueError(
                f"LabelSubspaceNoise must sit directly before head '{head.name}': it expects flat inputs of "
                f"{head.kernel.shape[0]} features, got shape {tuple(input_shape)}"
            )

    def transform_gradient(self, gradients: tf.Tensor) -> tf.Tensor:
        kernel = tf.convert_to_tensor(self._head().kernel, gradients.dtype)
        centred = kernel - tf.reduce_mean(kernel, axis=1, keepdims=True)
        _, directions, _ = tf.linalg.svd(centred)  # left singular vectors, (D, min(D, C))
        rank = min(int(kernel.shape[1]) - 1, int(kernel.shape[0]))
        basis = directions[:, :rank]
        per_direction = tf.sqrt(self._noise_power(gradients, self.stddev, self.relative) / rank)
        coefficients = self._normal((tf.shape(gradients)[0], rank), gradients.dtype)
        return gradients + per_direction * tf.matmul(coefficients, basis, transpose_b=True)

    def get_config(self) -> dict:
        raise NotImplementedError(
            "LabelSubspaceNoise holds a reference to the head layer and cannot be saved; save the model without it "
            "and add it again after loading"
        )
