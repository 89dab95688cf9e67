"""Depth sweep of inversion + stealing (and label inference) per dataset; resumable.

    python scripts/sweep.py --datasets f_mnist mnist --data-dir mnist=../shared/data
    python scripts/sweep.py --datasets cifar --data-dir ../shared/data --epochs 10 --budget 40x40+40 \\
        --attack paper:batched --attack better:batched

For each dataset and each depth (the paper's: 1..6 for the MNIST net, 1..8 for
the CIFAR net) it trains the split pair once (cached), attacks the first test
image of each class with every --attack PRESET:MODE, and scores the
reconstructions (MSE / PSNR / SSIM, random-guess baselines) and the stolen
clone. One label-inference cell per dataset follows. Each finished cell is
written to RESULTS/cells/ at once; re-running skips finished cells, so an
interrupted sweep (Ctrl-C) resumes where it stopped. Budget, epochs and seed
are part of every cell's key. Then: python scripts/report.py
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from common import load_data, trained_model  # first: quiets TensorFlow's start-up lines

import keras  # noqa: E402

from unsplit_tf.attacks.inversion import MODES, PRESETS, RoundReport  # noqa: E402
from unsplit_tf.data import DATASET_NAMES, canonical_name  # noqa: E402
from unsplit_tf.experiments import (  # noqa: E402
    Budget,
    CellRunner,
    InversionCell,
    LabelCell,
    ResultStore,
    SweepEvent,
    data_fingerprint,
    inversion_cells,
    run_sweep,
)
from unsplit_tf.models import paper_depths  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["f_mnist"], help=f"any of {', '.join(DATASET_NAMES)} (default f_mnist)")
    parser.add_argument("--data-dir", action="append", default=[], metavar="[NAME=]PATH",
                        help="where a dataset's files are: NAME=PATH for one dataset, PATH for all; repeatable")
    parser.add_argument("--depths", type=int, nargs="+", help="split depths (default: the paper's for each dataset)")
    parser.add_argument("--attack", action="append", metavar="PRESET:MODE",
                        help=f"preset ({', '.join(PRESETS)}) and mode ({', '.join(MODES)}); repeatable "
                             "(default paper:sequential and better:batched)")
    parser.add_argument("--budget", type=budget, default=Budget(100, 100, 100),
                        help="inversion steps per target, MAINxINPUT+MODEL (default 100x100+100)")
    parser.add_argument("--epochs", type=int, default=2, help="split-learning training epochs (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of training, clone and label run (default 0)")
    parser.add_argument("--targets", type=int, default=10, help="class targets to attack, 1..10 (default 10)")
    parser.add_argument("--label-samples", type=int, default=100, help="training examples for label inference; 0 skips it (default 100)")
    parser.add_argument("--label-batch-size", type=int, default=1, help="batch size of the label run (default 1, as the authors)")
    parser.add_argument("--label-depth", type=int, default=2, help="depth of the client's bottom part in the label run (default 2)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default results/)")
    parser.add_argument("--cache-dir", help="where trained models are cached (default $UNSPLIT_TF_CACHE or ~/.cache/unsplit_tf)")
    args = parser.parse_args(argv)
    try:
        args.datasets = list(dict.fromkeys(canonical_name(name) for name in args.datasets))
        args.data_dirs = data_dirs(args.data_dir)
    except ValueError as error:
        parser.error(str(error))
    args.attacks = [parse_attack(parser, text) for text in args.attack or ["paper:sequential", "better:batched"]]
    return args


def budget(text: str) -> Budget:
    try:
        return Budget.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def data_dirs(values: list[str]) -> dict[str | None, str]:
    """{dataset: path} from NAME=PATH entries; a plain PATH is stored under None (every dataset)."""
    dirs: dict[str | None, str] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if separator:
            dirs[canonical_name(name)] = path
        else:
            dirs[None] = value
    return dirs


def parse_attack(parser: argparse.ArgumentParser, text: str) -> tuple[str, str]:
    name, _, mode = text.partition(":")
    if name not in PRESETS or mode not in MODES:
        parser.error(f"--attack {text!r}: write PRESET:MODE with PRESET in {', '.join(PRESETS)} and MODE in {', '.join(MODES)}")
    return name, mode


def describe(cell: InversionCell | LabelCell) -> str:
    if isinstance(cell, InversionCell):
        return f"inversion {cell.dataset} depth {cell.depth} {cell.preset}/{cell.mode} {cell.budget}"
    return f"labels {cell.dataset} {cell.samples} samples, batch {cell.batch_size}"


def summary(record: dict) -> str:
    if record["kind"] == "labels":
        return ", ".join(f"{m['id']} {m['accuracy']:.0%}" for m in record["methods"] if m["accuracy"] is not None)
    scores, clone = record["reconstruction"], record["clone"]
    return (f"MSE {scores['mean_mse']:.3f} SSIM {scores['mean_ssim']:.3f} clone {clone['clone_accuracy']:.1%} "
            f"({record['attack_seconds']:.0f} s)")


class Progress:
    """Per-cell lines, and a round progress bar while an inversion cell runs."""

    def __init__(self) -> None:
        self.bar: keras.utils.Progbar | None = None
        self.done = 0

    def on_event(self, event: SweepEvent) -> None:
        head = f"[{event.index}/{event.total}] {describe(event.cell)}"
        if event.status == "skipped":
            print(f"{head}: done before, skipped ({summary(event.record)})")
        elif event.status == "started":
            print(f"{head} ...", flush=True)
            if isinstance(event.cell, InversionCell):
                self.bar = keras.utils.Progbar(event.cell.targets * event.cell.budget.main_iters, unit_name="round",
                                               stateful_metrics=["matching"])
                self.done = 0
        else:
            print(f"{head}: {summary(event.record)}", flush=True)

    def on_round(self, report: RoundReport) -> None:
        self.done += len(report.targets)
        if self.bar is not None:
            self.bar.update(self.done, [("matching", float(report.matching_loss.mean()))])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    datasets = {name: load_data(argparse.Namespace(dataset=name, data_dir=args.data_dirs.get(name, args.data_dirs.get(None))))
                for name in args.datasets}
    cells = []
    for name, data in datasets.items():
        depths = args.depths or list(paper_depths(name))
        try:
            cells += inversion_cells(data, depths, args.attacks, args.budget, epochs=args.epochs, seed=args.seed, targets=args.targets)
            if args.label_samples:
                cells.append(LabelCell(name, args.label_depth, args.label_samples, args.label_batch_size, args.seed, data_fingerprint(data)))
        except ValueError as error:
            sys.exit(f"error: {error}")

    def train(data, config):
        flags = argparse.Namespace(epochs=config.epochs, batch_size=config.batch_size, seed=config.seed, cache_dir=args.cache_dir)
        return trained_model(data, flags, depth=1)

    progress = Progress()
    store = ResultStore(args.results)
    runner = CellRunner(datasets, train=train, on_round=progress.on_round)
    command = "python scripts/sweep.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        run_sweep(cells, store, runner, extra={"command": command}, on_event=progress.on_event)
    except KeyboardInterrupt:
        sys.exit(f"\ninterrupted: finished cells are in {store.cells_dir}; run the same command again to resume")
    except ValueError as error:  # e.g. a depth the net does not have; the cells before it are stored
        sys.exit(f"error: {error}")
    print(f"all {len(cells)} cells are in {store.cells_dir}; now: python scripts/report.py --results {args.results}")


if __name__ == "__main__":
    main()
