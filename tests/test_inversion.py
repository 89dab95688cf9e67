import keras
import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.attacks.inversion import (TV_L1_EPSILON, TV_TERMS, InversionConfig, absolute_total_variation, choose_restart,
                                         disagreement, invert, preset, refit_seed, restart_seed, total_variation, uses_xla)
from unsplit_tf.attacks.inversion import unsplit
from unsplit_tf.scoring import baseline_scores, reconstruction_scores
from unsplit_tf.models import mnist_net
from unsplit_tf.split import clone_architecture, split_model
from tests.models_for_tests import batch_norm_residual_model

TINY = InversionConfig(main_iters=4, input_iters=10, model_iters=10)


def smooth_images(n: int, seed: int = 1, centres: tuple[float, float] = (6, 22), widths: tuple[float, float] = (3, 6),
                  gain: float = 1.0) -> np.ndarray:
    """Blurry blobs on black: image-like inputs whose structure an inversion can find."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:28, 0:28]
    images = np.zeros((n, 28, 28, 1), np.float32)
    for i in range(n):
        for _ in range(2):
            r, c, width = rng.uniform(*centres), rng.uniform(*centres), rng.uniform(*widths)
            images[i, ..., 0] += gain * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * width**2))
    return np.clip(images, 0, 1)


@pytest.fixture(scope="module")
def depth1_client():
    keras.utils.set_random_seed(0)  # a module fixture is built before the per-test seeding: seed it itself
    return split_model(mnist_net(), depth=1).client


def test_untrained_depth1_inversion_beats_random_guessing_by_far(depth1_client):
    targets = smooth_images(4)
    config = preset("tuned").replace(main_iters=30, input_iters=50, model_iters=20)
    result = invert(depth1_client, depth1_client(targets), config)
    attack = reconstruction_scores(targets, result.reconstructions)
    guesses = baseline_scores(targets, seed=5)
    # measured over client seeds 0-2: MSE 0.017-0.049 (grey 0.138, noise 0.222), SSIM 0.60-0.76 (grey 0.06)
    assert attack.mean_mse < 0.4 * guesses["constant_0.5"].mean_mse
    assert attack.mean_mse < 0.25 * guesses["uniform_random"].mean_mse
    assert attack.mean_ssim > guesses["constant_0.5"].mean_ssim + 0.4


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_both_modes_lower_the_matching_loss(depth1_client, mode):
    targets = smooth_images(3)
    reports = []
    observed = depth1_client(targets)
    config = preset("tuned").replace(restarts=1, main_iters=10, input_iters=30, model_iters=10, mode=mode)
    start_clone = clone_architecture(depth1_client, seed=config.seed)  # where the attack starts: fresh clone, grey x_hat
    before = np.mean(np.square(start_clone(np.full_like(targets, config.init_value)) - observed), axis=(1, 2, 3))
    result = invert(depth1_client, observed, config, on_round=reports.append)
    assert result.finished.all() and not result.interrupted
    assert list(result.rounds_run) == [10, 10, 10]
    final = np.array([history[-1] for history in result.matching_loss])
    assert np.all(final < 0.5 * before)
    assert len(reports) == (10 if mode == "batched" else 30)
    groups = {report.targets for report in reports}
    assert groups == ({(0, 1, 2)} if mode == "batched" else {(0,), (1,), (2,)})


def test_the_attack_never_reads_the_clients_weights(depth1_client, rng):
    """Two clients with the same architecture but different weights give the same attack on the same z."""
    keras.utils.set_random_seed(123)
    other = split_model(mnist_net(), depth=1).client
    assert not np.allclose(other.get_weights()[0], depth1_client.get_weights()[0])
    observed = depth1_client(smooth_images(2))
    first, second = invert(depth1_client, observed, TINY), invert(other, observed, TINY)
    np.testing.assert_allclose(first.reconstructions, second.reconstructions, atol=1e-6)


def test_same_seed_reproduces_and_clone_matches_the_architecture(depth1_client):
    observed = depth1_client(smooth_images(2))
    first, again = invert(depth1_client, observed, TINY), invert(depth1_client, observed, TINY)
    np.testing.assert_allclose(first.reconstructions, again.reconstructions, atol=1e-6)
    clone = first.clone
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in depth1_client.layers]
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in depth1_client.get_weights()]
    assert not any(np.allclose(a, b) for a, b in zip(clone.get_weights()[:1], depth1_client.get_weights()[:1]))


def test_box_constraint_keeps_pixels_in_range(depth1_client):
    observed = depth1_client(smooth_images(2))
    boxed = invert(depth1_client, observed, TINY.replace(box=(0.4, 0.6), input_lr=0.05))
    assert boxed.reconstructions.min() >= 0.4 and boxed.reconstructions.max() <= 0.6
    free = invert(depth1_client, observed, TINY.replace(input_lr=0.05))
    assert free.reconstructions.min() < 0.4 or free.reconstructions.max() > 0.6


def test_early_stop_when_the_loss_stops_improving(depth1_client):
    config = TINY.replace(main_iters=50, patience=2, min_delta=0.99)  # nothing improves by 99 %
    result = invert(depth1_client, depth1_client(smooth_images(2)), config)
    assert result.stopped_early.all() and result.finished.all()
    assert list(result.rounds_run) == [3, 3]  # round 1 sets the best, then 2 rounds without progress


def test_interrupt_keeps_what_was_finished(depth1_client):
    def stop_on_second_target(report):
        if report.targets == (1,) and report.round == 2:
            raise KeyboardInterrupt

    targets = smooth_images(3)
    result = invert(depth1_client, depth1_client(targets), TINY.replace(mode="sequential"), on_round=stop_on_second_target)
    assert result.interrupted
    assert list(result.finished) == [True, False, False]
    assert list(result.rounds_run) == [4, 2, 0]
    assert not np.allclose(result.reconstructions[0], 0.5)
    np.testing.assert_array_equal(result.reconstructions[2], np.full((28, 28, 1), 0.5, np.float32))


@pytest.mark.parametrize("keep", ["matching", "matching+agreement"])
def test_a_restart_interrupted_midway_never_replaces_a_finished_one(depth1_client, keep):
    rounds = []

    def stop_in_the_second_restart(report):
        rounds.append(report.round)
        if len(rounds) == TINY.main_iters + 1:
            raise KeyboardInterrupt

    observed = depth1_client(smooth_images(3))
    result = invert(depth1_client, observed, TINY.replace(restarts=3, keep=keep), on_round=stop_in_the_second_restart)
    first = invert(depth1_client, observed, TINY)
    assert result.interrupted and len(result.restart_losses) == 2 and result.kept_restart == 0
    assert result.finished.all()
    np.testing.assert_allclose(result.reconstructions, first.reconstructions, atol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
def test_xla_and_graph_mode_agree(depth1_client, jit):
    observed = depth1_client(smooth_images(2))
    reference = invert(depth1_client, observed, TINY.replace(jit_compile=not jit))
    result = invert(depth1_client, observed, TINY.replace(jit_compile=jit))
    np.testing.assert_allclose(result.reconstructions, reference.reconstructions, atol=1e-3)


def test_xla_policy():
    assert uses_xla(TINY.replace(jit_compile=False), 1) is False
    assert uses_xla(TINY.replace(jit_compile=True), 500) is True
    if not tf.config.list_logical_devices("GPU"):
        assert uses_xla(TINY, 1) and not uses_xla(TINY, 100)


def test_total_variation_is_the_authors_squared_mean_per_direction():
    image = np.zeros((1, 3, 4, 1), np.float32)
    image[0, 1, 1, 0] = 1.0  # one bright pixel: 2 of 2x4 vertical and 2 of 3x3 horizontal differences are ±1
    assert float(total_variation(image)[0]) == pytest.approx(2 / 8 + 2 / 9)
    batch = np.concatenate([image, np.zeros_like(image)])
    np.testing.assert_allclose(total_variation(batch).numpy(), [2 / 8 + 2 / 9, 0.0], rtol=1e-6)


@pytest.mark.parametrize("norm", ["squared", "l1"])
def test_tv_gradient_is_the_derivative_of_its_definition(rng, norm):
    """Both TV terms write their gradient out; it must be TensorFlow's gradient of the plain definition."""
    images = tf.constant(rng.random((3, 5, 6, 2)), tf.float32)
    weights = tf.constant([1.0, -2.0, 0.5])
    penalty = {"squared": tf.square, "l1": lambda d: tf.sqrt(tf.square(d) + TV_L1_EPSILON**2) - TV_L1_EPSILON}[norm]

    def by_slices(x):
        down = tf.reduce_mean(penalty(x[:, 1:] - x[:, :-1]), axis=[1, 2, 3])
        return down + tf.reduce_mean(penalty(x[:, :, 1:] - x[:, :, :-1]), axis=[1, 2, 3])

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        written, reference = (tf.reduce_sum(weights * tv(images)) for tv in (TV_TERMS[norm], by_slices))
    np.testing.assert_allclose(written.numpy(), reference.numpy(), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(written, images).numpy(), tape.gradient(reference, images).numpy(), atol=1e-6)


