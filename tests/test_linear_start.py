import keras
import numpy as np
import pytest

from unsplit_tf.attacks.inversion import InversionConfig, invert
from unsplit_tf.attacks.inversion._linear_start import LinearStart
from unsplit_tf.models import mnist_net
from unsplit_tf.scoring import baseline_scores, reconstruction_scores
from unsplit_tf.split import clone_architecture, split_model
from tests.test_inversion import STREAM, smooth_images


@pytest.fixture(scope="module")
def pooled_client():
    keras.utils.set_random_seed(0)
    return split_model(mnist_net(), depth=5).client  # conv, ReLU, max pool, twice


def test_the_blend_falls_from_one_to_zero_over_its_rounds():
    blend = LinearStart(4)
    weights = []
    for round_index in range(1, 8):
        blend.enter(round_index)
        weights.append(float(blend.weight.numpy()))
    assert weights == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0])


def test_the_view_starts_affine_ends_as_the_clone_and_shares_its_weights(pooled_client, rng):
    clone = clone_architecture(pooled_client, seed=3)
    blend = LinearStart(2)
    view = blend.view(clone)
    a, b = (rng.uniform(0, 1, (2, 28, 28, 1)).astype("float32") for _ in range(2))
    zero = np.zeros_like(a)
    blend.enter(1)
    origin = view(zero).numpy()
    combined = view(a + b).numpy() - origin
    assert np.allclose(combined, (view(a).numpy() - origin) + (view(b).numpy() - origin), atol=1e-4)
    assert not np.allclose(clone(a + b).numpy() - clone(zero).numpy(),
                           clone(a).numpy() + clone(b).numpy() - 2 * clone(zero).numpy(), atol=1e-2)  # the clone is not
    blend.enter(3)
    assert np.allclose(view(a).numpy(), clone(a).numpy(), atol=1e-6)
    assert {id(v) for v in view.trainable_variables} == {id(v) for v in clone.trainable_variables}


def test_a_clone_with_nothing_to_blend_is_refused():
    inputs = keras.Input((4,))
    dense = keras.Model(inputs, keras.layers.Dense(3, activation="relu")(inputs), name="fused")
    with pytest.raises(ValueError, match="fused has none .*use linear_start=0"):
        LinearStart(2).view(dense)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"linear_start": -1}, "linear_start must be at least 0"),
        ({"linear_start": 10, "main_iters": 10}, "over all 10 rounds"),
        ({"linear_start": 2, "mode": "sequential"}, "sequential mode the clone carries over"),
    ],
)
def test_bad_linear_starts_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        InversionConfig(**changes)


def test_a_stream_attack_from_a_linear_start_beats_guessing_and_steals_the_plain_architecture(monkeypatch):
    client = split_model(mnist_net(), depth=1).client
    weights = []
    enter = LinearStart.enter
    monkeypatch.setattr(LinearStart, "enter", lambda self, round_index: (enter(self, round_index),
                                                                         weights.append(float(self.weight.numpy()))))
    targets = smooth_images(16)
    result = invert(client, client(targets), STREAM.replace(linear_start=3))
    assert weights[:5] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0])
    assert weights[-1] == 0.0  # set again when the attack finishes, whatever stopped it
    assert [type(layer) for layer in result.clone.layers] == [type(layer) for layer in client.layers]
    attack, guesses = reconstruction_scores(targets, result.reconstructions), baseline_scores(targets, seed=5)
    assert attack.mean_affine_aligned_mse < 0.5 * guesses["constant_0.5"].mean_affine_aligned_mse
    assert attack.mean_affine_aligned_ssim > guesses["constant_0.5"].mean_affine_aligned_ssim + 0.3
    histories = np.array(result.matching_loss)
    assert np.all(histories[:, -1] < histories[:, 0])
