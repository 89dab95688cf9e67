"""Defenses at the cut: each does what it says, composes with any functional model, and plugs into training."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from unsplit_tf.defenses import (
    ACTIVATIONS,
    GRADIENTS,
    ActivationNoise,
    GradientClipping,
    GradientNoise,
    LabelSubspaceNoise,
    MaxNormNoise,
    NoPeek,
    check_defense,
    default_settings,
    defenses_of,
    distance_correlation,
    make_defense,
    named_defense,
    split_u_shaped_with_defense,
    split_with_defense,
    with_defense,
)
from models_for_tests import residual_model

from unsplit_tf.records import DefenseSetting
from unsplit_tf.protocol import SplitTrainer, TrainConfig, UShapedTrainer, cross_entropy
from unsplit_tf.split import split_model


def dense_net(features=16, hidden=24, classes=10) -> keras.Model:
    """dense1 - relu1 - dense2 - relu2 - logits: U-shaped at depth 1 leaves dense2 + relu2 to the server."""
    inputs = keras.Input((features,))
    x = layers.ReLU(name="relu1")(layers.Dense(32, name="dense1")(inputs))
    x = layers.ReLU(name="relu2")(layers.Dense(hidden, name="dense2")(x))
    return keras.Model(inputs, layers.Dense(classes, name="logits")(x))


def gradient_through(layer, x, upstream):
    """The gradient `layer` passes back for an upstream gradient, and its forward output."""
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    return tape.gradient(y, x, output_gradients=tf.constant(upstream, tf.float32)).numpy(), y.numpy()


# ---------------------------------------------------------------- activation noise


@pytest.mark.parametrize("distribution", ["gaussian", "laplace"])
def test_activation_noise_has_the_configured_scale_in_inference_too(distribution):
    x = np.zeros((200, 500), np.float32)
    noise = ActivationNoise(0.3, distribution, seed=1)(x).numpy()  # no training flag: the client always perturbs
    assert abs(noise.mean()) < 0.01
    assert noise.std() == pytest.approx(0.3, rel=0.02)
    # Mean absolute deviation tells the shapes apart: Laplace b = stddev / sqrt(2), Gaussian stddev * sqrt(2 / pi).
    expected = 0.3 / np.sqrt(2) if distribution == "laplace" else 0.3 * np.sqrt(2 / np.pi)
    assert np.abs(noise).mean() == pytest.approx(expected, rel=0.02)
    assert not np.array_equal(ActivationNoise(0.3, distribution, seed=1)(x).numpy(), ActivationNoise(0.3, distribution, seed=2)(x).numpy())


def test_relative_activation_noise_follows_each_examples_scale(rng):
    x = rng.normal(size=(2, 20000)).astype(np.float32) * np.array([[1.0], [10.0]], np.float32)
    noise = ActivationNoise(0.5, relative=True, seed=0)(x).numpy() - x
    rms = np.sqrt(np.mean(x**2, axis=1))
    np.testing.assert_allclose(noise.std(axis=1), 0.5 * rms, rtol=0.03)


def test_activation_noise_rejects_nonsense():
    with pytest.raises(ValueError, match="distribution"):
        ActivationNoise(0.1, "uniform")
    with pytest.raises(ValueError, match="stddev must be a finite number >= 0"):
        ActivationNoise(-1.0)


# ---------------------------------------------------------------- distance correlation and NoPeek


def test_distance_correlation_is_near_zero_for_independent_samples(rng):
    x, z = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3))
    assert float(distance_correlation(x, z)) < 0.1


def test_distance_correlation_is_one_for_linear_relations_and_scale_invariant(rng):
    x = rng.normal(size=(64, 4, 4, 2)).astype(np.float32)  # examples are flattened
    assert float(distance_correlation(x, 3.0 * x + 5.0)) == pytest.approx(1.0, abs=1e-4)
    assert float(distance_correlation(x, -0.01 * x)) == pytest.approx(1.0, abs=1e-4)
    z = np.tanh(x.reshape(64, -1) @ rng.normal(size=(32, 5))).astype(np.float32)
    value = float(distance_correlation(x, z))
    assert 0.0 < value < 1.0
    assert float(distance_correlation(100.0 * x, 0.001 * z)) == pytest.approx(value, abs=1e-4)


def test_distance_correlation_is_differentiable_even_with_repeated_examples(rng):
    x = tf.constant(np.repeat(rng.normal(size=(4, 6)), 2, axis=0), tf.float32)  # zero distances off the diagonal
    z = tf.Variable(rng.normal(size=(8, 3)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        value = distance_correlation(x, z)
    assert np.isfinite(tape.gradient(value, z).numpy()).all()
    assert float(distance_correlation(x[:1], z[:1])) == 0.0  # one example: no distances
    with pytest.raises(ValueError, match="same batch"):
        distance_correlation(x, z[:5])


def test_nopeek_returns_the_activations_and_adds_its_penalty_in_training_only(rng):
    model = split_with_defense(dense_net(), NoPeek(0.5), depth=1).client
    x = rng.normal(size=(32, 16)).astype(np.float32)
    plain = split_model(dense_net(), depth=1)
    out = model(x, training=True)
    (penalty,) = model.losses
    assert float(penalty) == pytest.approx(0.5 * float(distance_correlation(x, out)), rel=1e-5)
    model(x, training=False)
    assert model.losses == []
    assert plain.client.losses == []


def test_the_nopeek_penalty_trains_the_client_only_and_never_crosses_the_wire(rng):
    x = rng.normal(size=(16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int64)
    runs = {}
    for weight in (0.0, 5.0):
        keras.utils.set_random_seed(0)
        split = split_with_defense(dense_net(), NoPeek(weight), depth=1)
        records = []
        SplitTrainer(split.client, split.server, TrainConfig(batch_size=16)).fit(x, y, epochs=1, on_step=records.append)
        runs[weight] = (split.client.get_weights(), split.server.get_weights(), records[0].activation_gradients.numpy())
    for server_without, server_with in zip(runs[0.0][1], runs[5.0][1]):
        np.testing.assert_array_equal(server_without, server_with)  # the server's step saw no penalty
    np.testing.assert_array_equal(runs[0.0][2], runs[5.0][2])  # nor did the gradient sent to the client
    assert not np.allclose(runs[0.0][0][0], runs[5.0][0][0])  # the client's step did


def test_training_with_nopeek_lowers_the_distance_correlation(rng):
    x = rng.normal(size=(512, 16)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    measured = {}
    for weight in (0.0, 5.0):
        keras.utils.set_random_seed(0)
        split = split_with_defense(dense_net(classes=4), NoPeek(weight), depth=1)
        trainer = SplitTrainer(split.client, split.server, TrainConfig(batch_size=64, epochs=6, learning_rate=3e-3))
        trainer.fit(x, y)
        measured[weight] = (float(distance_correlation(x, split.client(x))), trainer.evaluate(x, y))
    assert measured[5.0][0] < measured[0.0][0] - 0.05  # measured: 0.74 against 0.87
    assert measured[5.0][1] > 0.5  # it still learns the task (4 classes)


# ---------------------------------------------------------------- gradient defenses


def built_dense(features, units) -> layers.Dense:
    dense = layers.Dense(units)
    dense.build((None, features))
    return dense


@pytest.mark.parametrize(
    "make", [lambda: GradientClipping(1.0), lambda: GradientNoise(0.5), MaxNormNoise,
             lambda: LabelSubspaceNoise(0.5, built_dense(24, 10))],
)
def test_gradient_defenses_are_identities_in_the_forward_pass(make, rng):
    layer = make()
    x = rng.normal(size=(8, 24)).astype(np.float32)
    np.testing.assert_array_equal(layer(x).numpy(), x)
    np.testing.assert_array_equal(layer(x, training=True).numpy(), x)


def test_gradient_clipping_bounds_each_examples_norm_and_leaves_small_ones_alone(rng):
    upstream = (rng.normal(size=(6, 3, 4)) * np.array([0.01, 0.1, 1, 5, 50, 0.2])[:, None, None]).astype(np.float32)
    clipped, _ = gradient_through(GradientClipping(1.0), np.zeros_like(upstream), upstream)
    norms = np.linalg.norm(upstream.reshape(6, -1), axis=1)
    new_norms = np.linalg.norm(clipped.reshape(6, -1), axis=1)
    assert (new_norms <= 1.0 + 1e-6).all()
    small = norms <= 1.0
    np.testing.assert_array_equal(clipped[small], upstream[small])
    np.testing.assert_allclose(new_norms[~small], 1.0, rtol=1e-6)
    np.testing.assert_allclose(clipped[~small] / new_norms[~small, None, None], upstream[~small] / norms[~small, None, None], rtol=1e-5)
    with pytest.raises(ValueError, match="max_norm must be positive"):
        GradientClipping(0.0)


def test_gradient_noise_has_the_configured_std(rng):
    upstream = rng.normal(size=(100, 400)).astype(np.float32)
    absolute, _ = gradient_through(GradientNoise(0.2, seed=0), np.zeros_like(upstream), upstream)
    assert (absolute - upstream).std() == pytest.approx(0.2, rel=0.02)
    relative, _ = gradient_through(GradientNoise(0.5, relative=True, seed=0), np.zeros_like(upstream), upstream)
    largest = np.linalg.norm(upstream, axis=1).max()
    assert (relative - upstream).std() == pytest.approx(0.5 * largest / np.sqrt(400), rel=0.02)


def test_max_norm_noise_gives_every_gradient_the_largest_norm(rng):
    upstream = rng.normal(size=(5, 4000)).astype(np.float32) * np.array([0.1, 0.5, 1, 2, 3], np.float32)[:, None]
    noisy, _ = gradient_through(MaxNormNoise(seed=0), np.zeros_like(upstream), upstream)
    norms = np.linalg.norm(noisy, axis=1)
    np.testing.assert_allclose(norms, norms[-1], rtol=0.03)
    np.testing.assert_array_equal(noisy[-1], upstream[-1])  # the largest gets nothing


def test_label_subspace_noise_lies_in_the_heads_class_directions_with_isotropic_power(rng):
    head = built_dense(84, 10)
    upstream = rng.normal(size=(3000, 84)).astype(np.float32)
    noisy, _ = gradient_through(LabelSubspaceNoise(0.7, head, relative=True, seed=0), np.zeros_like(upstream), upstream)
    noise = noisy - upstream
    kernel = head.kernel.numpy()
    basis, _ = np.linalg.qr(kernel - kernel.mean(axis=1, keepdims=True))
    outside = noise - (noise @ basis) @ basis.T
    assert np.abs(outside).max() < 1e-4 * np.abs(noise).max()
    iso, _ = gradient_through(GradientNoise(0.7, relative=True, seed=0), np.zeros_like(upstream), upstream)
    power = np.mean(np.sum(noise**2, axis=1))
    assert power == pytest.approx(np.mean(np.sum((iso - upstream) ** 2, axis=1)), rel=0.05)
    assert LabelSubspaceNoise(0.7, head).weights == []  # the head's weights stay the head's
    with pytest.raises(ValueError, match="directly before head"):
        LabelSubspaceNoise(0.7, head)(np.zeros((2, 83), np.float32))


# ---------------------------------------------------------------- inserting defenses into models


@pytest.mark.parametrize("defense", [NoPeek(1.0), GradientClipping(1.0), GradientNoise(1.0)])
def test_a_defense_after_a_residual_block_still_splits_exactly(defense, rng):
    model = residual_model()
    x = rng.random((4, 8, 8, 2), dtype=np.float32)
    defended = with_defense(model, defense, after="block_add")
    np.testing.assert_array_equal(defended(x).numpy(), model(x).numpy())  # deterministic in the forward pass
    split = split_with_defense(model, defense, layer="block_add")
    assert split.cut_layer == "block_add" and split.client.layers[-1] is defense
    np.testing.assert_array_equal(split.server(split.client(x)).numpy(), model(x).numpy())
    assert {id(v) for v in split.client.weights + split.server.weights} == {id(v) for v in model.weights}  # shared


def test_noise_at_the_cut_is_what_the_server_receives(rng):
    model = residual_model()
    split = split_with_defense(model, ActivationNoise(0.1, seed=0), layer="pool")
    x = rng.random((4, 8, 8, 2), dtype=np.float32)
    clean = split_model(model, layer="pool").client(x).numpy()
    sent = split.client(x).numpy()
    assert 0.05 < (sent - clean).std() < 0.15


def test_inserting_a_defense_explains_what_is_wrong():
    model = residual_model()
    with pytest.raises(ValueError, match="did you mean 'block_add'"):
        with_defense(model, GradientClipping(1.0), after="block_ad")
    with pytest.raises(ValueError, match="is the model's input"):
        with_defense(model, GradientClipping(1.0), after=model.layers[0].name)
    with pytest.raises(ValueError, match="already has a layer named 'pool'"):
        with_defense(model, GradientClipping(1.0, name="pool"), after="stem")
    with pytest.raises(ValueError, match="must be a Keras layer"):
        with_defense(model, lambda x: x, after="stem")
    with pytest.raises(ValueError, match="skip connection crosses the cut"):
        split_with_defense(model, GradientClipping(1.0), layer="block_relu")
    with pytest.raises(ValueError, match="NoPeek needs the model's input"):
        split_u_shaped_with_defense(dense_net(), NoPeek(1.0), depth=1)


def test_defended_models_save_and_load(tmp_path, rng):
    model = with_defense(residual_model(), ActivationNoise(0.0, "laplace", relative=True, seed=3), after="pool")
    model = with_defense(model, GradientClipping(2.0), after="hidden_relu")
    model.save(tmp_path / "defended.keras")
    loaded = keras.models.load_model(tmp_path / "defended.keras", safe_mode=True)
    x = rng.random((2, 8, 8, 2), dtype=np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]


def test_a_label_defense_at_the_head_perturbs_the_wire_not_the_heads_own_gradient(rng):
    keras.utils.set_random_seed(0)
    split = split_u_shaped_with_defense(dense_net(), GradientClipping(1e-3), depth=1)
    assert [type(layer).__name__ for layer in split.client_head.layers[1:]] == ["GradientClipping", "Dense"]
    x = rng.normal(size=(8, 16)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int64)
    activations = split.server(split.client_bottom(x))
    kernel = split.client_head.layers[-1].kernel
    with tf.GradientTape() as tape:
        tape.watch(activations)
        loss = cross_entropy(y, split.client_head.layers[-1](activations))
    true_activation_grads, true_kernel_grad = tape.gradient(loss, [activations, kernel])
    records = []
    UShapedTrainer(split, TrainConfig(batch_size=8)).fit(x, y, epochs=1, on_step=records.append)
    (record,) = records
    received = record.activation_gradients.numpy()
    assert np.linalg.norm(received, axis=1).max() <= 1e-3 * (1 + 1e-5)
    assert np.linalg.norm(true_activation_grads.numpy(), axis=1).min() > 1e-3  # so every row was clipped
    np.testing.assert_allclose(record.head_kernel_gradient.numpy(), true_kernel_grad.numpy(), rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------- the registry


def test_every_named_defense_builds_its_layer_at_each_default_strength():
    model = dense_net()
    for setting in default_settings():
        layer = make_defense(setting, model, seed=0)
        assert layer.name == "defense"
        one = named_defense(setting.name)
        assert isinstance(layer, {"gaussian_noise": ActivationNoise, "laplace_noise": ActivationNoise, "nopeek": NoPeek,
                                  "gradient_clipping": GradientClipping, "gradient_noise": GradientNoise,
                                  "label_subspace_noise": LabelSubspaceNoise, "max_norm_noise": MaxNormNoise}[one.name])
    assert set(defenses_of(ACTIVATIONS)) == {"gaussian_noise", "laplace_noise", "nopeek"}
    assert set(defenses_of(GRADIENTS)) == {"gradient_clipping", "gradient_noise", "label_subspace_noise", "max_norm_noise"}


def test_a_defense_setting_is_checked_with_a_message_that_says_what_to_give():
    assert check_defense(DefenseSetting()) == DefenseSetting()
    with pytest.raises(ValueError, match="unknown defense 'noise'; choose one of gaussian_noise"):
        check_defense(DefenseSetting("noise", 1.0))
    with pytest.raises(ValueError, match=r"gradient_clipping needs a strength \(largest"):
        check_defense(DefenseSetting("gradient_clipping"))
    with pytest.raises(ValueError, match="max_norm_noise has no strength"):
        check_defense(DefenseSetting("max_norm_noise", 1.0))
    with pytest.raises(ValueError, match="nopeek protects the activations, not the gradients"):
        check_defense(DefenseSetting("nopeek", 1.0), GRADIENTS)
    with pytest.raises(ValueError, match="'none' takes no strength"):
        check_defense(DefenseSetting("none", 1.0))
