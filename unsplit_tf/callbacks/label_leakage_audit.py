"""`LabelLeakageAudit`: how much the gradients a split-learning server receives at the cut reveal the labels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.attacks.labels import (
    DirectionScoring,
    KnownLabels,
    LabelInferenceAttack,
    LabelInferenceConfig,
    NormScoring,
)
from unsplit_tf.callbacks._audit import Audit, check_inputs_fit, integer_labels, probe_arrays
from unsplit_tf.scoring import evaluate_labels
from unsplit_tf.split import Split, counted_layers

DEFAULT_LABEL_CONFIG = LabelInferenceConfig(observation="activation_gradient", jit_compile=False)
"""The attack's activation-gradient defaults, run as a plain graph: each audit starts a fresh attacker, and on a
few probe batches XLA's compilation costs more than it saves (measured: 2.6 s against 7.5 s per audit of 64
examples, 2-core CPU)."""

LABEL_METHODS = ("gradient_matching", "direction_scoring", "norm_scoring")
"""The label attacks an audit can run: UnSplit's gradient matching, and Li et al.'s direction and norm scoring."""


class LabelLeakageAudit(Audit):
    """Audits a `model.fit` as if the model were split after layer `cut`, by running the label attacks.

    Threat model: the party that computes the model up to the cut (in a
    U-shaped split, the server) sends the activations `a` on and receives
    dL/da, one row per example, from the party that holds the labels and the
    layers after the cut; it knows their architecture, not their weights. At the
    end of every `every`-th epoch the callback computes that dL/da on the probe
    set in batches of `batch_size` (a `tf.GradientTape` on the model's compiled
    loss, with the current weights) and runs, with a fresh attacker each time:

    - "gradient_matching": UnSplit's label attack on activation gradients
      (`LabelInferenceAttack`, observation "activation_gradient"). It needs the
      layers after the cut to be one Dense layer (a linear or softmax output,
      trained with cross-entropy), and takes the probe batches one after another.
    - "direction_scoring", "norm_scoring": Li et al.'s baselines.

    Activation gradients cannot name the classes on their own, so the attacker
    is given the labels of the first `known_per_class` probe examples of each
    class (`KnownLabels`), as Li et al. assume; they are left out of the scores.
    Into the epoch `logs` go `{prefix}{method}_accuracy` (not for norm scoring,
    a ranking) and `{prefix}{method}_auc` (macro one-vs-rest ROC AUC) for each
    method run, and `{prefix}label_chance` (accuracy of guessing the most
    frequent class); NaN where undefined and on epochs not audited. `history` lists each audited epoch's figures and
    `last_scores` the last audit's `LabelScores` by method.

    Args:
        cut: name of the layer whose output the attacker sends on (and whose gradient it receives).
        probe: (x, y) in the model's input and target format (integer or one-hot labels), or a
            finite `tf.data.Dataset` of (x, y), batched or not.
        every: audit after every `every`-th epoch; default 1.
        batch_size: probe examples per observed batch, as in training (dL/da carries the 1/B of
            the batch-mean loss); default 32.
        methods: which of LABEL_METHODS to run; default None: all that apply at this cut
            (gradient matching only where the rest of the model is one Dense layer).
        known_per_class: labels the attacker knows per class; default 1.
        config: the gradient-matching attack's `LabelInferenceConfig` (observation
            "activation_gradient"); default `DEFAULT_LABEL_CONFIG`.
        tensorboard_dir: folder for TensorBoard scalars; default None, no TensorBoard output.
        prefix: start of every logged name; default "audit_".

    Raises ValueError at construction (every < 1, unknown method, bad config) or when fit starts
    (unknown layer name, a model compiled without a loss, a probe of the wrong shape, gradient
    matching asked for where the rest of the model is not one Dense layer), before any training.
    """

    def __init__(
        self,
        cut: str,
        probe: Any,
        *,
        every: int = 1,
        batch_size: int = 32,
        methods: Sequence[str] | None = None,
        known_per_class: int = 1,
        config: LabelInferenceConfig = DEFAULT_LABEL_CONFIG,
        tensorboard_dir: str | os.PathLike | None = None,
        prefix: str = "audit_",
    ) -> None:
        super().__init__(cut, every=every, tensorboard_dir=tensorboard_dir, prefix=prefix)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number, at least 1, got {batch_size!r}")
        if methods is not None:
            unknown = [m for m in methods if m not in LABEL_METHODS]
            if unknown or not methods:
                raise ValueError(f"methods must name some of {', '.join(LABEL_METHODS)}, got {list(methods)!r}")
        if isinstance(known_per_class, bool) or not isinstance(known_per_class, int) or known_per_class < 0:
            raise ValueError(f"known_per_class must be a whole number, 0 or more, got {known_per_class!r}")
        if not isinstance(config, LabelInferenceConfig) or config.observation != "activation_gradient":
            raise ValueError("config must be a LabelInferenceConfig with observation='activation_gradient'")
        self.batch_size = batch_size
        self.requested_methods = None if methods is None else tuple(methods)
        self.methods: tuple[str, ...] = ()
        self.known_per_class = known_per_class
        self.config = config
        self._probe = probe
        self.last_scores: dict[str, Any] = {}

    def _check_probe(self, split: Split) -> None:
        model = self.model
        if getattr(model, "loss", None) is None:
            raise ValueError(f"model '{model.name}' has no loss: call model.compile(loss=...) before fit")
        x, y = probe_arrays(self._probe, len(split.client.input.shape) - 1, labelled=True)
        check_inputs_fit(x, split.client)
        self.num_classes = int(model.output.shape[-1])
        self.x, self.y, self.labels = x, np.asarray(y), integer_labels(y)
        head = _dense_head(split)
        if self.requested_methods is None:
            self.methods = LABEL_METHODS if head is not None else LABEL_METHODS[1:]
        else:
            if "gradient_matching" in self.requested_methods and head is None:
                raise ValueError(
                    f"gradient_matching needs the layers after '{self.cut}' to be one Dense output layer, found "
                    f"{', '.join(layer.name for layer in counted_layers(split.server))}; cut before the last Dense "
                    "layer or leave it out of methods"
                )
            self.methods = self.requested_methods
        self._head = head
        self._observe = tf.function(self._observe_batch)

    def _observe_batch(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The cut activations of a batch and dL/da for its batch-mean loss, both flattened to (B, D)."""
        activations = self.split.client(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(activations)
            predictions = self.split.server(activations, training=False)
            loss = self.model.compute_loss(x=x, y=y, y_pred=predictions, training=False)
        gradients = tape.gradient(loss, activations)
        batch = tf.shape(activations)[0]
        return tf.reshape(activations, (batch, -1)), tf.reshape(gradients, (batch, -1))

    def figure_names(self) -> list[str]:
        names = []
        for method in self.methods:
            names += [f"{method}_auc"] if method == "norm_scoring" else [f"{method}_accuracy", f"{method}_auc"]
        return names + ["label_chance"]

    def _attackers(self) -> dict[str, Any]:
        attackers: dict[str, Any] = {}
        for method in self.methods:
            if method == "gradient_matching":
                attackers[method] = LabelInferenceAttack(self._head, self.config)
            elif method == "direction_scoring":
                attackers[method] = DirectionScoring(self.num_classes)
            else:
                attackers[method] = NormScoring()
        return attackers

    def _audit(self, epoch: int) -> dict[str, float | None]:
        attackers = self._attackers()
        side_knowledge = KnownLabels(self.num_classes, per_class=self.known_per_class)
        for start in range(0, len(self.x), self.batch_size):
            stop = start + self.batch_size
            activations, gradients = (t.numpy() for t in self._observe(self.x[start:stop], self.y[start:stop]))
            known = side_knowledge(self.labels[start:stop])
            for method, attacker in attackers.items():
                if method == "gradient_matching":
                    attacker.step(activations, gradients, known_labels=known)
                else:
                    attacker.step(gradients, known_labels=known)
        figures: dict[str, float | None] = {}
        self.last_scores = {}
        for method, attacker in attackers.items():
            scores = evaluate_labels(attacker.result(), self.labels, self.num_classes)
            self.last_scores[method] = scores
            figures.update({f"{method}_accuracy": scores.accuracy, f"{method}_auc": scores.auc, "label_chance": scores.chance})
        return figures


def _dense_head(split: Split) -> keras.Model | None:
    """The attacker's view of the layers after the cut when they are one Dense layer: its architecture as logits.

    A softmax output trained with cross-entropy has the same dL/da as linear logits trained with
    cross-entropy from logits, so the attack's head is the same Dense layer without its activation.
    None when the rest of the model is anything else.
    """
    counted = counted_layers(split.server)
    if len(counted) != 1 or not isinstance(counted[0], keras.layers.Dense):
        return None
    dense = counted[0]
    if dense.activation not in (keras.activations.linear, keras.activations.softmax, None):
        return None
    features = int(np.prod(split.server.input.shape[1:]))
    inputs = keras.Input(shape=(features,))
    outputs = keras.layers.Dense(dense.units, use_bias=dense.use_bias, name=dense.name)(inputs)
    return keras.Model(inputs, outputs, name="attacker_head")
