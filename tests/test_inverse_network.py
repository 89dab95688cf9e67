import keras
import numpy as np
import pytest
from test_sdar import blob_data, tiny_net

from unsplit_tf.attacks.inversion import InverseNetworkConfig, inverse_network, query_free_attack
from unsplit_tf.protocol import SplitTrainer, TrainConfig
from unsplit_tf.scoring import baseline_scores, clone_quality, reconstruction_scores
from unsplit_tf.split import split_model

TINY = InverseNetworkConfig(shadow_steps=60, decoder_steps=60, batch_size=32, decoder_lr=1e-2, decoder_width=16)


@pytest.fixture(scope="module")
def trained_split():
    keras.utils.set_random_seed(0)
    split = split_model(tiny_net(), layer="relu")
    SplitTrainer(split.client, split.server, TrainConfig(epochs=4, batch_size=32, learning_rate=3e-3)).fit(*blob_data(256, seed=1))
    return split


def test_plain_inverse_network_beats_the_no_information_baselines(trained_split):
    aux_x, _ = blob_data(256, seed=2)
    result = inverse_network(trained_split.client(aux_x).numpy(), aux_x, TINY)
    targets, _ = blob_data(24, seed=3)
    scores = reconstruction_scores(targets, result.reconstruct(trained_split.client(targets)))
    baselines = baseline_scores(targets, mean_image=blob_data(256, seed=1)[0].mean(axis=0))
    assert scores.mean_mse < 0.5 * baselines["dataset_mean"].mean_mse
    assert scores.mean_ssim > baselines["dataset_mean"].mean_ssim + 0.3
    assert result.simulator is None and len(result.history["decoder_mse"]) == result.steps == 60


def test_query_free_shadow_learns_the_task_through_the_server(trained_split):
    aux_x, aux_y = blob_data(256, seed=2)
    result = query_free_attack(trained_split.client, trained_split.server, aux_x, aux_y, TINY)
    history = result.history
    assert history["shadow_task"][-5:].mean() < 0.5 * history["shadow_task"][:5].mean()
    assert history["decoder_mse"][-5:].mean() < 0.5 * history["decoder_mse"][:5].mean()
    test_x, test_y = blob_data(128, seed=5)
    quality = clone_quality(trained_split.client, result.simulator, trained_split.server, test_x, test_y)
    assert quality.clone_accuracy > 0.8  # three classes: chance is 1/3
    assert result.steps == 120 and result.reconstruct(trained_split.client(test_x[:4])).shape == test_x[:4].shape


def test_query_free_never_reads_the_clients_weights(trained_split):
    keras.utils.set_random_seed(99)
    other = split_model(tiny_net(), layer="relu").client
    assert not np.allclose(other.get_weights()[0], trained_split.client.get_weights()[0])
    aux_x, aux_y = blob_data(64, seed=2)
    config = TINY.replace(shadow_steps=5, decoder_steps=5)
    observed = trained_split.client(aux_x[:4]).numpy()
    first, second = (query_free_attack(client, trained_split.server, aux_x, aux_y, config).reconstruct(observed) for client in (trained_split.client, other))
    np.testing.assert_allclose(first, second, atol=1e-6)


def test_bad_configs_and_data_are_refused(trained_split):
    with pytest.raises(ValueError, match="decoder_lr must be a finite number"):
        InverseNetworkConfig(decoder_lr=float("nan"))
    with pytest.raises(ValueError, match="shadow_steps must be at least 1"):
        InverseNetworkConfig(shadow_steps=0)
    with pytest.raises(ValueError, match="simulator must be one of"):
        InverseNetworkConfig(simulator="vgg")
    aux_x, aux_y = blob_data(8, seed=2)
    with pytest.raises(ValueError, match="pass aux_y"):
        query_free_attack(trained_split.client, trained_split.server, aux_x, None, TINY)
    with pytest.raises(ValueError, match="one feature row per input"):
        inverse_network(np.zeros((3, 12, 12, 6), np.float32), aux_x, TINY)
