"""Split-learning training, recording what crosses the wire.

Client and server each own an optimiser. In one step the client sends its
cut-layer activations ("smashed data") up, the server computes the loss and
sends the gradient with respect to those activations back down. `WireRecord`
is exactly what an honest-but-curious server sees; the attacks consume it.
A party's `add_loss` penalties (e.g. `defenses.NoPeek`) and weight
regularisers join its own objective only (`added_losses`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf import __version__
from unsplit_tf._validation import at_least, positive
from unsplit_tf.data import Dataset, dataset_fingerprint
from unsplit_tf.models import reference_net
from unsplit_tf.split import UShapedSplit, split_model


@dataclass(frozen=True)
class TrainConfig:
    """Split-learning training hyper-parameters; the defaults are the authors' demos'."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    amsgrad: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        # Stored as plain Python numbers: the config is written to JSON and hashed into cache keys.
        object.__setattr__(self, "epochs", at_least("epochs", self.epochs, 0))
        object.__setattr__(self, "batch_size", at_least("batch_size", self.batch_size, 1))
        object.__setattr__(self, "learning_rate", positive("learning_rate", self.learning_rate))
        object.__setattr__(self, "seed", at_least("seed", self.seed, 0))
        if not isinstance(self.amsgrad, (bool, np.bool_)):
            raise ValueError(f"amsgrad must be True or False, got {self.amsgrad!r}")
        object.__setattr__(self, "amsgrad", bool(self.amsgrad))


@dataclass(frozen=True)
class WireRecord:
    """What crossed the wire in one training step, as the server saw it."""

    step: int
    indices: np.ndarray  # which rows of the training inputs this batch holds (for evaluation only)
    activations: tf.Tensor  # client -> server: cut-layer outputs, one row per example
    activation_gradients: tf.Tensor  # server -> client: d loss / d activations
    loss: float
    labels: tf.Tensor | None = None  # the batch's labels: the server computes the loss with them (None: not recorded)


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean sparse categorical cross-entropy on logits: the loss every party trains with."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int64), logits=logits))


def added_losses(model: keras.Model) -> tf.Tensor:
    """The sum of `model.losses` from its last call: `add_loss` terms (e.g. a NoPeek penalty) and weight regularisers.

    Each party adds its own to its objective; their gradients train its weights only and never cross the wire.
    """
    return tf.add_n(model.losses) if model.losses else tf.constant(0.0)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam as in the authors' code (lr 1e-3, amsgrad)."""
    return keras.optimizers.Adam(learning_rate=config.learning_rate, amsgrad=config.amsgrad)