def test_absolute_total_variation_charges_a_ripple_more_than_an_edge_of_the_same_squared_tv():
    edge = np.zeros((1, 8, 8, 1), np.float32)
    edge[..., 4:, :] = 1.0  # one step of 1 in each row: 8 of 8x7 horizontal differences
    ripple = np.zeros_like(edge)
    ripple[..., 1::2, :] = np.sqrt(1 / 7)  # every horizontal difference ±sqrt(1/7): the same squared TV
    np.testing.assert_allclose(total_variation(ripple).numpy(), total_variation(edge).numpy(), rtol=1e-5)
    flat_edge, flat_ripple = (float(absolute_total_variation(image)[0]) for image in (edge, ripple))
    assert flat_edge == pytest.approx((np.sqrt(1 + 1e-4) - 1e-2) / 7, rel=1e-5)
    assert flat_ripple > 2.5 * flat_edge
    assert float(absolute_total_variation(np.full_like(edge, 0.3))[0]) == pytest.approx(0.0, abs=1e-7)


def test_the_rounds_objective_takes_the_configured_tv_norm(depth1_client, rng):
    """The input steps minimise matching + weight x the TV of the chosen norm (l2 off here)."""
    images = tf.constant(rng.random((2, 28, 28, 1)), tf.float32)
    observed = depth1_client(smooth_images(2))
    for norm, variation in (("squared", total_variation), ("l1", absolute_total_variation)):
        config = TINY.replace(lambda_l2=0.0, tv_norm=norm)
        engine = unsplit._RoundEngine(clone_architecture(depth1_client, seed=0), (2, 28, 28, 1), config,
                                      tf.distribute.get_strategy(), 0.7)
        objective, matching = engine._objective(images, observed)
        np.testing.assert_allclose((objective - matching).numpy(), 0.7 * variation(images).numpy(), rtol=1e-5)


