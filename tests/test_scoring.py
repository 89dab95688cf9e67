import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.scoring import (
    PSNR_CAP_DB,
    CloneQuality,
    ReconstructionScores,
    affine_aligned_mse_per_image,
    affine_aligned_ssim_per_image,
    baseline_scores,
    clone_quality,
    minmax_normalize,
    mse_per_image,
    psnr_per_image,
    reconstruction_scores,
    shift_aligned,
    ssim_per_image,
)


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_mse_of_known_arrays():
    true = np.zeros((2, 2, 2, 1), np.float32)
    recon = np.zeros((2, 2, 2, 1), np.float32)
    recon[0] = 0.5  # every pixel off by 0.5: MSE 0.25
    recon[1, 0, 0, 0] = 1.0  # two of four pixels off by 1: MSE 0.5
    recon[1, 1, 1, 0] = 1.0
    np.testing.assert_allclose(mse_per_image(true, recon), [0.25, 0.5])


def test_identical_images_score_perfectly_for_both_datasets_shapes():
    for shape in [(3, 28, 28, 1), (3, 32, 32, 3)]:
        images = _images(shape)
        scores = reconstruction_scores(images, tf.constant(images))
        np.testing.assert_array_equal(scores.mse, 0.0)
        np.testing.assert_allclose(scores.ssim, 1.0, atol=1e-5)
        np.testing.assert_array_equal(scores.psnr, PSNR_CAP_DB)
        assert scores.mse.shape == scores.ssim.shape == scores.psnr.shape == (3,)


def test_ssim_of_structured_image_against_noise_is_low():
    ramp = np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (32, 1))
    structured = np.stack([ramp, ramp.T, 1 - ramp], axis=-1)[None]
    noise = _images((1, 32, 32, 3), seed=1)
    slightly_noisy = np.clip(structured + 0.05 * noise, 0.0, 1.0)
    assert ssim_per_image(structured, noise)[0] < 0.1
    assert ssim_per_image(structured, slightly_noisy)[0] > 0.9


def test_ssim_shrinks_its_window_for_small_images():
    images = _images((2, 8, 8, 1))
    np.testing.assert_allclose(ssim_per_image(images, images), 1.0, atol=1e-5)


def test_psnr_matches_hand_computed_value():
    true = np.zeros((1, 4, 4, 1), np.float32)
    recon = np.full((1, 4, 4, 1), 0.1, np.float32)  # MSE 0.01
    np.testing.assert_allclose(psnr_per_image(true, recon), [20.0], rtol=1e-5)
    np.testing.assert_allclose(psnr_per_image(true, recon, max_val=2.0), [10 * np.log10(4 / 0.01)], rtol=1e-5)


def test_minmax_maps_range_to_unit_interval_per_image_and_constant_to_zero():
    image = np.linspace(0.2, 0.6, 12, dtype=np.float32).reshape(1, 2, 2, 3)
    constant = np.full((1, 2, 2, 3), 0.7, np.float32)
    normalized = minmax_normalize(np.concatenate([image, constant]))
    np.testing.assert_allclose(normalized[0].min(), 0.0)
    np.testing.assert_allclose(normalized[0].max(), 1.0)
    np.testing.assert_allclose(normalized[0], (image[0] - 0.2) / 0.4, atol=1e-6)
    np.testing.assert_array_equal(normalized[1], 0.0)


def test_minmax_scoring_normalizes_reconstruction_only():
    true = _images((2, 28, 28, 1))
    true = minmax_normalize(true)  # each image spans exactly [0, 1]
    squashed = 0.2 + 0.4 * true
    assert reconstruction_scores(true, squashed).mean_mse > 0.01
    np.testing.assert_allclose(reconstruction_scores(true, squashed, minmax=True).mse, 0.0, atol=1e-12)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError) as error:
        reconstruction_scores(np.zeros((2, 28, 28, 1)), np.zeros((2, 32, 32, 3)))
    assert "(2, 28, 28, 1)" in str(error.value) and "(2, 32, 32, 3)" in str(error.value)


def test_non_batch_input_is_rejected():
    with pytest.raises(ValueError, match="images\\[None\\]"):
        mse_per_image(np.zeros((28, 28, 1)), np.zeros((28, 28, 1)))


