"""Aligned scores for records made before they were kept: from the stored pictures, the guesses' from a sibling."""

import dataclasses

import numpy as np

from fake_runs import inversion_run
from unsplit_tf.records import Baselines, ImageScores
from unsplit_tf.reporting import write_report
from unsplit_tf.reporting.rescoring import scored_guesses, with_aligned_scores
from unsplit_tf.scoring import baseline_scores, reconstruction_scores
from unsplit_tf.store import ResultStore
from unsplit_tf.sweep import InversionCell

CELL = InversionCell("f_mnist", "fake", 2, preset="paper", mode="sequential", targets=3)


def garments(n: int = 3) -> np.ndarray:
    """Bright shapes on black, each a different size: uint8, as stored."""
    images = np.zeros((n, 28, 28, 1), np.uint8)
    for index in range(n):
        images[index, 6 - index : 22 + index, 8 : 20 + index] = 200 + 20 * index
    return images


def old_record(pictures: np.ndarray, originals: np.ndarray | None = None):
    """A record with raw scores only (as made before aligned scores were kept), its pictures stored beside it."""
    originals = garments() if originals is None else originals
    return dataclasses.replace(inversion_run(CELL, mse=0.2, ssim=0.05),
                               arrays={"originals": originals, "reconstructions": pictures, "indices": np.arange(3)})


def test_an_old_records_inverted_pictures_are_scored_aligned_from_the_stored_pictures_raw_scores_as_recorded():
    run = old_record(255 - garments())
    assert not run.headline.reconstruction.affine_aligned_mse and not run.headline.reconstruction.shift
    head = with_aligned_scores(run, {}).headline.reconstruction
    expected = reconstruction_scores(garments() / 255.0, (255 - garments()) / 255.0)
    assert head.mse == run.headline.reconstruction.mse and head.ssim == run.headline.reconstruction.ssim
    np.testing.assert_allclose(head.affine_aligned_mse, expected.affine_aligned_mse)
    assert max(head.affine_aligned_mse) < 1e-6 and min(head.affine_aligned_ssim) > 0.99  # a negative is a full leak
    np.testing.assert_allclose(head.shift_aligned_mse, expected.shift_aligned_mse)
    assert head.shift == expected.shift


def test_a_record_with_its_aligned_scores_or_without_pictures_is_left_as_it_is():
    run = old_record(255 - garments())
    done = with_aligned_scores(run, {})
    assert with_aligned_scores(done, {}) is done
    bare = dataclasses.replace(run, arrays={})
    assert with_aligned_scores(bare, {}) is bare


def with_guess(run, mean: ImageScores):
    return dataclasses.replace(run, evaluations=(dataclasses.replace(run.headline, baselines=Baselines(*(mean,) * 3)),))


def test_the_mean_images_aligned_scores_come_from_a_record_of_the_same_guess_on_the_same_targets():
    mean = ImageScores.of(baseline_scores(garments() / 255.0, mean_image=np.full((28, 28, 1), 0.3))["dataset_mean"])
    raw_mean = ImageScores(mean.mse, mean.psnr, mean.ssim)
    later, run = with_guess(old_record(255 - garments()), mean), with_guess(old_record(255 - garments()), raw_mean)
    guesses = scored_guesses([later])
    filled = with_aligned_scores(run, guesses).headline
    assert filled.baselines.dataset_mean == mean and filled.beats_mean_image_aligned
    assert not filled.beats_mean_image and filled.verdict_text() == "no (yes once aligned)"
    elsewhere = dataclasses.replace(run.headline, targets=dataclasses.replace(run.headline.targets, indices=(7, 8, 9)))
    other = with_aligned_scores(dataclasses.replace(run, evaluations=(elsewhere,)), guesses).headline
    assert other.baselines.dataset_mean == raw_mean and other.beats_mean_image_aligned is None
    assert other.verdict_text() == "no"


def test_the_report_shows_aligned_scores_and_says_where_they_were_computed(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.save(old_record(255 - garments()))
    report = write_report(store).read_text()
    assert "affine-aligned: MSE / SSIM | shift-aligned: MSE / SSIM" in report
    assert "| 0.000 / 1.000 |" in report  # the negative, aligned
    assert "For 1 run recorded before" in report and "stored 8-bit pictures" in report