def test_paper_defaults():
    paper = preset("paper")
    assert (paper.main_iters, paper.input_iters, paper.model_iters) == (1000, 100, 100)
    assert (paper.lambda_tv, paper.lambda_l2, paper.input_lr, paper.model_lr, paper.init_value) == (0.1, 1.0, 1e-3, 1e-3, 0.5)
    assert paper.box is None and paper.patience is None and paper.mode == "sequential"
    assert paper.steps_per_target == 200_000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"main_iters": 0}, "main_iters must be at least 1"),
        ({"lambda_tv": -1}, "lambda_tv must be 0 or more"),
        ({"input_lr": 0}, "input_lr must be positive"),
        ({"box": (1.0, 0.0)}, "low < high"),
        ({"mode": "parallel"}, "mode must be one of batched, sequential, stream"),
        ({"patience": 0}, "patience"),
        ({"input_lr": float("nan")}, "input_lr must be a finite number"),
        ({"model_lr": float("inf")}, "model_lr must be a finite number"),
        ({"lambda_tv": float("nan")}, "lambda_tv must be a finite number"),
        ({"lambda_l2": float("-inf")}, "lambda_l2 must be a finite number"),
        ({"min_delta": float("nan")}, "min_delta must be a finite number"),
        ({"init_value": float("nan")}, "init_value must be a finite number"),
        ({"box": (0.0, float("nan"))}, r"box\[1\] must be a finite number"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"restarts": 0}, "restarts must be at least 1"),
        ({"main_iters": 2.5}, "main_iters must be a whole number"),
        ({"prior": "bright"}, "prior must be one of none, dark_background"),
        ({"screen": -0.1}, "screen is a share of the rounds, at least 0 and below 1"),
        ({"screen": 1.0, "mode": "stream", "restarts": 3}, "below 1, got 1.0"),
        ({"screen": float("nan")}, "screen must be a finite number"),
        ({"screen_defer": 1.5}, "screen_defer is a disagreement, between 0 and 1"),
        ({"refine_cycles": 1, "mode": "stream"}, r"needs refit_iters > 0 \(e.g. 1000, the stream preset's\), or refine_cycles=0"),
        ({"refine_passes": 0}, "refine_passes must be at least 1"),
        ({"final_refit_iters": -1, "refit_iters": 10}, "final_refit_iters must be at least 0"),
        ({"final_refit_lr": 0.0}, "final_refit_lr must be positive"),
        ({"tv_scale": "relative"}, "tv_scale must be one of absolute, observations, got 'relative'"),
        ({"tv_norm": "l2"}, "tv_norm must be one of squared, l1, got 'l2'"),
    ],
)
def test_bad_config_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        InversionConfig(**changes)


