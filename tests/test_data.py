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
from unsplit_tf.data import (
    Dataset,
    DataUnavailableError,
    canonical_name,
    dataset_fingerprint,
    first_index_per_class,
    indices_by_class,
    load_dataset,
)

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
    """Labels in a random order that hold two classes or more whenever count >= 2 (one class is refused)."""
    return RNG.permutation(np.arange(count) % 10).astype(np.uint8)


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


@pytest.mark.parametrize("compress, dotted", [(True, False), (False, False), (False, True)])
def test_idx_files(tmp_path, compress, dotted):
    arrays = random_images(5, (28, 28)), random_labels(5), random_images(3, (28, 28)), random_labels(3)
    write_idx_folder(tmp_path, *arrays, compress=compress)
    if dotted:  # "train-images.idx3-ubyte", as some copies of MNIST are named
        for path in list(tmp_path.iterdir()):
            path.rename(path.with_name(path.name.replace("-idx", ".idx")))

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


def test_a_data_dir_one_folder_too_high_names_the_subfolder_that_holds_the_files(tmp_path):
    write_idx_folder(tmp_path / "MNIST_dir", *idx_arrays())  # as a downloaded archive unpacks
    with pytest.raises(DataUnavailableError, match="Its subfolder MNIST_dir holds them: pass data_dir=.*MNIST_dir"):
        load_dataset("mnist", tmp_path)  # never read from there silently: the user named another folder
    assert load_dataset("mnist", tmp_path / "MNIST_dir").x_train.shape == (4, 28, 28, 1)


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


# --- no code from data, no silent wrong data -----------------------------------


def write_cifar_python_folder(folder, batches, protocol, numpy_1_names=False):
    """Batches laid out as the real ones: a dict of bytes keys, b'data' a uint8 array, b'labels' a list.

    The real files name numpy 1's `numpy.core.multiarray`; `numpy_1_names` writes that name (numpy 2 writes `numpy._core`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for file, (images, labels) in zip(data.CIFAR_PYTHON_FILES, batches):
        batch = {b"batch_label": file.encode(), b"labels": labels.tolist(), b"data": chw_rows(images),
                 b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}
        raw = pickle.dumps(batch, protocol=protocol)
        (folder / file).write_bytes(raw.replace(b"numpy._core.", b"numpy.core.") if numpy_1_names else raw)


@pytest.mark.parametrize(("protocol", "numpy_1_names"), [(2, False), (2, True), (5, False)])
def test_cifar_python_batches_laid_out_as_the_real_ones_load(tmp_path, protocol, numpy_1_names):
    batches = cifar_batches()
    write_cifar_python_folder(tmp_path / "cifar-10-batches-py", batches, protocol, numpy_1_names)

    dataset = load_dataset("cifar", tmp_path)

    assert_dataset(dataset, np.concatenate([x for x, _ in batches[:5]]),
                   np.concatenate([y for _, y in batches[:5]]), *batches[5])


class _WritesMarker:
    """A pickle payload that, when unpickled by plain pickle.load, writes a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_cifar_python_batch_that_would_run_code_is_refused_without_running_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_python_folder(folder, cifar_batches(), protocol=2)
    marker = tmp_path / "marker"
    with open(folder / "data_batch_1", "wb") as handle:
        pickle.dump({b"data": _WritesMarker(marker), b"labels": [0, 1]}, handle, protocol=2)

    with pytest.raises(ValueError, match=r"data_batch_1 is not a plain CIFAR-10 python batch.*'(__builtin__|builtins).exec'.*binary batches"):
        load_dataset("cifar", tmp_path)
    assert not marker.exists()


