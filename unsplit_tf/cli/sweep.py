"""A resumable grid of runs: datasets x depths x attacks x defenses x seeds, one stored record per cell.

    unsplit-tf sweep                                         # Fashion-MNIST, the paper's depths
    unsplit-tf sweep --datasets f_mnist mnist --data-dir mnist=DIR
    unsplit-tf sweep --datasets cifar --data-dir DIR --epochs 10 --budget 40x40+40 --attack paper:sequential --attack tuned:batched
    unsplit-tf sweep --defense gaussian_noise:0.5 --defense nopeek:3
    unsplit-tf sweep --family unsplit sdar --aux 600 6000              # the auxiliary-data attacks beside UnSplit
    unsplit-tf sweep --family sdar --simulator-steps 20 --lambda-ssim 0  # SDAR's settings (UnSplit's: --tv-norm ...)
    unsplit-tf sweep --attack stream:stream --observations 1000 10000  # UnSplit on the training stream, the preset's budget
    unsplit-tf sweep --model mine.keras --layers block1_out block2_out   # your own saved model, cut after each layer
    unsplit-tf sweep --backend ray                           # each cell a Ray task on a local Ray (all CPUs)
    unsplit-tf sweep --backend ray --address HEAD:6379       # on a cluster: `ray start --head` on HEAD,
                                                             # `ray start --address HEAD:6379` on the others

For each dataset and depth (the paper's: 1..6 for the MNIST net, 1..8 for the
CIFAR net) the split model is trained once (cached) and every --attack
PRESET:MODE attacks the first test image of each class; one label-inference
cell per dataset follows. The whole grid is checked before anything runs.
Each finished cell is written to RESULTS/cells/ at once; running the same
command again skips the finished cells, so an interrupted sweep (Ctrl-C,
exit code 130) resumes where it stopped. Then: unsplit-tf report

With --model FILE the sweep attacks your own saved classifier of the one
dataset in --datasets instead, as saved (no training, no defense), cut after
each layer of --layers (or at each of --depths); its cells are UnSplit's
(the auxiliary-data families hold their images out of the victim's training,
which a saved model has had) and no label cells run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import unsplit_tf.cli._quiet  # noqa: F401  first: quiets TensorFlow's start-up

from unsplit_tf import defaults
from unsplit_tf.attacks.inversion import MODES, PRESETS, TV_NORMS
from unsplit_tf.cli._common import (
    CliError,
    SettingFlag,
    cache_folder,
    finite_float,
    in_flag_terms,
    load_data,
    main_of,
    stream_preset_alone,
)
from unsplit_tf.cli._outputs import writable_folder
from unsplit_tf.cli.invert import ATTACKS as FAMILIES
from unsplit_tf.cli.invert import SDAR_FLAGS
from unsplit_tf.data import DATASET_NAMES, canonical_name

DEFAULT_ATTACKS = ("paper:sequential", f"{defaults.PRESET}:{defaults.MODE}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from unsplit_tf.sweep import DEFAULT_BUDGET

    parser.add_argument("--datasets", nargs="+", default=["f_mnist"], help=f"any of {', '.join(DATASET_NAMES)} (default f_mnist)")
    parser.add_argument("--data-dir", action="append", default=[], metavar="[NAME=]DIR",
                        help="where a dataset's files are: NAME=DIR for one dataset, DIR for all; repeatable")
    parser.add_argument("--depths", type=int, nargs="+", help="split depths (default: the paper's for each dataset)")
    parser.add_argument("--model", type=Path, metavar="FILE",
                        help="attack your own saved model (.keras, loaded in safe mode) instead of the reference nets")
    parser.add_argument("--layers", nargs="+", metavar="NAME", help="with --model: the client's last layer of each cut (or --depths)")
    parser.add_argument("--attack", action="append", metavar="PRESET:MODE",
                        help=f"preset ({', '.join(PRESETS)}) and mode ({', '.join(MODES)}); repeatable (default {' and '.join(DEFAULT_ATTACKS)})")
    parser.add_argument("--family", nargs="+", choices=FAMILIES, default=["unsplit"],
                        help="attack families (default unsplit); sdar and inverse_network run once per --aux, "
                             "with their defaults (--attack and --budget are UnSplit's)")
    parser.add_argument("--aux", type=int, nargs="+", metavar="N",
                        help=f"auxiliary images held out for sdar / inverse_network (default {defaults.AUX})")
    parser.add_argument("--defense", action="append", metavar="NAME[:STRENGTH]",
                        help="an activation defense at the cut of every inversion cell (see `unsplit-tf defend --help`); repeatable")
    parser.add_argument("--budget", help=f"inversion steps per target, MAINxINPUT+MODEL (default {DEFAULT_BUDGET.tag}; "
                                          "a stream preset in stream mode keeps its own, e.g. stream:stream 15x20+20)")
    add_setting_arguments(parser)
    parser.add_argument("--epochs", type=int, default=defaults.EPOCHS, help=f"split-learning training epochs (default {defaults.EPOCHS})")
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[defaults.SEED], help=f"seeds of training, clone and label run (default {defaults.SEED})")
    parser.add_argument("--targets", type=int, default=defaults.TARGETS, help=f"class targets to attack (default {defaults.TARGETS})")
    parser.add_argument("--observations", type=int, nargs="+", metavar="N",
                        help="with a :stream --attack: also attack the last N training examples observed (an axis)")
    parser.add_argument("--label-samples", type=int, default=defaults.LABEL_SAMPLES, help=f"training examples for label inference; 0 skips it (default {defaults.LABEL_SAMPLES})")
    parser.add_argument("--label-batch-size", type=int, default=defaults.LABEL_BATCH_SIZE, help=f"batch size of the label run (default {defaults.LABEL_BATCH_SIZE})")
    parser.add_argument("--label-depth", type=int, default=defaults.LABEL_DEPTH, help=f"depth of the client's bottom part in the label run (default {defaults.LABEL_DEPTH})")
    parser.add_argument("--results", type=Path, default=Path("results"), metavar="DIR", help="results folder (default results/)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", help="where trained models are cached (default $UNSPLIT_TF_CACHE or ~/.cache/unsplit_tf)")
    add_backend_arguments(parser)


SETTING_FLAGS = {
    "polish_iters": SettingFlag(int, "N", "UnSplit's steps of the clone alone on the final pictures (default the preset's: "
                                "tuned 2000)"),
    "refit_iters": SettingFlag(int, "N", "UnSplit's steps of a fresh clone fitted on the final pictures (default the "
                               "preset's: stream 1000)"),
    "refine_cycles": SettingFlag(int, "N", "UnSplit's cycles of refining the pictures through the refitted clone (default "
                                 "the preset's: stream 4)"),
    "tv_norm": SettingFlag(str, None, "UnSplit's TV term counts each pixel difference squared (the presets') or as its "
                           "absolute value (l1; with --lambda-tv 0.675 under the stream preset it stole better clones past "
                           "the reference net's first pool, docs/ALGORITHMS.md)", choices=TV_NORMS),
    "lambda_tv": SettingFlag(finite_float, "W", "UnSplit's TV weight, on the preset's scale (absolute, or per unit of the "
                             "observations' mean square under the stream presets; default the preset's)"),
    **{name: flag._replace(help=f"for SDAR's cells: {flag.help}") for name, flag in SDAR_FLAGS.items()},  # invert's flags
}
"""The flag of each field of `unsplit_tf.sweep.SETTING_FIELDS`, for every verb that runs a grid (sweep, defend)."""


def flag(name: str) -> str:
    """A setting's flag: "--tv-norm" for "tv_norm"."""
    return f"--{name.replace('_', '-')}"


