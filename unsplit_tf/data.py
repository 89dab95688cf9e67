"""MNIST, Fashion-MNIST and CIFAR-10 as float32 NHWC arrays in [0, 1].

load_dataset() uses the first of these places that has the data:

1. ``data_dir``, when given (and then only there);
2. copies already on this machine: the Keras cache, a prepared TensorFlow
   Datasets directory, Debian's ``dataset-fashion-mnist`` package;
3. a TensorFlow Datasets download, when ``download=True`` and the network answers;
4. for f_mnist only, a small real subset shipped in the package (with a warning).

The search locations are module attributes and environment variables
(KERAS_HOME, TFDS_DATA_DIR) so that tests can point them at empty folders.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import hashlib
import importlib
import os
import pickle
import socket
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from unsplit_tf._validation import at_least

DATASET_NAMES: tuple[str, ...] = ("mnist", "f_mnist", "cifar")

ALIASES = {
    "fashion_mnist": "f_mnist",
    "fashion-mnist": "f_mnist",
    "fmnist": "f_mnist",
    "cifar10": "cifar",
}

CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "f_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar": ("airplane", "automobile", "bird", "cat", "deer",
              "dog", "frog", "horse", "ship", "truck"),
}

IMAGE_SHAPES = {"mnist": (28, 28, 1), "f_mnist": (28, 28, 1), "cifar": (32, 32, 3)}

TFDS_NAMES = {"mnist": "mnist", "f_mnist": "fashion_mnist", "cifar": "cifar10"}

# Train images, train labels, test images, test labels; each also read as .gz.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_PYTHON_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR_BINARY_FILES = tuple(f"{batch}.bin" for batch in CIFAR_PYTHON_FILES)

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
TFDS_HOST = ("storage.googleapis.com", 443)
EMBEDDED_FASHION_MNIST = "fashion_mnist_subset.npz"

# How an .npz holding only x/y is split: sorted files must be shuffled first.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


class DataUnavailableError(RuntimeError):
    """No source has the requested dataset; the message says where we looked and how to fix it."""


@dataclass(frozen=True)
class Dataset:
    """A dataset ready for training: float32 NHWC images in [0, 1], int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def canonical_name(name: str) -> str:
    """Map a dataset name or alias (any case) to one of DATASET_NAMES."""
    if not isinstance(name, str):
        raise ValueError(f"a dataset name must be a string such as {DATASET_NAMES[0]!r}, got {name!r}")
    key = name.strip().lower()
    if key in DATASET_NAMES:
        return key
    if key in ALIASES:
        return ALIASES[key]
    known = list(DATASET_NAMES) + list(ALIASES)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {canonical_name(close[0])!r}?" if close else ""
    raise ValueError(
        f"Unknown dataset {name!r}. Valid names: {', '.join(DATASET_NAMES)} "
        f"(aliases: {', '.join(ALIASES)}).{hint}"
    )


