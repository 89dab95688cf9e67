"""Aligned scores for runs recorded before records kept them, from what is stored with them and their siblings.

Older records hold raw MSE/PSNR/SSIM only (or no shift-aligned scores). Their class targets' originals and
reconstructions (as scored, 8-bit) are stored beside them, so the attack's aligned scores are computed from those,
as `scoring.reconstruction_scores` computes them for new runs. A guess's (the mean image's) aligned scores need the
guess itself, which is not stored: they are taken from another record of the same dataset whose guess scored the
same targets with the same raw per-image MSE, i.e. the same guess (where one is stored). Raw scores stay as recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from unsplit_tf.records import Baselines, Evaluation, ImageScores, InversionRun
from unsplit_tf.scoring import ALIGNED_FIELDS, reconstruction_scores

ALIGNED = (*ALIGNED_FIELDS, "shift")
GuessKey = tuple[str, tuple[int, ...], tuple[float, ...]]


def _guess_key(run: InversionRun, scores: ImageScores) -> GuessKey:
    return run.data.name, run.headline.targets.indices, scores.mse


def _complete(recorded: ImageScores, computed: ImageScores | None) -> ImageScores:
    if computed is None:
        return recorded
    return dataclasses.replace(recorded, **{name: getattr(recorded, name) or getattr(computed, name) for name in ALIGNED})


def _guesses(baselines: Baselines) -> list[ImageScores]:
    return [getattr(baselines, field.name) for field in dataclasses.fields(Baselines)]


def scored_guesses(runs: Sequence[InversionRun]) -> dict[GuessKey, ImageScores]:
    """Every no-information guess of the runs' class targets whose record has aligned scores, by what it is (the
    record with the most of them where several have)."""
    found = [(run, guess) for run in runs for guess in _guesses(run.headline.baselines) if guess.affine_aligned_mse]
    return {_guess_key(run, guess): guess for run, guess in sorted(found, key=lambda pair: bool(pair[1].shift))}


def with_aligned_scores(run: InversionRun, guesses: dict[GuessKey, ImageScores]) -> InversionRun:
    """`run` with its class targets' missing aligned scores filled in: the attack's from its stored pictures, each
    guess's from `guesses` (`scored_guesses`); itself when it has them all (new records always carry the
    translation). Scores the record has are kept as recorded."""
    head = run.headline
    if head.reconstruction.shift:
        return run
    computed = None
    if {"originals", "reconstructions"} <= run.arrays.keys():
        originals, pictures = (np.asarray(run.arrays[name], np.float64) / 255.0 for name in ("originals", "reconstructions"))
        computed = ImageScores.of(reconstruction_scores(originals, pictures))
    baselines = Baselines(*(_complete(guess, guesses.get(_guess_key(run, guess))) for guess in _guesses(head.baselines)))
    completed: Evaluation = dataclasses.replace(head, reconstruction=_complete(head.reconstruction, computed),
                                                baselines=baselines)
    if completed == head:
        return run
    return dataclasses.replace(run, evaluations=(completed, *run.evaluations[1:]))