def refused_setting(error: ValueError) -> CliError:
    """A cell's refusal of a setting, each setting named by the flag that sets it (sweep, defend)."""
    return CliError(in_flag_terms(str(error), {name: flag(name) for name in SETTING_FLAGS}))


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """A flag for each attack setting a cell may set (`SETTING_FLAGS`): UnSplit's steps after its rounds and TV term,
    SDAR's simulator steps and learning rate and its decoder's SSIM weight."""
    for name, setting in SETTING_FLAGS.items():
        parser.add_argument(flag(name), type=setting.type, metavar=setting.metavar, choices=setting.choices, help=setting.help)


def setting_overrides(args: argparse.Namespace, families: list[str], option: str) -> dict[str, dict]:
    """{family: the settings given for it} (those left out take the preset's or the default), checked before any work;
    a setting of a family not in `families` (named by `option`) is refused."""
    from unsplit_tf.sweep import SETTING_FIELDS

    given = {family: {name: getattr(args, name) for name in names if getattr(args, name) is not None}
             for family, names in SETTING_FIELDS.items()}
    for family, settings in given.items():
        if settings and family not in families:
            raise CliError(f"{', '.join(map(flag, settings))}: settings of the {family} attack; add {family} to {option}")
        for name, value in settings.items():
            refusal = SETTING_FLAGS[name].refusal(flag(name), value)
            if refusal:
                raise CliError(refusal)
    return given