def test_a_tv_weight_per_unit_of_the_observations_mean_square_is_that_weight_made_absolute(depth1_client):
    """Through the rounds and the refinement cycles: the scaled weight is the absolute one it stands for, not lambda_tv."""
    observed = depth1_client(smooth_images(4))
    square = float(np.mean(np.square(observed)))
    stream = preset("stream").replace(main_iters=3, input_iters=10, model_iters=10, restarts=1, batch_size=2, refit_iters=5,
                                      refine_cycles=1, refine_passes=1)
    scaled = invert(depth1_client, observed, stream.replace(lambda_tv=2.0, tv_scale="observations"))
    absolute = invert(depth1_client, observed, stream.replace(lambda_tv=2.0 * square, tv_scale="absolute"))
    unscaled = invert(depth1_client, observed, stream.replace(lambda_tv=2.0, tv_scale="absolute"))
    assert scaled.tv_weight == pytest.approx(2.0 * square) and absolute.tv_weight == pytest.approx(2.0 * square)
    assert 0 < square < 0.5  # so the unscaled weight is a different one
    np.testing.assert_allclose(scaled.reconstructions, absolute.reconstructions, atol=1e-5)
    assert np.abs(unscaled.reconstructions - scaled.reconstructions).max() > 1e-2


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="paper, tuned"):
        preset("best")


def test_observed_activations_must_match_the_cut(depth1_client):
    with pytest.raises(ValueError, match=r"observed activations have shape \(2, 12, 12, 8\).*\(N, 24, 24, 8\)"):
        invert(depth1_client, np.zeros((2, 12, 12, 8), np.float32), TINY)
    with pytest.raises(ValueError, match="0 rows"):
        invert(depth1_client, np.zeros((0, 24, 24, 8), np.float32), TINY)


def test_a_config_or_client_of_the_wrong_kind_is_named(depth1_client):
    observed = np.zeros((2, 24, 24, 8), np.float32)
    with pytest.raises(TypeError, match="config must be an InversionConfig .* got dict"):
        invert(depth1_client, observed, {"main_iters": 1})
    with pytest.raises(TypeError, match="client_architecture must be a keras.Model .* got str"):
        invert("client", observed, TINY)


