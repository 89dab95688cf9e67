"""Label inference against U-shaped split learning (UnSplit's second attack) and Li et al.'s baselines.

Setting: the client keeps the input layers *and* the output layer (the head)
with the labels; the server computes what lies between. The server sends the
head its activations `a` and, in training, sees a gradient come back; the head
is one dense layer trained with the mean softmax cross-entropy, so the gradient
every candidate label would produce has a closed form (`gradients`).

Observation models (every result names one; `OBSERVATIONS`), one module each:

- ``weight_gradient``: the server sees dL/dW, as the UnSplit authors' code
  assumes (a standard split-learning server does not): `WeightGradientAttack`.
- ``activation_gradient``: the server sees dL/da, one row per example, which
  is what a split-learning server really receives: `ActivationGradientAttack`,
  and Li et al.'s baselines (`baselines`: `NormScoring`, `DirectionScoring`).

Activation gradients name which examples share a label but not the label's
name; a few labels the attacker knows (`KnownLabels`) name the classes.
Every method follows `LabelAttack`. Nothing here sees the true labels except
through `known_labels`; evaluation (`unsplit_tf.scoring.evaluate_labels`)
happens outside the attacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import keras

from unsplit_tf.attacks.labels.activation_gradient import (
    CLONE_OBJECTIVES,
    DISTANCES,
    ActivationGradientAttack,
    ActivationGradientConfig,
)
from unsplit_tf.attacks.labels.baselines import DirectionScoring, NormScoring, cosine_similarities, norm_scores
from unsplit_tf.attacks.labels.core import (
    OBSERVATIONS,
    LabelInferenceAttack,
    LabelInferenceConfig,
    check_observation,
    head_dense_layer,
)
from unsplit_tf.attacks.labels.gradients import (
    candidate_activation_gradients,
    candidate_kernel_gradients,
    candidate_logit_gradients,
    fit_kernel,
    project_to_simplex,
    recover_logit_gradients,
    solve_positive_definite,
)
from unsplit_tf.attacks.labels.results import (
    UNKNOWN,
    KnownLabels,
    LabelInferenceResult,
    LabelInferenceStep,
    check_known_labels,
)
from unsplit_tf.attacks.labels.weight_gradient import SOFTMAXES, WeightGradientAttack, WeightGradientConfig


@runtime_checkable
class LabelAttack(Protocol):
    """What every label attack and baseline offers, so that callers never switch on its type.

    observation: the observation model it reads (one of OBSERVATIONS).
    method: its name in results; `f"{observation}/{method}"` names it fully.
    infers_labels: False for a method that only ranks examples (norm scoring): its
        result's labels are None, so score it by AUC alone.
    attack_record: infer one training step's labels from a `protocol.UShapedWireRecord`.
    result: everything inferred so far.
    Each also has `step(...)` on one step's arrays of its observation; the
    gradient-matching attacks add `steps(...)` for many recorded steps at once.
    """

    observation: str
    method: str
    infers_labels: bool

    def attack_record(self, record: Any, *, known_labels: Any = None) -> LabelInferenceStep: ...

    def result(self) -> LabelInferenceResult: ...


def label_methods(
    head: keras.Model, num_classes: int, *, seed: int = 0, observations: Sequence[str] = OBSERVATIONS
) -> dict[str, LabelAttack]:
    """Every attack and baseline for the observation models asked, by result name; the authors' variants beside ours."""
    methods: dict[str, LabelAttack] = {}
    for observation in map(check_observation, observations):
        ours = LabelInferenceConfig(observation, seed=seed)
        for config in (ours, ours.authors_variant()):
            methods[f"{config.observation}/{config.method}"] = LabelInferenceAttack(head, config)
    for baseline in (DirectionScoring(num_classes), NormScoring()):
        if baseline.observation in observations:
            methods[f"{baseline.observation}/{baseline.method}"] = baseline
    return methods


__all__ = [
    "CLONE_OBJECTIVES",
    "DISTANCES",
    "OBSERVATIONS",
    "SOFTMAXES",
    "UNKNOWN",
    "ActivationGradientAttack",
    "ActivationGradientConfig",
    "DirectionScoring",
    "KnownLabels",
    "LabelAttack",
    "LabelInferenceAttack",
    "LabelInferenceConfig",
    "LabelInferenceResult",
    "LabelInferenceStep",
    "NormScoring",
    "WeightGradientAttack",
    "WeightGradientConfig",
    "candidate_activation_gradients",
    "candidate_kernel_gradients",
    "candidate_logit_gradients",
    "check_known_labels",
    "check_observation",
    "cosine_similarities",
    "fit_kernel",
    "head_dense_layer",
    "label_methods",
    "norm_scores",
    "project_to_simplex",
    "recover_logit_gradients",
    "solve_positive_definite",
]
