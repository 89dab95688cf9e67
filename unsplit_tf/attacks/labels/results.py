"""What every label attack and baseline returns, and the attacker's side knowledge of a few labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unsplit_tf._validation import at_least

UNKNOWN = -1
"""Label value meaning "not known" in `known_labels`, and "no guess" in a baseline's labels."""


@dataclass(frozen=True)
class LabelInferenceStep:
    """One batch's output of an attack: a label per example and a score per example and candidate."""

    labels: np.ndarray  # (B,) int64; known labels are passed through; UNKNOWN where a baseline has no guess
    scores: np.ndarray  # (B, C) higher = more likely (negated distances, or cosine similarities); (B,) for norm scoring


@dataclass(frozen=True)
class LabelInferenceResult:
    """Everything an attack or baseline inferred over a run, in the order examples were seen.

    `known` marks examples whose label the attacker was given (they are passed
    through, and evaluation leaves them out). `steps` is the training step of
    each example. `labels` is None for a pure ranking (norm scoring).
    """

    observation: str
    method: str
    labels: np.ndarray | None
    scores: np.ndarray
    known: np.ndarray
    steps: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.observation}/{self.method}"


class History:
    """The outputs of every call so far, gathered into one `LabelInferenceResult` on demand."""

    def __init__(self) -> None:
        self.labels: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.known: list[np.ndarray] = []
        self.steps: list[np.ndarray] = []
        self.count = 0

    def add(self, out: LabelInferenceStep, known: np.ndarray, step: int | None) -> None:
        """One training step's output."""
        self.extend(out.labels[None], out.scores[None], known[None], None if step is None else [step])

    def extend(self, labels: np.ndarray, scores: np.ndarray, known: np.ndarray, steps: Sequence[int] | None = None) -> None:
        """T training steps' outputs, (T, B, ...) each; `steps` numbers them (default: counting on)."""
        count, batch = known.shape
        numbers = np.arange(self.count + 1, self.count + count + 1) if steps is None else np.asarray(steps, np.int64)
        self.count += count
        self.labels.append(labels.reshape(count * batch))
        self.scores.append(scores.reshape(count * batch, *scores.shape[2:]))
        self.known.append(known.reshape(-1) >= 0)
        self.steps.append(np.repeat(numbers, batch))

    def result(self, observation: str, method: str, *, with_labels: bool = True, **details: Any) -> LabelInferenceResult:
        def cat(parts, shape, dtype):
            return np.concatenate(parts) if parts else np.zeros(shape, dtype)

        return LabelInferenceResult(
            observation,
            method,
            cat(self.labels, (0,), np.int64) if with_labels else None,
            cat(self.scores, (0,), np.float32),
            cat(self.known, (0,), bool),
            cat(self.steps, (0,), np.int64),
            dict(details),
        )


def check_known_labels(known_labels: Any, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    """int64 labels of `shape` (one per example) with UNKNOWN where not known; None means none known."""
    if known_labels is None:
        return np.full(shape, UNKNOWN, np.int64)
    known = np.asarray(known_labels)
    if known.shape != tuple(shape):
        raise ValueError(f"known_labels must have shape {tuple(shape)}, one per example (-1 = unknown), got {known.shape}")
    if known.size and (not np.issubdtype(known.dtype, np.integer) or known.min() < UNKNOWN or known.max() >= num_classes):
        raise ValueError(f"known_labels must be integers in 0..{num_classes - 1}, or -1 for unknown")
    return known.astype(np.int64)


def check_finite(name: str, array: np.ndarray) -> np.ndarray:
    """`array` if it holds no NaN or infinity; else a ValueError (they would turn every score into NaN)."""
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or infinity; pass the finite values the server observed")
    return array


class KnownLabels:
    """The side knowledge of an attacker: the labels of the first `per_class` examples of each class it meets.

    Activation gradients cannot name the classes (see `unsplit_tf.attacks.labels`); Li et
    al.'s direction scoring assumes the same knowledge. Call it on the true labels
    of each batch, in training order; it returns them where known, UNKNOWN elsewhere.
    """

    def __init__(self, num_classes: int, per_class: int = 1) -> None:
        self.per_class = at_least("per_class", per_class, 0)
        self.seen = np.zeros(at_least("num_classes", num_classes, 2), np.int64)

    def __call__(self, labels: Any) -> np.ndarray:
        labels = np.asarray(labels, np.int64)
        known = np.full(labels.shape, UNKNOWN, np.int64)
        for index, label in np.ndenumerate(labels):
            if self.seen[label] < self.per_class:
                self.seen[label] += 1
                known[index] = label
        return known
