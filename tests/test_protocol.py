import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.data import Dataset
from unsplit_tf.models import mnist_net
from unsplit_tf.protocol import SplitTrainer, TrainConfig, cross_entropy, train_reference_net
from unsplit_tf.split import split_model


def learnable_images(rng, n=256):
    """Class k is a bright k-th horizontal band: a task the MNIST net must learn in one epoch."""
    y = rng.integers(0, 10, n)
    x = rng.random((n, 28, 28, 1), dtype=np.float32) * 0.2
    for i, label in enumerate(y):
        x[i, 2 + 2 * label : 4 + 2 * label] = 1.0
    return x, y.astype(np.int64)


def tiny_dataset(rng):
    x, y = learnable_images(rng, 320)
    return Dataset("f_mnist", x[:256], y[:256], x[256:], y[256:], "synthetic", tuple(str(i) for i in range(10)))


def test_wire_record_is_exactly_what_the_server_sees(rng):
    split = split_model(mnist_net(), depth=2)
    trainer = SplitTrainer(split.client, split.server, TrainConfig(batch_size=8))
    x, y = learnable_images(rng, 8)
    expected_activations = split.client(x).numpy()
    with tf.GradientTape() as tape:
        z = tf.constant(expected_activations)
        tape.watch(z)
        loss = cross_entropy(y, split.server(z))
    expected_gradients = tape.gradient(loss, z).numpy()
    client_before, server_before = split.client.get_weights(), split.server.get_weights()

    records = []
    trainer.fit(x, y, epochs=1, on_step=records.append)

    (record,) = records
    assert sorted(record.indices) == list(range(8))
    np.testing.assert_allclose(record.activations.numpy(), expected_activations[record.indices], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(record.activation_gradients.numpy(), expected_gradients[record.indices], rtol=1e-4, atol=1e-7)
    assert record.loss == pytest.approx(float(loss), rel=1e-5)
    assert not np.allclose(split.client.get_weights()[0], client_before[0])  # both sides took a step
    assert not np.allclose(split.server.get_weights()[-1], server_before[-1])


def test_split_training_learns_and_updates_the_whole_model(rng):
    model = mnist_net()
    split = split_model(model, depth=2)
    trainer = SplitTrainer(split.client, split.server, TrainConfig(batch_size=16, epochs=3))
    x, y = learnable_images(rng)
    losses = trainer.fit(x, y)
    assert losses[-1] < 0.5 * losses[0]
    assert trainer.evaluate(x, y) > 0.9
    assert float(np.mean(model.predict(x, verbose=0).argmax(1) == y)) == trainer.evaluate(x, y)


def test_trainer_rejects_mismatched_shapes(rng):
    split = split_model(mnist_net(), depth=2)
    other = split_model(mnist_net(), depth=5)
    with pytest.raises(ValueError, match="does not match server input"):
        SplitTrainer(split.client, other.server)
    trainer = SplitTrainer(split.client, split.server)
    with pytest.raises(ValueError, match=r"\(32, 32, 3\) per example but the model expects \(28, 28, 1\)"):
        trainer.fit(np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="4 inputs but 3 labels"):
        trainer.evaluate(np.zeros((4, 28, 28, 1), np.float32), np.zeros(3, np.int64))


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_trained_model_is_cached_and_reloaded(rng, tmp_path):
    data = tiny_dataset(rng)
    config = TrainConfig(epochs=2, batch_size=16)
    first = train_reference_net(data, depth=2, config=config, cache_dir=tmp_path)
    again = train_reference_net(data, depth=4, config=config, cache_dir=tmp_path)
    assert not first.from_cache and again.from_cache
    assert first.test_accuracy > 0.5
    assert again.test_accuracy == first.test_accuracy
    for a, b in zip(first.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    retrained = train_reference_net(data, depth=2, config=TrainConfig(epochs=1, batch_size=16), cache_dir=tmp_path)
    assert not retrained.from_cache


def test_each_partys_regulariser_trains_its_own_weights_only(rng):
    """A weight penalty on a server layer joins the server's objective; the gradient sent down does not include it."""
    import keras

    def net(server_l2):
        keras.utils.set_random_seed(0)
        inputs = keras.Input(shape=(6,))
        hidden = keras.layers.Dense(8, activation="relu", name="client_dense")(inputs)
        regulariser = keras.regularizers.L2(server_l2) if server_l2 else None
        outputs = keras.layers.Dense(3, kernel_regularizer=regulariser, name="server_dense")(hidden)
        return keras.Model(inputs, outputs)

    x = rng.normal(size=(8, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    runs = {}
    for l2 in (0.0, 10.0):
        split = split_model(net(l2), depth=0)
        records = []
        SplitTrainer(split.client, split.server, TrainConfig(batch_size=8, epochs=1)).fit(x, y, on_step=records.append)
        runs[l2] = (split.client.get_weights(), split.server.get_weights(), records[0].activation_gradients.numpy())
    (client_plain, server_plain, wire_plain), (client_l2, server_l2, wire_l2) = runs[0.0], runs[10.0]
    assert not np.allclose(server_plain[0], server_l2[0])  # the server's step saw its penalty
    np.testing.assert_allclose(wire_plain, wire_l2, rtol=1e-6)  # what crossed the wire did not
    for plain, penalised in zip(client_plain, client_l2):
        np.testing.assert_allclose(plain, penalised, rtol=1e-6)