def test_nan_or_infinite_observations_are_refused(depth1_client):
    observed = np.array(depth1_client(smooth_images(3)))
    observed[1, 0, 0, 0] = np.nan
    observed[2, 3, 3, 3] = np.inf
    with pytest.raises(ValueError, match="2 of 3 observed rows hold NaN or infinity"):
        invert(depth1_client, observed, TINY)


STREAM = preset("tuned").replace(restarts=1, main_iters=8, input_iters=20, model_iters=10, mode="stream", batch_size=8,
                                 polish_iters=50)


def test_stream_mode_attacks_every_observation_with_one_clone_and_beats_guessing(depth1_client):
    targets = smooth_images(20)  # 20 rows in minibatches of 8: the last one is filled up from the epoch's start
    result = invert(depth1_client, depth1_client(targets), STREAM)
    assert result.reconstructions.shape == targets.shape and result.finished.all()
    assert list(result.rounds_run) == [8] * 20
    attack, guesses = reconstruction_scores(targets, result.reconstructions), baseline_scores(targets, seed=5)
    # measured: raw MSE 0.03-0.10 (grey 0.13, noise 0.22): a first conv absorbs affine changes of x_hat, so
    # some runs land contrast-shifted; aligned MSE 0.005-0.02 against grey's 0.05, aligned SSIM 0.4-0.8 (grey 0.05)
    assert attack.mean_mse < 0.5 * guesses["uniform_random"].mean_mse
    assert attack.mean_affine_aligned_mse < 0.5 * guesses["constant_0.5"].mean_affine_aligned_mse
    assert attack.mean_affine_aligned_ssim > guesses["constant_0.5"].mean_affine_aligned_ssim + 0.3
    histories = np.array(result.matching_loss)
    assert np.all(histories[:, -1] < histories[:, 0])


def test_stream_mode_traces_its_epoch_once(depth1_client, monkeypatch):
    from unsplit_tf.attacks.inversion import unsplit

    traces, epoch = [], unsplit._StreamEngine._epoch

    def counted(self, *args):  # runs as Python only while tracing
        traces.append(1)
        return epoch(self, *args)

    monkeypatch.setattr(unsplit._StreamEngine, "_epoch", counted)
    result = invert(depth1_client, depth1_client(smooth_images(16)), STREAM.replace(main_iters=3))
    assert list(result.rounds_run) == [3] * 16 and len(traces) == 1


def test_restarts_keep_the_lowest_matching_loss(depth1_client):
    observed = depth1_client(smooth_images(4))
    config = TINY.replace(restarts=3)
    result = invert(depth1_client, observed, config)
    assert len(result.restart_losses) == 3
    assert result.final_matching_loss == pytest.approx(result.restart_losses.min())
    singles = [invert(depth1_client, observed, TINY.replace(seed=restart_seed(0, r))) for r in range(3)]
    np.testing.assert_allclose(result.restart_losses, [s.final_matching_loss for s in singles], rtol=1e-5)
    best = singles[int(np.argmin(result.restart_losses))]
    np.testing.assert_allclose(result.reconstructions, best.reconstructions, atol=1e-6)
    assert result.image_steps == sum(single.image_steps for single in singles) == 3 * 4 * TINY.steps_per_target
    assert result.seconds > max(single.seconds for single in singles) / 2  # every restart's time, not the kept one's
    assert restart_seed(0, 0) == 0 and restart_seed(0, 1) not in range(0, 100)


