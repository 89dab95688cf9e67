"""Defenses at the cut: Keras layers (`layers`), how to place them (`placement`), and the named registry (`registry`)."""

from unsplit_tf.defenses.layers import (
    DISTRIBUTIONS,
    ActivationNoise,
    GradientClipping,
    GradientDefense,
    GradientNoise,
    LabelSubspaceNoise,
    MaxNormNoise,
    NoPeek,
    distance_correlation,
)
from unsplit_tf.defenses.placement import split_u_shaped_with_defense, split_with_defense, with_defense
from unsplit_tf.defenses.registry import (
    ACTIVATIONS,
    DEFENSES,
    GRADIENTS,
    NamedDefense,
    check_defense,
    default_settings,
    defenses_of,
    make_defense,
    named_defense,
)

__all__ = [
    "ACTIVATIONS", "DEFENSES", "DISTRIBUTIONS", "GRADIENTS", "ActivationNoise", "GradientClipping", "GradientDefense",
    "GradientNoise", "LabelSubspaceNoise", "MaxNormNoise", "NamedDefense", "NoPeek", "check_defense",
    "default_settings", "defenses_of", "distance_correlation", "make_defense", "named_defense",
    "split_u_shaped_with_defense", "split_with_defense", "with_defense",
]
