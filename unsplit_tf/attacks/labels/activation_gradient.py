"""Label inference from dL/da, one row per example: what a split-learning server really receives.

The rows mix the classes through the client's unknown W, so a clone with its own
random weights predicts nothing useful (that is the original algorithm on this
observation: ``clone_objective="cross_entropy"``; near chance). The default
``clone_objective="gradient_fit"`` keeps the original's cross-entropy step on
the inferred labels (with the client's optimiser it mirrors the client's own
update) and fits the clone's *starting* kernel to every observed gradient by
ridge least squares (closed form, `fit_kernel`), so the candidates' predicted
gradients follow the client's real head; examples are matched one after another
within a batch, then all re-matched with the batch's final fit.

What activation gradients cannot tell (a test checks it): relabelling the
classes and permuting the head's columns the same way leaves every dL/da, and
hence the whole training run as the server sees it, unchanged; the head's
initialisation is permutation-invariant. A data-oblivious server can therefore
find *which examples share a label* but not the label's name: its named
accuracy is at chance in expectation. Report `relabelled_accuracy` (best
one-to-one renaming) for that, and name the classes with side knowledge: a few
examples whose labels the attacker knows (`known_labels`, `KnownLabels`), as
Li et al.'s direction scoring also assumes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import tensorflow as tf

from unsplit_tf._validation import finite, positive
from unsplit_tf.attacks.labels.core import LabelInferenceAttack, LabelInferenceConfig, check_choice
from unsplit_tf.attacks.labels.gradients import candidate_activation_gradients, fit_kernel

DISTANCES: tuple[str, ...] = ("mse", "cosine")
CLONE_OBJECTIVES: tuple[str, ...] = ("cross_entropy", "gradient_fit")


@dataclass(frozen=True, kw_only=True)
class ActivationGradientConfig(LabelInferenceConfig):
    """The activation-gradient attack (fields shared with the other attack: `LabelInferenceConfig`).

    distance: how an observed gradient is compared with a candidate's, "mse" (the
        original) or "cosine" (ignores the scale).
    clone_objective: how the clone learns. "cross_entropy" (the original): an Adam step
        on the inferred labels. "gradient_fit" (the default): the same step, plus the
        clone's starting kernel refitted after every batch to all observed gradients
        (ridge least squares, with the clone's own updates since then added).
    memory: gradient_fit's forgetting factor per example (0 < memory <= 1): the fit
        weighs an example seen n examples ago by memory**n (1: all equally; lower it if
        the clone's updates may not mirror the client's, e.g. another optimiser).
    ridge: gradient_fit's ridge (Tikhonov) term; keeps classes not seen yet at zero.
    """

    observation: ClassVar[str] = "activation_gradient"
    distance: str = "mse"
    clone_objective: str = "gradient_fit"
    memory: float = 1.0
    ridge: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("distance", self.distance, DISTANCES)
        check_choice("clone_objective", self.clone_objective, CLONE_OBJECTIVES)
        if not 0 < finite("memory", self.memory) <= 1:
            raise ValueError(f"memory must be in (0, 1], a forgetting factor per example (1: forget nothing); got {self.memory!r}")
        positive("ridge", self.ridge)

    def authors_variant(self) -> ActivationGradientConfig:
        return dataclasses.replace(self, clone_objective="cross_entropy")

    def variant(self) -> list[str]:
        changes = [f"{self.clone_objective} clone"] if self.clone_objective != "gradient_fit" else []
        return changes + ([f"{self.distance} distance"] if self.distance != "mse" else [])


class ActivationGradientAttack(LabelInferenceAttack):
    """Gradient matching on d loss / d activations, (B, D) per training step."""

    config_type = ActivationGradientConfig
    observed_name = "d loss / d activations"
    record_field = "activation_gradients"
    config: ActivationGradientConfig

    def _prepare(self) -> None:
        d, c = self.feature_dim, self.num_classes
        self._evidence_width = d
        self._fit_gg = tf.Variable(tf.zeros((c, c)), trainable=False, name="fit_gg")
        self._fit_go = tf.Variable(tf.zeros((c, d)), trainable=False, name="fit_go")
        self._drift = tf.Variable(tf.zeros((d, c)), trainable=False, name="drift")
        if self.config.clone_objective == "gradient_fit":
            self._kernel.assign(tf.zeros_like(self._kernel))  # = the ridge fit of no data

    def observed_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.feature_dim)

    def _evidence(self, activations: tf.Tensor, observed: tf.Tensor) -> tf.Tensor:
        return observed

    def _details(self) -> dict[str, Any]:
        return {"distance": self.config.distance, "clone_objective": self.config.clone_objective}

    def _run_body(self, activations: tf.Tensor, evidence: tf.Tensor, known: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        body = self._fit_step if self.config.clone_objective == "gradient_fit" else self._clone_step
        return self._sequential(body, activations, evidence, known)

    def _distances(self, predicted: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """Distances between predicted (..., C, D) and observed (..., D) gradients, both scaled by B."""
        if self.config.distance == "cosine":
            return 1.0 - tf.reduce_sum(
                tf.math.l2_normalize(predicted, axis=-1) * tf.math.l2_normalize(target, axis=-1)[..., None, :], axis=-1
            )
        return tf.reduce_mean(tf.square(predicted - target[..., None, :]), axis=-1)

    def _clone_step(self, a: tf.Tensor, observed: tf.Tensor, known: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The original algorithm on activation gradients: match against the clone's own predictions."""
        batch_f = tf.cast(tf.shape(a)[0], tf.float32)
        predicted = candidate_activation_gradients(self._logits(a), self._kernel) * batch_f  # (B, C, D)
        distances = self._distances(predicted, observed * batch_f) / tf.square(batch_f)
        labels = tf.where(known >= 0, known, tf.argmin(distances, axis=1, output_type=tf.int64))
        self._train_clone(a, labels)
        return labels, distances

    def _fit_step(self, a: tf.Tensor, observed: tf.Tensor, known: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Match against a clone whose kernel is fitted to the observed gradients under the inferred labels.

        The clone's kernel is W0 + drift: drift sums the clone's own cross-entropy updates on the
        inferred labels (with the client's optimiser these mirror the client's updates), and W0 is
        the ridge least-squares fit of sum_t ||o_t - g_t (W0 + drift_t)^T||^2 over the examples seen.
        """
        num_classes, memory, ridge = self.num_classes, self.config.memory, self.config.ridge
        batch = tf.shape(a)[0]
        batch_f = tf.cast(batch, tf.float32)
        eye = tf.eye(num_classes)
        target = observed * batch_f  # g_i W^T with g_i = softmax - onehot, no 1/B
        drift = tf.identity(self._drift)
        gg0, go0 = tf.identity(self._fit_gg), tf.identity(self._fit_go)

        def kernel_of(gg, go):
            return fit_kernel(gg, go, ridge) + drift

        # Pass 1: one example after another, refitting after each, so that a batch can hold new classes.
        def one(row, gg, go):
            kernel = kernel_of(gg, go)
            probs = tf.nn.softmax(self._logits(a[row][None], kernel))[0]
            predicted = tf.matmul(probs[None] - eye, kernel, transpose_b=True)  # (C, D)
            distances = self._distances(predicted, target[row])
            label = tf.where(known[row] >= 0, known[row], tf.argmin(distances, output_type=tf.int64))
            g = probs - tf.one_hot(label, num_classes)
            residual = target[row] - tf.linalg.matvec(drift, g)  # = g W0^T
            return row + 1, memory * gg + g[:, None] * g[None], memory * go + g[:, None] * residual[None]

        _, gg, go = tf.while_loop(lambda row, *_: row < batch, one, (tf.constant(0), gg0, go0))
        # Pass 2: every example of the batch against the batch's final fit.
        kernel = kernel_of(gg, go)
        probs = tf.nn.softmax(self._logits(a, kernel))
        predicted = tf.einsum("bkc,dc->bkd", probs[:, None, :] - eye[None], kernel)
        distances = self._distances(predicted, target)
        labels = tf.where(known >= 0, known, tf.argmin(distances, axis=1, output_type=tf.int64))
        grads = probs - tf.one_hot(labels, num_classes)
        decay = tf.pow(memory, batch_f)
        gg = decay * gg0 + tf.matmul(grads, grads, transpose_a=True)
        go = decay * go0 + tf.matmul(grads, target - tf.matmul(grads, drift, transpose_b=True), transpose_a=True)
        self._fit_gg.assign(gg)
        self._fit_go.assign(go)
        self._kernel.assign(kernel_of(gg, go))
        # The clone's own training step on the inferred labels (as the original), kept as drift.
        before = tf.identity(self._kernel)
        self._train_clone(a, labels)
        self._drift.assign(drift + (self._kernel - before))
        return labels, distances / tf.square(batch_f)