@pytest.mark.parametrize("keep", ["agreement", "matching+agreement"])
def test_restarts_can_be_kept_by_their_agreement_with_the_others(depth1_client, keep):
    observed = depth1_client(smooth_images(4))
    result = invert(depth1_client, observed, TINY.replace(restarts=3, keep=keep))
    singles = [invert(depth1_client, observed, TINY.replace(seed=restart_seed(0, r))) for r in range(3)]
    np.testing.assert_allclose(result.restart_disagreement, disagreement([s.reconstructions for s in singles]), rtol=1e-4)
    np.testing.assert_allclose(result.restart_losses, [s.final_matching_loss for s in singles], rtol=1e-5)
    assert result.kept_restart == choose_restart(keep, result.restart_losses, result.restart_disagreement)
    np.testing.assert_allclose(result.reconstructions, singles[result.kept_restart].reconstructions, atol=1e-6)


def test_screened_restarts_compare_part_way_and_the_kept_one_runs_on_as_if_alone(depth1_client):
    observed = depth1_client(smooth_images(16))
    config = STREAM.replace(restarts=3, keep="matching+agreement", screen=0.3)
    assert (config.screen_rounds, config.rounds_in_all) == (3, 3 * 3 + 5)  # 0.3 of 8 rounds, rounded up
    assert config.replace(restarts=1).rounds_in_all == 8  # one restart: nothing to compare
    assert config.replace(mode="batched").rounds_in_all == 3 * 8  # stream mode only
    result = invert(depth1_client, observed, config)
    singles = [invert(depth1_client, observed, STREAM.replace(seed=restart_seed(0, r))) for r in range(3)]
    at_round_3 = [np.mean([history[2] for history in single.matching_loss]) for single in singles]
    np.testing.assert_allclose(result.restart_losses, at_round_3, rtol=1e-5)  # compared after 3 of 8 rounds
    assert result.kept_restart == choose_restart(config.keep, result.restart_losses, result.restart_disagreement)
    np.testing.assert_allclose(result.reconstructions, singles[result.kept_restart].reconstructions, atol=1e-6)
    assert list(result.rounds_run) == [8] * 16 and result.finished.all()
    assert result.image_steps == (3 * 3 + 5) * 16 * (20 + 10)  # three restarts to round 3, one on to round 8


def test_a_screen_where_no_two_restarts_agree_defers_the_comparison_to_the_end(depth1_client):
    observed = depth1_client(smooth_images(16))
    config = STREAM.replace(restarts=3, keep="matching+agreement", screen=0.3)
    at_end = invert(depth1_client, observed, config.replace(screen=0))
    reports = []
    deferred = invert(depth1_client, observed, config.replace(screen_defer=0.0),  # every disagreement is above 0
                      on_round=reports.append)
    assert (deferred.compared_after, at_end.compared_after) == (8, 8)
    planned = [report.rounds_in_all for report in reports]  # what a progress bar's total follows
    assert planned[: 3 * 3] == [3 * 3 + 5] * 9 and planned[9:] == [3 * 8] * (3 * 5) == [len(reports)] * 15
    np.testing.assert_allclose(deferred.restart_losses, at_end.restart_losses, rtol=1e-5)  # all three ran all 8 rounds
    np.testing.assert_allclose(deferred.restart_disagreement, at_end.restart_disagreement, rtol=1e-4)
    assert deferred.kept_restart == at_end.kept_restart
    np.testing.assert_allclose(deferred.reconstructions, at_end.reconstructions, atol=1e-6)
    assert deferred.image_steps == 3 * 8 * 16 * (20 + 10)
    screened = invert(depth1_client, observed, config)  # screen_defer 1: never deferred
    assert screened.compared_after == 3 and screened.image_steps == (3 * 3 + 5) * 16 * (20 + 10)


def test_a_refit_clone_replaces_the_attacks_own_and_fits_the_final_pictures(depth1_client):
    observed = depth1_client(smooth_images(16))
    plain = invert(depth1_client, observed, STREAM)
    refit = invert(depth1_client, observed, STREAM.replace(refit_iters=200))
    np.testing.assert_array_equal(plain.reconstructions, refit.reconstructions)  # the pictures are the attack's

    def misfit(clone) -> float:
        return float(np.mean(np.square(clone(refit.reconstructions) - observed)))

    fresh = clone_architecture(depth1_client, seed=refit_seed(STREAM.seed))  # where the refit starts
    assert misfit(refit.clone) < 0.5 * misfit(fresh)
    assert not np.allclose(refit.clone.weights[0], plain.clone.weights[0]) and refit.clone is not plain.clone


