"""Li et al.'s baselines on activation gradients, generalised from their binary setting.

"Label Leakage and Protection in Two-party Split Learning", ICLR 2022.
`NormScoring` ranks examples by ||dL/da|| (reported as macro one-vs-rest AUC;
it leaks through class imbalance and confidence, so expect little on balanced
multi-class data) and `DirectionScoring` predicts the class whose reference
gradient (the first known example of each class) has the highest cosine
similarity (reported as accuracy and macro one-vs-rest AUC).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from unsplit_tf._validation import at_least
from unsplit_tf.attacks.labels.results import (
    UNKNOWN,
    History,
    LabelInferenceResult,
    LabelInferenceStep,
    check_finite,
    check_known_labels,
)


def _check_gradients(activation_gradients: Any) -> np.ndarray:
    grads = np.asarray(activation_gradients, dtype=np.float32)
    if grads.ndim != 2 or grads.shape[0] < 1:
        raise ValueError(f"activation gradients must have shape (batch >= 1, features), got {grads.shape}")
    return check_finite("activation gradients", grads)


def norm_scores(activation_gradients: Any) -> np.ndarray:
    """Li et al.'s norm score: ||d loss / d a_i|| per example, (B,)."""
    return np.linalg.norm(_check_gradients(activation_gradients).astype(np.float64), axis=1)


def cosine_similarities(activation_gradients: Any, references: Any) -> np.ndarray:
    """Cosine similarity of every gradient row (B, D) with every reference row (K, D): (B, K)."""
    grads = _check_gradients(activation_gradients).astype(np.float64)
    refs = np.asarray(references, dtype=np.float64)
    if refs.ndim != 2 or refs.shape[1] != grads.shape[1]:
        raise ValueError(f"references must have shape (K, {grads.shape[1]}), got {refs.shape}")
    unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-30)  # noqa: E731
    return unit(grads) @ unit(refs).T


class _ActivationGradientBaseline:
    """What Li et al.'s baselines share: they read the activation gradients of a wire record."""

    observation: ClassVar[str] = "activation_gradient"
    method: ClassVar[str]
    infers_labels: ClassVar[bool] = True

    def __init__(self) -> None:
        self._history = History()

    def attack_record(self, record: Any, *, known_labels: Any = None) -> LabelInferenceStep:
        """`step` on a `protocol.UShapedWireRecord`, as `LabelInferenceAttack.attack_record`."""
        return self.step(np.asarray(record.activation_gradients), known_labels=known_labels, step=record.step)  # type: ignore[attr-defined]


class NormScoring(_ActivationGradientBaseline):
    """Li et al.'s norm scoring: a ranking by gradient norm, no labels (`infers_labels` False). Evaluate it by AUC."""

    method = "norm_scoring"
    infers_labels = False

    def step(self, activation_gradients: Any, *, known_labels: Any = None, step: int | None = None) -> LabelInferenceStep:
        scores = norm_scores(activation_gradients)
        known = check_known_labels(known_labels, scores.shape, np.iinfo(np.int64).max)
        out = LabelInferenceStep(np.full(len(scores), UNKNOWN, np.int64), scores)
        self._history.add(out, known, step)
        return out

    def result(self) -> LabelInferenceResult:
        return self._history.result(self.observation, self.method, with_labels=False)


class DirectionScoring(_ActivationGradientBaseline):
    """Li et al.'s direction scoring for C classes: cosine similarity to a known example's gradient per class.

    The reference of a class is the activation gradient of the first example
    whose label the attacker knows (`known_labels`); it is kept thereafter, as
    in Li et al. An example is labelled with its most similar reference's class
    (UNKNOWN until some reference exists); a class without a reference scores
    -2, below any cosine.
    """

    method = "direction_scoring"

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = at_least("num_classes", num_classes, 2)
        self.references: np.ndarray | None = None
        self.has_reference = np.zeros(num_classes, bool)

    def step(self, activation_gradients: Any, *, known_labels: Any = None, step: int | None = None) -> LabelInferenceStep:
        grads = _check_gradients(activation_gradients)
        known = check_known_labels(known_labels, grads.shape[:1], self.num_classes)
        if self.references is None:
            self.references = np.zeros((self.num_classes, grads.shape[1]), np.float64)
        elif self.references.shape[1] != grads.shape[1]:
            raise ValueError(f"activation gradients have {grads.shape[1]} features, earlier ones had {self.references.shape[1]}")
        for row in np.flatnonzero(known >= 0):
            if not self.has_reference[known[row]]:
                self.references[known[row]] = grads[row]
                self.has_reference[known[row]] = True
        scores = np.where(self.has_reference[None], cosine_similarities(grads, self.references), -2.0)
        labels = scores.argmax(axis=1) if self.has_reference.any() else np.full(len(grads), UNKNOWN)
        labels = np.where(known >= 0, known, labels).astype(np.int64)
        out = LabelInferenceStep(labels, scores)
        self._history.add(out, known, step)
        return out

    def result(self) -> LabelInferenceResult:
        return self._history.result(self.observation, self.method, references=int(self.has_reference.sum()))
