"""Keras callbacks that audit a plain `model.fit` as if the model were split at a named layer.

`InversionAudit` runs UnSplit's inversion attack on a probe set's cut-layer
activations; `LabelLeakageAudit` runs the label attacks on the gradients a
split-learning server would receive at the cut. Both put their figures into
the epoch `logs` (so `History`, `CSVLogger` and `EarlyStopping` see them; list
the audit *before* those callbacks) and, given a folder, into TensorBoard.
"""

from unsplit_tf.callbacks.inversion_audit import DEFAULT_INVERSION_CONFIG, InversionAudit
from unsplit_tf.callbacks.label_leakage_audit import DEFAULT_LABEL_CONFIG, LABEL_METHODS, LabelLeakageAudit

__all__ = ["DEFAULT_INVERSION_CONFIG", "DEFAULT_LABEL_CONFIG", "LABEL_METHODS", "InversionAudit", "LabelLeakageAudit"]