def test_refine_cycles_refit_pictures_and_clone_into_a_closer_matching_pair(depth1_client, monkeypatch):
    targets = smooth_images(16)
    observed = depth1_client(targets)
    config = STREAM.replace(refit_iters=200)
    refit, refined = (invert(depth1_client, observed, config.replace(refine_cycles=n)) for n in (0, 1))

    def misfit(result) -> float:  # what the server can see: the matching loss of its pictures through its clone
        return float(np.mean(np.square(result.clone(result.reconstructions) - observed)))

    assert not np.allclose(refined.reconstructions, refit.reconstructions)
    assert misfit(refined) < 0.8 * misfit(refit)
    guesses = baseline_scores(targets, seed=5)
    assert reconstruction_scores(targets, refined.reconstructions).mean_mse < 0.5 * guesses["uniform_random"].mean_mse
    assert refined.seconds > 0 and not refined.interrupted  # (no timing race against the other run: a loaded CPU reorders them)

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("unsplit_tf.attacks.inversion.unsplit._PictureRefiner.__call__", stop)
    stopped = invert(depth1_client, observed, config.replace(refine_cycles=2))  # Ctrl-C in the first refinement
    assert stopped.interrupted
    np.testing.assert_array_equal(stopped.reconstructions, refit.reconstructions)  # the refit's pair, kept whole
    assert misfit(stopped) == pytest.approx(misfit(refit), rel=1e-5)


def test_a_longer_final_refit_steals_a_closer_clone_and_leaves_the_pictures(depth1_client):
    observed = depth1_client(smooth_images(16))
    config = STREAM.replace(refit_iters=20, refine_cycles=1)
    short, longer = (invert(depth1_client, observed, config.replace(final_refit_iters=n)) for n in (0, 300))
    np.testing.assert_array_equal(short.reconstructions, longer.reconstructions)  # the last refit refines no picture

    def misfit(result) -> float:  # what the server can see: its clone's matching loss on its pictures
        return float(np.mean(np.square(result.clone(result.reconstructions) - observed)))

    assert misfit(longer) < 0.5 * misfit(short)


def test_one_compiled_fit_serves_the_refit_and_every_refinement_cycle(depth1_client, monkeypatch):
    traces = []
    steps = unsplit._CloneFitter._steps

    def traced(self, *args):  # runs once per trace of a fitter's compiled steps
        traces.append(self)
        return steps(self, *args)

    monkeypatch.setattr(unsplit._CloneFitter, "_steps", traced)
    invert(depth1_client, depth1_client(smooth_images(16)), STREAM.replace(refit_iters=50, refine_cycles=2))
    assert len(traces) == 2 and traces[0] is not traces[1]  # the polish's fitter, then one for the three refits


def test_the_kept_restart_ranks_best_on_matching_and_agreement_together():
    losses = np.array([0.01, 0.02, 0.03])
    assert choose_restart("matching", losses, np.array([0.5, 0.2, 0.3])) == 0
    assert choose_restart("agreement", losses, np.array([0.5, 0.2, 0.3])) == 1
    assert choose_restart("matching+agreement", losses, np.array([0.5, 0.2, 0.3])) == 1  # ranks 0+2, 1+0, 2+1
    assert choose_restart("matching+agreement", losses, np.array([0.3, 0.1, 0.5])) == 1  # a tie of ranks: more agreement
    assert choose_restart("matching+agreement", losses, np.array([0.2, 0.3, 0.1])) == 0  # ranks 0+1, 1+2, 2+0
    assert choose_restart("matching+agreement", losses, np.zeros(0)) == 0  # fewer than 3 finished: matching


