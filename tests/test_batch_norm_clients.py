"""UnSplit against clients with BatchNormalization: the mode they were observed in, the prior's flip, the clone's polish."""

import keras
import numpy as np
import pytest

from unsplit_tf.attacks.inversion import InversionConfig, calibrate_batch_norm, invert, preset
from unsplit_tf.attacks.inversion.unsplit import _apply_prior, _fold_input_affine
from unsplit_tf.split import clone_architecture, split_model
from tests.models_for_tests import batch_norm_residual_model
from tests.test_inversion import smooth_images

ATTACK = preset("tuned").replace(restarts=1, main_iters=10, input_iters=20, model_iters=20, polish_iters=200)


@pytest.fixture(scope="module")
def trained_client() -> keras.Model:
    """A small BatchNorm client whose moving statistics are its training data's, as after model.fit."""
    keras.utils.set_random_seed(0)
    client = split_model(batch_norm_residual_model(width=4), layer="block1_out").client
    calibrate_batch_norm(client, smooth_images(64, seed=7))
    return client


def inference_error(model: keras.Model, client: keras.Model, images: np.ndarray) -> float:
    return float(np.mean(np.square(model(images, training=False) - client(images, training=False))))


def test_a_clone_attacked_in_the_observed_mode_behaves_like_the_client_in_inference(trained_client):
    targets, unseen = smooth_images(8, seed=1), smooth_images(32, seed=2)
    observed = trained_client(targets, training=False)  # a deployed client: BN used its moving statistics
    clones = {mode: invert(trained_client, observed, ATTACK.replace(observed_in=mode)).clone for mode in ("training", "inference")}
    errors = {mode: inference_error(clone, trained_client, unseen) for mode, clone in clones.items()}
    fresh = inference_error(clone_architecture(trained_client, seed=ATTACK.seed), trained_client, unseen)  # no information
    truth = trained_client(unseen, training=False)
    scale = float(np.mean(np.square(clones["inference"](unseen, training=False))) / np.mean(np.square(truth)))
    # measured with client seeds 0-3 (this fixture: 0): error of the inference-mode clone 0.18 / 1.24 / 0.43 / 0.27,
    # of the training-mode clone (batch statistics, calibrated on the reconstructions) 4.0 / 19.8 / 6.6 / 7.1,
    # of the fresh clone 0.74 / 1.09 / 0.70 / 0.76; output scale of the inference-mode clone 0.66 / 0.52 / 0.69 / 0.64
    assert errors["inference"] < 0.1 * errors["training"]
    assert errors["inference"] < 0.5 * fresh
    assert 0.4 < scale < 1.6


def test_polishing_fits_the_clone_to_the_final_reconstructions(trained_client):
    observed = trained_client(smooth_images(8, seed=1), training=False)
    config = ATTACK.replace(observed_in="inference", main_iters=3)
    plain, polished = (invert(trained_client, observed, config.replace(polish_iters=steps)) for steps in (0, 200))
    np.testing.assert_array_equal(plain.reconstructions, polished.reconstructions)  # x_hat is held fixed
    fit = [float(np.mean(np.square(r.clone(r.reconstructions, training=False) - observed))) for r in (plain, polished)]
    assert fit[1] < 0.7 * fit[0]  # measured with client seeds 0-2: 0.72 -> 0.37, 0.35 -> 0.11, 0.58 -> 0.27


@pytest.mark.parametrize("padding, bias", [("valid", True), ("valid", False)])
def test_an_input_affine_change_folds_into_the_first_layer_and_its_batch_norm(padding, bias):
    inputs = keras.Input((10, 10, 1))
    x = keras.layers.Conv2D(3, 3, padding=padding, use_bias=bias)(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.ReLU()(x))
    calibrate_batch_norm(model, np.random.default_rng(0).random((16, 10, 10, 1), np.float32))
    images = np.random.default_rng(1).random((4, 10, 10, 1), np.float32)
    before = model(images, training=False).numpy()
    assert _fold_input_affine(model, -2.5, 0.7)
    np.testing.assert_allclose(model(-2.5 * images + 0.7, training=False), before, atol=1e-4)


def test_a_shift_without_a_bias_or_batch_norm_to_take_it_is_left_alone():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.ReLU()(keras.layers.Dense(2, use_bias=False)(inputs)))
    kernel = model.layers[1].kernel.numpy()
    assert not _fold_input_affine(model, -1.0, 1.0)
    np.testing.assert_array_equal(model.layers[1].kernel.numpy(), kernel)
    assert _fold_input_affine(model, -1.0, 0.0)  # a pure sign change needs no offset


def test_the_prior_flips_an_inference_mode_clone_exactly_enough(trained_client):
    clone = clone_architecture(trained_client, seed=0)
    calibrate_batch_norm(clone, smooth_images(16, seed=3))
    images = smooth_images(4, seed=4)
    before = clone(1.0 - images, training=False).numpy()
    flipped = _apply_prior(clone, 1.0 - images, InversionConfig(prior="dark_background", box=(0.0, 1.0)))
    np.testing.assert_allclose(flipped, images, atol=1e-6)
    inner = (slice(None), slice(2, -2), slice(2, -2))  # 'same' padding: off at the zero-padded border only
    after = clone(flipped, training=False).numpy()
    np.testing.assert_allclose(after[inner], before[inner], atol=1e-3)


@pytest.mark.parametrize("changes, message", [
    ({"observed_in": "deployed"}, "observed_in must be one of training, inference"),
    ({"polish_iters": -1}, "polish_iters"),
    ({"polish_lr": 0.0}, "polish_lr"),
])
def test_bad_batch_norm_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        InversionConfig(**changes)


def test_the_run_layer_attacks_a_given_model_as_observed_in_inference_mode(rng):
    from unsplit_tf.runs import run_inversion
    from tests.test_runs import tiny_data

    data = tiny_data(rng)
    split = split_model(batch_norm_residual_model(data.x_train.shape[1:], classes=3, width=4), layer="block1_out")
    config = ATTACK.replace(main_iters=2, input_iters=2, model_iters=2, polish_iters=2)
    assert config.observed_in == "training"
    run = run_inversion(data, config, victim=split, targets=3).run  # observes the targets with training=False
    assert run.attack.config["observed_in"] == "inference"