def first_index_per_class(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Index of the first example of each class, in class order.

    Used to pick the attack targets ("the first test image of each class").
    """
    labels = np.asarray(labels)
    at_least("num_classes", num_classes, 1)
    if labels.ndim != 1:
        raise ValueError(f"labels must be class indices of shape (N,), got shape {labels.shape}")
    missing = [c for c in range(num_classes) if not np.any(labels == c)]
    if missing:
        raise ValueError(
            f"No example of class(es) {missing} among {len(labels)} labels; "
            f"every class 0..{num_classes - 1} needs at least one example."
        )
    return np.array([np.flatnonzero(labels == c)[0] for c in range(num_classes)], dtype=np.int64)


def indices_by_class(labels: np.ndarray, count: int) -> np.ndarray:
    """The first `count` examples taken class by class: the first of each class, then the second, ...

    With `count` equal to the number of classes this is `first_index_per_class`; more targets
    keep the classes balanced.
    """
    labels = np.asarray(labels)
    count = at_least("count", count, 1)
    if not labels.size:
        raise ValueError(f"asked for {count} examples but there are no labels")
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    order = [indices[rank] for rank in range(max(map(len, per_class))) for indices in per_class if rank < len(indices)]
    if count > len(order):
        raise ValueError(f"asked for {count} examples but there are only {len(order)}")
    return np.array(order[:count], dtype=np.int64)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 download: bool = True) -> Dataset:
    """Load a dataset from the first source that has it (see the module docstring).

    With ``data_dir`` only that path is read. ``download=False`` never touches
    the network. Raises DataUnavailableError listing every place looked.
    """
    name = canonical_name(name)
    if data_dir is not None:
        if not str(data_dir).strip():
            raise DataUnavailableError("data_dir is empty; pass the folder or .npz file that holds the data, or leave "
                                       "it out to search this machine")
        return _load_from_data_dir(name, Path(data_dir))

    looked: list[str] = []
    dataset = _load_local_copy(name, looked)
    if dataset is not None:
        return dataset

    download_error: Exception | None = None
    if not download:
        looked.append("TensorFlow Datasets download: not tried (download=False)")
    elif not network_is_reachable():
        host, port = TFDS_HOST
        looked.append(f"TensorFlow Datasets download: not tried, {host}:{port} is unreachable (offline)")
    else:
        try:
            return _download_with_tfds(name)
        except Exception as error:  # reported below, then the embedded subset or an error
            download_error = error
            looked.append(f"TensorFlow Datasets download: failed ({type(error).__name__}: {error})")

    if name == "f_mnist":
        dataset = _load_embedded_fashion_mnist()
        warnings.warn(
            f"Using the embedded Fashion-MNIST subset ({len(dataset.y_train)} train / "
            f"{len(dataset.y_test)} test images): no full copy found. For the full data, "
            f"apt-get install {DEBIAN_FASHION_MNIST_PACKAGE}, pass data_dir, or run once online.",
            stacklevel=2,
        )
        return dataset
    raise DataUnavailableError(_unavailable_message(name, looked)) from download_error


def network_is_reachable(timeout: float = 3.0) -> bool:
    """True if a TCP connection to the TFDS download host opens within ``timeout`` seconds.

    Checked before downloading so that offline we fail in seconds, not after
    minutes of retries.
    """
    try:
        with socket.create_connection(TFDS_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded datasets (KERAS_HOME or ~/.keras, then datasets/)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def tfds_data_dir() -> Path:
    """Where TensorFlow Datasets keeps prepared datasets (TFDS_DATA_DIR or ~/tensorflow_datasets)."""
    return Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))


def dataset_fingerprint(data: Dataset) -> str:
    """A hash of everything in `data` that training sees: its name, and every array's name, dtype, shape and bytes.

    Keys caches and sweep cells, so two datasets that differ in a single pixel or label get different keys.
    SHA-256 over all the bytes: 0.1 to 0.4 s for the 220 MB of Fashion-MNIST (70,000 float32 images) on 2 CPU cores.
    """
    digest = hashlib.sha256(f"dataset {data.name}".encode())
    for field in ("x_train", "y_train", "x_test", "y_test"):
        array = np.ascontiguousarray(getattr(data, field))
        digest.update(f"|{field} {array.dtype.str} {array.shape}|".encode())
        digest.update(array.data if array.size else b"")
    return digest.hexdigest()[:16]


# --- sources ---------------------------------------------------------------


def _load_from_data_dir(name: str, path: Path) -> Dataset:
    if not path.exists():
        raise DataUnavailableError(
            f"data_dir {path} does not exist. It should be a folder with {_expected_files(name)}."
        )
    dataset = _read_path(name, path)
    if dataset is None:
        inside = next((sub for sub in sorted(path.iterdir()) if sub.is_dir() and _readable(name, sub)), None)
        hint = f" Its subfolder {inside.name} holds them: pass data_dir={inside}." if inside else ""
        raise DataUnavailableError(
            f"No usable {name} data in data_dir {path}.{hint} Expected {_expected_files(name)}."
        )
    return dataset


def _readable(name: str, path: Path) -> bool:
    """Whether ``path`` holds ``name``'s data (for a hint: a data_dir one folder too high)."""
    try:
        return _read_path(name, path) is not None
    except (ValueError, OSError):
        return False


def _load_local_copy(name: str, looked: list[str]) -> Dataset | None:
    """Try the copies that may already be on this machine; record each place in ``looked``."""
    keras_dir = keras_cache_dir()
    keras_paths = {
        "mnist": [keras_dir / "mnist.npz"],
        "f_mnist": [keras_dir / "fashion-mnist"],
        "cifar": [keras_dir / "cifar-10-batches-py",
                  keras_dir / "cifar-10-batches-py-target" / "cifar-10-batches-py"],
    }[name]
    for path in keras_paths:
        looked.append(f"Keras cache: {path}")
        if path.exists() and (dataset := _read_path(name, path)) is not None:
            return dataset

    tfds_dir = tfds_data_dir() / TFDS_NAMES[name]
    looked.append(f"prepared TensorFlow Datasets directory: {tfds_dir}")
    version_dir = _prepared_tfds_version(tfds_dir)
    if version_dir is not None:
        import tensorflow_datasets as tfds  # slow import: only when a prepared copy exists

        builder = tfds.builder_from_directory(str(version_dir))
        return _dataset_from_tfds_builder(name, builder, f"TensorFlow Datasets, prepared at {version_dir}")

    if name == "f_mnist":
        looked.append(f"Debian package {DEBIAN_FASHION_MNIST_PACKAGE}: {DEBIAN_FASHION_MNIST_DIR}")
        if DEBIAN_FASHION_MNIST_DIR.exists():
            return _read_path(name, DEBIAN_FASHION_MNIST_DIR)
    return None


def _prepared_tfds_version(dataset_dir: Path) -> Path | None:
    """Newest complete version folder (one with dataset_info.json) of a TFDS dataset, if any."""
    versions = [info.parent for info in dataset_dir.glob("*/dataset_info.json")
                if "incomplete" not in info.parent.name]
    if not versions:
        return None
    return max(versions, key=lambda path: tuple(int(part) for part in path.name.split(".") if part.isdigit()))


def _download_with_tfds(name: str) -> Dataset:
    import tensorflow_datasets as tfds  # slow import: only when downloading

    builder = tfds.builder(TFDS_NAMES[name])
    builder.download_and_prepare()
    return _dataset_from_tfds_builder(name, builder, f"TensorFlow Datasets, downloaded to {builder.data_dir}")


def _dataset_from_tfds_builder(name: str, builder, source: str) -> Dataset:
    import tensorflow_datasets as tfds

    x_train, y_train = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1, as_supervised=True))
    x_test, y_test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1, as_supervised=True))
    return _make_dataset(name, x_train, y_train, x_test, y_test, source)