def idx_arrays():
    return random_images(4, (28, 28)), random_labels(4), random_images(2, (28, 28)), random_labels(2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_images_with_nan_or_inf_pixels_are_refused(tmp_path, bad):
    x_train = random_images(4, (28, 28, 1)) / np.float32(255)
    x_train[2, 5, 5, 0] = bad
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=random_labels(4), x_test=x_train[:2], y_test=random_labels(2))

    with pytest.raises(ValueError, match=r"mnist.npz: 1 pixel value\(s\) are NaN or infinite"):
        load_dataset("mnist", path)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x_train": np.zeros((0, 28, 28), np.uint8), "y_train": np.zeros(0, np.uint8)}, "the training split has 0 examples"),
    ({"x_test": np.zeros((0, 28, 28), np.uint8), "y_test": np.zeros(0, np.uint8)}, "the test split has 0 examples"),
    ({"y_train": np.array([0, 1, 2, 10], np.uint8)}, r"labels must be class indices 0\.\.9, found 0\.\.10"),
    ({"y_train": np.array([0, 1, -1, 2], np.int64)}, r"0\.\.9, found -1\.\.2"),
    ({"y_train": np.full(4, 3, np.uint8)}, "every training label is class 3; a classifier needs at least 2 classes"),
])
def test_degenerate_data_is_refused_naming_the_file(tmp_path, arrays, message):
    x_train, y_train, x_test, y_test = idx_arrays()
    path = tmp_path / "mnist.npz"
    np.savez(path, **{"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, **arrays})

    with pytest.raises(ValueError, match=message) as error:
        load_dataset("mnist", path)
    assert str(path) in str(error.value)


def corrupt_gzip(path):
    path.write_bytes(b"this is not gzip")


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [corrupt_gzip, truncate])
def test_corrupt_or_truncated_gzip_names_the_file(tmp_path, damage):
    write_idx_folder(tmp_path, *idx_arrays())
    damage(tmp_path / "train-images-idx3-ubyte.gz")

    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz could not be read.*corrupt or truncated"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize(("damage", "message"), [
    ("not_a_zip", r"is not an .npz file \(a zip archive"),
    ("truncated", "could not be read.*download it again"),
    ("object_array", r"holds object \(pickled\) arrays, which are not loaded"),
    ("bad_crc", "could not be read.*download it again"),
])
def test_unreadable_npz_names_the_file(tmp_path, damage, message):
    path = tmp_path / "mnist.npz"
    x_train, y_train, x_test, y_test = idx_arrays()
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    if damage == "not_a_zip":
        path.write_bytes(b"just some text")
    elif damage == "truncated":
        truncate(path)
    elif damage == "object_array":
        np.savez(path, x_train=np.array([x_train], dtype=object), y_train=y_train, x_test=x_test, y_test=y_test)
    else:  # flip a byte inside the compressed x_train member
        raw = bytearray(path.read_bytes())
        raw[200] ^= 0xFF
        path.write_bytes(bytes(raw))

    with pytest.raises(ValueError, match=f"mnist.npz {message}"):
        load_dataset("mnist", path)


def test_truncated_cifar_batches_name_the_file(tmp_path):
    write_cifar_python_folder(tmp_path / "py" / "cifar-10-batches-py", cifar_batches(), protocol=2)
    truncate(tmp_path / "py" / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(ValueError, match="test_batch could not be read.*corrupt or truncated"):
        load_dataset("cifar", tmp_path / "py")

    folder = tmp_path / "bin" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for file, (images, labels) in zip(data.CIFAR_BINARY_FILES, cifar_batches()):
        (folder / file).write_bytes(np.hstack([labels[:, None], chw_rows(images)]).tobytes())
    (folder / "data_batch_3.bin").write_bytes((folder / "data_batch_3.bin").read_bytes()[:-100])
    with pytest.raises(ValueError, match="data_batch_3.bin is 6046 bytes.*truncated or corrupt"):
        load_dataset("cifar", tmp_path / "bin")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: load_dataset(123), "dataset name must be a string"),
    (lambda: load_dataset("mnist", ""), "data_dir is empty"),
    (lambda: indices_by_class(np.array([0, 1]), 1.5), "count must be a whole number"),
    (lambda: indices_by_class(np.array([], np.int64), 1), "there are no labels"),
    (lambda: first_index_per_class(np.array([0, 1]), 0), "num_classes must be at least 1"),
])
def test_wrong_arguments_get_a_message_not_a_traceback(call, message):
    with pytest.raises((ValueError, DataUnavailableError), match=message):
        call()


def test_fingerprint_sees_every_row_label_dtype_and_name():
    x = RNG.random((1000, 28, 28, 1), dtype=np.float32)
    y = random_labels(1000).astype(np.int64)

    def dataset(x_train=x, y_train=y, name="mnist"):
        return Dataset(name, x_train, y_train, x[:10], y[:10], "synthetic", data.CLASS_NAMES["mnist"])

    reference = dataset_fingerprint(dataset())
    assert dataset_fingerprint(dataset(x.copy(), y.copy())) == reference
    one_pixel = x.copy()
    one_pixel[778, 13, 13, 0] += 0.5  # a row the old every-(len // 256)-th-row sample skipped
    one_label = y.copy()
    one_label[501] = (one_label[501] + 1) % 10
    variants = [dataset(one_pixel), dataset(y_train=one_label), dataset(name="f_mnist"),
                dataset(x.astype(np.float64)), dataset(x.reshape(1000, 28, 1, 28))]
    fingerprints = {dataset_fingerprint(variant) for variant in variants}
    assert reference not in fingerprints and len(fingerprints) == len(variants)
