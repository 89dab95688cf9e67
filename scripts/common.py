"""What every front-door script shares: dataset flags, progress display, quiet TensorFlow.

Import this module before anything that imports TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null: TensorFlow's C++ start-up lines are written before
    its logging can be configured, so no environment variable reaches them."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with _stderr_silenced():
    import tensorflow as tf

    tf.config.list_logical_devices()  # initialises the devices (and prints "no CUDA" on CPU machines) now

import keras  # noqa: E402

from unsplit_tf.data import DATASET_NAMES, DataUnavailableError, Dataset, load_dataset  # noqa: E402
from unsplit_tf.protocol import TrainConfig, TrainedModel, train_reference_net  # noqa: E402


def add_data_flags(parser: argparse.ArgumentParser, *, default_dataset: str = "f_mnist") -> None:
    parser.add_argument("--dataset", default=default_dataset, help=f"one of {', '.join(DATASET_NAMES)} (default {default_dataset})")
    parser.add_argument("--data-dir", help="folder (or .npz) with local copies of the data; see README 'Data'")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="split-learning training epochs (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="training batch size (default %(default)s)")
    parser.add_argument("--cache-dir", help="where trained models are cached (default $UNSPLIT_TF_CACHE or ~/.cache/unsplit_tf)")


def load_data(args: argparse.Namespace) -> Dataset:
    """Load the dataset, printing where it came from; exit with the loader's message if it is missing."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_dataset(args.dataset, args.data_dir)
    except (ValueError, DataUnavailableError) as error:
        sys.exit(f"error: {error}")
    for warning in caught:
        print(f"note: {warning.message}")
    print(f"data: {data.name} from {data.source}: {len(data.x_train)} train / {len(data.x_test)} test images")
    return data


def trained_model(data: Dataset, args: argparse.Namespace, depth: int) -> TrainedModel:
    """Train the reference net split at `depth` (or load it from the cache), with an epoch progress bar."""
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    bar = keras.utils.Progbar(args.epochs, stateful_metrics=["loss"], unit_name="epoch")
    trained = train_reference_net(
        data, depth=depth, config=config, cache_dir=args.cache_dir, on_epoch=lambda epoch, loss: bar.update(epoch + 1, [("loss", loss)])
    )
    how = "loaded from cache" if trained.from_cache else "trained"
    print(f"model: {how} {trained.path} - split test accuracy {trained.test_accuracy:.2%}")
    return trained
