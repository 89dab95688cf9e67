"""Input-recovery attacks of an honest-but-curious split-learning server.

`unsplit` is UnSplit's data-oblivious attack (model inversion + model stealing
from the cut-layer activations and the client's architecture alone).
"""

from unsplit_tf.attacks.inversion.unsplit import (
    MODES,
    PRESETS,
    PRIORS,
    XLA_CPU_MAX_BATCH,
    InversionConfig,
    InversionResult,
    RoundReport,
    calibrate_batch_norm,
    invert,
    preset,
    restart_seed,
    total_variation,
    uses_xla,
)

__all__ = [
    "MODES",
    "PRESETS",
    "PRIORS",
    "XLA_CPU_MAX_BATCH",
    "InversionConfig",
    "InversionResult",
    "RoundReport",
    "calibrate_batch_norm",
    "invert",
    "preset",
    "restart_seed",
    "total_variation",
    "uses_xla",
]