RAY_FLAGS = {"address": "address", "num_cpus": "num_cpus", "cpus_per_cell": "cpus_per_cell",
             "gpus_per_cell": "num_gpus_per_cell", "max_retries": "max_retries"}
"""The Ray flags (argparse names) and the `RayOptions` field each sets."""


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend and the Ray flags, for every verb that runs a grid (sweep, defend)."""
    parser.add_argument("--backend", choices=("serial", "ray"), default="serial",
                        help="run cells one by one in this process (default) or as Ray tasks (pip install 'unsplit-tf[ray]')")
    parser.add_argument("--address", metavar="HOST:PORT",
                        help="with --backend ray: join this Ray cluster (`ray start --head` prints it; default: start a local Ray)")
    parser.add_argument("--num-cpus", type=int, metavar="N", help="with --backend ray and no --address: CPUs of the local Ray (default all)")
    parser.add_argument("--cpus-per-cell", type=finite_float, metavar="N", help="with --backend ray: CPUs each cell reserves (default 1)")
    parser.add_argument("--gpus-per-cell", type=finite_float, metavar="F",
                        help="with --backend ray: GPUs each cell reserves, a fraction to share one (default 0)")
    parser.add_argument("--max-retries", type=int, metavar="N", help="with --backend ray: reruns of a cell whose worker died (default 2)")


def backend_options(args: argparse.Namespace) -> dict:
    """`run_sweep`'s backend and its options from the flags, checked before any data is loaded."""
    given = {flag: getattr(args, flag) for flag in RAY_FLAGS if getattr(args, flag) is not None}
    if args.backend == "serial":
        if given:
            raise CliError(f"--{next(iter(given)).replace('_', '-')} is an option of --backend ray")
        return {"backend": "serial"}
    try:
        from unsplit_tf.sweep_ray import RayOptions
    except ImportError as error:
        raise CliError(str(error)) from None
    try:
        options = RayOptions(**{RAY_FLAGS[flag]: value for flag, value in given.items()})
    except ValueError as error:
        raise CliError(f"{error} (--backend ray flags: {', '.join('--' + f.replace('_', '-') for f in RAY_FLAGS)})") from None
    return {"backend": "ray", **dataclasses.asdict(options)}


def parse_attack(text: str) -> tuple[str, str]:
    name, _, mode = text.partition(":")
    if name not in PRESETS or mode not in MODES:
        raise CliError(f"--attack {text!r}: write PRESET:MODE with PRESET in {', '.join(PRESETS)} and MODE in {', '.join(MODES)}")
    return name, mode


def parse_defense(text: str, flag: str = "--defense"):
    """NAME or NAME:STRENGTH as a DefenseSetting (checked against the registry)."""
    from unsplit_tf.defenses import check_defense
    from unsplit_tf.records import DefenseSetting

    name, separator, strength = text.partition(":")
    try:
        setting = DefenseSetting(name, finite_float(strength) if separator else None)
        return check_defense(setting)
    except (ValueError, argparse.ArgumentTypeError) as error:
        raise CliError(f"{flag} {text!r}: {error}") from None


def data_dirs(values: list[str]) -> dict[str | None, str]:
    """{dataset: path} from NAME=DIR entries; a plain DIR is stored under None (every dataset)."""
    dirs: dict[str | None, str] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if separator and name in DATASET_NAMES + ("fashion_mnist", "cifar10"):
            dirs[canonical_name(name)] = path
        else:
            dirs[None] = value
    return dirs


def check_user_model_flags(args: argparse.Namespace, datasets: list[str], auxiliary: list[str]) -> None:
    """Refuse --model / --layers settings that cannot run, before any data is loaded."""
    if args.layers and not args.model:
        raise CliError("--layers names the cuts of --model FILE; the reference nets are cut at --depths")
    if not args.model:
        return
    if len(datasets) != 1:
        raise CliError(f"--model attacks one dataset, the one the model was trained on; --datasets names {len(datasets)}")
    if (args.layers is None) == (args.depths is None):
        raise CliError("--model needs its cuts: --layers NAME [NAME ...] (the client's last layers) or --depths N [N ...]")
    if auxiliary:
        raise CliError(f"--model: {', '.join(auxiliary)} hold their auxiliary images out of the victim's training, which a "
                       "saved model has had; use --family unsplit (the default)")
    if args.defense:
        raise CliError("--model is attacked as saved: a defense needs training with it at the cut (see `unsplit-tf defend`)")


