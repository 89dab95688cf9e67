"""Input-recovery attacks of an honest-but-curious split-learning server.

`unsplit` is UnSplit's data-oblivious attack (model inversion + model stealing
from the cut-layer activations and the client's architecture alone).
"""

from unsplit_tf.attacks.inversion.unsplit import (
    KEEPS,
    MODES,
    PRESETS,
    PRIOR_ASSUMPTIONS,
    PRIORS,
    TV_L1_EPSILON,
    TV_NORMS,
    TV_SCALES,
    TV_TERMS,
    XLA_CPU_MAX_BATCH,
    InversionConfig,
    InversionResult,
    RoundReport,
    absolute_total_variation,
    calibrate_batch_norm,
    choose_restart,
    disagreement,
    invert,
    preset,
    refit_seed,
    restart_seed,
    total_variation,
    tv_weight,
    uses_xla,
)

__all__ = [
    "KEEPS",
    "MODES",
    "PRESETS",
    "PRIOR_ASSUMPTIONS",
    "PRIORS",
    "TV_L1_EPSILON",
    "TV_NORMS",
    "TV_SCALES",
    "TV_TERMS",
    "XLA_CPU_MAX_BATCH",
    "InversionConfig",
    "InversionResult",
    "RoundReport",
    "absolute_total_variation",
    "calibrate_batch_norm",
    "choose_restart",
    "disagreement",
    "invert",
    "preset",
    "refit_seed",
    "restart_seed",
    "total_variation",
    "tv_weight",
    "uses_xla",
]

from unsplit_tf.attacks.inversion._auxiliary import AuxiliaryResult
from unsplit_tf.attacks.inversion.inverse_network import InverseNetworkConfig, inverse_network, query_free_attack
from unsplit_tf.attacks.inversion.sdar import SDARAttack, SDARConfig

__all__ += ["AuxiliaryResult", "InverseNetworkConfig", "SDARAttack", "SDARConfig", "inverse_network", "query_free_attack"]
