"""Attacks of an honest-but-curious split-learning server.

Each attack takes what the server really has and returns a result object;
evaluation against the ground truth lives in `unsplit_tf.scoring`, outside the attacks.
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

__all__ = [
    "CLONE_OBJECTIVES",
    "OBSERVATIONS",
    "DirectionScoring",
    "LabelInferenceAttack",
    "LabelInferenceConfig",
    "LabelInferenceResult",
    "NormScoring",
]