def test_scores_means_and_json_dict():
    true = _images((3, 28, 28, 1))
    scores = reconstruction_scores(true, np.clip(true + 0.1, 0, 1))
    assert scores.mean_mse == pytest.approx(float(np.mean(scores.mse)))
    assert scores.mean_ssim == pytest.approx(float(np.mean(scores.ssim)))
    assert scores.mean_psnr == pytest.approx(float(np.mean(scores.psnr)))
    summary = json.loads(json.dumps(scores.to_dict(), allow_nan=False))
    assert summary["n"] == 3 and len(summary["ssim"]) == 3
    with pytest.raises(ValueError):
        scores.mse[0] = 1.0


def test_scores_reject_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="one length"):
        ReconstructionScores(mse=np.zeros(2), psnr=np.zeros(3), ssim=np.zeros(2))


def test_baselines():
    true = _images((4, 28, 28, 1))
    mean_image = true.mean(axis=0)
    baselines = baseline_scores(true, seed=3, mean_image=mean_image)
    assert list(baselines) == ["constant_0.5", "uniform_random", "dataset_mean"]
    expected_grey = np.mean((true - 0.5) ** 2, axis=(1, 2, 3))
    expected_mean = np.mean((true - mean_image) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(baselines["constant_0.5"].mse, expected_grey, rtol=1e-6)
    np.testing.assert_allclose(baselines["dataset_mean"].mse, expected_mean, rtol=1e-6)
    again = baseline_scores(true, seed=3)
    np.testing.assert_array_equal(again["uniform_random"].mse, baselines["uniform_random"].mse)
    assert "dataset_mean" not in again
    with pytest.raises(ValueError, match="mean_image"):
        baseline_scores(true, mean_image=np.zeros((32, 32, 3)))


def _dense(units, seed):
    return keras.layers.Dense(units, kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
                              bias_initializer=keras.initializers.RandomNormal(seed=seed + 1))


@pytest.fixture(scope="module")
def split_models():
    client = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), _dense(6, seed=1)])
    server = keras.Sequential([keras.Input((6,)), keras.layers.Dense(
        3, use_bias=False, kernel_initializer=keras.initializers.GlorotUniform(seed=2))])
    # A linear client with negated weights makes server(clone(x)) == -server(client(x)):
    # the predicted class always changes, so agreement is exactly 0.
    negated = keras.models.clone_model(client)
    negated.set_weights([-weight for weight in client.get_weights()])
    x = _images((10, 4, 4, 1), seed=4)
    predicted = np.argmax(server(client(x)).numpy(), axis=-1)
    return client, negated, server, x, predicted


def test_clone_that_is_the_client_agrees_fully(split_models):
    client, _, server, x, predicted = split_models
    labels = predicted.copy()
    labels[:3] = (labels[:3] + 1) % 3  # 7 of 10 correct
    quality = clone_quality(client, client, server, x, labels)
    assert quality == CloneQuality(original_accuracy=0.7, clone_accuracy=0.7, agreement=1.0, n=10)
    assert json.loads(json.dumps(quality.to_dict())) == quality.to_dict()


def test_clone_with_different_weights_agrees_less(split_models):
    client, negated, server, x, predicted = split_models
    quality = clone_quality(client, negated, server, x, predicted[:, None])  # (N, 1) labels as keras datasets give
    assert quality.original_accuracy == 1.0
    assert quality.clone_accuracy == 0.0
    assert quality.agreement == 0.0


def test_batching_does_not_change_the_result(split_models):
    client, negated, server, x, predicted = split_models
    labels = np.arange(10) % 3
    whole = clone_quality(client, negated, server, x, labels, batch_size=len(x))
    assert clone_quality(client, negated, server, x, labels, batch_size=3) == whole
    assert clone_quality(client, negated, server, tf.constant(x), labels, batch_size=1) == whole


