"""What both audit callbacks share: the schedule, the probe set, the cut, and the TensorBoard writer."""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.callbacks import _summaries as summaries
from unsplit_tf.split import Split, split_model


def probe_arrays(probe: Any, input_rank: int, *, labelled: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) numpy arrays from an array, an (x, y) pair, or a finite tf.data.Dataset of either.

    A dataset may be batched or not (told apart by `input_rank`, the rank of one
    input example); it is read to the end once, so it must be finite. With
    labelled=True, y is required.
    """
    if isinstance(probe, tf.data.Dataset):
        if probe.cardinality() == tf.data.INFINITE_CARDINALITY:
            raise ValueError("the probe dataset is infinite (.repeat()?); pass a finite one, e.g. dataset.take(n)")
        elements = list(probe.as_numpy_iterator())
        if not elements:
            raise ValueError("the probe dataset is empty; pass at least one example")
        pairs = isinstance(elements[0], tuple)
        first = elements[0][0] if pairs else elements[0]
        join = np.concatenate if np.ndim(first) == input_rank + 1 else np.stack
        probe = (join([e[0] for e in elements]), join([e[1] for e in elements])) if pairs else join(elements)
    if isinstance(probe, (tuple, list)):
        if len(probe) != 2:
            raise ValueError(f"probe must be x or a pair (x, y), got a sequence of {len(probe)} items")
        x, y = np.asarray(probe[0], np.float32), np.asarray(probe[1])
        if len(y) != len(x):
            raise ValueError(f"probe has {len(x)} inputs but {len(y)} labels; pass one label per input")
    else:
        x, y = np.asarray(probe, np.float32), None
    if labelled and y is None:
        raise ValueError("probe must be a pair (x, y): the label audit needs the labels to compute the loss")
    if x.ndim != input_rank + 1 or len(x) == 0:
        raise ValueError(
            f"probe inputs must be a non-empty batch of examples of rank {input_rank} (N, ...), got shape {x.shape}"
        )
    return x, y


class Audit(keras.callbacks.Callback):
    """Base of the audit callbacks: validates the schedule and the cut, writes figures to logs and TensorBoard.

    Subclasses implement `_check_probe(split)` (shape checks, run at `set_model`),
    `figure_names()` and `_audit(epoch) -> dict[str, float | None]` (None: undefined this
    time, logged as NaN); they may add images through `self._writer`.
    """

    def __init__(self, cut: str, *, every: int, tensorboard_dir: str | os.PathLike | None, prefix: str) -> None:
        super().__init__()
        if not isinstance(cut, str) or not cut:
            raise ValueError(f"cut must be the name of the layer to split after, e.g. cut='pool1', got {cut!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number of epochs, at least 1, got {every!r}")
        self.cut = cut
        self.every = every
        self.tensorboard_dir = None if tensorboard_dir is None else os.fspath(tensorboard_dir)
        self.prefix = prefix
        self.history: list[dict[str, float]] = []
        self.split: Split | None = None
        self._writer: tf.summary.SummaryWriter | None = None

    def set_model(self, model: keras.Model) -> None:
        """Cut `model` at `cut` and check the probe against it; raises ValueError before any training."""
        super().set_model(model)
        self.split = split_model(model, layer=self.cut)
        self._check_probe(self.split)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.tensorboard_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Audit if this epoch is due, and put the figures into `logs`; NaN for each on an epoch not audited.

        NaN keeps every epoch's logs with the same keys (CSVLogger needs that, and History stays
        aligned with the epochs); EarlyStopping counts such an epoch as one without improvement.
        """
        names = [self.prefix + name for name in self.figure_names()]
        if (epoch + 1) % self.every:
            if logs is not None:
                logs.update(dict.fromkeys(names, float("nan")))
            return
        measured = {self.prefix + name: value for name, value in self._audit(epoch).items()}
        figures = {name: float("nan") if measured.get(name) is None else float(measured[name]) for name in names}
        if logs is not None:
            logs.update(figures)
        self.history.append({"epoch": epoch + 1, **figures})
        if self._writer is not None:
            with self._writer.as_default():
                for name, value in figures.items():
                    summaries.scalar(name, value, step=epoch)
            self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _check_probe(self, split: Split) -> None:
        raise NotImplementedError

    def figure_names(self) -> list[str]:
        """The names (without prefix) of the figures each audit logs; known once `set_model` has run."""
        raise NotImplementedError

    def _audit(self, epoch: int) -> dict[str, float]:
        raise NotImplementedError


def check_inputs_fit(x: np.ndarray, model: keras.Model) -> None:
    """Raise unless the probe inputs have the model's input shape."""
    expected = tuple(model.input.shape[1:])
    if tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"probe inputs have shape {x.shape} but model '{model.name}' takes (N, {', '.join(map(str, expected))}); "
            "pass probe examples shaped like the training inputs"
        )


def integer_labels(y: np.ndarray) -> np.ndarray:
    """Class indices (N,) from integer labels, shaped (N,) or (N, 1), or from one-hot rows (N, C)."""
    rows = np.asarray(y).reshape(len(y), -1)
    return (rows[:, 0] if rows.shape[1] == 1 else rows.argmax(axis=1)).astype(np.int64)


def in_batches(function, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """`function` applied to `x` in batches, concatenated as numpy."""
    return np.concatenate([np.asarray(function(x[i : i + batch_size])) for i in range(0, len(x), batch_size)])