def user_model_depths(args: argparse.Namespace, data) -> list[int]:
    """The depths of --model's cuts (--layers or --depths), each checked to split the model."""
    from unsplit_tf.cli._model import load_user_model
    from unsplit_tf.split import split_model

    model = load_user_model(args.model, data)
    cuts = [("layer", name) for name in args.layers] if args.layers else [("depth", depth) for depth in args.depths]
    depths = []
    for kind, cut in cuts:
        try:
            depths.append(split_model(model, **{kind: cut}).depth)
        except ValueError as error:
            raise CliError(f"--model {args.model}, {kind} {cut}: {error}") from None
    return list(dict.fromkeys(depths))


def run(args: argparse.Namespace) -> int:
    from unsplit_tf.data import dataset_fingerprint as fingerprint
    from unsplit_tf.records import NO_DEFENSE
    from unsplit_tf.sweep import Budget, LabelCell, inversion_cells, model_file
    from unsplit_tf.models import paper_depths

    names = list(dict.fromkeys(canonical_name(name) for name in args.datasets))
    attacks = [parse_attack(text) for text in args.attack or DEFAULT_ATTACKS]
    defenses = [NO_DEFENSE] + [parse_defense(text) for text in args.defense or []]
    budget = Budget.parse(args.budget) if args.budget else None
    families = list(dict.fromkeys(args.family))
    settings = setting_overrides(args, families, "--family")
    auxiliary = [family for family in families if family != "unsplit"]
    if args.aux is not None and not auxiliary:
        raise CliError("--aux is for --family sdar / inverse_network; unsplit uses no auxiliary data")
    if any(n < 2 for n in args.aux or []):
        raise CliError(f"--aux must be at least 2 images, got {' '.join(map(str, args.aux))}")
    streams = [attack for attack in attacks if attack[1] == "stream"]
    if args.observations and not (streams and "unsplit" in families):
        raise CliError("--observations is for stream attacks: add --attack PRESET:stream (e.g. stream:stream, "
                       "the stream preset as `invert --observations` runs it)")
    if any(n < 1 for n in args.observations or []):
        raise CliError(f"--observations must be at least 1, got {' '.join(map(str, args.observations))}")
    made_for_streams = [f"{name}:{mode}" for name, mode in streams if PRESETS[name].mode == "stream"]
    if made_for_streams and not args.observations and "unsplit" in families:
        raise stream_preset_alone(f"--attack {made_for_streams[0]}", "add --observations N (e.g. 1000)")
    check_user_model_flags(args, names, auxiliary)
    backend = backend_options(args)
    if args.targets < 1 or args.label_samples < 0:
        raise CliError("--targets must be at least 1 and --label-samples 0 or more")
    results = writable_folder(args.results, "--results")
    cache = cache_folder(args)
    dirs = data_dirs(args.data_dir)
    datasets = {name: load_data(argparse.Namespace(dataset=name, data_dir=dirs.get(name, dirs.get(None)))) for name in names}
    cells = []
    try:
        for name, data in datasets.items():
            if args.model:
                depths, model = user_model_depths(args, data), model_file(args.model)
            else:
                depths, model = args.depths or list(paper_depths(name)), {}
            if "unsplit" in families:
                plain = [attack for attack in attacks if attack not in streams or not args.observations]
                cells += inversion_cells(data, depths, plain, defenses=defenses, seeds=args.seeds, budget=budget,
                                         epochs=args.epochs, targets=args.targets, **settings["unsplit"], **model)
                cells += [cell for n in args.observations or [] for cell in
                          inversion_cells(data, depths, streams, defenses=defenses, seeds=args.seeds, budget=budget,
                                          epochs=args.epochs, targets=args.targets, observations=n, **settings["unsplit"], **model)]
            cells += [cell for family in auxiliary for aux in args.aux or [defaults.AUX]
                      for cell in inversion_cells(data, depths, defenses=defenses, seeds=args.seeds, epochs=args.epochs,
                                                  targets=args.targets, attack=family, aux=aux, **settings.get(family, {}))]
            if args.label_samples and not args.model:
                cells += [LabelCell(name, fingerprint(data), depth=args.label_depth, samples=args.label_samples,
                                    batch_size=args.label_batch_size, seed=seed) for seed in args.seeds]
    except ValueError as error:  # a cell's config refused a setting
        raise refused_setting(error) from None
    from unsplit_tf.cli._grid import run_grid

    store, _ = run_grid(cells, datasets, results=results, cache=cache, verb="sweep", argv=args.argv, backend=backend)
    print(f"all {len(cells)} cells are in {store.cells_dir}; now: unsplit-tf report --results {args.results}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return main_of(sys.modules[__name__], argv, prog)
