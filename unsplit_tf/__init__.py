"""unsplit-tf: measure how much a split-learning deployment leaks.

Model inversion, model stealing and label inference attacks (UnSplit,
Erdogan et al., WPES 2022) for Keras functional models, defenses at the cut,
and one audit pipeline: `run_inversion` / `run_label_inference` return typed
records (`InversionRun`, `LabelRun`), `run_sweep` fills a `ResultStore` with a
grid of them and `write_report` turns it into a report.

Every public name is importable from here (`from unsplit_tf import split_model,
invert, run_inversion`); each is loaded on first use, so `import unsplit_tf`
itself stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "unsplit_tf.data": ("Dataset", "DataUnavailableError", "load_dataset", "DATASET_NAMES"),
    "unsplit_tf.split": ("Split", "UShapedSplit", "split_model", "split_u_shaped", "clone_architecture"),
    "unsplit_tf.models": ("reference_net", "paper_depths"),
    "unsplit_tf.protocol": ("TrainConfig", "SplitTrainer", "UShapedTrainer", "train_reference_net"),
    "unsplit_tf.attacks.inversion": ("InversionConfig", "InversionResult", "RoundReport", "PRESETS", "invert", "preset",
                                     "SDARConfig", "SDARAttack", "InverseNetworkConfig", "AuxiliaryResult",
                                     "inverse_network", "query_free_attack"),
    "unsplit_tf.attacks": ("LabelInferenceAttack", "LabelInferenceConfig", "LabelInferenceResult", "NormScoring",
                           "DirectionScoring"),
    "unsplit_tf.scoring": ("ReconstructionScores", "CloneQuality", "reconstruction_scores", "baseline_scores",
                           "clone_quality", "minmax_normalize", "LabelScores", "evaluate_labels"),
    "unsplit_tf.defenses": ("DEFENSES", "ActivationNoise", "NoPeek", "GradientClipping", "GradientNoise", "MaxNormNoise",
                            "LabelSubspaceNoise", "distance_correlation", "make_defense", "split_with_defense",
                            "split_u_shaped_with_defense", "with_defense"),
    "unsplit_tf.records": ("SCHEMA_VERSION", "InversionRun", "LabelRun", "Environment", "ThreatModel", "Victim",
                           "DefenseSetting", "ModelSource", "ImageScores", "CloneScores", "RecordError", "run_from_dict"),
    "unsplit_tf.runs": ("VictimSpec", "InversionOutcome", "LabelOutcome", "LabelProgress", "run_inversion",
                        "run_label_inference"),
    "unsplit_tf.store": ("ResultStore", "CorruptCellError"),
    "unsplit_tf.sweep": ("Budget", "InversionCell", "LabelCell", "CellRunner", "inversion_cells", "defense_cells",
                         "validate_grid", "run_sweep"),
    "unsplit_tf.reporting": ("write_report",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'unsplit_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