def _load_embedded_fashion_mnist() -> Dataset:
    resource = resources.files("unsplit_tf") / "resources" / EMBEDDED_FASHION_MNIST
    with resource.open("rb") as file, np.load(file, allow_pickle=False) as arrays:
        x_train, y_train = arrays["x_train"], arrays["y_train"]
        x_test, y_test = arrays["x_test"], arrays["y_test"]
    source = (f"embedded subset of Fashion-MNIST: the first {len(y_train)} train and first "
              f"{len(y_test)} test images (unsplit_tf/resources/{EMBEDDED_FASHION_MNIST})")
    return _make_dataset("f_mnist", x_train, y_train, x_test, y_test, source)


# --- file formats ----------------------------------------------------------


def _read_path(name: str, path: Path) -> Dataset | None:
    """Read ``path`` (a folder or an .npz) in whichever supported format it holds; None if none."""
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"{path} is a file but not an .npz; pass a folder or an .npz file.")
        return _read_npz(name, path)

    idx_paths = [_find_file(path, *_idx_names(base)) for base in IDX_FILES]
    if all(idx_paths):
        arrays = [_read_idx(idx_path) for idx_path in idx_paths]
        return _make_dataset(name, *arrays, f"IDX files in {path}")

    for folder in (path, path / "cifar-10-batches-py"):
        if all((folder / file).is_file() for file in CIFAR_PYTHON_FILES):
            return _read_cifar_batches(name, folder, _read_cifar_python_batch, CIFAR_PYTHON_FILES,
                                       f"CIFAR-10 python batches in {folder}")
    for folder in (path, path / "cifar-10-batches-bin"):
        if all((folder / file).is_file() for file in CIFAR_BINARY_FILES):
            return _read_cifar_batches(name, folder, _read_cifar_binary_batch, CIFAR_BINARY_FILES,
                                       f"CIFAR-10 binary batches in {folder}")

    npz_paths = sorted({npz for alias in _names_for(name)
                        for pattern in (f"{alias}.npz", f"{alias}_*.npz", f"{alias}-*.npz")
                        for npz in path.glob(pattern)})
    if len(npz_paths) > 1:
        raise ValueError(
            f"Several .npz files in {path} could hold {name}: {', '.join(p.name for p in npz_paths)}. "
            f"Pass the one to use as data_dir."
        )
    if npz_paths:
        return _read_npz(name, npz_paths[0])
    return None


