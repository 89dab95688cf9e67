"""The run layer: victim -> observations -> attack -> scores -> record, on tiny synthetic data."""

import json

import keras
import numpy as np
import pytest

from models_for_tests import residual_model
from unsplit_tf.attacks.inversion import preset
from unsplit_tf.data import Dataset
from unsplit_tf.protocol import TrainConfig
from unsplit_tf.records import DefenseSetting, LabelRun, ModelSource, run_from_dict
from unsplit_tf.runs import VictimSpec, run_inversion, run_label_inference
from unsplit_tf.split import split_model


def blocks(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes, each a bright block at its own place on a dark, slightly noisy background."""
    y = np.tile(np.arange(10), n // 10)
    x = rng.normal(0.05, 0.03, (len(y), 28, 28, 1)).astype(np.float32)
    for i, label in enumerate(y):
        row, column = divmod(int(label), 5)
        x[i, 4 + 12 * row : 12 + 12 * row, 2 + 5 * column : 6 + 5 * column] = 1.0
    return np.clip(x, 0, 1), y.astype(np.int64)


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = blocks(100, rng), blocks(30, rng)
    return Dataset("f_mnist", x_train, y_train, x_test, y_test, "synthetic blocks", tuple(f"c{i}" for i in range(10)))


TRAINING = TrainConfig(epochs=1, batch_size=25)


def test_run_inversion_beats_the_mean_image_and_says_so(data, tmp_path):
    config = preset("tuned").replace(restarts=1, main_iters=15, input_iters=20, model_iters=20)
    outcome = run_inversion(data, config, preset="tuned", victim=VictimSpec(depth=1, training=TRAINING), cache_dir=tmp_path)
    run = outcome.run
    head = run.headline
    assert head.reconstruction.mean_mse < head.baselines.dataset_mean.mean_mse
    assert head.reconstruction.mean_ssim > head.baselines.dataset_mean.mean_ssim
    assert head.beats_mean_image and "beats the dataset-mean image" in run.summary()
    assert head.targets.indices == tuple(range(10)) and head.targets.classes[:2] == ("c0", "c1")
    assert run.victim.training.from_cache is False and run.victim.training.samples == 100
    assert run.threat_model.name == "data-oblivious" and run.attack.family == "unsplit" and run.attack.preset == "tuned"
    assert run.arrays["reconstructions"].shape == (10, 28, 28, 1) and run.arrays["originals"].dtype == np.uint8
    assert run_from_dict(json.loads(json.dumps(run.to_dict(), allow_nan=False))) == run
    assert outcome.result.reconstructions.shape == (10, 28, 28, 1)  # the float ones, for the caller's pictures

    again = run_inversion(data, config.replace(main_iters=1), victim=VictimSpec(depth=1, training=TRAINING), cache_dir=tmp_path)
    assert again.run.victim.training.from_cache and again.run.victim.training.seconds is None
    assert again.run.victim.test_accuracy == run.victim.test_accuracy


def test_a_defended_victim_is_attacked_with_the_undefended_architecture(data, tmp_path):
    victim = VictimSpec(depth=2, defense=DefenseSetting("gaussian_noise", 1.0), training=TRAINING)
    outcome = run_inversion(data, preset("tuned").replace(main_iters=1, input_iters=2, model_iters=2, polish_iters=10), victim=victim,
                            targets=3, cache_dir=tmp_path)
    assert "defense" in [layer.name for layer in outcome.split.client.layers]
    assert "defense" not in [layer.name for layer in outcome.result.clone.layers]  # the server knows no defense
    assert outcome.run.victim.defense == DefenseSetting("gaussian_noise", 1.0) and outcome.run.victim.cut_layer == "pool1"
    assert not list(tmp_path.iterdir())  # a defended victim is trained, not taken from the cache
    assert 0 <= outcome.run.distance_correlation <= 1


def test_bad_targets_are_refused_before_any_training(data, tmp_path):
    with pytest.raises(ValueError, match="targets 31 is more than the 30 test images"):
        run_inversion(data, preset("tuned"), victim=VictimSpec(training=TRAINING), targets=31, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="protects the gradients"):
        VictimSpec(defense=DefenseSetting("gradient_noise", 1.0))


def tiny_data(rng) -> Dataset:
    x = rng.random((40, 8, 8, 2), dtype=np.float32)
    y = np.tile(np.arange(3), 14)[:40].astype(np.int64)
    return Dataset("tiny", x[:30], y[:30], x[30:], y[30:], "random", ("a", "b", "c"))


def test_an_interrupted_run_is_scored_on_the_targets_it_attacked_only(rng, tmp_path):
    data = tiny_data(rng)
    path = tmp_path / "mine.keras"
    residual_model().save(path)
    split = split_model(keras.models.load_model(path), layer="pool")

    def stop_in_the_second_target(report):
        if report.targets == (1,) and report.round == 2:
            raise KeyboardInterrupt

    config = preset("paper").replace(mode="sequential", main_iters=3, input_iters=2, model_iters=2)
    run = run_inversion(data, config, victim=split, targets=3, model_source=ModelSource.of_file(path),
                        on_round=stop_in_the_second_target).run
    assert run.interrupted and "[INTERRUPTED]" in run.summary()
    assert len(run.headline.targets.indices) == 2 and run.headline.reconstruction.n == 2  # the third was never attacked
    assert run.arrays["reconstructions"].shape[0] == 2
    assert run.victim.model.kind == "file" and len(run.victim.model.sha256) == 64 and run.victim.training is None


def test_label_inference_under_a_gradient_defense_gives_a_record_and_its_curves(data):
    steps = []
    outcome = run_label_inference(data, samples=20, batch_size=5, methods=("direction_scoring", "norm_scoring"),
                                  defense=DefenseSetting("gradient_clipping", 0.01), on_step=steps.append)
    run = outcome.run
    assert isinstance(run, LabelRun) and run.victim.defense.name == "gradient_clipping" and not run.interrupted
    assert [m.id for m in run.methods] == ["direction_scoring", "norm_scoring"]
    assert all(m.evaluated + m.known == 20 for m in run.methods) and run.threat_model.known_labels == 10
    assert [p.step for p in steps] == [1, 2, 3, 4] and set(outcome.curves) == {"direction_scoring"}
    assert len(outcome.curves["direction_scoring"]) == 4 and run.gradient_norm_median <= 0.01 * (1 + 1e-5)
    assert run_from_dict(json.loads(json.dumps(run.to_dict(), allow_nan=False))) == run


def test_label_inference_interrupted_keeps_the_observed_steps(data):
    def stop(progress):
        if progress.step == 2:
            raise KeyboardInterrupt

    run = run_label_inference(data, samples=20, batch_size=5, methods=("direction_scoring",), on_step=stop).run
    assert run.interrupted and run.samples == 10 and run.victim.test_accuracy is None
    with pytest.raises(ValueError, match="unknown label methods"):
        run_label_inference(data, methods=("psychic",))


# ---------------------------------------------------------------- stream mode: the observations of training


def test_the_watcher_keeps_the_last_examples_of_the_last_epoch():
    from unsplit_tf._watchers import LastEpochObservations
    from unsplit_tf.protocol import WireRecord

    watcher = LastEpochObservations(7, TrainConfig(epochs=2, batch_size=4), samples=10)  # 3 steps an epoch, 6 in all
    on_step = watcher.start(None, None)
    for step in range(1, 7):
        rows = np.arange(4 * ((step - 1) % 3), min(4 * ((step - 1) % 3) + 4, 10))[::-1]  # 4, 4, then 2 rows
        on_step(WireRecord(step, rows, np.stack([np.full(3, 10 * step + r, np.float32) for r in rows]), None, 0.0))
        assert watcher.complete == (step == 6)  # never before the end of the last epoch
    rows, activations = watcher.observed()
    assert rows.tolist() == [0, 7, 6, 5, 4, 9, 8]  # the epoch's last seven, in the order received
    assert activations[:, 0].tolist() == [10 * step + row for step, row in zip([4, 5, 5, 5, 5, 6, 6], rows)]
    with pytest.raises(ValueError, match="more than the 10 examples of one training epoch"):
        LastEpochObservations(11, TrainConfig(epochs=1, batch_size=4), samples=10)


def test_stream_mode_attacks_the_observed_training_stream_with_the_targets(data, tmp_path):
    config = preset("tuned").replace(restarts=1, mode="stream", batch_size=25, main_iters=8, input_iters=20, model_iters=20)
    outcome = run_inversion(data, config, victim=VictimSpec(depth=1, training=TRAINING), observations=60, cache_dir=tmp_path)
    run = outcome.run
    assert run.threat_model.observed_examples == 60 and "last epoch" in run.threat_model.observations
    assert not list(tmp_path.iterdir())  # the victim is trained to be watched, not taken from the cache
    head, seen = run.evaluations
    assert head.targets.split == "test" and head.reconstruction.n == 10 and outcome.reconstructions.shape[0] == 10
    assert seen.name == "observed_sample" and seen.targets.split == "train" and seen.reconstruction.n == 60
    rows, reconstructions = outcome.stream
    assert sorted(rows.tolist()) == sorted(set(rows.tolist())) and reconstructions.shape == (60, 28, 28, 1)
    assert data.y_train[list(seen.targets.indices)].tolist() == [int(name[1:]) for name in seen.targets.classes]
    for scored in (head, seen):  # the observed training images are recovered too, not only the targets
        assert scored.reconstruction.mean_mse < scored.baselines.dataset_mean.mean_mse
    assert run.arrays["observed_reconstructions"].shape == (60, 28, 28, 1)
    assert run_from_dict(json.loads(json.dumps(run.to_dict(), allow_nan=False))) == run


def test_observations_are_refused_before_any_training_where_they_cannot_work(data, tmp_path):
    victim = VictimSpec(depth=1, training=TRAINING)
    with pytest.raises(ValueError, match="stream mode"):
        run_inversion(data, preset("tuned"), victim=victim, observations=10, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="observations 101 is more than the 100 training examples"):
        run_inversion(data, preset("tuned").replace(mode="stream"), victim=victim, observations=101, cache_dir=tmp_path)
    untrained = VictimSpec(depth=1, training=TrainConfig(epochs=0))
    with pytest.raises(ValueError, match="epochs=0 trains nothing"):  # there is no training to watch
        run_inversion(data, preset("tuned").replace(mode="stream"), victim=untrained, observations=10, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_trained_split_is_observed_through_its_final_client(rng):
    data = tiny_data(rng)
    split = split_model(residual_model(), layer="pool")
    config = preset("tuned").replace(mode="stream", batch_size=10, main_iters=2, input_iters=2, model_iters=2, polish_iters=10)
    run = run_inversion(data, config, victim=split, targets=3, observations=20).run
    assert run.threat_model.observed_examples == 20 and "final client" in run.threat_model.observations
    assert run.evaluations[1].reconstruction.n == 20 and len(set(run.evaluations[1].targets.indices)) == 20
