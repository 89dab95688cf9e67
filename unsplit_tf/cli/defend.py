"""Defenses at the cut, measured on both sides: what each costs in accuracy, what it leaves the attacks.

    unsplit-tf defend                               # Fashion-MNIST, depth 2, every defense at its default strengths
    unsplit-tf defend --defense nopeek --nopeek-weights 0.5 5
    unsplit-tf defend --quick --results runs/defenses_quick   # a few-minute smoke run
    unsplit-tf defend --attack unsplit sdar --aux 6000 --defense nopeek   # NoPeek against UnSplit and against SDAR
    unsplit-tf defend --report-only                 # redraw REPORT.md and the figures from the stored runs

Inversion side: for each activation defense (gaussian_noise, laplace_noise,
nopeek) and strength, the reference net is trained the split-learning way
with the defense at the cut, its test accuracy taken with the defense active,
and the server attacks what the defended client sends for the first test image
of each class, with each --attack: UnSplit (the tuned preset, all targets in one
batch; the clone has the client's undefended architecture), SDAR (alongside
the defended training) or the inverse network, both holding --aux labelled
images held out of the client's data. Label side: for each gradient defense
(gradient_clipping, gradient_noise, label_subspace_noise, max_norm_noise) the
net is trained U-shaped with the defense at the input of the client's head,
and the server runs the label attacks a real server can (on dL/da) over the
first --label-samples examples. docs/ALGORITHMS.md describes each defense.

Every run is a cell of the same store as the sweep (--results): finished
cells are skipped, so an interrupted run (Ctrl-C, exit code 130) resumes.
Then REPORT.md and the privacy-utility figures are written from the store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import unsplit_tf.cli._quiet  # noqa: F401  first: quiets TensorFlow's start-up

from unsplit_tf import defaults
from unsplit_tf.attacks.inversion import PRESETS
from unsplit_tf.cli._common import CliError, add_data_flags, cache_folder, finite_float, load_data, main_of, stream_preset_alone
from unsplit_tf.cli._outputs import writable_folder
from unsplit_tf.cli.sweep import (
    FAMILIES,
    add_backend_arguments,
    add_setting_arguments,
    backend_options,
    refused_setting,
    setting_overrides,
)
from unsplit_tf.defenses import DEFENSES

# Strength flags, each the grid of the registry's defenses it names.
STRENGTH_FLAGS = {
    "noise_levels": ("gaussian_noise",),
    "laplace_levels": ("laplace_noise",),
    "nopeek_weights": ("nopeek",),
    "clip_norms": ("gradient_clipping",),
    "gradient_noise_levels": ("gradient_noise", "label_subspace_noise"),
}
QUICK = {"epochs": 1, "main_iters": 10, "label_samples": 128, "train_samples": 6000}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from unsplit_tf.sweep import DEFAULT_BUDGET

    add_data_flags(parser)
    parser.add_argument("--depth", type=int, default=defaults.DEPTH, help=f"split depth (default {defaults.DEPTH})")
    parser.add_argument("--epochs", type=int, help=f"training epochs of every model (default {defaults.EPOCHS}; {QUICK['epochs']} with --quick)")
    parser.add_argument("--batch-size", type=int, default=defaults.BATCH_SIZE, help=f"two-party training batch size (default {defaults.BATCH_SIZE})")
    parser.add_argument("--defense", nargs="+", choices=("none", *DEFENSES), help="run only these defenses ('none': the undefended baselines; default all)")
    for flag, names in STRENGTH_FLAGS.items():
        grid = " ".join(f"{s:g}" for s in DEFENSES[names[0]].default_strengths)
        parser.add_argument(f"--{flag.replace('_', '-')}", type=finite_float, nargs="+", metavar="S",
                            help=f"strengths of {' and '.join(names)}: {DEFENSES[names[0]].strength_meaning} (default {grid})")
    parser.add_argument("--attack", nargs="+", choices=FAMILIES, default=["unsplit"],
                        help="inversion attacks against the activation defenses (default unsplit); sdar and inverse_network "
                             "run with their defaults (--preset and the budget flags are UnSplit's)")
    parser.add_argument("--aux", type=int, metavar="N",
                        help=f"auxiliary images held out for sdar / inverse_network (default {defaults.AUX})")
    parser.add_argument("--preset", default=defaults.PRESET, choices=list(PRESETS), help=f"inversion preset (default {defaults.PRESET}, the strongest)")
    parser.add_argument("--main-iters", type=int, help=f"inversion rounds (default {DEFAULT_BUDGET.main_iters}; {QUICK['main_iters']} with --quick)")
    parser.add_argument("--input-iters", type=int, default=DEFAULT_BUDGET.input_iters, help=f"x_hat steps per round (default {DEFAULT_BUDGET.input_iters})")
    parser.add_argument("--model-iters", type=int, default=DEFAULT_BUDGET.model_iters, help=f"clone steps per round (default {DEFAULT_BUDGET.model_iters})")
    add_setting_arguments(parser)
    parser.add_argument("--label-batch-size", type=int, default=defaults.DEFENSE_LABEL_BATCH_SIZE, help=f"U-shaped training batch size (default {defaults.DEFENSE_LABEL_BATCH_SIZE})")
    parser.add_argument("--label-samples", type=int, help=f"training examples the label attacks see (default {defaults.DEFENSE_LABEL_SAMPLES}; {QUICK['label_samples']} with --quick)")
    parser.add_argument("--train-samples", type=int, help=f"train on the first N training images only (default all; {QUICK['train_samples']} with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {', '.join(f'{k.replace(chr(95), chr(45))} {v}' for k, v in QUICK.items())}")
    parser.add_argument("--results", "--out", type=Path, default=Path("results"), metavar="DIR", help="the results store, shared with the sweep (default results/)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="where trained models are cached (default $UNSPLIT_TF_CACHE or ~/.cache/unsplit_tf)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite REPORT.md and the figures from --results")
    add_backend_arguments(parser)


def settings(args: argparse.Namespace) -> list:
    """The DefenseSettings the flags ask for (the undefended baselines are added by the planner)."""
    from unsplit_tf.records import DefenseSetting

    wanted = [name for name in (args.defense or DEFENSES) if name != "none"]
    grids = {name: DEFENSES[name].default_strengths for name in DEFENSES}
    for flag, names in STRENGTH_FLAGS.items():
        if getattr(args, flag) is not None:
            grids.update(dict.fromkeys(names, tuple(getattr(args, flag))))
    return [DefenseSetting(name, strength) for name in wanted for strength in grids[name]]


def filled(args: argparse.Namespace) -> argparse.Namespace:
    """Flags left out take --quick's value with --quick, else the library's default; then the values are checked."""
    fallback = {"epochs": defaults.EPOCHS, "main_iters": defaults.SWEEP_BUDGET[0], "label_samples": defaults.DEFENSE_LABEL_SAMPLES,
                "train_samples": None}
    for name, value in (QUICK if args.quick else fallback).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("epochs", "batch_size", "main_iters", "input_iters", "model_iters", "label_batch_size", "label_samples"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    args.attack = list(dict.fromkeys(args.attack))
    args.settings = setting_overrides(args, args.attack, "--attack")
    if "unsplit" in args.attack and PRESETS[args.preset].mode == "stream":
        raise stream_preset_alone(f"--preset {args.preset}", f"defend attacks the class targets alone; use --preset "
                                  f"{defaults.PRESET} (the default) or paper")
    if args.aux is not None and args.attack == ["unsplit"]:
        raise CliError("--aux is for --attack sdar / inverse_network; unsplit uses no auxiliary data")
    if args.aux is not None and args.aux < 2:
        raise CliError(f"--aux must be at least 2 images, got {args.aux}")
    return args


def inversion_fields(args: argparse.Namespace) -> list[dict]:
    """The inversion cells' fields, one dict per --attack: UnSplit's preset and budget, or a family's aux images; and
    the family's settings given."""
    from unsplit_tf.sweep import Budget

    shared = {"epochs": args.epochs, "batch_size": args.batch_size, "train_samples": args.train_samples}
    unsplit = {"preset": args.preset, "budget": Budget(args.main_iters, args.input_iters, args.model_iters)}
    return [{**shared, **(unsplit if family == "unsplit" else {"attack": family, "aux": args.aux or defaults.AUX}),
             **args.settings.get(family, {})} for family in args.attack]


