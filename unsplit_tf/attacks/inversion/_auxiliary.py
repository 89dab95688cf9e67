"""What the auxiliary-data attacks share: checking the attacker's data, the stolen simulator, the result type.

Threat model of every attack here: an honest-but-curious server that owns (and may run) its own model,
knows the client's architecture (or uses one of its own), and holds auxiliary images from the client's
distribution, disjoint from the client's data, with labels or without. It never reads the client's weights
or private inputs; it reconstructs an input as `decoder(activations)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.attacks.inversion._networks import decode, generic_simulator
from unsplit_tf.split import attacker_seed, clone_architecture

SIMULATORS = ("client", "generic")
Simulator = Literal["client", "generic"]


@dataclass
class AuxiliaryResult:
    """A trained auxiliary-data attack: `reconstruct(activations)` decodes observed cut-layer activations.

    `simulator` is the stolen client (run the real server on `simulator(x)` to score it); `history`
    holds one array per loss, one value per training step; `seconds` is the attack's own time.
    """

    decoder: keras.Model
    simulator: keras.Model | None
    history: dict[str, np.ndarray]
    config: Any
    steps: int
    seconds: float
    conditioner: Callable[[tf.Tensor], tf.Tensor] | None = None  # a conditional decoder's second input, from the features

    def reconstruct(self, observed: Any, batch_size: int = 512) -> np.ndarray:
        """decoder(observed): one image in [0, 1] per row of observed activations."""
        check_features(self.decoder, observed, "observed activations")
        return decode(self.decoder, observed, batch_size, self.conditioner)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else float("nan")


def check_features(decoder: keras.Model, observed: Any, what: str) -> None:
    """ValueError unless `observed` is a non-empty batch of the features `decoder` inverts."""
    expected = tuple(decoder.inputs[0].shape[1:])
    shape = tuple(np.shape(observed))
    if len(shape) < 1 or shape[1:] != expected:
        raise ValueError(f"{what} have shape {shape} but the attack inverts (N, {', '.join(map(str, expected))}); use activations of the same cut")
    if shape[0] == 0:
        raise ValueError(f"{what} hold 0 rows; pass at least one")


def check_aux(aux_x: Any, aux_y: Any | None, image_shape: tuple[int, ...], num_classes: int | None) -> tuple[tf.Tensor, tf.Tensor | None]:
    """The auxiliary data as tensors, after checking it is a labelled (or unlabelled) image set of the client's shape."""
    x = np.asarray(aux_x)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"aux_x has shape {x.shape} but the client takes (N, {', '.join(map(str, image_shape))}) images; pass auxiliary images of the client's input shape")
    if len(x) < 2:
        raise ValueError(f"aux_x holds {len(x)} image(s); an attack needs at least 2 auxiliary images")
    if not np.all(np.isfinite(x)):
        raise ValueError("aux_x holds NaN or infinite pixels; pass images in [0, 1]")
    if aux_y is None:
        return tf.constant(x, tf.float32), None
    y = np.asarray(aux_y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"aux_y must hold one integer label per auxiliary image, shape ({len(x)},), got shape {y.shape} and dtype {y.dtype}")
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"aux_y holds labels in {y.min()}..{y.max()} but the server predicts {num_classes} classes (0..{num_classes - 1})")
    return tf.constant(x, tf.float32), tf.constant(y, tf.int64)


def check_observed_labels(labels: Any | None, rows: int, num_classes: int) -> tf.Tensor:
    """An observed batch's labels as int64, -1 for each row when none are given; ValueError unless one class index
    per observed row."""
    if labels is None:
        return tf.fill([rows], tf.constant(-1, tf.int64))
    y = np.asarray(labels)
    if y.shape != (rows,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"observed labels must hold one integer label per observed row, shape ({rows},), got shape {y.shape} and dtype {y.dtype}")
    if rows and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"observed labels hold {y.min()}..{y.max()} but the server predicts {num_classes} classes (0..{num_classes - 1})")
    return tf.constant(y, tf.int64)


def make_simulator(client_architecture: keras.Model, kind: Simulator, seed: int, given: keras.Model | None = None) -> keras.Model:
    """The attacker's client: `given`, else a fresh clone of the client's architecture ("client"), else a
    `generic_simulator` of the same output shape ("generic"). Never copies the client's weights."""
    feature_shape = tuple(client_architecture.output.shape[1:])
    image_shape = tuple(client_architecture.input.shape[1:])
    if given is not None:
        simulator = given
    elif kind == "client":
        simulator = clone_architecture(client_architecture, seed=seed)
    else:
        keras.utils.set_random_seed(attacker_seed(seed))
        simulator = generic_simulator(image_shape, feature_shape)
    if tuple(simulator.output.shape[1:]) != feature_shape or tuple(simulator.input.shape[1:]) != image_shape:
        raise ValueError(
            f"the simulator maps {tuple(simulator.input.shape[1:])} to {tuple(simulator.output.shape[1:])} but the client maps "
            f"{image_shape} to {feature_shape}; build a simulator with the client's input and output shapes"
        )
    return simulator


def server_classes(server: keras.Model, feature_shape: tuple[int, ...]) -> int:
    """How many classes the server predicts; ValueError if it does not take the client's features."""
    if tuple(server.input.shape[1:]) != tuple(feature_shape):
        raise ValueError(f"the server takes {tuple(server.input.shape[1:])} inputs but the client outputs {tuple(feature_shape)}; pass the server of the same split")
    return int(server.output.shape[-1])


def sample(generator: tf.random.Generator, count: int, size: int) -> tf.Tensor:
    """`size` random row indices of `count` rows (with replacement), drawn inside the compiled step."""
    return generator.uniform([size], 0, count, dtype=tf.int64)


def stack_history(names: tuple[str, ...], rows: list[tf.Tensor]) -> dict[str, np.ndarray]:
    """Per-step loss vectors (one tensor per step) as one array per loss name."""
    table = tf.reshape(tf.stack(rows), [len(rows), len(names)]).numpy() if rows else np.zeros((0, len(names)), np.float32)
    return {name: table[:, i] for i, name in enumerate(names)}
