"""SDAR (Zhu et al., NDSS 2025): a passive server inverts the smashed data with a simulator and a decoder.

Alongside split training, at every step, the server (1) trains a simulator of the client on a batch of its
auxiliary images through its own *current* model (cross-entropy with the aux labels), regularised by a
discriminator that tells the simulator's features from the smashed batch it just observed; and (2) trains a
decoder to invert the simulator (aux image -> simulator features -> decoder -> aux image), regularised by a
second discriminator that tells decoded smashed data from real aux images. An observed input is
reconstructed as `decoder(activations)`; by default the decoder also reads the server's class
probabilities for the features (SDAR's label-conditional decoder, with the labels the server predicts).
Without aux labels the simulator learns from its alignment terms alone (feature discriminator, MMD).

The defaults depart from SDAR where measurement on Fashion-MNIST said so, with one setting for every cut
(`SDARConfig`; figures in docs/ALGORITHMS.md): FORA's MMD between simulator and observed features
(`lambda_mmd`) pulls the simulator's features onto the client's, which the server's layers alone do not
fix at deep cuts; the decoder trains on noisy simulator features (`feature_noise`: robust to where the
simulator and the client still differ), with an SSIM term beside the MSE (`lambda_ssim`), and without
the image discriminator (`lambda_decoder` 0). Three options are off: a cycle term, `lambda_cycle`
(simulator(decoder(observed)) ~ observed: UnSplit's matching loss, amortised by the decoder); a memory of the
last `feature_memory` observed rows that the MMD and the feature discriminator compare against, rather than the
current batch alone; and an MMD that compares features class by class (`mmd_class_width`), on the labels of the
observed batches, which the server holds (it computes the loss with them; SDAR's vanilla setting conditions on them).
Both updates are one compiled `tf.function`, built once.
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
    check_features,
    check_observed_labels,
    make_simulator,
    sample,
    server_classes,
    stack_history,
)
from unsplit_tf.attacks.inversion._networks import apply, decode, decoder, discriminator, mmd, real_fake_losses
from unsplit_tf.protocol import WireRecord, cross_entropy
from unsplit_tf.records import ABSENT
from unsplit_tf.scoring import SSIM_FILTER_SIZE
from unsplit_tf.split import attacker_seed

HISTORY = ("simulator_task", "simulator_fool", "feature_critic", "feature_mmd", "cycle", "decoder_mse", "decoder_fool", "image_critic")


@dataclass(frozen=True)
class SDARConfig:
    """SDAR's hyper-parameters. Learning rates, the feature discriminator's weight and the batch are the
    authors' (their vanilla split-learning setting); the networks are narrower than theirs, for 28x28 and
    32x32 images. Six defaults go beyond SDAR, one setting for every cut. Four were chosen on Fashion-MNIST
    (aux 6000, at depth 6 on the client's training images, then checked at depths 1-5): `lambda_mmd` 3,
    `feature_noise` 0.3, `lambda_ssim` 0.5 and the image discriminator off (`lambda_decoder` 0; the
    authors' 1e-5 barely moves it on these small images). Without the MMD the simulator's features drift
    from the client's at the flat cut (depth 6) and the decoder does worse than the dataset's mean image;
    without the decoder options its reconstructions are blurrier (lower SSIM at depths 3 and 6). The fifth,
    three simulator updates per observed batch (`simulator_steps`), was chosen on the client's training
    images where the client's data, and so SDAR's steps, are few (MNIST depth 6, CIFAR-10 depth 8): the
    simulator, not the decoder, limits the reconstructions there (docs/ALGORITHMS.md). The sixth, an MMD that
    compares features class by class on the observed batches' labels (`mmd_class_width` 0.5), lowered depth 6's MSE on
    Fashion-MNIST and full MNIST alike. A faster simulator (`simulator_lr` 3e-3) helped full MNIST's depth 6 and hurt
    CIFAR-10's depth 8, so it stays SDAR's; a feature memory stays off (docs/ALGORITHMS.md)."""

    batch_size: int = 128  # auxiliary images per step (the authors' training batch; a little better than 64 at depth 6)
    simulator_lr: float = 1e-3  # Adam on the simulator; the feature critic's follows it
    decoder_lr: float = 5e-4  # Adam on the decoder
    lambda_simulator: float = 0.02  # weight of the feature discriminator's term in the simulator's loss
    lambda_decoder: float = 0.0  # weight of the image discriminator's term in the decoder's loss (the authors' 1e-5)
    conditional: bool = True  # decode [features, server's class probabilities], SDAR's label-conditional decoder
    lambda_cycle: float = 0.0  # weight of simulator(decoder(observed)) ~ observed, in both losses (UnSplit's matching; not in SDAR)
    lambda_mmd: float = 3.0  # weight of the MMD between simulator and observed features (FORA's alignment; not in SDAR)
    feature_critic_lr: float | None = None  # None: simulator_lr * lambda_simulator, as the authors
    image_critic_lr: float | None = None  # None: decoder_lr * lambda_decoder, as the authors
    decoder_width: int = 32  # filters of the decoder's first block (halved per upsampling, 16 at least)
    decoder_blocks: int = 1  # conv-BN-ReLU blocks per resolution of the decoder (SDAR's decoders stack 2-3)
    lambda_ssim: float = 0.5  # weight of 1 - SSIM(decoded aux, aux) beside the MSE in the decoder's loss (not in SDAR)
    feature_noise: float = 0.3  # the decoder trains on simulator features + Gaussian noise of this times their RMS (not in SDAR)
    critic_width: int = 32  # filters of the discriminators' first layer
    simulator: Simulator = "client"  # "client": the client's architecture; "generic": one of the attacker's own
    seed: int = 0  # the attacker's networks and its aux batches
    # simulator updates per observed batch, each on fresh aux images against that batch (SDAR: 1, as every record
    # written before this field)
    simulator_steps: int = dataclasses.field(default=3, metadata={ABSENT: 1})
    # the MMD and the feature discriminator compare the simulator's features with the last this many observed rows
    # (the current batch first; more than a batch: a larger sample of the slowly moving client), not only the
    # current batch (0)
    feature_memory: int = 0
    # > 0: the MMD's kernel also compares classes, exp(-|p - q|^2 / width) between the aux labels (one-hot; the
    # server's predicted probabilities without them) and the observed rows' labels, which the server holds to compute
    # the loss (one-hot; its predicted probabilities when `observe` is given none), so features are matched class by
    # class; 0: class-blind, as FORA (and every record written before this default)
    mmd_class_width: float = dataclasses.field(default=0.5, metadata={ABSENT: 0.0})

    def __post_init__(self) -> None:
        check.at_least("batch_size", self.batch_size, 1)
        for name in ("simulator_lr", "decoder_lr"):
            check.positive(name, getattr(self, name))
        for name in ("lambda_simulator", "lambda_decoder", "lambda_cycle", "lambda_mmd", "lambda_ssim", "feature_noise", "mmd_class_width"):
            check.non_negative(name, getattr(self, name))
        for name in ("feature_critic_lr", "image_critic_lr"):
            if getattr(self, name) is not None:
                check.positive(name, getattr(self, name))
        check.at_least("decoder_width", self.decoder_width, 1)
        check.at_least("decoder_blocks", self.decoder_blocks, 1)
        check.at_least("critic_width", self.critic_width, 1)
        check.at_least("simulator_steps", self.simulator_steps, 1)
        check.at_least("feature_memory", self.feature_memory, 0)
        if self.simulator not in SIMULATORS:
            raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, got {self.simulator!r}")

    @property
    def class_wise_mmd(self) -> bool:
        """Whether the MMD compares features class by class, reading the observed batches' labels."""
        return self.mmd_class_width > 0 and self.lambda_mmd > 0

    def replace(self, **changes: Any) -> SDARConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


class SDARAttack:
    """The attack's state during training: feed it every smashed batch (`observe`, or `on_step` as
    `SplitTrainer.fit(on_step=...)`), then read `result()`.

    `server` is the server's own model, the very object training updates, so each step runs through its
    current weights; `client_architecture` lends only its shape (`clone_architecture`), never its weights.
    `simulator`, if given, replaces the one `config.simulator` would build.
    """

    def __init__(
        self,
        client_architecture: keras.Model,
        server: keras.Model,
        aux_x: Any,
        aux_y: Any | None = None,
        config: SDARConfig = SDARConfig(),
        *,
        simulator: keras.Model | None = None,
    ) -> None:
        feature_shape = tuple(client_architecture.output.shape[1:])
        image_shape = tuple(client_architecture.input.shape[1:])
        self._classes_count = server_classes(server, feature_shape)
        self._aux_x, self._aux_y = check_aux(aux_x, aux_y, image_shape, self._classes_count)
        if self._aux_y is None and config.lambda_simulator == 0 and config.lambda_mmd == 0:
            raise ValueError("without aux labels the simulator learns from its alignment terms alone: set lambda_simulator or lambda_mmd > 0, or pass aux_y")
        self.config, self.server = config, server
        self.simulator = make_simulator(client_architecture, config.simulator, config.seed, simulator)
        keras.utils.set_random_seed(attacker_seed(config.seed + 1))
        classes = self._classes_count if config.conditional else None
        self.decoder = decoder(feature_shape, image_shape, width=config.decoder_width, classes=classes, blocks=config.decoder_blocks)
        self.feature_critic = discriminator(feature_shape, width=config.critic_width, name="feature_critic")
        self.image_critic = discriminator(image_shape, width=config.critic_width, name="image_critic")
        adam = keras.optimizers.Adam
        self._optimizers = {
            "simulator": adam(config.simulator_lr),
            "decoder": adam(config.decoder_lr),
            "feature_critic": adam(config.feature_critic_lr or config.simulator_lr * config.lambda_simulator or 1.0),
            "image_critic": adam(config.image_critic_lr or config.decoder_lr * config.lambda_decoder or 1.0),
        }
        self._generator = tf.random.Generator.from_seed(attacker_seed(config.seed))
        # the last `feature_memory` observed rows and their classes, made on the first batch
        self._memory: tuple[tf.Variable, tf.Variable] | None = None
        self._step = tf.function(self._train_step, input_signature=[tf.TensorSpec((None, *feature_shape), tf.float32),
                                                                    tf.TensorSpec((None,), tf.int64)])
        self._history: list[tf.Tensor] = []
        self._seconds = 0.0

    def observe(self, activations: Any, labels: Any | None = None) -> None:
        """One attack step on one observed smashed batch, and its labels where the server holds them (it computes
        the loss; only the class-wise MMD reads them, and without them it takes the server's predictions)."""
        check_features(self.decoder, activations, "observed activations")
        known = check_observed_labels(labels, np.shape(activations)[0], self._classes_count)
        start = time.perf_counter()
        observed = tf.convert_to_tensor(activations, tf.float32)
        if self.config.feature_memory and self._memory is None:
            self._memory = self._first_memory(observed, known)
        self._history.append(self._step(observed, known))
        self._seconds += time.perf_counter() - start

    def _first_memory(self, observed: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Variable, tf.Variable]:
        """The feature memory until real rows fill it: copies of the first observed batch, and of its classes."""
        copies = -(-self.config.feature_memory // observed.shape[0])

        def tiled(rows: tf.Tensor) -> tf.Variable:
            return tf.Variable(tf.tile(rows, [copies] + [1] * (rows.shape.rank - 1))[: self.config.feature_memory], trainable=False)

        return tiled(observed), tiled(self._observed_classes(observed, labels))

    def on_step(self, record: WireRecord) -> None:
        """`SplitTrainer.fit(on_step=attack.on_step)`: observe the batch that crossed the wire, with its labels."""
        self.observe(record.activations, record.labels)

    def reconstruct(self, observed: Any, batch_size: int = 512) -> np.ndarray:
        """The decoder's reconstructions of observed activations, now (e.g. of a batch just seen)."""
        check_features(self.decoder, observed, "observed activations")
        return decode(self.decoder, observed, batch_size, self._conditioner)

    def result(self) -> AuxiliaryResult:
        """The trained decoder and simulator, the loss history so far and the attack's seconds."""
        return AuxiliaryResult(
            decoder=self.decoder,
            simulator=self.simulator,
            history=stack_history(HISTORY, self._history),
            config=self.config,
            steps=len(self._history),
            seconds=self._seconds,
            conditioner=self._conditioner,
        )

    @property
    def _conditioner(self):
        return self._probabilities if self.config.conditional else None

    def _probabilities(self, features: tf.Tensor) -> tf.Tensor:
        """The server's class probabilities for features: what conditions the decoder. The server computes them
        for every batch anyway, and, unlike the features, they mean the same for the simulator and the client."""
        return tf.stop_gradient(tf.nn.softmax(self.server(features, training=False)))

    def _observed_classes(self, observed: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        """The observed rows' classes for the class-wise MMD: their labels one-hot, the server's probabilities for
        rows whose label is unknown (-1)."""
        unknown = labels < 0
        known = tf.one_hot(labels, self._classes_count)  # rows of zeros where unknown
        return tf.cond(tf.reduce_any(unknown), lambda: known + tf.cast(unknown, tf.float32)[:, None] * self._probabilities(observed),
                       lambda: known)

    def _classes(self, rows: tf.Tensor, features: tf.Tensor, observed_classes: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor] | None:
        """What the class-wise MMD compares (None when class-blind): the aux batch's labels one-hot (else the
        server's probabilities for its simulated features) and the observed rows' classes."""
        if observed_classes is None:
            return None
        if self._aux_y is None:
            return self._probabilities(features), observed_classes
        return tf.one_hot(tf.gather(self._aux_y, rows), tf.shape(observed_classes)[1]), observed_classes

    def _decode(self, features: tf.Tensor, training: bool) -> tf.Tensor:
        return self.decoder([features, self._probabilities(features)] if self.config.conditional else features, training=training)

    @staticmethod
    def _cycle(resimulated: tf.Tensor, observed: tf.Tensor) -> tf.Tensor:
        """MSE of re-simulated against observed features, relative to the observed features' mean square (scale-free)."""
        return tf.reduce_mean(tf.square(resimulated - observed)) / (tf.stop_gradient(tf.reduce_mean(tf.square(observed))) + 1e-8)

    @staticmethod
    def _dissimilarity(decoded: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """1 - mean SSIM of decoded against true images (the 11x11 window of the scoring, shrunk for smaller images)."""
        return 1.0 - tf.reduce_mean(tf.image.ssim(x, decoded, max_val=1.0, filter_size=min(SSIM_FILTER_SIZE, x.shape[1], x.shape[2])))

    def _noisy(self, features: tf.Tensor, generator: tf.random.Generator) -> tf.Tensor:
        """features + feature_noise * RMS(features) Gaussian noise: a decoder robust to where simulator and client differ."""
        if not self.config.feature_noise:
            return features
        scale = self.config.feature_noise * tf.sqrt(tf.reduce_mean(tf.square(features)))
        return features + scale * generator.normal(tf.shape(features))

    def _train_step(self, observed: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        config = self.config
        reference, observed_classes = observed, None
        if config.class_wise_mmd:  # computed once: the server does not move during the simulator's steps
            observed_classes = self._observed_classes(observed, labels)
        if self._memory is not None:
            memory, memory_classes = self._memory
            reference = _remember(memory, observed)
            if observed_classes is not None:
                observed_classes = _remember(memory_classes, observed_classes)
        for _ in range(config.simulator_steps):
            x, simulator_losses = self._simulator_step(reference, observed_classes)
        zero = tf.constant(0.0)
        features = self._noisy(tf.stop_gradient(self.simulator(x, training=True)), self._generator)  # decode the updated simulator, as SDAR
        with tf.GradientTape(persistent=True) as tape:
            decoded = self._decode(features, True)
            mse = tf.reduce_mean(tf.square(decoded - x))
            image_critic, decoder_fool = (zero, zero)
            if config.lambda_decoder:
                image_critic, decoder_fool = real_fake_losses(self.image_critic, x, self._decode(observed, True))
            decoder_loss = mse + config.lambda_decoder * decoder_fool
            if config.lambda_ssim:
                decoder_loss += config.lambda_ssim * self._dissimilarity(decoded, x)
            if config.lambda_cycle:
                decoder_loss += config.lambda_cycle * self._cycle(self.simulator(self._decode(observed, True), training=False), observed)
        apply(tape, decoder_loss, self.decoder, self._optimizers["decoder"])
        if config.lambda_decoder:
            apply(tape, image_critic, self.image_critic, self._optimizers["image_critic"])
        del tape
        return tf.stack([*simulator_losses, mse, decoder_fool, image_critic])

    def _simulator_step(self, observed: tf.Tensor, observed_classes: tf.Tensor | None) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One update of the simulator (and its feature discriminator) on a fresh aux batch against the observed
        rows (the batch, or the feature memory) and, for the class-wise MMD, the server's classes for them: that aux
        batch, and the losses (task, fool, critic, MMD, cycle) it was updated on."""
        config = self.config
        rows = sample(self._generator, self._aux_x.shape[0], config.batch_size)
        x = tf.gather(self._aux_x, rows)
        zero = tf.constant(0.0)
        with tf.GradientTape(persistent=True) as tape:
            features = self.simulator(x, training=True)
            task = zero if self._aux_y is None else cross_entropy(tf.gather(self._aux_y, rows), self.server(features, training=False))
            feature_critic, simulator_fool = (zero, zero)
            if config.lambda_simulator:
                feature_critic, simulator_fool = real_fake_losses(self.feature_critic, observed, features)
            alignment = mmd(features, observed, self._classes(rows, features, observed_classes), config.mmd_class_width) if config.lambda_mmd else zero
            cycle = zero
            if config.lambda_cycle:
                cycle = self._cycle(self.simulator(tf.stop_gradient(self._decode(observed, False)), training=True), observed)
            simulator_loss = task + config.lambda_simulator * simulator_fool if self._aux_y is not None else simulator_fool
            simulator_loss += config.lambda_mmd * alignment + config.lambda_cycle * cycle
        apply(tape, simulator_loss, self.simulator, self._optimizers["simulator"])
        if config.lambda_simulator:
            apply(tape, feature_critic, self.feature_critic, self._optimizers["feature_critic"])
        del tape
        return x, [task, simulator_fool, feature_critic, alignment, cycle]


def _remember(memory: tf.Variable, rows: tf.Tensor) -> tf.Tensor:
    """The newest `rows` in front of the memory's, the oldest dropped to keep its length: stored, and returned."""
    kept = tf.concat([rows, memory], axis=0)[: memory.shape[0]]
    memory.assign(kept)
    return kept
