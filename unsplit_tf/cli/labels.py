"""Label inference against U-shaped split learning (UnSplit's second attack), with Li et al.'s baselines.

    unsplit-tf labels                                        # Fashion-MNIST (ships with the package)
    unsplit-tf labels --dataset mnist --data-dir DIR --batch-size 8
    unsplit-tf labels --dataset cifar --data-dir DIR --batch-size 64 --samples 512

Trains the dataset's reference net from scratch (as the paper's demo) split
U-shaped: the client runs the layers up to --depth and the output layer, and
holds the labels; the server runs the rest. Every training step the server
attacks the batch it just saw, under each observation model: the gradient of
the client's last-layer weights (what the authors' code compares; a real
server does not see it) and the gradient with respect to the activations the
server sent (what a split-learning server really receives). The server is
told the labels of the first --known-per-class examples of each class (they
name the classes); those are left out of every score. docs/ALGORITHMS.md
describes every method.

Writes <out>/label_inference.json (the run record) and <out>/label_accuracy.png
(running accuracy over the training steps). Ctrl-C stops training, scores and
writes the steps that finished, and exits with code 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import unsplit_tf.cli._quiet  # noqa: F401  first: quiets TensorFlow's start-up

from unsplit_tf import defaults
from unsplit_tf.attacks.labels import OBSERVATIONS
from unsplit_tf.cli._common import CliError, Interrupted, add_data_flags, load_data, main_of
from unsplit_tf.cli._outputs import run_folder, writable_folder
from unsplit_tf.cli._progress import Progress, Scalars
from unsplit_tf.data import canonical_name

MARKER = "label_inference.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_flags(parser)
    parser.add_argument("--samples", type=int, default=defaults.LABEL_SAMPLES,
                        help=f"training examples to attack, one epoch (default {defaults.LABEL_SAMPLES})")
    parser.add_argument("--batch-size", type=int, default=defaults.LABEL_BATCH_SIZE,
                        help=f"split-learning batch size (default {defaults.LABEL_BATCH_SIZE}, as the paper)")
    parser.add_argument("--observation", default="all", choices=("all", *OBSERVATIONS),
                        help="observation model(s) to attack (default all); activation_gradient is what a real server sees")
    parser.add_argument("--depth", type=int, default=defaults.LABEL_DEPTH,
                        help=f"the client's bottom part ends after this layer (default {defaults.LABEL_DEPTH})")
    parser.add_argument("--known-per-class", type=int, default=defaults.KNOWN_PER_CLASS,
                        help=f"labels of the first K examples of each class are known (default {defaults.KNOWN_PER_CLASS})")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default runs/labels_<dataset>_b<batch>, numbered if taken)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    parser.add_argument("--tensorboard", type=Path, metavar="DIR", help="also write each method's running label accuracy per step as TensorBoard scalars")


def check_flags(args: argparse.Namespace) -> None:
    for flag, value, least in (("--samples", args.samples, 1), ("--batch-size", args.batch_size, 1),
                               ("--known-per-class", args.known_per_class, 0)):
        if value < least:
            raise CliError(f"{flag} must be at least {least}, got {value}")


def run(args: argparse.Namespace) -> int:
    from unsplit_tf.runs import LABEL_METHOD_SETS, run_label_inference

    check_flags(args)
    default = Path("runs") / f"labels_{canonical_name(args.dataset)}_b{args.batch_size}"
    with run_folder(args.out, default, marker=MARKER, overwrite=args.overwrite) as out:
        board = writable_folder(args.tensorboard, "--tensorboard") if args.tensorboard else None
        data = load_data(args)
        if args.samples > len(data.x_train):
            raise CliError(f"--samples {args.samples} is more than the {len(data.x_train)} training images of {data.name}")
        methods = args.observation if args.observation in LABEL_METHOD_SETS else methods_observing(args.observation)
        steps = -(-args.samples // args.batch_size)
        bar, scalars = Progress(steps, "step", label="training + attack"), Scalars(board)

        def on_step(progress) -> None:
            shown = {name: value for name, value in progress.accuracy.items() if value is not None}
            bar.update(progress.step, loss=progress.loss)
            scalars.log(progress.step, loss=progress.loss, **{f"label_accuracy/{name}": value for name, value in shown.items()})

        try:
            outcome = run_label_inference(data, depth=args.depth, samples=args.samples, batch_size=args.batch_size, seed=args.seed,
                                          methods=methods, known_per_class=args.known_per_class, on_step=on_step)
        finally:
            bar.close()
            scalars.close()
        write_outputs(out, outcome, data, args)
        record = outcome.run
        print(record.summary())
        for method in record.methods:
            print(f"  {method.summary()}")
        print(f"wrote {out / MARKER} and {out / 'label_accuracy.png'}")
        if record.interrupted:
            raise Interrupted(f"{len(outcome.curve_steps)} of {steps} steps finished; the scores above and {out / MARKER} cover those only")
        return 0


def methods_observing(observation: str) -> tuple[str, ...]:
    """The ids of the label methods that read `observation`."""
    from unsplit_tf.runs import LABEL_METHODS

    return tuple(one.id for one in LABEL_METHODS.values() if one.config is not None and one.config.observation == observation)


def write_outputs(out: Path, outcome, data, args: argparse.Namespace) -> None:
    """The accuracy plot, then the record (atomically, last: a folder holding it holds a finished run)."""
    import numpy as np

    from unsplit_tf.plots import Reference, curves, save_figure

    out.mkdir(parents=True, exist_ok=True)
    series = {name: [np.nan if value is None else value for value in values] for name, values in outcome.curves.items()}
    if outcome.curve_steps and series:
        chance = max((m.chance for m in outcome.run.methods if m.accuracy is not None), default=None)
        references = [Reference("chance", chance, f"chance (most frequent class, {chance:.0%})")] if chance is not None else []
        figure = curves(series, x=outcome.curve_steps, xlabel="training step", ylabel="label accuracy so far (known labels excluded)",
                        title=f"Label inference, {data.name}, batch {args.batch_size}, depth {args.depth}",
                        integer_x=True, percent=True, references=references)
        save_figure(figure, out / "label_accuracy.png")
    partial = out / f".{MARKER}.partial"
    partial.write_text(json.dumps(outcome.run.to_dict(), indent=2, allow_nan=False))
    partial.replace(out / MARKER)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return main_of(sys.modules[__name__], argv, prog)