def _idx_names(base: str) -> tuple[str, ...]:
    """The names an IDX file goes by: gzipped or not, and "train-images.idx3-ubyte" as some copies spell it."""
    dotted = base.replace("-idx", ".idx")
    return base, base + ".gz", dotted, dotted + ".gz"


def _find_file(folder: Path, *names: str) -> Path | None:
    return next((folder / file for file in names if (folder / file).is_file()), None)


def _read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(_unreadable(path, error)) from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number); download it again.")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_size)
    if data.size != np.prod(shape):
        raise ValueError(f"{path} holds {data.size} bytes of data but its header says {shape}; "
                         f"the file is truncated or corrupt: download it again.")
    return data.reshape(shape)


def _read_cifar_batches(name: str, folder: Path, read_batch, files: tuple[str, ...],
                        source: str) -> Dataset:
    train = [read_batch(folder / file) for file in files[:-1]]
    x_test, y_test = read_batch(folder / files[-1])
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return _make_dataset(name, x_train, y_train, x_test, y_test, source)


def _read_cifar_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: b"data" is N x 3072 uint8 (channel-major 3x32x32), b"labels" a list.

    Read with `_CifarUnpickler`, which builds only arrays and plain values: a pickle can run code.
    """
    try:
        with open(path, "rb") as file:
            batch = _CifarUnpickler(file, encoding="bytes").load()
    except _RefusedGlobal as error:
        raise ValueError(
            f"{path} is not a plain CIFAR-10 python batch: it asks to load {error}, which could run code, so it "
            "was not read. Use the binary batches (cifar-10-batches-bin/ from cifar-10-binary.tar.gz) or "
            "download the python batches again."
        ) from None
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(_unreadable(path, error)) from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict; download it again.")
    images, labels = (batch.get(key, batch.get(key.decode())) for key in (b"data", b"labels"))
    images = np.asarray(images) if images is not None else None
    if images is None or labels is None or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise ValueError(
            f"{path} is not a CIFAR-10 batch: it needs b'data' (N x 3072 uint8) and b'labels'; download it again."
        )
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"{path} holds {len(images)} images but labels of shape {labels.shape}; download it again.")
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global that a CIFAR batch never holds."""


