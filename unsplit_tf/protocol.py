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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.data import Dataset
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
        if self.epochs < 0:
            raise ValueError(f"epochs must be 0 or more, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclass(frozen=True)
class WireRecord:
    """What crossed the wire in one training step, as the server saw it."""

    step: int
    indices: np.ndarray  # which rows of the training inputs this batch holds (for evaluation only)
    activations: tf.Tensor  # client -> server: cut-layer outputs, one row per example
    activation_gradients: tf.Tensor  # server -> client: d loss / d activations
    loss: float


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
    holds that traffic; `fit` hands each step's record to `on_step`.
    """

    record_type: type

    def __init__(self, parts: list[keras.Model], config: TrainConfig) -> None:
        self.config = config
        self.steps_done = 0
        self._shuffle = np.random.default_rng(config.seed)
        self._input_shape = tuple(parts[0].input.shape[1:])
        input_spec = tf.TensorSpec((None, *self._input_shape), tf.float32)
        self.train_step = tf.function(self._train_step, input_signature=[input_spec, tf.TensorSpec((None,), tf.int64)])

        def predict(x: tf.Tensor) -> tf.Tensor:
            for part in parts:
                x = part(x, training=False)
            return x

        self._predict = tf.function(predict, input_signature=[input_spec])

    def _train_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, ...]:
        raise NotImplementedError

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int | None = None,
        on_step: Callable | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        """Train for `epochs` (default: the config's) over shuffled batches; returns the mean loss per epoch.

        `on_step` receives each step's wire record; `on_epoch(epoch, mean_loss)` runs after each epoch.
        """
        epochs = self.config.epochs if epochs is None else epochs
        _check_xy(x, y, self._input_shape)
        batch = self.config.batch_size
        epoch_losses = []
        for epoch in range(epochs):
            order = self._shuffle.permutation(len(x))
            losses = []
            for start in range(0, len(x), batch):
                index = order[start : start + batch]
                loss, *traffic = self.train_step(tf.constant(x[index]), tf.constant(y[index], tf.int64))
                losses.append(float(loss))
                self.steps_done += 1
                if on_step is not None:
                    on_step(self.record_type(self.steps_done, index, *traffic, losses[-1]))
            epoch_losses.append(float(np.mean(losses)))
            if on_epoch is not None:
                on_epoch(epoch, epoch_losses[-1])
        return epoch_losses

    def predict_logits(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """The whole model's logits, in batches."""
        return np.concatenate([self._predict(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)])

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of the whole model on (x, y)."""
        _check_xy(x, y, self._input_shape)
        return float(np.mean(self.predict_logits(x).argmax(axis=1) == y))


class SplitTrainer(_Trainer):
    """Trains a client/server pair the split-learning way, one optimiser each.

    `train_step` is a `tf.function` traced once for any batch size; it returns
    the wire traffic so callers can hand it to an attack or record it.
    """

    record_type = WireRecord

    def __init__(self, client: keras.Model, server: keras.Model, config: TrainConfig = TrainConfig()) -> None:
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


def _check_xy(x: np.ndarray, y: np.ndarray, input_shape) -> None:
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"inputs have shape {tuple(x.shape[1:])} per example but the model expects {tuple(input_shape)}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")


# ---------------------------------------------------------------- trained-model cache


@dataclass(frozen=True)
class TrainedModel:
    """A reference net trained the split-learning way, with how it was made."""

    model: keras.Model
    test_accuracy: float
    config: TrainConfig
    dataset: str
    path: Path
    from_cache: bool


def default_cache_dir() -> Path:
    """Where trained models are kept: $UNSPLIT_TF_CACHE, else ~/.cache/unsplit_tf."""
    return Path(os.environ.get("UNSPLIT_TF_CACHE", Path.home() / ".cache" / "unsplit_tf"))


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
    out and one training serves a whole depth sweep. The key does include the
    data (a fingerprint), the config and the seed.
    """
    name = f"{data.name}_e{config.epochs}_s{config.seed}_{_fingerprint(data, config)}.keras"
    path = Path(cache_dir or default_cache_dir()) / name
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        model = keras.models.load_model(path, safe_mode=True)
        meta = json.loads(meta_path.read_text())
        return TrainedModel(model, meta["test_accuracy"], config, data.name, path, from_cache=True)
    keras.utils.set_random_seed(config.seed)
    model = reference_net(data.name)
    split = split_model(model, depth=depth)
    trainer = SplitTrainer(split.client, split.server, config)
    trainer.fit(data.x_train, data.y_train, on_epoch=on_epoch)
    accuracy = trainer.evaluate(data.x_test, data.y_test)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    meta_path.write_text(json.dumps({"test_accuracy": accuracy, "dataset": data.name, "source": data.source, **asdict(config)}, indent=2))
    return TrainedModel(model, accuracy, config, data.name, path, from_cache=False)


def _fingerprint(data: Dataset, config: TrainConfig) -> str:
    digest = hashlib.sha1(json.dumps(asdict(config), sort_keys=True).encode())
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array[:: max(1, len(array) // 256)]).tobytes())
    return digest.hexdigest()[:12]


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