def run(args: argparse.Namespace) -> int:
    from unsplit_tf.records import NO_DEFENSE
    from unsplit_tf.reporting import write_report
    from unsplit_tf.store import ResultStore
    from unsplit_tf.sweep import defense_cells

    args = filled(args)
    backend = backend_options(args)
    results = writable_folder(args.results, "--results")
    if args.report_only:
        print(f"wrote {write_report(ResultStore(results))}")
        return 0
    cache = cache_folder(args)
    data = load_data(args)
    chosen = settings(args) + ([NO_DEFENSE] if "none" in (args.defense or ()) else [])
    labels = {"samples": args.label_samples, "batch_size": args.label_batch_size, "epochs": args.epochs,
              "train_samples": args.train_samples}
    try:
        planned = [cell for inversion in inversion_fields(args)
                   for cell in defense_cells(data, chosen, depth=args.depth, seed=args.seed, inversion=inversion, labels=labels)]
    except ValueError as error:  # a cell's config refused a setting
        raise refused_setting(error) from None
    cells = list({cell.key: cell for cell in planned}.values())  # the label side once, whatever the attacks
    from unsplit_tf.cli._grid import run_grid

    store, _ = run_grid(cells, {data.name: data}, results=results, cache=cache, verb="defend", argv=args.argv, backend=backend)
    print(f"wrote {write_report(store)}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return main_of(sys.modules[__name__], argv, prog)
