"""Train a reference net the split-learning way (or find it in the model cache) and report its test accuracy.

    unsplit-tf train --dataset f_mnist --depth 2 --epochs 2

Client and server each train with Adam (amsgrad), batch 64 by default. The
trained model is cached (--cache-dir, default $UNSPLIT_TF_CACHE or
~/.cache/unsplit_tf), so that the attacks do not train it again.
"""

from __future__ import annotations

import argparse
import sys

import unsplit_tf.cli._quiet  # noqa: F401  first: quiets TensorFlow's start-up

from unsplit_tf import defaults
from unsplit_tf.cli._common import add_data_flags, add_training_flags, cache_folder, load_data, main_of, train_config
from unsplit_tf.cli._progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_flags(parser)
    add_training_flags(parser, epochs_default=str(defaults.EPOCHS))
    parser.add_argument("--depth", type=int, default=defaults.DEPTH, help=f"split depth (default {defaults.DEPTH})")


def run(args: argparse.Namespace) -> int:
    from unsplit_tf.models import reference_net
    from unsplit_tf.protocol import train_reference_net
    from unsplit_tf.split import split_model

    config = train_config(args, epochs=defaults.EPOCHS)
    split_model(reference_net(args.dataset), depth=args.depth)  # the depth checked before anything (the cache ignores it)
    cache = cache_folder(args)
    data = load_data(args)
    bar = Progress(config.epochs, "epoch", label="training")
    try:
        trained = train_reference_net(data, depth=args.depth, config=config, cache_dir=cache,
                                      on_epoch=lambda epoch, loss: bar.update(epoch + 1, loss=loss))
    finally:
        bar.close()
    how = "loaded from the cache" if trained.from_cache else "trained and cached"
    print(f"model: {how} at {trained.path}; split test accuracy {trained.test_accuracy:.2%}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return main_of(sys.modules[__name__], argv, prog)
