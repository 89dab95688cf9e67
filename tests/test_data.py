"""Tests for unsplit_tf.data: every data_dir format, the search order and the error messages.

Each test writes its own tiny files under tmp_path; the ``no_local_copies``
fixture points every machine-wide location (Keras cache, TFDS directory, the
Debian package folder) at empty folders and makes the network unreachable.
"""

import gzip
import pickle
import time

import numpy as np
import pytest

from unsplit_tf import data
from unsplit_tf.data import DataUnavailableError, canonical_name, first_index_per_class, indices_by_class, load_dataset

RNG = np.random.default_rng(1234)


@pytest.fixture
def no_local_copies(tmp_path, monkeypatch):
    """No Keras cache, no TFDS directory, no Debian package, no network."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian" / "fashion-mnist")
    checks = []
    monkeypatch.setattr(data, "network_is_reachable", lambda timeout=3.0: checks.append(timeout) or False)
    return checks


def random_images(count, shape):
    return RNG.integers(0, 256, size=(count, *shape), dtype=np.uint8)


def random_labels(count):
    return RNG.integers(0, 10, size=count, dtype=np.uint8)


def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as file:
        file.write(header + array.tobytes())


def write_idx_folder(folder, x_train, y_train, x_test, y_test, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for base, array in zip(data.IDX_FILES, (x_train, y_train, x_test, y_test)):
        write_idx(folder / (base + suffix), array, compress)


def cifar_batches(batch_size=2):
    """Six batches (5 train + test) of HWC uint8 images, with labels."""
    return [(random_images(batch_size, (32, 32, 3)), random_labels(batch_size)) for _ in range(6)]


def chw_rows(images):
    """CIFAR's on-disk layout: one row of 3072 bytes per image, channel-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def assert_dataset(dataset, x_train, y_train, x_test, y_test):
    """float32 NHWC in [0, 1] equal to bytes / 255, and int64 labels equal to those written."""
    for loaded, written in ((dataset.x_train, x_train), (dataset.x_test, x_test)):
        assert loaded.dtype == np.float32
        expected = written.reshape(loaded.shape).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(loaded, expected)
    for loaded, written in ((dataset.y_train, y_train), (dataset.y_test, y_test)):
        assert loaded.dtype == np.int64 and loaded.shape == (len(written),)
        np.testing.assert_array_equal(loaded, written)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files(tmp_path, compress):
    arrays = random_images(5, (28, 28)), random_labels(5), random_images(3, (28, 28)), random_labels(3)
    write_idx_folder(tmp_path, *arrays, compress=compress)

    dataset = load_dataset("mnist", tmp_path)

    assert dataset.x_train.shape == (5, 28, 28, 1) and dataset.x_test.shape == (3, 28, 28, 1)
    assert_dataset(dataset, *arrays)
    assert str(tmp_path) in dataset.source
    assert dataset.input_shape == (28, 28, 1) and dataset.num_classes == 10


@pytest.mark.parametrize("point_at_batches_folder", [False, True])
def test_cifar_python_batches(tmp_path, point_at_batches_folder):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = cifar_batches()
    for file, (images, labels) in zip(data.CIFAR_PYTHON_FILES, batches):
        with open(folder / file, "wb") as handle:
            pickle.dump({b"data": chw_rows(images), b"labels": labels.tolist()}, handle)

    dataset = load_dataset("cifar10", folder if point_at_batches_folder else tmp_path)

    assert dataset.name == "cifar" and dataset.x_train.shape == (10, 32, 32, 3)
    assert_dataset(dataset, np.concatenate([x for x, _ in batches[:5]]),
                   np.concatenate([y for _, y in batches[:5]]), *batches[5])
    assert dataset.class_names[0] == "airplane"


def test_cifar_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    batches = cifar_batches()
    for file, (images, labels) in zip(data.CIFAR_BINARY_FILES, batches):
        (folder / file).write_bytes(np.hstack([labels[:, None], chw_rows(images)]).tobytes())

    dataset = load_dataset("cifar", tmp_path)

    assert_dataset(dataset, np.concatenate([x for x, _ in batches[:5]]),
                   np.concatenate([y for _, y in batches[:5]]), *batches[5])


def test_npz_with_train_and_test_arrays(tmp_path):
    arrays = random_images(4, (28, 28, 1)), random_labels(4), random_images(2, (28, 28, 1)), random_labels(2)
    path = tmp_path / "anything.npz"
    np.savez(path, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])

    assert_dataset(load_dataset("f_mnist", path), *arrays)


def test_npz_in_folder_found_by_name_and_float_images_kept(tmp_path):
    x_train, x_test = random_images(4, (28, 28)), random_images(2, (28, 28))
    y_train, y_test = random_labels(4), random_labels(2)
    np.savez(tmp_path / "fashion_mnist.npz", x_train=x_train / np.float32(255), y_train=y_train,
             x_test=x_test / np.float32(255), y_test=y_test)

    assert_dataset(load_dataset("f_mnist", tmp_path), x_train, y_train, x_test, y_test)