def test_clone_quality_accepts_plain_callables_and_rejects_bad_labels():
    x = np.eye(4, dtype=np.float32)
    labels = np.arange(4)
    quality = clone_quality(lambda batch: batch, lambda batch: batch[:, ::-1], lambda batch: batch, x, labels)
    assert (quality.original_accuracy, quality.clone_accuracy, quality.agreement) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="argmax"):
        clone_quality(lambda batch: batch, lambda batch: batch, lambda batch: batch, x, np.eye(4))


def test_affine_aligned_scores_ignore_inversion_and_affine_changes():
    true = _images((3, 28, 28, 1), seed=2)
    for recon in (1.0 - true, 0.3 * true + 0.2, -2.0 * true + 5.0):
        np.testing.assert_allclose(affine_aligned_mse_per_image(true, recon), 0.0, atol=1e-10)
        np.testing.assert_allclose(affine_aligned_ssim_per_image(true, recon), 1.0, atol=1e-4)
    assert mse_per_image(true, 1.0 - true).mean() > 0.1  # the raw score is fooled


def test_affine_aligned_mse_of_a_constant_is_the_images_variance_and_noise_stays_poor():
    true = _images((2, 16, 16, 1), seed=3)
    np.testing.assert_allclose(affine_aligned_mse_per_image(true, np.full_like(true, 0.7)), true.var(axis=(1, 2, 3)))
    noise = _images((2, 16, 16, 1), seed=4)
    assert np.all(affine_aligned_ssim_per_image(true, noise) < 0.2)


def test_reconstruction_scores_record_the_aligned_scores():
    true = _images((2, 28, 28, 1), seed=5)
    record = reconstruction_scores(true, 1.0 - true).to_dict()
    assert record["mean_ssim"] < 0 and record["mean_affine_aligned_ssim"] == pytest.approx(1.0, abs=1e-4)
    assert record["mean_affine_aligned_mse"] == pytest.approx(0.0, abs=1e-10) and len(record["affine_aligned_mse"]) == 2
    json.dumps(record)


def _garments(n=3, seed=6):
    """Bright patches on black, away from the edges, like Fashion-MNIST's."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28, 1), np.float32)
    for image in images:
        top, left = rng.integers(6, 10, 2)
        image[top : top + 12, left : left + 10] = rng.uniform(0.4, 1.0, (12, 10, 1))
    return images


def test_shift_aligned_scores_find_the_one_translation_a_clone_can_absorb():
    true = _garments()
    moved = np.roll(true, (1, -2), axis=(1, 2))  # every picture one row down, two columns left
    scores = reconstruction_scores(true, moved)
    assert scores.shift == (-1, 2)
    assert scores.mean_mse > 0.05  # the raw score is fooled
    np.testing.assert_allclose(scores.shift_aligned_mse, 0.0, atol=1e-12)
    np.testing.assert_allclose(scores.shift_aligned_ssim, 1.0, atol=1e-4)
    record = scores.to_dict()
    assert record["shift"] == [-1, 2] and record["mean_shift_aligned_mse"] == pytest.approx(0.0, abs=1e-12)
    json.dumps(record)


def test_pictures_in_place_stay_and_one_translation_serves_every_target():
    true = _garments()
    in_place = reconstruction_scores(true, np.clip(true + 0.05, 0, 1))
    assert in_place.shift == (0, 0) and np.array_equal(in_place.shift_aligned_mse, in_place.mse)
    assert shift_aligned(true, np.full_like(true, 0.5))[1] == (0, 0)  # ties keep the smallest translation
    apart = true.copy()
    apart[0], apart[1] = np.roll(true[0], 2, axis=1), np.roll(true[1], -2, axis=1)  # moved opposite ways
    assert reconstruction_scores(true, apart).mean_shift_aligned_mse > 0.01  # no shared translation undoes both


def test_shifts_past_the_radius_are_not_searched_and_a_bad_radius_is_refused():
    true = _garments()
    moved, shift = shift_aligned(true, np.roll(true, 3, axis=2), radius=2)
    assert max(map(abs, shift)) <= 2 and np.mean((moved - true) ** 2) > 0.005
    assert shift_aligned(true, np.roll(true, 3, axis=2), radius=3)[1] == (0, -3)
    for radius in (-1, 1.5, True):
        with pytest.raises(ValueError, match="radius"):
            shift_aligned(true, true, radius=radius)
