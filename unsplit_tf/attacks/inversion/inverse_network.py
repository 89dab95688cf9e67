"""Inverse networks (He, Zhang, Lee, ACSAC 2019): learn a decoder from features back to inputs.

`query_free_attack` is their query-free attack: the server, after training, fits a *shadow* client on its
labelled auxiliary images through its own trained model (cross-entropy, the server frozen), then trains an
inverse network from the shadow's features to the aux images, and decodes the observed activations with it.
Unlike SDAR nothing ties the shadow's features to the observed ones but the shared server.
`inverse_network` is their plain inverse-network attack: a decoder fitted to (features, input) pairs the
attacker already holds, e.g. from querying the client as a black box. Each step is one compiled `tf.function`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf import _validation as check
from unsplit_tf.attacks.inversion._auxiliary import (
    SIMULATORS,
    AuxiliaryResult,
    Simulator,
    check_aux,
    make_simulator,
    sample,
    server_classes,
    stack_history,
)
from unsplit_tf.attacks.inversion._networks import apply, decoder, decoder_mse
from unsplit_tf.protocol import cross_entropy
from unsplit_tf.split import attacker_seed


@dataclass(frozen=True)
class InverseNetworkConfig:
    """Steps, batch and Adam rates of the shadow client and the inverse network (He et al. train both with Adam)."""

    shadow_steps: int = 1500  # query-free only: steps of the shadow client through the server
    decoder_steps: int = 1500  # steps of the inverse network
    batch_size: int = 64
    shadow_lr: float = 1e-3
    decoder_lr: float = 1e-3
    decoder_width: int = 64  # filters of the decoder's first block
    simulator: Simulator = "client"  # the shadow's architecture: the client's, or the attacker's own ("generic")
    seed: int = 0

    def __post_init__(self) -> None:
        check.at_least("shadow_steps", self.shadow_steps, 1)
        check.at_least("decoder_steps", self.decoder_steps, 1)
        check.at_least("batch_size", self.batch_size, 1)
        check.positive("shadow_lr", self.shadow_lr)
        check.positive("decoder_lr", self.decoder_lr)
        check.at_least("decoder_width", self.decoder_width, 1)
        if self.simulator not in SIMULATORS:
            raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, got {self.simulator!r}")

    def replace(self, **changes: Any) -> InverseNetworkConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def query_free_attack(
    client_architecture: keras.Model,
    server: keras.Model,
    aux_x: Any,
    aux_y: Any,
    config: InverseNetworkConfig = InverseNetworkConfig(),
    *,
    simulator: keras.Model | None = None,
) -> AuxiliaryResult:
    """Fit a shadow client through the (trained, frozen) `server` on labelled aux data, then invert it.

    `client_architecture` lends only its shape; `simulator`, if given, is the shadow to train instead.
    """
    feature_shape = tuple(client_architecture.output.shape[1:])
    image_shape = tuple(client_architecture.input.shape[1:])
    if aux_y is None:
        raise ValueError("the query-free attack trains its shadow client on labelled aux data: pass aux_y")
    x, y = check_aux(aux_x, aux_y, image_shape, server_classes(server, feature_shape))
    shadow = make_simulator(client_architecture, config.simulator, config.seed, simulator)
    optimizer = keras.optimizers.Adam(config.shadow_lr)
    generator = tf.random.Generator.from_seed(attacker_seed(config.seed))

    @tf.function
    def shadow_step() -> tf.Tensor:
        rows = sample(generator, x.shape[0], config.batch_size)
        with tf.GradientTape() as tape:
            loss = cross_entropy(tf.gather(y, rows), server(shadow(tf.gather(x, rows), training=True), training=False))
        apply(tape, loss, shadow, optimizer)
        return loss

    start = time.perf_counter()
    losses = [shadow_step() for _ in range(config.shadow_steps)]
    seconds = time.perf_counter() - start
    inverse = _fit_decoder(lambda images: shadow(images, training=False), x, feature_shape, image_shape, config)
    history = {"shadow_task": stack_history(("shadow_task",), losses)["shadow_task"], **inverse.history}
    return dataclasses.replace(inverse, simulator=shadow, history=history, steps=config.shadow_steps + inverse.steps, seconds=seconds + inverse.seconds)


def inverse_network(features: Any, inputs: Any, config: InverseNetworkConfig = InverseNetworkConfig()) -> AuxiliaryResult:
    """Fit a decoder to known (features, inputs) pairs, e.g. the client's answers to the attacker's queries."""
    features = np.asarray(features, np.float32)
    x, _ = check_aux(inputs, None, tuple(np.shape(inputs)[1:]), None)
    if len(features) != x.shape[0]:
        raise ValueError(f"{len(features)} feature rows but {x.shape[0]} inputs; pass one feature row per input")
    table = tf.constant(features)
    return _fit_decoder(lambda rows: tf.gather(table, rows), x, tuple(features.shape[1:]), tuple(x.shape[1:]), config, by_rows=True)


def _fit_decoder(features_of, x: tf.Tensor, feature_shape, image_shape, config: InverseNetworkConfig, *, by_rows: bool = False) -> AuxiliaryResult:
    """Train an inverse network on random aux batches: `features_of` maps the batch (its images, or with
    `by_rows` its row indices) to the features to invert."""
    keras.utils.set_random_seed(attacker_seed(config.seed + 1))
    inverse = decoder(feature_shape, image_shape, width=config.decoder_width, name="inverse_network")
    optimizer = keras.optimizers.Adam(config.decoder_lr)
    generator = tf.random.Generator.from_seed(attacker_seed(config.seed + 1))

    @tf.function
    def decoder_step() -> tf.Tensor:
        rows = sample(generator, x.shape[0], config.batch_size)
        images = tf.gather(x, rows)
        features = tf.stop_gradient(features_of(rows if by_rows else images))
        with tf.GradientTape() as tape:
            loss = decoder_mse(inverse, features, images)
        apply(tape, loss, inverse, optimizer)
        return loss

    start = time.perf_counter()
    losses = [decoder_step() for _ in range(config.decoder_steps)]
    return AuxiliaryResult(
        decoder=inverse,
        simulator=None,
        history=stack_history(("decoder_mse",), losses),
        config=config,
        steps=config.decoder_steps,
        seconds=time.perf_counter() - start,
    )