def _numpy_global(module: str, name: str):
    """A numpy pickling helper, wherever this numpy keeps it (numpy 2 moved numpy.core to numpy._core)."""
    submodule = module.rsplit(".", 1)[-1]
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise _RefusedGlobal(f"'{module}.{name}'")


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what real CIFAR-10 python batches hold: numpy arrays, dtypes, scalars and builtin values."""

    _NUMPY_HELPERS = {(f"{package}.{submodule}", name) for package in ("numpy.core", "numpy._core")
                      for submodule, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                                              ("numeric", "_frombuffer"))}
    _PLAIN = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode,
              **{(module, kind.__name__): kind for module in ("builtins", "__builtin__")  # __builtin__: protocol 2
                 for kind in (dict, list, tuple, bytes, bytearray, str, int, float)}}

    def find_class(self, module: str, name: str):
        if (module, name) in self._PLAIN:
            return self._PLAIN[module, name]
        if (module, name) in self._NUMPY_HELPERS:
            return _numpy_global(module, name)
        raise _RefusedGlobal(f"'{module}.{name}'")


def _read_cifar_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: records of 1 label byte followed by 3072 image bytes (3x32x32)."""
    records = np.fromfile(path, dtype=np.uint8)
    if records.size % 3073:
        raise ValueError(f"{path} is {records.size} bytes, not a whole number of 3073-byte CIFAR-10 records: "
                         f"the file is truncated or corrupt, download it again.")
    records = records.reshape(-1, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, records[:, 0]


def _read_npz(name: str, path: Path) -> Dataset:
    """An .npz with x_train/y_train/x_test/y_test, or x/y that we split deterministically."""
    arrays = _read_npz_arrays(path)
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        return _make_dataset(name, arrays["x_train"], arrays["y_train"],
                             arrays["x_test"], arrays["y_test"], str(path))
    x, y = arrays["x"], arrays["y"]
    if len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} examples but y has {len(y)}.")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test_size = round(len(x) * TEST_FRACTION)
    test, train = order[:test_size], order[test_size:]
    source = (f"{path} (x/y shuffled with seed {SPLIT_SEED}, {TEST_FRACTION:.0%} held out as test: "
              f"{len(train)} train / {len(test)} test)")
    return _make_dataset(name, x[train], y[train], x[test], y[test], source)


def _read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one layout (x_train, y_train, x_test, y_test, or x, y) read from `path`, whole."""
    with open(path, "rb") as file:
        if file.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ValueError(f"{path} is not an .npz file (a zip archive of .npy arrays); save the data with "
                             f"np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).")
        file.seek(0)
        try:
            with np.load(file, allow_pickle=False) as arrays:
                keys = set(arrays.files)
                for wanted in (("x_train", "y_train", "x_test", "y_test"), ("x", "y")):
                    if set(wanted) <= keys:
                        return {key: arrays[key] for key in wanted}
        except ValueError as error:
            if "pickle" in str(error) or "Object arrays" in str(error):
                raise ValueError(f"{path} holds object (pickled) arrays, which are not loaded because unpickling "
                                 f"can run code; save plain numeric arrays with np.savez.") from None
            raise ValueError(_unreadable(path, error)) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise ValueError(_unreadable(path, error)) from None
    raise ValueError(f"{path} holds arrays {sorted(keys)}; expected x_train, y_train, "
                     f"x_test, y_test, or x and y.")


def _unreadable(path: Path, error: Exception) -> str:
    """One line for a data file that cannot be decoded: which file, why, and what to do."""
    return (f"{path} could not be read ({type(error).__name__}: {error}): the file is corrupt or truncated, "
            f"or not in the format its name says; download it again or remove it.")


# --- validation --------------------------------------------------------------


def _make_dataset(name: str, x_train, y_train, x_test, y_test, source: str) -> Dataset:
    """Validate and convert the four arrays; refuse data that cannot train or test a classifier."""
    num_classes = len(CLASS_NAMES[name])
    x_train, x_test = (_as_images(name, x, source) for x in (x_train, x_test))
    y_train, y_test = (_as_labels(y, len(x), source, num_classes) for x, y in ((x_train, y_train), (x_test, y_test)))
    for split, labels in (("training", y_train), ("test", y_test)):
        if not len(labels):
            raise ValueError(f"{source}: the {split} split has 0 examples; give the file examples in both "
                             f"splits (x_train/y_train and x_test/y_test, or x/y with at least 5 rows).")
    present = np.unique(y_train)
    if len(present) < 2:
        raise ValueError(f"{source}: every training label is class {int(present[0])}; a classifier needs at "
                         f"least 2 classes. Check y_train (or y) in the file.")
    return Dataset(name, x_train, y_train, x_test, y_test, source, CLASS_NAMES[name])


def _as_images(name: str, images, source: str) -> np.ndarray:
    """(N,H,W) or (N,H,W,C), uint8 or float in [0,1] -> float32 (N,H,W,C) in [0,1]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    expected = IMAGE_SHAPES[name]
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(
            f"{source}: images are {images.shape[1:]} per example but {name} needs {expected} "
            f"(H, W, C); is this the right dataset?"
        )
    if np.issubdtype(images.dtype, np.integer):
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError(f"{source}: integer images must lie in 0..255, found "
                             f"{images.min()}..{images.max()}.")
        scaled = images.astype(np.float32)
        scaled /= 255
        return scaled
    if np.issubdtype(images.dtype, np.floating):
        if images.size and not (np.isfinite(images.min()) and np.isfinite(images.max())):
            bad = int(np.count_nonzero(~np.isfinite(images)))
            raise ValueError(f"{source}: {bad} pixel value(s) are NaN or infinite; images must lie in [0, 1]. "
                             f"Fix or drop those images.")
        if images.size and (images.min() < 0 or images.max() > 1):
            raise ValueError(f"{source}: float images must lie in [0, 1], found "
                             f"[{images.min()}, {images.max()}]; divide uint8 pixels by 255.")
        return np.asarray(images, dtype=np.float32)
    raise ValueError(f"{source}: images have dtype {images.dtype}; expected uint8 or float in [0, 1].")


