"""Attacks that watch split training step by step (the run layer's `alongside` hooks).

Each watcher's `start(known_client, server)` is called once the server model exists and returns
the `on_step` that sees every training step's wire record, as the server does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.attacks.inversion import SDARAttack, SDARConfig
from unsplit_tf.protocol import TrainConfig, WireRecord

OBSERVED_SAMPLE_SIZE = 10
"""Training images of the last epoch whose smashed data SDAR decodes the moment it sees them (one per sampled step)."""


def steps_per_epoch(samples: int, batch_size: int) -> int:
    return -(-samples // batch_size)


def _check_training(training: TrainConfig, watched: str, alternative: str = "") -> None:
    """ValueError, before any work, where there is no training to watch (epochs=0 trains nothing)."""
    if training.epochs < 1:
        raise ValueError(f"{watched}, but epochs={training.epochs} trains nothing, so the server receives nothing: "
                         f"train for at least one epoch{alternative}")


class SDARWatcher:
    """SDAR alongside training: builds the attack once the server exists, steps it on every batch,
    and decodes a seeded sample of the last epoch's batches the moment it sees them (for scoring)."""

    def __init__(self, config: SDARConfig, aux_x: np.ndarray, aux_y: np.ndarray, training: TrainConfig, samples: int) -> None:
        _check_training(training, "SDAR fits its simulator and decoder on the smashed data of training")
        self.config, self.aux_x, self.aux_y = config, aux_x, aux_y
        per_epoch = steps_per_epoch(samples, training.batch_size)
        rng = np.random.default_rng(config.seed)
        chosen = rng.choice(per_epoch, min(OBSERVED_SAMPLE_SIZE, per_epoch), replace=False) + 1 + (training.epochs - 1) * per_epoch
        self._per_step = -(-OBSERVED_SAMPLE_SIZE // len(chosen))
        self._steps, self._rng = {int(step) for step in chosen}, rng
        self.attack: SDARAttack | None = None
        self.rows: list[int] = []  # rows of the client's training data
        self.decoded: list[np.ndarray] = []

    @property
    def started(self) -> bool:
        """Whether the attack has taken at least one step (so there is something to score)."""
        return self.attack is not None and self.attack.result().steps > 0

    def start(self, known_client: keras.Model, server: keras.Model) -> Callable[[WireRecord], None]:
        self.attack = SDARAttack(known_client, server, self.aux_x, self.aux_y, self.config)
        return self.on_step

    def on_step(self, record: WireRecord) -> None:
        self.attack.on_step(record)
        wanted = min(self._per_step, OBSERVED_SAMPLE_SIZE - len(self.rows), len(record.indices))
        if record.step in self._steps and wanted > 0:  # the sample may fill before the last sampled step
            picked = self._rng.choice(len(record.indices), wanted, replace=False)
            self.rows += [int(i) for i in np.asarray(record.indices)[picked]]
            self.decoded.append(self.attack.reconstruct(tf.gather(record.activations, picked)))


class LastEpochObservations:
    """Keeps the smashed data of the last `count` training examples the server received.

    Those are the end of the last epoch: the client's weights move during training, and the
    latest activations come from weights closest to the final client, through which the attacked
    test targets are observed, so one clone can explain both. Memory: `count` rows plus one batch.
    """

    def __init__(self, count: int, training: TrainConfig, samples: int) -> None:
        if count > samples:
            raise ValueError(f"observations {count} is more than the {samples} examples of one training epoch")
        _check_training(training, f"observations {count} are watched during training",
                        ", or attack a trained Split, which is observed through its final client")
        self.count = count
        per_epoch = steps_per_epoch(samples, training.batch_size)
        self._first_step, self._last_step = (training.epochs - 1) * per_epoch + 1, training.epochs * per_epoch
        self._last_seen = 0
        self._batches: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._held = 0

    def start(self, known_client: keras.Model, server: keras.Model) -> Callable[[WireRecord], None]:
        return self.on_step

    def on_step(self, record: WireRecord) -> None:
        self._last_seen = record.step
        if record.step < self._first_step:
            return
        self._batches.append((np.asarray(record.indices), np.asarray(record.activations)))
        self._held += len(record.indices)
        while self._held - len(self._batches[0][0]) >= self.count:
            self._held -= len(self._batches.popleft()[0])

    @property
    def complete(self) -> bool:
        """Whether the last epoch's final step has been seen (training ran to the end)."""
        return self._last_seen >= self._last_step

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows of the client's training data, their smashed data as received), the last `count` received."""
        if not self.complete:
            raise RuntimeError(f"training stopped at step {self._last_seen} of {self._last_step}; the last epoch's observations are incomplete")
        rows = np.concatenate([rows for rows, _ in self._batches])[-self.count:]
        activations = np.concatenate([activations for _, activations in self._batches])[-self.count:]
        return rows, activations
