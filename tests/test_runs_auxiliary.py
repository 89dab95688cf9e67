"""The auxiliary-data families through the run layer and `invert`, on tiny synthetic data."""

import json

import numpy as np
import pytest

from cli_helpers import run_verb, tiny_npz
from unsplit_tf.attacks.inversion import SDARConfig
from unsplit_tf.data import Dataset
from unsplit_tf.protocol import TrainConfig
from unsplit_tf.records import InversionRun, run_from_dict
from unsplit_tf.runs import OBSERVED_SAMPLE, VictimSpec, run_inversion


def blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes, each a bright block at its own place, jittered by a pixel or two: the mean image is a blur."""
    y = np.tile(np.arange(10), n // 10)
    x = rng.normal(0.05, 0.03, (len(y), 28, 28, 1)).astype(np.float32)
    for i, label in enumerate(y):
        row, column = divmod(int(label), 5)
        top, left = 4 + 12 * row + rng.integers(-2, 3), 2 + 5 * column + rng.integers(-1, 2)
        x[i, top : top + 8, max(left, 0) : left + 4] = 1.0
    return np.clip(x, 0, 1), y.astype(np.int64)


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = blobs(300, rng), blobs(30, rng)
    return Dataset("f_mnist", x_train, y_train, x_test, y_test, "synthetic blobs", tuple(f"c{i}" for i in range(10)))


def test_sdar_alongside_training_beats_the_mean_image_and_records_its_threat_model(data, tmp_path):
    # Measured (seed 0, SDARConfig's defaults beyond SDAR): MSE 0.019 / SSIM 0.45 against the mean image's 0.035 / 0.25.
    training = TrainConfig(epochs=4, batch_size=10)
    outcome = run_inversion(data, SDARConfig(batch_size=32, decoder_lr=2e-3), victim=VictimSpec(depth=1, training=training), aux=100,
                            cache_dir=tmp_path)
    run = outcome.run
    head = run.headline
    assert head.reconstruction.mean_mse < head.baselines.dataset_mean.mean_mse
    assert head.reconstruction.mean_ssim > head.baselines.dataset_mean.mean_ssim
    assert run.threat_model.name == "auxiliary-data" and run.threat_model.auxiliary_images == 100
    assert run.threat_model.auxiliary_labels and run.attack.family == "sdar"
    assert run.victim.training.samples == 200 and not run.victim.training.from_cache  # trained on the rest, here
    assert outcome.result.steps == 4 * 20  # one attack step per observed batch
    observed = run.evaluations[1]
    assert observed.name == OBSERVED_SAMPLE and observed.targets.split == "train" and observed.reconstruction.n == 10
    assert run_from_dict(json.loads(json.dumps(run.to_dict(), allow_nan=False))) == run
    assert InversionRun.from_dict(run.to_dict()).threat_model == run.threat_model


def test_aux_is_refused_for_unsplit_and_when_it_leaves_no_client_data(tmp_path, capsys):
    npz = tiny_npz(tmp_path / "tiny.npz", train=64)
    common = ["--dataset", "mnist", "--data-dir", str(npz), "--depth", "1", "--out", str(tmp_path / "out"),
              "--cache-dir", str(tmp_path / "cache")]
    code, _, err = run_verb("invert", [*common, "--aux", "10"], capsys)
    assert code == 2 and "--aux" in err and "unsplit" in err
    code, _, err = run_verb("invert", [*common, "--attack", "sdar", "--aux", "64"], capsys)
    assert code == 2 and "aux 64" in err and "64 training images" in err
    code, _, err = run_verb("invert", [*common, "--attack", "inverse_network", "--simulator-steps", "3"], capsys)
    assert code == 2 and "--simulator-steps sets SDAR's simulator" in err
    code, _, err = run_verb("invert", [*common, "--attack", "sdar", "--simulator-steps", "0"], capsys)
    assert code == 2 and "--simulator-steps must be at least 1" in err
    code, _, err = run_verb("invert", [*common, "--attack", "sdar", "--aux", "10", "--epochs", "0"], capsys)
    assert code == 2 and "epochs=0 trains nothing" in err  # nothing to watch
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # refused before any work


def test_a_sweep_runs_an_auxiliary_family_as_its_own_cell(tmp_path, capsys):
    npz = tiny_npz(tmp_path / "tiny.npz", train=64)
    common = ["--datasets", "mnist", "--data-dir", str(npz), "--depths", "1", "--epochs", "1", "--label-samples", "0",
              "--results", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache")]
    code, _, err = run_verb("sweep", [*common, "--aux", "20"], capsys)
    assert code == 2 and "--aux" in err and "unsplit" in err
    code, out, err = run_verb("sweep", [*common, "--family", "sdar", "--aux", "20", "--simulator-steps", "2", "--simulator-lr", "2e-3",
                                           "--lambda-ssim", "0"],
                              capsys)
    assert code == 0, err
    assert "sdar aux 20, simulator steps 2, simulator lr 0.002, lambda ssim 0.0" in out
    (stored,) = (tmp_path / "results" / "cells").glob("*.json")
    run = run_from_dict(json.loads(stored.read_text()))
    assert run.attack.family == "sdar" and run.threat_model.auxiliary_images == 20 and "-aux20-ss2-mc0.5-sl0.002-ls0-" in run.key
    config = run.attack.config_as(SDARConfig)
    assert (config.simulator_steps, config.simulator_lr, config.lambda_ssim) == (2, 2e-3, 0.0)  # the flags, not the defaults
    assert run.victim.training.samples == 44


def test_sdar_samples_ten_observed_images_when_an_epoch_has_fewer_than_ten_batches(data, tmp_path):
    training = TrainConfig(epochs=1, batch_size=30)  # 200 client images: 7 batches, two sampled from each until ten
    outcome = run_inversion(data, SDARConfig(batch_size=16), victim=VictimSpec(depth=1, training=training), aux=100,
                            cache_dir=tmp_path)
    observed = outcome.run.evaluations[1]
    assert observed.name == OBSERVED_SAMPLE and observed.reconstruction.n == 10 and len(set(observed.targets.indices)) == 10


def test_ctrl_c_during_sdar_training_scores_the_attack_as_it_stood(data, tmp_path):
    def stop_after_the_first_epoch(epoch, loss):
        raise KeyboardInterrupt

    training = TrainConfig(epochs=3, batch_size=20)
    outcome = run_inversion(data, SDARConfig(batch_size=16), victim=VictimSpec(depth=1, training=training), aux=100,
                            cache_dir=tmp_path, on_epoch=stop_after_the_first_epoch)
    run = outcome.run
    assert run.interrupted and "[INTERRUPTED]" in run.summary()
    assert run.victim.training.steps_done == 10 and outcome.result.steps == 10  # one epoch of 200 images at 20
    assert run.headline.reconstruction.n == 10 and run_from_dict(run.to_dict()) == run


def test_ctrl_c_before_the_stream_is_complete_raises(data, tmp_path):
    from unsplit_tf.attacks.inversion import preset

    def stop(epoch, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inversion(data, preset("tuned").replace(mode="stream", main_iters=1), observations=20, cache_dir=tmp_path,
                      victim=VictimSpec(depth=1, training=TrainConfig(epochs=2, batch_size=50)), on_epoch=stop)


def test_a_resnet20_victim_is_built_trained_and_cut_between_blocks(tmp_path, capsys):
    from unsplit_tf import defaults
    from unsplit_tf.runs import ARCHITECTURES

    assert tuple(ARCHITECTURES) == defaults.ARCHITECTURES  # the CLI's choices are the run layer's builders
    rng = np.random.default_rng(0)
    path = tmp_path / "cifar.npz"
    np.savez(path, x_train=rng.integers(0, 255, (32, 32, 32, 3), dtype=np.uint8), y_train=np.arange(32) % 10,
             x_test=rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8), y_test=np.arange(10) % 10)
    common = ["--dataset", "cifar", "--data-dir", str(path), "--architecture", "resnet20", "--epochs", "1", "--batch-size", "16",
              "--main-iters", "1", "--input-iters", "1", "--model-iters", "1", "--targets", "10", "--restarts", "1", "--polish-iters", "0", "--cache-dir", str(tmp_path / "cache")]
    code, _, err = run_verb("invert", [*common, "--depth", "3", "--out", str(tmp_path / "no")], capsys)
    assert code == 2 and "--layer blockB_out" in err
    code, out, err = run_verb("invert", [*common, "--layer", "block1_out", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["victim"]["model"] == {"kind": "builtin", "name": "resnet20", "sha256": None}
    assert record["victim"]["cut_layer"] == "block1_out" and not record["victim"]["training"]["from_cache"]
    assert not (tmp_path / "cache").exists()
