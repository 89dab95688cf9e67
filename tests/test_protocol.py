from pathlib import Path

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
    np.testing.assert_array_equal(record.labels.numpy(), y[record.indices])  # the server computes the loss with them
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


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
    ({"learning_rate": 0.0}, "learning_rate must be positive"),
    ({"epochs": 1.5}, "epochs must be a whole number"),
    ({"epochs": -1}, "epochs must be at least 0"),
    ({"batch_size": True}, "batch_size must be a whole number"),
    ({"seed": -3}, "seed must be at least 0"),
    ({"amsgrad": "yes"}, "amsgrad must be True or False"),
])
def test_config_refuses_nan_inf_and_non_numbers(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_config_stores_plain_numbers():
    config = TrainConfig(epochs=np.int64(2), learning_rate=np.float32(0.5))
    assert type(config.epochs) is int and type(config.learning_rate) is float


# --- the trained-model cache: keyed on everything, checked on load, written atomically ---------------


def untrained_dataset(rng, train_rows=512):
    """epochs=0 runs skip training, so cache tests only pay for building and saving the net."""
    x, y = learnable_images(rng, train_rows + 64)
    return Dataset("f_mnist", x[:train_rows], y[:train_rows], x[train_rows:], y[train_rows:], "synthetic",
                   tuple(str(i) for i in range(10)))


EPOCHLESS = TrainConfig(epochs=0)


def test_cache_key_covers_every_row_of_the_data(rng, tmp_path):
    data = untrained_dataset(rng)
    assert not train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path).from_cache
    assert train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path).from_cache
    x_train = data.x_train.copy()
    x_train[1, 0, 0, 0] = 0.5  # row 1: the old fingerprint looked at every (512 // 256)-th row only
    changed = Dataset(data.name, x_train, data.y_train, data.x_test, data.y_test, data.source, data.class_names)
    assert not train_reference_net(changed, depth=2, config=EPOCHLESS, cache_dir=tmp_path).from_cache


def test_cache_key_covers_the_architecture_and_the_package_version(rng, tmp_path, monkeypatch):
    from unsplit_tf import protocol

    data = untrained_dataset(rng, 64)
    first = train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path)
    assert first.cache_key["data_fingerprint"] and first.cache_key["architecture"]
    monkeypatch.setattr(protocol, "__version__", "99.0")
    assert not train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path).from_cache
    monkeypatch.setattr(protocol, "reference_net", _other_net)
    assert not train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path).from_cache


def _other_net(dataset):
    """Another architecture under the reference net's name."""
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(9, 5, name="conv1")(inputs)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="mnist_net")


def test_a_different_model_copied_over_the_cache_is_detected_and_retrained(rng, tmp_path):
    data = untrained_dataset(rng, 64)
    mine = train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path)
    other = train_reference_net(data, depth=2, config=TrainConfig(epochs=0, seed=1), cache_dir=tmp_path)
    other.path.replace(mine.path)  # a valid model of the same architecture, other weights

    with pytest.warns(UserWarning, match="not the one that was trained"):
        again = train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path)
    assert not again.from_cache
    for fresh, original in zip(again.model.get_weights(), mine.model.get_weights()):
        np.testing.assert_array_equal(fresh, original)
    assert train_reference_net(data, depth=2, config=EPOCHLESS, cache_dir=tmp_path).from_cache  # repaired


def test_an_interrupted_cache_write_leaves_no_entry(rng, tmp_path, monkeypatch):
    import keras

    def crash_midway(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        train_reference_net(untrained_dataset(rng, 64), depth=2, config=EPOCHLESS, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_that_is_a_file_is_refused_before_training(rng, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(ValueError, match="cannot be used as a folder"):
        train_reference_net(untrained_dataset(rng, 64), depth=2, config=TrainConfig(epochs=50), cache_dir=not_a_folder)


# --- fit and evaluate: tf.data and inputs a user can get wrong -------------------------------------


def test_fit_and_evaluate_take_a_finite_tf_data_dataset(rng):
    split = split_model(mnist_net(), depth=2)
    trainer = SplitTrainer(split.client, split.server, TrainConfig(epochs=3))
    x, y = learnable_images(rng)
    batches = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))).shuffle(256, seed=0).batch(16)
    records = []
    losses = trainer.fit(batches, on_step=records.append)
    assert losses[-1] < 0.5 * losses[0]
    assert len(records) == 3 * 16 and sorted(np.concatenate([r.indices for r in records[:16]])) == list(range(256))
    assert trainer.evaluate(batches) == pytest.approx(trainer.evaluate(x, y)) and trainer.evaluate(x, y) > 0.9