class _Trainer:
    """What every split-learning trainer shares: the shuffled batch loop, prediction, accuracy.

    A subclass supplies `_train_step(x, y) -> (loss, *wire traffic)` and the record type that
    holds that traffic; `fit` hands each step's record (`_record`) to `on_step`.
    """

    record_type: type

    def __init__(self, parts: list[keras.Model], config: TrainConfig) -> None:
        self.config = config
        self.steps_done = 0
        self._shuffle = np.random.default_rng(config.seed)
        self._input_shape = tuple(parts[0].input.shape[1:])
        self._num_classes = int(parts[-1].output.shape[-1])
        input_spec = tf.TensorSpec((None, *self._input_shape), tf.float32)
        self.train_step = tf.function(self._train_step, input_signature=[input_spec, tf.TensorSpec((None,), tf.int64)])

        def predict(x: tf.Tensor) -> tf.Tensor:
            for part in parts:
                x = part(x, training=False)
            return x

        self._predict = tf.function(predict, input_signature=[input_spec])

    def _train_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, ...]:
        raise NotImplementedError

    def _record(self, index: np.ndarray, labels: tf.Tensor, traffic: list[tf.Tensor], loss: float):
        """The step's wire record, as the server saw it (the labels stay with whichever party computes the loss)."""
        return self.record_type(self.steps_done, index, *traffic, loss)

    def fit(
        self,
        x: np.ndarray | tf.data.Dataset,
        y: np.ndarray | None = None,
        *,
        epochs: int | None = None,
        on_step: Callable | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        """Train for `epochs` (default: the config's); returns the mean loss per epoch.

        `x, y` are arrays, trained in shuffled batches of the config's size, or `x` is a finite
        `tf.data.Dataset` of (images, labels) batches, taken as it comes (shuffle and batch it yourself;
        a record's `indices` are then positions in the epoch's stream). `on_step` receives each step's
        wire record; `on_epoch(epoch, mean_loss)` runs after each epoch.
        """
        epochs = self.config.epochs if epochs is None else at_least("epochs", epochs, 0)
        x, y = self._checked_inputs(x, y)
        epoch_losses = []
        for epoch in range(epochs):
            losses = []
            for index, x_batch, y_batch in self._batches(x, y, shuffle=True):
                loss, *traffic = self.train_step(x_batch, y_batch)
                losses.append(float(loss))
                self.steps_done += 1
                if on_step is not None:
                    on_step(self._record(index, y_batch, traffic, losses[-1]))
            epoch_losses.append(float(np.mean(losses)))
            if on_epoch is not None:
                on_epoch(epoch, epoch_losses[-1])
        return epoch_losses

    def predict_logits(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """The whole model's logits, in batches."""
        x = np.asarray(x, dtype=np.float32)
        batch_size = at_least("batch_size", batch_size, 1)
        logits = [self._predict(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(logits) if logits else np.zeros((0, self._num_classes), np.float32)

    def evaluate(self, x: np.ndarray | tf.data.Dataset, y: np.ndarray | None = None) -> float:
        """Accuracy of the whole model on arrays (x, y) or on a finite `tf.data.Dataset` of (images, labels) batches."""
        x, y = self._checked_inputs(x, y)
        correct = total = 0
        for _, x_batch, y_batch in self._batches(x, y, shuffle=False, batch_size=1024):
            correct += int(np.sum(self._predict(x_batch).numpy().argmax(axis=1) == y_batch.numpy()))
            total += len(y_batch)
        return correct / total

    def _checked_inputs(self, x, y) -> tuple[np.ndarray | tf.data.Dataset, np.ndarray | None]:
        """Arrays or a dataset checked against the model, before any step runs."""
        if isinstance(x, tf.data.Dataset):
            if y is not None:
                raise ValueError("give the labels inside the tf.data.Dataset, as (images, labels) batches, not as y")
            _check_dataset(x, self._input_shape)
            return x, None
        if y is None:
            raise ValueError("labels y are missing: pass fit(x, y) with arrays, or a tf.data.Dataset of (images, labels)")
        return _check_xy(x, y, self._input_shape, self._num_classes)

    def _batches(self, x, y, *, shuffle: bool, batch_size: int | None = None) -> Iterator[tuple[np.ndarray, tf.Tensor, tf.Tensor]]:
        """(row indices, images, labels) per batch: shuffled slices of arrays, or a dataset's batches in order."""
        if isinstance(x, tf.data.Dataset):
            yield from _dataset_batches(x, self._num_classes)
            return
        batch = batch_size or self.config.batch_size
        order = self._shuffle.permutation(len(x)) if shuffle else np.arange(len(x))
        for start in range(0, len(x), batch):
            index = order[start : start + batch]
            yield index, tf.constant(x[index]), tf.constant(y[index], tf.int64)


class SplitTrainer(_Trainer):
    """Trains a client/server pair the split-learning way, one optimiser each.

    `train_step` is a `tf.function` traced once for any batch size; it returns
    the wire traffic so callers can hand it to an attack or record it.
    """

    record_type = WireRecord

    def __init__(self, client: keras.Model, server: keras.Model, config: TrainConfig = TrainConfig()) -> None:
        _check_parts([client, server])
        if tuple(client.output.shape[1:]) != tuple(server.input.shape[1:]):
            raise ValueError(
                f"client output shape {tuple(client.output.shape[1:])} does not match server input shape "
                f"{tuple(server.input.shape[1:])}; split both from the same model"
            )
        self.client, self.server = client, server
        self.client_optimizer = make_optimizer(config)
        self.server_optimizer = make_optimizer(config)
        super().__init__([client, server], config)

    def _train_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as client_tape:
            activations = self.client(x, training=True)
            penalty = added_losses(self.client)
        # --- the wire: `activations` go up to the server ---
        with tf.GradientTape(persistent=True) as server_tape:  # two gradients: the penalty stays off the wire
            server_tape.watch(activations)
            loss = cross_entropy(y, self.server(activations, training=True))
            server_objective = loss + added_losses(self.server)
        server_grads = server_tape.gradient(server_objective, self.server.trainable_variables)
        activation_grads = server_tape.gradient(loss, activations)
        self.server_optimizer.apply_gradients(zip(server_grads, self.server.trainable_variables))
        # --- the wire: `activation_grads` go back down to the client ---
        client_grads = client_tape.gradient(
            [activations, penalty], self.client.trainable_variables, output_gradients=[activation_grads, tf.ones_like(penalty)]
        )
        self.client_optimizer.apply_gradients(zip(client_grads, self.client.trainable_variables))
        return loss, activations, activation_grads

    def _record(self, index: np.ndarray, labels: tf.Tensor, traffic: list[tf.Tensor], loss: float) -> WireRecord:
        """The server computes the loss, so it holds each batch's labels: they are part of what it sees."""
        return WireRecord(self.steps_done, index, *traffic, loss, labels)


def _check_parts(parts: list) -> None:
    """Each party's model must be a Keras model with one input and one output: a trainer passes one tensor along."""
    for part in parts:
        if not isinstance(part, keras.Model):
            raise ValueError(f"expected the keras.Model parts of a split (split_model(...).client / .server), "
                             f"got {type(part).__name__}")
        for what, tensors in (("inputs", part.inputs), ("outputs", part.outputs)):
            if len(tensors) != 1:
                raise ValueError(f"model '{part.name}' has {len(tensors)} {what}; split-learning training passes one "
                                 f"tensor between parties, so every part needs one input and one output "
                                 f"(the server's output: the logits)")


def _check_xy(x, y, input_shape, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 inputs and int64 labels that the model can train on; ValueError naming what is wrong."""
    x, y = np.asarray(x), np.asarray(y)
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"inputs have shape {tuple(x.shape[1:])} per example but the model expects {tuple(input_shape)}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices of shape (N,), got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    if not len(x):
        raise ValueError("no examples: the inputs have 0 rows")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"inputs must be floats, got dtype {x.dtype}; convert them (uint8 images: x / 255, "
                         "the scale load_dataset gives)")
    x = np.asarray(x, dtype=np.float32)
    _check_batch(x, y, num_classes)
    return x, y.astype(np.int64)


def _check_batch(x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
    if not np.isfinite(x).all():
        raise ValueError(f"{np.count_nonzero(~np.isfinite(x))} input value(s) are NaN or infinite; fix or drop those examples")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must be class indices 0..{num_classes - 1} (the model has {num_classes} outputs), "
                         f"found {y.min()}..{y.max()}")


def _check_dataset(dataset: tf.data.Dataset, input_shape) -> None:
    """Refuse a dataset that never ends or does not yield (images, labels) batches of the model's input shape."""
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError("the tf.data.Dataset is infinite (it repeats forever), but one epoch is one pass over it: "
                         "drop .repeat(), or bound it with .take(steps)")
    if cardinality == 0:
        raise ValueError("the tf.data.Dataset is empty")
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(part, tf.TensorSpec) for part in spec)):
        raise ValueError(f"the tf.data.Dataset must yield (images, labels) pairs of tensors; its elements are {spec}. "
                         "Map them to pairs, e.g. dataset.map(lambda e: (e['image'], e['label']))")
    x_spec, y_spec = spec
    if not x_spec.dtype.is_floating:
        raise ValueError(f"the tf.data.Dataset yields {x_spec.dtype.name} images; convert them to floats "
                         "(uint8 images: x / 255, the scale load_dataset gives)")
    if x_spec.shape.rank == len(input_shape):
        raise ValueError(f"the tf.data.Dataset yields single images of shape {tuple(x_spec.shape)}; batch it with .batch(n)")
    if x_spec.shape.rank != len(input_shape) + 1 or not x_spec.shape[1:].is_compatible_with(input_shape):
        raise ValueError(f"the tf.data.Dataset yields images of shape {tuple(x_spec.shape)} (batch first) but the model "
                         f"expects {tuple(input_shape)} per example")
    if not (y_spec.dtype.is_integer and y_spec.shape.rank in (1, 2)):
        raise ValueError(f"the tf.data.Dataset's labels must be integer class indices of shape (batch,), "
                         f"got {y_spec.dtype.name} {tuple(y_spec.shape)}")


def _dataset_batches(dataset: tf.data.Dataset, num_classes: int) -> Iterator[tuple[np.ndarray, tf.Tensor, tf.Tensor]]:
    """A checked dataset's batches as (positions in this pass, float32 images, int64 labels)."""
    position = 0
    for x, y in dataset:
        y = tf.reshape(tf.cast(y, tf.int64), [-1])
        x = tf.cast(x, tf.float32)
        if x.shape[0] != y.shape[0] or not len(y):
            raise ValueError(f"the tf.data.Dataset yielded a batch of {x.shape[0]} images and {y.shape[0]} labels")
        _check_batch(x.numpy(), y.numpy(), num_classes)
        yield np.arange(position, position + len(y)), x, y
        position += len(y)
    if not position:
        raise ValueError("the tf.data.Dataset yielded no batches")


# ---------------------------------------------------------------- trained-model cache


@dataclass(frozen=True)
class TrainedModel:
    """A reference net trained the split-learning way, with how it was made.

    `cache_key` is what the cache entry records (see `cache_key`): the data fingerprint, the training
    config, the architecture hash and the package and Keras versions.
    """

    model: keras.Model
    test_accuracy: float
    config: TrainConfig
    dataset: str
    path: Path
    from_cache: bool
    cache_key: dict | None = None


# Bumped when the cache entry layout changes: older entries are then retrained, never misread.
CACHE_SCHEMA = 2


def default_cache_dir() -> Path:
    """Where trained models are kept: $UNSPLIT_TF_CACHE, else ~/.cache/unsplit_tf."""
    return Path(os.environ.get("UNSPLIT_TF_CACHE", Path.home() / ".cache" / "unsplit_tf"))


def architecture_hash(model: keras.Model) -> str:
    """A hash of `model`'s Keras config: layers, their settings and initialisers, and how they connect."""
    return hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_key(data: Dataset, config: TrainConfig, model: keras.Model) -> dict:
    """Everything a trained reference net depends on; two runs with equal keys train the same weights."""
    return {"schema": CACHE_SCHEMA, "dataset": data.name, "data_fingerprint": dataset_fingerprint(data),
            "train_config": asdict(config), "architecture": architecture_hash(model),
            "unsplit_tf_version": __version__, "keras_version": keras.__version__}


def train_reference_net(
    data: Dataset,
    *,
    depth: int,
    config: TrainConfig = TrainConfig(),
    cache_dir: str | os.PathLike | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainedModel:
    """Train `data`'s reference net split at `depth`, or load it if this exact run was cached.

    Two Adam optimisers over disjoint weights equal one over all of them, so
    the trained weights do not depend on the depth; the cache key leaves it
    out and one training serves a whole depth sweep. The key covers all of the
    data, the config, the net's architecture and the package version. An entry
    whose record does not match its key or its model file (say, another model
    copied over it) is retrained with a warning, never trusted.
    """
    directory = _usable_cache_dir(Path(cache_dir or default_cache_dir()))
    keras.utils.set_random_seed(config.seed)
    model = reference_net(data.name)
    split = split_model(model, depth=depth)  # before loading: a bad depth fails the same either way
    key = cache_key(data, config, model)
    key_hash = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = directory / f"{data.name}_e{config.epochs}_s{config.seed}_{key_hash}.keras"
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        cached = _load_cached(path, meta_path, key)
        if cached is not None:
            cached_model, accuracy = cached
            return TrainedModel(cached_model, accuracy, config, data.name, path, from_cache=True, cache_key=key)
    trainer = SplitTrainer(split.client, split.server, config)
    trainer.fit(data.x_train, data.y_train, on_epoch=on_epoch)
    accuracy = trainer.evaluate(data.x_test, data.y_test)
    saved = []  # the hash of the file this process wrote, not of whatever a concurrent run renamed over it

    def save(temporary: Path) -> None:
        model.save(temporary)
        saved.append(_file_sha256(temporary))

    _write_atomically(path, save)
    record = {"key": key, "model_sha256": saved[0], "test_accuracy": accuracy, "source": data.source}
    _write_atomically(meta_path, lambda temporary: temporary.write_text(json.dumps(record, indent=2)))
    return TrainedModel(model, accuracy, config, data.name, path, from_cache=False, cache_key=key)


def _usable_cache_dir(directory: Path) -> Path:
    """`directory`, created if needed; checked before any training so that no trained model is lost."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cache_dir {directory} cannot be used as a folder ({error.strerror or error}); "
                         "pass a folder path (it is created if missing)") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"cache_dir {directory} is not writable; pass a folder you can write to")
    return directory


def _load_cached(path: Path, meta_path: Path, key: dict) -> tuple[keras.Model, float] | None:
    """The cached model and its accuracy if the entry is complete and is what `key` asks for; else None (warned)."""
    try:
        record = json.loads(meta_path.read_text())
        problem = None
        if not isinstance(record, dict) or record.get("key") != key:
            problem = "its record was made for another key"
        elif not path.exists():
            problem = "its model file is missing"
        elif _file_sha256(path) != record.get("model_sha256"):
            problem = "its model file is not the one that was trained (changed or replaced since)"
        else:
            return keras.models.load_model(path, safe_mode=True), float(record["test_accuracy"])
    except (OSError, ValueError, KeyError, TypeError) as error:  # unreadable JSON or .keras: retrain
        problem = f"it could not be read ({type(error).__name__}: {error})"
    warnings.warn(f"model cache entry {path} was not used: {problem}; training afresh and replacing it", stacklevel=3)
    return None


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` to a temporary file beside `path`, then rename it over `path`: readers never see a partial file."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------- U-shaped split learning (label inference)

@dataclass(frozen=True)
class UShapedWireRecord:
    """What one U-shaped training step exposes to the server.

    In a U-shaped split the client keeps the head (the output layer and the
    labels), so the server sends `activations` *down* to the head and receives
    `activation_gradients` back. `head_kernel_gradient` is the gradient of the
    client's last-layer kernel: a standard server never sees it; it is what the
    UnSplit authors' code compares (the `weight_gradient` observation model).
    """

    step: int
    indices: np.ndarray  # which rows of the training inputs this batch holds (for evaluation only)
    activations: tf.Tensor  # server -> client head: inputs of the head, one row per example
    activation_gradients: tf.Tensor  # client head -> server: d loss / d activations, one row per example
    head_kernel_gradient: tf.Tensor  # d loss / d (kernel of the head's last layer), summed over the batch
    loss: float


class UShapedTrainer(_Trainer):
    """Trains a `UShapedSplit` (client bottom, server middle, client head), one optimiser per party.

    The client's optimiser covers its bottom and its head; the server's covers
    the middle. `train_step` is a `tf.function` traced once for any batch size
    and returns (loss, activations, activation_gradients, head_kernel_gradient).
    """

    record_type = UShapedWireRecord

    def __init__(self, split: UShapedSplit, config: TrainConfig = TrainConfig()) -> None:
        if not isinstance(split, UShapedSplit):
            raise ValueError(f"UShapedTrainer takes the UShapedSplit of split_u_shaped(model, depth=...), got {type(split).__name__}")
        _check_parts([split.client_bottom, split.server, split.client_head])
        self.client_bottom, self.server, self.client_head = split.client_bottom, split.server, split.client_head
        for sender, receiver, what in (
            (self.client_bottom, self.server, "client bottom output / server input"),
            (self.server, self.client_head, "server output / client head input"),
        ):
            if tuple(sender.output.shape[1:]) != tuple(receiver.input.shape[1:]):
                raise ValueError(
                    f"{what} shapes differ: {tuple(sender.output.shape[1:])} vs {tuple(receiver.input.shape[1:])}; "
                    "build all three parts with split_u_shaped from one model"
                )
        last = self.client_head.layers[-1]
        if getattr(last, "kernel", None) is None:
            raise ValueError(f"the head's last layer '{last.name}' has no kernel, so it has no weight gradient to record")
        self.head_kernel = last.kernel
        self.client_optimizer = make_optimizer(config)
        self.server_optimizer = make_optimizer(config)
        super().__init__([self.client_bottom, self.server, self.client_head], config)

    def _train_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        client_variables = self.client_bottom.trainable_variables + self.client_head.trainable_variables
        with tf.GradientTape() as bottom_tape:
            smashed = self.client_bottom(x, training=True)
            bottom_penalty = added_losses(self.client_bottom)
        # --- the wire: `smashed` goes up to the server ---
        with tf.GradientTape() as server_tape:
            server_tape.watch(smashed)
            activations = self.server(smashed, training=True)
        # --- the wire: `activations` go down to the client's head ---
        with tf.GradientTape(persistent=True) as head_tape:  # two gradients: the penalty stays off the wire
            head_tape.watch(activations)
            loss = cross_entropy(y, self.client_head(activations, training=True))
            head_objective = loss + added_losses(self.client_head)
        head_variables = self.client_head.trainable_variables
        head_grads = head_tape.gradient(head_objective, head_variables)
        activation_grads = head_tape.gradient(loss, activations)
        kernel_grad = head_grads[next(i for i, v in enumerate(head_variables) if v is self.head_kernel)]
        # --- the wire: `activation_grads` go back up to the server ---
        server_grads, smashed_grads = server_tape.gradient(
            activations, [self.server.trainable_variables, smashed], output_gradients=activation_grads
        )
        self.server_optimizer.apply_gradients(zip(server_grads, self.server.trainable_variables))
        # --- the wire: `smashed_grads` go back down to the client's bottom ---
        bottom_grads = bottom_tape.gradient(
            [smashed, bottom_penalty],
            self.client_bottom.trainable_variables,
            output_gradients=[smashed_grads, tf.ones_like(bottom_penalty)],
        )
        self.client_optimizer.apply_gradients(zip(bottom_grads + head_grads, client_variables))
        return loss, activations, activation_grads, kernel_grad