def test_disagreement_singles_out_the_failed_run_whatever_the_intensities():
    pictures = smooth_images(5)
    failed = pictures.copy()
    failed[:, 8:16, 8:16] = 1.0 - failed[:, 8:16, 8:16]  # a patch of inverted intensity inside
    runs = [pictures, 0.3 + 0.5 * pictures, failed, 1.0 - pictures]  # dimmed and inverted copies agree fully
    scores = disagreement(runs)
    assert int(np.argmax(scores)) == 2 and scores[[0, 1, 3]] == pytest.approx([scores[0]] * 3, rel=1e-4)
    assert disagreement([pictures, pictures, pictures]) == pytest.approx([0, 0, 0], abs=1e-6)
    with pytest.raises(ValueError, match="keep must be one of matching, agreement, matching\\+agreement"):
        InversionConfig(keep="consensus")
    with pytest.raises(ValueError, match="at least 3 restarts; give restarts=3 or more, or keep='matching'"):
        InversionConfig(keep="matching+agreement", restarts=2)


def test_the_batch_norm_residual_model_leaks_through_its_first_block():
    """A user model with BatchNormalization, residual blocks and global pooling, cut after a block."""
    keras.utils.set_random_seed(3)
    client = split_model(batch_norm_residual_model(), layer="block1_out").client
    targets = smooth_images(32)
    observed = client(targets, training=True)  # training-time smashed data: BN used each batch's statistics
    config = STREAM.replace(main_iters=10, batch_size=16, prior="dark_background")
    result = invert(client, observed, config)
    attack, grey = reconstruction_scores(targets, result.reconstructions), baseline_scores(targets)["constant_0.5"]
    # measured: raw MSE 0.13 (grey 0.14), aligned MSE 0.077 (grey 0.103), aligned SSIM 0.24 (grey 0.06)
    assert attack.mean_affine_aligned_mse < 0.85 * grey.mean_affine_aligned_mse
    assert attack.mean_affine_aligned_ssim > grey.mean_affine_aligned_ssim + 0.1
    stats = [w for w in result.clone.weights if "moving_mean" in w.path]
    assert stats and all(np.any(np.asarray(w) != 0) for w in stats)  # calibrated on the reconstructions


def test_the_prior_flips_an_inverted_solution_and_the_clone_with_it():
    from unsplit_tf.attacks.inversion.unsplit import _apply_prior

    keras.utils.set_random_seed(1)
    client = split_model(mnist_net(), depth=1).client  # valid convolution: the flip is exact
    images = smooth_images(3)
    clone = clone_architecture(client, seed=0)
    before = clone(1.0 - images)
    flipped = _apply_prior(clone, 1.0 - images, preset("tuned").replace(prior="dark_background"))
    np.testing.assert_allclose(flipped, images, atol=1e-6)
    np.testing.assert_allclose(clone(flipped), before, atol=1e-4)


def test_attacks_run_one_after_another_do_not_warn_of_retracing_and_other_warnings_still_show():
    """Each attack compiles steps for its own clone; run once per epoch (the Keras callback) TensorFlow would call
    that "retracing" and advise the user to restructure their code. Only that warning is dropped, only inside."""
    import logging

    heard: list[str] = []

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record.getMessage())

    listener, level = Listener(), tf.get_logger().level  # the CLI's modules, once imported, raise it to ERROR
    tf.get_logger().addHandler(listener)
    tf.get_logger().setLevel(logging.WARNING)
    try:
        inputs = keras.Input((8, 8, 1))
        client = keras.Model(inputs, keras.layers.Conv2D(2, 3, activation="relu")(inputs))
        x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
        config = InversionConfig(main_iters=1, input_iters=1, model_iters=1, polish_iters=2)
        for _ in range(6):
            invert(client, client(x), config)
        tf.get_logger().warning("a warning of the user's own")
    finally:
        tf.get_logger().removeHandler(listener)
        tf.get_logger().setLevel(level)
    assert not [message for message in heard if "retracing" in message]
    assert heard == ["a warning of the user's own"]