@pytest.mark.parametrize(("make", "message"), [
    (lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat(), "infinite"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)), r"single images .* batch it with \.batch\(n\)"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices({"image": x, "label": y}).batch(4), r"\(images, labels\) pairs"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32))).batch(4), "integer class indices"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices((x[:, :14], y)).batch(4), r"expects \(28, 28, 1\)"),
    (lambda x, y: tf.data.Dataset.from_tensor_slices(((x * 255).astype(np.uint8), y)).batch(4), "yields uint8 images"),
])
def test_unusable_tf_data_datasets_are_refused(rng, make, message):
    split = split_model(mnist_net(), depth=2)
    trainer = SplitTrainer(split.client, split.server)
    x, y = learnable_images(rng, 8)
    with pytest.raises(ValueError, match=message):
        trainer.fit(make(x, y))


@pytest.mark.parametrize(("x", "y", "message"), [
    (np.zeros((0, 28, 28, 1), np.float32), np.zeros(0, np.int64), "0 rows"),
    (np.full((2, 28, 28, 1), np.nan, np.float32), np.zeros(2, np.int64), "NaN or infinite"),
    (np.zeros((2, 28, 28, 1), np.float32), np.array([0, 10]), r"class indices 0\.\.9 .*found 0\.\.10"),
    (np.zeros((2, 28, 28, 1), np.float32), np.array([0.0, 1.0]), "integer class indices"),
    (np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 1]), r"inputs must be floats, got dtype uint8; .* x / 255"),
])
def test_fit_refuses_inputs_it_cannot_train_on(x, y, message):
    split = split_model(mnist_net(), depth=2)
    trainer = SplitTrainer(split.client, split.server)
    with pytest.raises(ValueError, match=message):
        trainer.fit(x, y)
    with pytest.raises(ValueError, match=message):
        trainer.evaluate(x, y)


def test_u_shaped_trainer_takes_a_tf_data_dataset(rng):
    from unsplit_tf.protocol import UShapedTrainer
    from unsplit_tf.split import split_u_shaped

    trainer = UShapedTrainer(split_u_shaped(mnist_net(), depth=2), TrainConfig(epochs=2))
    x, y = learnable_images(rng, 64)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    records = []
    losses = trainer.fit(batches, on_step=records.append)
    assert len(records) == 8 and records[0].head_kernel_gradient.shape == (84, 10) and losses[1] < losses[0]
    assert trainer.evaluate(batches) == pytest.approx(trainer.evaluate(x, y))


def test_trainers_refuse_parts_they_cannot_pass_one_tensor_between():
    import keras

    from unsplit_tf.protocol import UShapedTrainer

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    two_outputs = keras.Model(inputs, [keras.layers.Dense(2, name="a")(hidden), keras.layers.Dense(2, name="b")(hidden)])
    split = split_model(two_outputs, layer="hidden")
    with pytest.raises(ValueError, match="has 2 outputs"):
        SplitTrainer(split.client, split.server)
    with pytest.raises(ValueError, match="expected the keras.Model parts of a split"):
        SplitTrainer("client", "server")
    with pytest.raises(ValueError, match="takes the UShapedSplit"):
        UShapedTrainer(split_model(mnist_net(), depth=2))


def test_predict_logits_of_no_rows_is_empty():
    split = split_model(mnist_net(), depth=2)
    assert SplitTrainer(split.client, split.server).predict_logits(np.zeros((0, 28, 28, 1))).shape == (0, 10)