def _as_labels(labels, count: int, source: str, num_classes: int) -> np.ndarray:
    """Class indices of shape (N,) or (N, 1) -> int64 (N,)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source}: labels must be integer class indices of shape (N,), "
                         f"got {labels.dtype} {labels.shape}.")
    if len(labels) != count:
        raise ValueError(f"{source}: {count} images but {len(labels)} labels.")
    if labels.size and (labels.min() < 0 or labels.max() > num_classes - 1):
        raise ValueError(f"{source}: labels must be class indices 0..{num_classes - 1}, found "
                         f"{labels.min()}..{labels.max()}; check the labels in the file.")
    return labels.astype(np.int64)


# --- messages ----------------------------------------------------------------


def _names_for(name: str) -> list[str]:
    return [name] + [alias for alias, canonical in ALIASES.items() if canonical == name]


def _expected_files(name: str) -> str:
    if name == "cifar":
        originals = ("cifar-10-batches-py/ (data_batch_1..5, test_batch) or "
                     "cifar-10-batches-bin/ (data_batch_1.bin..data_batch_5.bin, test_batch.bin)")
    else:
        originals = (f"the IDX files {', '.join(base + '.gz' for base in IDX_FILES)} (or uncompressed, or spelt "
                     f"{IDX_FILES[0].replace('-idx', '.idx')} and so on)")
        if name == "f_mnist":
            originals += (f" (apt-get install {DEBIAN_FASHION_MNIST_PACKAGE} puts them in "
                          f"{DEBIAN_FASHION_MNIST_DIR})")
    npz_names = ", ".join(f"{alias}.npz" for alias in _names_for(name))
    return (f"{originals}, or an .npz named {npz_names} (or with a suffix, like {name}_5k.npz) with arrays "
            f"x_train, y_train, x_test, y_test (or x, y); data_dir may also be the .npz itself")


def _unavailable_message(name: str, looked: list[str]) -> str:
    places = "\n".join(f"  - {place}" for place in looked)
    fixes = [f"pass data_dir (--data-dir) pointing at {_expected_files(name)}",
             f"run once with network access and download=True: TensorFlow Datasets downloads "
             f"{TFDS_NAMES[name]!r} to {tfds_data_dir()}"]
    return (f"No {name} data found. Looked in:\n{places}\nTo provide it:\n"
            + "\n".join(f"  - {fix}" for fix in fixes))
