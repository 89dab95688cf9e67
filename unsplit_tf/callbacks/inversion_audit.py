"""`InversionAudit`: how well UnSplit inverts the cut activations of a probe set, epoch after epoch."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from unsplit_tf.attacks.inversion import InversionConfig, InversionResult, invert, preset
from unsplit_tf.callbacks import _summaries as summaries
from unsplit_tf.callbacks._audit import Audit, check_inputs_fit, in_batches, integer_labels, probe_arrays
from unsplit_tf.scoring import ALIGNED_FIELDS, ReconstructionScores, baseline_scores, clone_quality, reconstruction_scores
from unsplit_tf.split import Split

DEFAULT_INVERSION_CONFIG = preset("tuned").replace(main_iters=20, input_iters=20, model_iters=20, restarts=1)
"""The "tuned" preset on a small budget (800 steps per target, one restart): cheap enough to run every epoch.

Leakage measured with it is a lower bound; the full preset (`preset("tuned")`) inverts better.
"""

GRID_COLUMNS = 10
"""Targets per row of the TensorBoard image grid."""


class InversionAudit(Audit):
    """Audits a `model.fit` as if the model were split after layer `cut`, by running UnSplit's inversion.

    Threat model: an honest-but-curious server that receives the probe inputs'
    activations at the cut and knows the client's architecture (not its
    weights, not the inputs). At the end of every `every`-th epoch the callback
    cuts the model there, observes the probe set's cut activations, runs
    `unsplit_tf.attacks.inversion.invert` on them (a fresh attacker each time),
    and scores the reconstructions and the stolen client clone outside the
    attack. Into the epoch `logs` go `{prefix}inversion_mse`,
    `{prefix}inversion_psnr`, `{prefix}inversion_ssim` (reconstructions vs
    probe inputs), the same after alignment, `{prefix}inversion_affine_aligned_mse`
    / `_ssim` (each picture's best a·x + b) and `{prefix}inversion_shift_aligned_mse`
    / `_ssim` (all pictures' best small translation), as a clone absorbs both,
    and `{prefix}clone_agreement` (fraction of probe inputs on
    which server(clone(x)) and the model predict the same class), plus
    `{prefix}clone_accuracy` when the probe carries labels. `baselines` holds the
    scores of guesses that use no leaked information (grey, noise, and the
    probe mean), to compare against: an MSE below `baselines["constant_0.5"]`
    means the cut leaks. `history` lists the figures of each audited epoch and
    `last_result` the last attack's `InversionResult`. On epochs not audited the
    figures are NaN, so every epoch's logs have the same keys.

    Args:
        cut: name of the layer the client computes last (its output is what the server sees).
        probe: the inputs to reconstruct, float images in [0, 1] shaped like the model's inputs:
            an array, a pair (x, y) of inputs and integer labels, or a finite `tf.data.Dataset`
            of either (batched or not). Keep it small (8 to 32 images): each audit inverts all of it.
        every: audit after every `every`-th epoch; default 1.
        config: the attack's `InversionConfig`; default `DEFAULT_INVERSION_CONFIG`, the "tuned"
            preset on a budget of 20 rounds of 20 + 20 steps.
        tensorboard_dir: folder for TensorBoard scalars and an image grid (originals above their
            reconstructions, 10 per row); default None, no TensorBoard output.
        prefix: start of every logged name; default "audit_".

    Raises ValueError at construction (every < 1, bad config) or when fit starts (unknown layer
    name, a cut that does not split the model, a probe of the wrong shape), before any training.
    """

    def __init__(
        self,
        cut: str,
        probe: Any,
        *,
        every: int = 1,
        config: InversionConfig = DEFAULT_INVERSION_CONFIG,
        tensorboard_dir: str | os.PathLike | None = None,
        prefix: str = "audit_",
    ) -> None:
        super().__init__(cut, every=every, tensorboard_dir=tensorboard_dir, prefix=prefix)
        if not isinstance(config, InversionConfig):
            raise ValueError(
                f"config must be an InversionConfig, e.g. preset('tuned').replace(main_iters=50), got {type(config).__name__}"
            )
        self.config = config
        self._probe = probe
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.baselines: dict[str, ReconstructionScores] = {}
        self.last_result: InversionResult | None = None

    def _check_probe(self, split: Split) -> None:
        x, y = probe_arrays(self._probe, len(split.client.input.shape) - 1, labelled=False)
        check_inputs_fit(x, split.client)
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"probe inputs must be NHWC images with 1 or 3 channels, got shape {x.shape}")
        self.x, self.y = x, None if y is None else integer_labels(y)
        self.baselines = baseline_scores(x, mean_image=x.mean(axis=0))

    def figure_names(self) -> list[str]:
        names = ["inversion_mse", "inversion_psnr", "inversion_ssim", *(f"inversion_{name}" for name in ALIGNED_FIELDS),
                 "clone_agreement"]
        return names + ["clone_accuracy"] if self.y is not None else names

    def _audit(self, epoch: int) -> dict[str, float]:
        split = self.split
        observed = in_batches(lambda batch: split.client(batch, training=False), self.x)
        result = invert(split.client, observed, self.config)  # sees the architecture and the activations only
        self.last_result = result
        scores = reconstruction_scores(self.x, result.reconstructions)
        predicted = in_batches(lambda batch: split.server(split.client(batch, training=False), training=False), self.x)
        labels = predicted.argmax(axis=-1) if self.y is None else self.y
        clone = clone_quality(split.client, result.clone, split.server, self.x, labels)
        figures = {
            "inversion_mse": scores.mean_mse,
            "inversion_psnr": scores.mean_psnr,
            "inversion_ssim": scores.mean_ssim,
            **{f"inversion_{name}": getattr(scores, f"mean_{name}") for name in ALIGNED_FIELDS},
            "clone_agreement": clone.agreement,
        }
        if self.y is not None:
            figures["clone_accuracy"] = clone.clone_accuracy
        if self._writer is not None:
            with self._writer.as_default():
                summaries.image(self.prefix + "inversion", image_grid(self.x, result.reconstructions), step=epoch)
        return figures


def image_grid(originals: np.ndarray, reconstructions: np.ndarray, columns: int = GRID_COLUMNS) -> np.ndarray:
    """One HWC picture: rows of up to `columns` originals, each above its reconstructions, 1-pixel white gaps."""
    n, height, width, channels = originals.shape
    rows = -(-n // columns)
    grid = np.ones((rows * 2 * (height + 1) - 1, min(n, columns) * (width + 1) - 1, channels), np.float32)
    for index, pair in enumerate(zip(originals, np.clip(reconstructions, 0.0, 1.0))):
        row, column = divmod(index, columns)
        for part, image in enumerate(pair):
            top, left = (2 * row + part) * (height + 1), column * (width + 1)
            grid[top : top + height, left : left + width] = image
    return grid