def test_npz_with_x_and_y_is_shuffled_then_split(tmp_path):
    images = random_images(20, (32, 32, 3))
    labels = np.repeat(np.arange(10, dtype=np.uint8), 2)  # sorted by class, like ../shared/data
    np.savez(tmp_path / "cifar10_small.npz", x=images, y=labels)

    dataset = load_dataset("cifar", tmp_path)
    again = load_dataset("cifar", tmp_path)

    assert len(dataset.y_train) == 16 and len(dataset.y_test) == 4
    assert "20%" in dataset.source and "seed" in dataset.source
    np.testing.assert_array_equal(dataset.y_test, again.y_test)
    assert not np.array_equal(dataset.y_train, np.sort(dataset.y_train))  # shuffled
    # Every image lands in exactly one split, with its own label.
    by_bytes = {image.tobytes(): label for image, label in zip(images, labels)}
    loaded = np.concatenate([dataset.x_train, dataset.x_test])
    loaded_labels = np.concatenate([dataset.y_train, dataset.y_test])
    restored = np.round(loaded * 255).astype(np.uint8)
    assert sorted(by_bytes) == sorted(image.tobytes() for image in restored)
    assert all(by_bytes[image.tobytes()] == label for image, label in zip(restored, loaded_labels))


@pytest.mark.parametrize("alias, expected", [
    ("mnist", "mnist"), ("MNIST", "mnist"), ("f_mnist", "f_mnist"), ("fashion_mnist", "f_mnist"),
    ("Fashion-MNIST", "f_mnist"), ("fmnist", "f_mnist"), ("cifar", "cifar"), ("CIFAR10", "cifar"),
])
def test_aliases(alias, expected):
    assert canonical_name(alias) == expected


def test_unknown_name_suggests_a_close_match():
    with pytest.raises(ValueError) as error:
        canonical_name("f_mnst")
    message = str(error.value)
    assert "'f_mnst'" in message and "did you mean 'f_mnist'?" in message.lower()
    assert all(name in message for name in data.DATASET_NAMES)


def test_shape_mismatch_names_both_shapes(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(path, x=random_images(5, (32, 32, 3)), y=random_labels(5))

    with pytest.raises(ValueError, match=r"\(32, 32, 3\).*mnist.*\(28, 28, 1\)"):
        load_dataset("mnist", path)


def test_empty_data_dir_is_an_error_not_a_fallback(tmp_path, no_local_copies):
    with pytest.raises(DataUnavailableError) as error:
        load_dataset("f_mnist", tmp_path)  # the embedded subset must not be used
    message = str(error.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte.gz" in message
    assert "fashion_mnist.npz" in message and data.DEBIAN_FASHION_MNIST_PACKAGE in message


def test_offline_without_local_copy_fails_fast_and_lists_places(tmp_path, no_local_copies):
    started = time.monotonic()
    with pytest.raises(DataUnavailableError) as error:
        load_dataset("cifar")
    assert time.monotonic() - started < 5
    assert no_local_copies, "reachability must be checked before any download"
    message = str(error.value)
    for place in (tmp_path / "keras" / "datasets" / "cifar-10-batches-py", tmp_path / "tfds" / "cifar10"):
        assert str(place) in message
    assert "unreachable" in message and "data_dir" in message and "cifar-10-batches-py/" in message


def test_download_false_never_checks_the_network(no_local_copies):
    with pytest.raises(DataUnavailableError, match="download=False"):
        load_dataset("mnist", download=False)
    assert not no_local_copies


def test_keras_cache_is_used(tmp_path, no_local_copies):
    arrays = random_images(3, (28, 28)), random_labels(3), random_images(2, (28, 28)), random_labels(2)
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    np.savez(cache / "mnist.npz", x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])

    dataset = load_dataset("mnist")

    assert_dataset(dataset, *arrays)
    assert str(cache / "mnist.npz") in dataset.source


def test_debian_package_is_preferred_to_the_embedded_subset(tmp_path, no_local_copies, recwarn):
    arrays = random_images(3, (28, 28)), random_labels(3), random_images(2, (28, 28)), random_labels(2)
    write_idx_folder(data.DEBIAN_FASHION_MNIST_DIR, *arrays)

    assert_dataset(load_dataset("fashion-mnist"), *arrays)
    assert not recwarn.list


def test_embedded_fashion_mnist_subset_when_nothing_else(no_local_copies):
    with pytest.warns(UserWarning, match=r"embedded Fashion-MNIST subset \(3000 train / 1000 test"):
        dataset = load_dataset("f_mnist")

    assert dataset.name == "f_mnist" and "embedded" in dataset.source
    assert dataset.x_train.shape == (3000, 28, 28, 1) and dataset.x_test.shape == (1000, 28, 28, 1)
    assert dataset.x_train.dtype == np.float32 and 0 <= dataset.x_train.min() < dataset.x_train.max() <= 1
    assert set(dataset.y_test.tolist()) == set(range(10))
    # The first test image of each class in the full Fashion-MNIST test set.
    np.testing.assert_array_equal(first_index_per_class(dataset.y_test), [19, 2, 1, 13, 6, 8, 4, 9, 18, 0])


def test_first_index_per_class():
    labels = np.array([2, 0, 1, 0, 2, 1])
    np.testing.assert_array_equal(first_index_per_class(labels, num_classes=3), [1, 2, 0])
    with pytest.raises(ValueError, match=r"\[1\]"):
        first_index_per_class(np.array([0, 2, 2]), num_classes=3)


def test_indices_by_class_takes_classes_in_turn():
    labels = np.array([2, 0, 1, 0, 2, 1, 0])
    np.testing.assert_array_equal(indices_by_class(labels, 3), first_index_per_class(labels, 3))
    np.testing.assert_array_equal(indices_by_class(labels, 7), [1, 2, 0, 3, 5, 4, 6])
    with pytest.raises(ValueError, match="only 7"):
        indices_by_class(labels, 8)
