"""Attacks of an honest-but-curious split-learning server.

Each attack takes what the server really has and returns a result object;
evaluation against the ground truth lives beside it, outside the attack.
"""

from unsplit_tf.attacks.labels import (
    CLONE_OBJECTIVES,
    OBSERVATIONS,
    DirectionScoring,
    LabelInferenceAttack,
    LabelInferenceConfig,
    LabelInferenceResult,
    NormScoring,
)
from unsplit_tf.scoring import LabelScores, evaluate_labels

__all__ = [
    "CLONE_OBJECTIVES",
    "OBSERVATIONS",
    "DirectionScoring",
    "LabelInferenceAttack",
    "LabelInferenceConfig",
    "LabelInferenceResult",
    "LabelScores",
    "NormScoring",
    "evaluate_labels",
]
