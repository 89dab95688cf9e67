"""Label inference from the head's weight gradient dL/dW, as the UnSplit authors' code assumes.

A standard split-learning server does not see this gradient. Since the
activations `a` are known, the per-example logit gradients are recovered
exactly by least squares (`recover_logit_gradients`; float64 for B > 1)
whenever the batch's activations have full row rank (B <= rank); each row is
then matched against the C candidates. The score is the per-example
weight-gradient MSE, as in the original, but by default against the
*best-fitting* softmax for each candidate rather than the clone's
(`softmax="best"`): only the true label's entry of a logit gradient is
negative, so this is exact however wrong the clone is, while the clone's
softmax fails once the client's head grows confident. When B > rank the batch
sum leaves G undetermined; the minimum-norm solution still puts most of each
row's own gradient in that row, and the labels stay mostly right (measured:
98 % at B = 128, 94 % at B = 256 with 84 features on MNIST; a search over the
null space of a^T for valid gradients gained under 1 % and was dropped). In
the limit of identical activations (a collapsed net) a weight gradient reveals
only the batch's label counts. The clone takes the original's cross-entropy
step on the inferred labels. The columns of dL/dW are indexed by class, so
the labels come out named.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import tensorflow as tf

from unsplit_tf._loops import repeat
from unsplit_tf._validation import finite
from unsplit_tf.attacks.labels.core import LabelInferenceAttack, LabelInferenceConfig, check_choice
from unsplit_tf.attacks.labels.gradients import project_to_simplex, recover_logit_gradients

SOFTMAXES: tuple[str, ...] = ("best", "clone")


@dataclass(frozen=True, kw_only=True)
class WeightGradientConfig(LabelInferenceConfig):
    """The weight-gradient attack (fields shared with the other attack: `LabelInferenceConfig`).

    softmax: which softmax a candidate's predicted gradient (softmax - onehot(c)) uses.
        "clone" (the original): the clone's. "best": the one that fits the observation
        best, i.e. the score is the distance from the observed gradient to the nearest
        gradient *any* head could produce with label c. Only the true label's entry of a
        logit gradient is negative, so this is exact whenever the per-example gradients
        are recovered (B <= rank), however wrong the clone is; the clone's softmax is not
        (it fails once the client's head grows confident).
    rank_tolerance: singular values of the activations below this fraction of the largest
        count as zero when recovering per-example gradients from a weight gradient
        (float32 observations carry about 7 significant digits).
    """

    observation: ClassVar[str] = "weight_gradient"
    softmax: str = "best"
    rank_tolerance: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("softmax", self.softmax, SOFTMAXES)
        if not 0 < finite("rank_tolerance", self.rank_tolerance) < 1:
            raise ValueError(f"rank_tolerance must be in (0, 1), a fraction of the largest singular value; got {self.rank_tolerance!r}")

    def authors_variant(self) -> WeightGradientConfig:
        return dataclasses.replace(self, softmax="clone")

    def variant(self) -> list[str]:
        return [f"{self.softmax} softmax"] if self.softmax != "best" else []


class WeightGradientAttack(LabelInferenceAttack):
    """Gradient matching on the head's kernel gradient, (D, C) per training step."""

    config_type = WeightGradientConfig
    observed_name = "the head's kernel gradient"
    record_field = "head_kernel_gradient"
    config: WeightGradientConfig

    def _prepare(self) -> None:
        d, c = self.feature_dim, self.num_classes
        self._evidence_width = c
        tolerance = self.config.rank_tolerance
        self._recover = tf.function(lambda a, observed: recover_logit_gradients(a, observed, tolerance)).get_concrete_function(
            self._steps_of(d), tf.TensorSpec((None, d, c), tf.float32)
        )

    def observed_shape(self, batch: int) -> tuple[int, ...]:
        return (self.feature_dim, self.num_classes)

    def _evidence(self, activations: tf.Tensor, observed: tf.Tensor) -> tf.Tensor:
        """The per-example logit gradients: they do not depend on the clone, so they are recovered for
        all T steps at once, outside XLA (which does float64 linear algebra slowly)."""
        return self._recover(activations, observed)

    def _details(self) -> dict[str, Any]:
        return {"distance": "mse", "clone_objective": "cross_entropy"}

    def _run_body(self, activations: tf.Tensor, evidence: tf.Tensor, known: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self.config.softmax == "best":  # matching ignores the clone: all steps at once, then train it
            distances = self._clone_free_distances(evidence)
            labels = tf.where(known >= 0, known, tf.argmin(distances, axis=-1, output_type=tf.int64))

            repeat(tf.shape(activations)[0], lambda t: self._train_clone(activations[t], labels[t]))
        else:
            labels, distances = self._sequential(self._clone_softmax_step, activations, evidence, known)
        # example i's predicted vs recovered share of the kernel gradient, as an MSE over its D x C entries
        batch = tf.cast(tf.shape(activations)[1], tf.float32)
        distances *= tf.reduce_sum(tf.square(activations), axis=-1, keepdims=True) / (
            float(self.feature_dim * self.num_classes) * tf.square(batch)
        )
        return labels, distances

    def _clone_free_distances(self, recovered: tf.Tensor) -> tf.Tensor:
        """softmax="best" distances, for all T steps at once: they do not depend on the clone. (T, B, C).

        The gap between recovered + onehot(c) and the probability simplex: the distance to
        the nearest logit gradient any head could produce with label c.
        """
        implied = recovered[..., None, :] + tf.eye(self.num_classes)
        return tf.reduce_sum(tf.square(implied - project_to_simplex(implied)), axis=-1)

    def _clone_softmax_step(self, a: tf.Tensor, recovered: tf.Tensor, known: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """softmax="clone", the original: candidate c predicts the clone's softmax - onehot(c); then train the clone."""
        probs = tf.nn.softmax(self._logits(a))
        distances = tf.reduce_sum(tf.square(recovered[:, None, :] - (probs[:, None, :] - tf.eye(self.num_classes))), axis=-1)
        labels = tf.where(known >= 0, known, tf.argmin(distances, axis=1, output_type=tf.int64))
        self._train_clone(a, labels)
        return labels, distances
