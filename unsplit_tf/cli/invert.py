"""Model inversion + model stealing against a split model (UnSplit's data-oblivious attack, or an auxiliary-data one).

    unsplit-tf invert --dataset f_mnist --depth 2            # the strongest preset ("tuned")
    unsplit-tf invert --dataset f_mnist --depth 6 --attack sdar --aux 6000   # SDAR alongside training
    unsplit-tf invert --dataset f_mnist --depth 2 --quick    # a one-minute demonstration
    unsplit-tf invert --dataset f_mnist --depth 3 --observations 5000   # the whole stream, one clone (stream preset)
    unsplit-tf invert --preset paper                         # the authors' defaults, exactly
    unsplit-tf invert --dataset cifar --data-dir DIR --model my.keras --layer block1_pool

Trains (or loads the cached) split model, lets the server observe the
cut-layer activations of the first test image of each class, runs the attack
and writes to --out: grid.png (originals above reconstructions), losses.png,
metrics.json (the run record), reconstructions.npz and the stolen clone,
clone.keras. The summary line says whether the attack beat the dataset's
mean image (lower MSE and higher SSIM). Ctrl-C stops the attack, scores and
writes the targets that finished, and exits with code 130.

--observations N (stream mode) makes the attack realistic: the server also
attacks the smashed data of the last N training examples it received (the end
of the last epoch, from the client weights closest to the final ones), with
one clone shared by all; the victim is trained afresh to be watched. A sample
of those observations is scored beside the targets (observed_grid.png).

--attack sdar / inverse_network hold --aux N labelled training images out of
the client's training set for the server. SDAR runs at every training step
(the victim is trained afresh, never loaded from the cache); the inverse
network is fitted after training. clone.keras is then the attack's simulator
and losses.png its loss history. Ctrl-C during SDAR's training scores the
attack as it stood.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import unsplit_tf.cli._quiet  # noqa: F401  first: quiets TensorFlow's start-up

from unsplit_tf import defaults
from unsplit_tf.attacks.inversion import KEEPS, MODES, PRESETS, PRIORS, TV_NORMS, TV_SCALES, RoundReport, preset
from unsplit_tf.cli._common import (
    CliError,
    Interrupted,
    SettingFlag,
    add_data_flags,
    add_training_flags,
    cache_folder,
    finite_float,
    in_flag_terms,
    kept_restarts,
    load_data,
    main_of,
    screened,
    stream_preset_alone,
    train_config,
)
from unsplit_tf.cli._model import load_user_model
from unsplit_tf.cli._outputs import run_folder, writable_folder
from unsplit_tf.cli._progress import PICTURE_ROUND, Progress, Scalars
from unsplit_tf.data import canonical_name

# Flags that set one field of the preset's InversionConfig, named as in the authors' code.
CONFIG_FLAGS = {
    "main_iters": int,
    "input_iters": int,
    "model_iters": int,
    "lambda_tv": finite_float,
    "lambda_l2": finite_float,
    "input_lr": finite_float,
    "model_lr": finite_float,
    "patience": int,
    "restarts": int,
    "polish_iters": int,
    "refit_iters": int,
    "refine_cycles": int,
    "refine_passes": int,
    "final_refit_iters": int,
    "final_refit_lr": finite_float,
    "linear_start": int,
}
QUICK = {"main_iters": 20, "restarts": 1}


SDAR_FLAGS = {
    "simulator_steps": SettingFlag(
        int, "N", "simulator updates per observed batch, each on fresh aux images (default 3; SDAR's 1; more help where the "
        "client's data is small: docs/ALGORITHMS.md)", what="SDAR's simulator updates per observed batch", least=1),
    "simulator_lr": SettingFlag(
        finite_float, "LR", "Adam's learning rate for the simulator (default 1e-3, SDAR's; 3e-3 brought full MNIST's depth "
        "6 closer to the bar and hurt CIFAR-10's depth 8: docs/ALGORITHMS.md)", what="the learning rate of SDAR's simulator",
        above=True),
    "lambda_ssim": SettingFlag(
        finite_float, "W", "weight of 1 - SSIM beside the MSE in the decoder's loss (default 0.5; 0: the MSE alone, as "
        "SDAR: a little lower MSE for a little lower SSIM, docs/ALGORITHMS.md)", what="the SSIM term of SDAR's decoder loss"),
    "feature_memory": SettingFlag(
        int, "N", "align the simulator to the last N observed rows, not the current batch alone (default 0; slower where the "
        "features are large: docs/ALGORITHMS.md)", what="the observed rows SDAR's simulator is aligned to"),
    "mmd_class_width": SettingFlag(
        finite_float, "W", "match the simulator's features to the observed ones class by class, on the batches' labels (the "
        "server computes the loss with them): a kernel exp(-|p - q|^2 / W) on the classes in the MMD (default 0.5; 0: "
        "class-blind, the default before 6 Dec 2026)", what="the class kernel of SDAR's MMD"),
}
FLAG_NAMES = {**{name: "--" + name.replace("_", "-") for name in (*CONFIG_FLAGS, *SDAR_FLAGS)},
              "batch_size": "--stream-batch", "screen_defer": "--screen-defer", "tv_scale": "--tv-scale", "tv_norm": "--tv-norm",
              **{name: f"--{name}" for name in ("keep", "prior", "screen", "mode")}}
"""The flag that sets each field of an attack's config, for the config's messages (`in_flag_terms`)."""
ATTACKS = ("unsplit", "sdar", "inverse_network")
MARKER = "metrics.json"  # written last: a folder holding it holds a finished run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_flags(parser)
    add_training_flags(parser, epochs_default=str(defaults.EPOCHS))
    parser.add_argument("--depth", type=int, help=f"split depth, the paper's 0-based layer count (default {defaults.DEPTH})")
    parser.add_argument("--attack", choices=ATTACKS, default="unsplit",
                        help="unsplit (data-oblivious, default), or an auxiliary-data attack: sdar (alongside training), "
                             "inverse_network (query-free, after training)")
    parser.add_argument("--aux", type=int, metavar="N",
                        help=f"with --attack sdar/inverse_network: labelled training images held out for the server (default {defaults.AUX})")
    for name, flag in SDAR_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=flag.type, metavar=flag.metavar, help=f"with --attack sdar: {flag.help}")
    parser.add_argument("--preset", choices=list(PRESETS),
                        help=f"starting hyper-parameters (default {defaults.PRESET}, the strongest; {defaults.STREAM_PRESET} with "
                             f"--observations; {defaults.FAST_STREAM_PRESET}: a faster one; {defaults.DEEP_STREAM_PRESET}: for cuts past "
                             "the second pooling layer; paper: the authors' exactly)")
    for name, kind in CONFIG_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"set the preset's {name}")
    parser.add_argument("--tv-scale", choices=TV_SCALES,
                        help="--lambda-tv is the TV term's weight (absolute), or its weight per unit of the observations' "
                             "mean square, which follows the scale of the cut layer's activations (observations; "
                             "default: the preset's, observations in stream mode)")
    parser.add_argument("--tv-norm", choices=TV_NORMS,
                        help="how the TV term counts each pixel difference: squared (the authors', the presets'), or l1, "
                             "which prefers flat regions with sharp edges; with --lambda-tv 0.675 it stole better clones "
                             "past the first pooling layer of the reference net, worse ones from a BatchNorm net "
                             "(docs/ALGORITHMS.md)")
    parser.add_argument("--lr", type=finite_float, help="learning rate of both optimisers (sets --input-lr and --model-lr)")
    parser.add_argument("--box", type=finite_float, nargs=2, metavar=("LOW", "HIGH"), help="clip x_hat to [LOW, HIGH]")
    parser.add_argument("--no-box", action="store_true", help="leave x_hat unconstrained even if the preset clips it")
    parser.add_argument("--prior", choices=PRIORS, help="what the attack assumes about the pictures, which a linear first "
                        "layer cannot tell apart from affine changes of them: black_background (objects on black that "
                        "reach white: the intensities are pinned after every round; the default in stream mode on "
                        f"{' and '.join(defaults.IMAGE_PRIORS)}), dark_background (only flips x_hat if its frame is "
                        "brighter), none")
    parser.add_argument("--keep", choices=KEEPS, help="with --restarts: keep the restart with the lowest matching loss, the one "
                        "whose pictures the other restarts agree with, or the best of both ranks (these two need at least 3 "
                        "restarts; default: the preset's, matching+agreement in stream mode)")
    parser.add_argument("--screen", type=finite_float, metavar="SHARE",
                        help="stream mode with --restarts: compare the restarts after this share of the rounds and run only "
                             "the one kept to the end, unless no two agree by then (0: compare them at the end, better "
                             "with 5 restarts; default: the preset's)")
    parser.add_argument("--screen-defer", type=finite_float, metavar="D",
                        help="with --screen: if every restart's disagreement at the screen (0: same pictures, 1: unrelated) "
                             "is above D, none is kept there; all run on and are compared at the end (1: never; "
                             "default: the preset's, 0.9 in stream mode)")
    parser.add_argument("--stream-batch", type=int, metavar="N", help="stream mode: observations per minibatch (default: the preset's)")
    parser.add_argument("--mode", choices=MODES, help="all targets at once (batched), or one by one sharing the clone (default: the preset's)")
    parser.add_argument("--observations", type=int, metavar="N",
                        help="stream mode: also attack the smashed data of the last N training examples the server received "
                             "(the end of the last epoch), all with one clone; sets --mode stream")
    parser.add_argument("--targets", type=int, default=defaults.TARGETS,
                        help=f"test images to attack, taken class by class (default {defaults.TARGETS})")
    parser.add_argument("--quick", action="store_true", help=f"a one-minute demonstration: {QUICK['main_iters']} rounds, one restart")
    parser.add_argument("--architecture", choices=defaults.ARCHITECTURES, default="reference",
                        help="the victim net the tool trains: the dataset's reference net (default), or ResNet-20 cut with "
                             "--layer blockB_out (B = 1..9, SDAR's level B)")
    parser.add_argument("--model", type=Path, metavar="FILE", help="attack your own saved model (.keras, loaded in safe mode) instead")
    parser.add_argument("--layer", help="with --model: the name of the client's last layer (or use --depth)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default runs/invert_<dataset>_<cut>_<preset>, numbered if taken)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    parser.add_argument("--tensorboard", type=Path, metavar="DIR", help="also write the matching loss per round as TensorBoard scalars")


def chosen_preset(args: argparse.Namespace) -> str:
    """The preset named by --preset; otherwise the stream preset with --observations, the strongest without."""
    return args.preset or (defaults.STREAM_PRESET if args.observations else defaults.PRESET)


def attack_config(args: argparse.Namespace):
    """The preset with every flag the user gave applied on top; an auxiliary-data family's default config, with the
    seed. A value the config refuses is a CliError that names the flag (`in_flag_terms`)."""
    try:
        return _config_of(args)
    except ValueError as error:
        raise CliError(in_flag_terms(str(error), FLAG_NAMES)) from None


def _config_of(args: argparse.Namespace):
    from unsplit_tf.runs import INVERSION_FAMILIES

    if args.attack != "unsplit":
        given = {name: getattr(args, name) for name in SDAR_FLAGS if getattr(args, name) is not None}
        return INVERSION_FAMILIES[args.attack](seed=args.seed, **given)
    changes = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    if args.quick:
        changes = {**QUICK, **changes}
    if args.lr is not None:
        changes.setdefault("input_lr", args.lr)
        changes.setdefault("model_lr", args.lr)
    if args.box:
        changes["box"] = tuple(args.box)
    if args.no_box:
        changes["box"] = None
    if args.prior:
        changes["prior"] = args.prior
    if args.keep:
        changes["keep"] = args.keep
    if args.tv_scale:
        changes["tv_scale"] = args.tv_scale
    if args.tv_norm:
        changes["tv_norm"] = args.tv_norm
    if args.screen is not None:
        changes["screen"] = args.screen
    if args.screen_defer is not None:
        changes["screen_defer"] = args.screen_defer
    if args.stream_batch is not None:
        changes["batch_size"] = args.stream_batch
    if args.mode:
        changes["mode"] = args.mode
    elif args.observations:
        changes["mode"] = "stream"
    config = preset(chosen_preset(args)).replace(seed=args.seed, **changes)
    if args.prior is None:
        config = config.replace(prior=defaults.image_prior(canonical_name(args.dataset), config.mode))
    return config


def sdar_alignment(config) -> str:
    """How SDAR aligns its simulator beyond a class-blind MMD on the current batch, for the attack line ("" if not)."""
    memory = f", aligned to the last {config.feature_memory} observed rows" if config.feature_memory else ""
    return memory + (f", class-wise MMD on the batches' labels (width {config.mmd_class_width:g})" if config.class_wise_mmd else "")


def unsplit_flags(args: argparse.Namespace) -> list[str]:
    """The UnSplit-only flags the user gave."""
    given = [name for name in CONFIG_FLAGS if getattr(args, name) is not None]
    given += [name for name in ("lr", "box", "mode", "prior", "keep", "tv_scale", "tv_norm", "screen", "screen_defer", "stream_batch",
                                "tensorboard", "observations") if getattr(args, name) is not None]
    given += [name for name in ("quick", "no_box") if getattr(args, name)]
    given += ["preset"] if args.preset is not None else []
    return ["--" + name.replace("_", "-") for name in given]


def check_flags(args: argparse.Namespace) -> None:
    for name, flag in SDAR_FLAGS.items():
        if getattr(args, name) is not None and args.attack != "sdar":
            raise CliError(f"--{name.replace('_', '-')} sets {flag.what}; --attack {args.attack} has no such setting (use --attack sdar)")
    if args.attack == "unsplit" and args.aux is not None:
        raise CliError("--aux is for the auxiliary-data attacks (--attack sdar or inverse_network); unsplit uses no auxiliary data")
    if args.attack != "unsplit":
        if args.aux is None:
            args.aux = defaults.AUX
        if args.model:
            raise CliError(f"--attack {args.attack} holds its --aux images out of the victim's training: it attacks the reference nets, not --model")
        if unsplit_flags(args):
            raise CliError(f"{', '.join(unsplit_flags(args))} set UnSplit's attack; --attack {args.attack} takes its defaults")
    if args.architecture != "reference":
        if args.model:
            raise CliError(f"give --model or --architecture {args.architecture}, not both")
        if not args.layer or args.depth is not None:
            raise CliError(f"--architecture {args.architecture} is cut between blocks: pass --layer blockB_out (B = 1..9), not --depth")
    elif args.layer and not args.model:
        raise CliError("--layer needs --model (or --architecture resnet20); the reference nets are cut with --depth")
    if args.layer and args.depth is not None:
        raise CliError("give --layer or --depth, not both")
    if (args.screen or args.screen_defer is not None) and not args.observations:
        flag = "--screen" if args.screen else "--screen-defer"
        raise CliError(f"{flag} is about comparing restarts part-way through a stream attack: add --observations N")
    if args.preset and PRESETS[args.preset].mode == "stream" and not args.observations:
        raise stream_preset_alone(f"--preset {args.preset}", "add --observations N (e.g. 5000), or drop --preset")
    if args.targets < 1:
        raise CliError(f"--targets must be at least 1, got {args.targets}")
    if args.observations is not None:
        if args.observations < 1:
            raise CliError(f"--observations must be at least 1, got {args.observations}")
        if args.mode not in (None, "stream"):
            raise CliError(f"--observations attacks in stream mode; drop --mode {args.mode} (or pass --mode stream)")
    if args.box and args.no_box:
        raise CliError("give --box or --no-box, not both")


def default_out(args: argparse.Namespace) -> Path:
    cut = args.layer or f"depth{defaults.DEPTH if args.depth is None else args.depth}"
    cut = cut if args.architecture == "reference" else f"{args.architecture}_{cut}"
    name = chosen_preset(args) if args.attack == "unsplit" else f"{args.attack}_aux{args.aux}"
    return Path("runs") / f"invert_{canonical_name(args.dataset)}_{cut}_{name}"


def run(args: argparse.Namespace) -> int:
    from unsplit_tf.records import ModelSource
    from unsplit_tf.runs import VictimSpec, check_aux, run_inversion
    from unsplit_tf.split import split_model

    check_flags(args)
    config = attack_config(args)
    training = train_config(args, epochs=defaults.EPOCHS)
    with run_folder(args.out, default_out(args), marker=MARKER, overwrite=args.overwrite) as out:
        board = writable_folder(args.tensorboard, "--tensorboard") if args.tensorboard else None
        cache = None if args.model else cache_folder(args)
        data = load_data(args)
        if args.targets > len(data.x_test):
            raise CliError(f"--targets {args.targets} is more than the {len(data.x_test)} test images of {data.name}")
        try:
            check_aux(data, args.attack, args.aux or 0)
        except ValueError as error:
            raise CliError(f"--aux: {error}") from None
        if (args.observations or 0) > len(data.x_train):
            raise CliError(f"--observations {args.observations} is more than the {len(data.x_train)} training images of "
                           f"{data.name}; the server observes each at most once per epoch")
        depth = defaults.DEPTH if args.depth is None else args.depth
        if args.model:
            model = load_user_model(args.model, data)
            victim = split_model(model, layer=args.layer) if args.layer else split_model(model, depth=depth)
            source = ModelSource("file", args.model.name, hashlib.sha256(args.model.read_bytes()).hexdigest())
        elif args.architecture != "reference":
            victim, source = VictimSpec(depth=None, layer=args.layer, training=training, architecture=args.architecture), None
        else:
            victim, source = VictimSpec(depth=depth, training=training), None
        observations = args.observations or 0
        if args.attack == "unsplit":
            which = "a random draw of" if args.model else "the last"  # a saved model is observed through its final client
            seen = f" + {which} {observations} training examples observed" if observations else ""
            restarts = f", {kept_restarts(config)}" if config.restarts > 1 else ""
            linear = (f", the clone's ReLUs and max pools (those it has) blended in from linear ones over its first {config.linear_start} "
                      f"round{'s' * (config.linear_start != 1)}") if config.linear_start else ""
            print(f"attack: {chosen_preset(args)} preset, {config.mode}, {args.targets} targets{seen}, "
                  f"{config.main_iters} x ({config.input_iters} + {config.model_iters}) steps per target{restarts}{linear}")
        else:
            sdar = (f"; {config.simulator_steps} simulator steps per observed batch at learning rate {config.simulator_lr:g}"
                    f"{sdar_alignment(config)}, decoder loss MSE + {config.lambda_ssim:g} x (1 - SSIM)") if args.attack == "sdar" else ""
            print(f"attack: {args.attack}, {args.aux} auxiliary images held out of the client's training data, {args.targets} targets{sdar}")

        training_bar = Progress(training.epochs, "epoch", label="training")
        attacked = args.targets + observations
        attack_bar = Progress(attacked * getattr(config, "rounds_in_all", 0), PICTURE_ROUND, label="attack")
        scalars, rounds = Scalars(board), [0]

        def on_round(report: RoundReport) -> None:
            rounds[0] += len(report.targets)
            attack_bar.extend(attacked * report.rounds_in_all)  # more once the screen finds no two restarts agreeing
            matching = float(report.matching_loss.mean())
            attack_bar.update(rounds[0], matching=matching)
            scalars.log(rounds[0], **{"inversion/matching_loss": matching, "inversion/input_objective": float(report.input_loss.mean())})

        try:
            outcome = run_inversion(data, config, victim=victim, aux=args.aux or 0, observations=observations,
                                    targets=args.targets, model_source=source,
                                    preset=chosen_preset(args) if args.attack == "unsplit" else None,
                                    cache_dir=cache, on_epoch=lambda epoch, loss: training_bar.update(epoch + 1, loss=loss),
                                    on_round=on_round)
        finally:
            training_bar.close()
            attack_bar.close()
            scalars.close()
        write_outputs(out, outcome, data)
        record = outcome.run
        print(record.summary())
        print_restarts(record.attack.restarts, config)
        if args.attack == "unsplit" and config.tv_scale == "observations":
            print(f"  TV weight {record.attack.tv_weight:.3g} ({config.tv_norm} differences): {config.lambda_tv:g} x the "
                  "observations' mean square")
        for extra in record.evaluations[1:]:
            scores = extra.reconstruction
            print(f"  {extra.name.replace('_', ' ')} ({scores.n} {extra.targets.split} images): MSE {scores.mean_mse:.4f}, "
                  f"SSIM {scores.mean_ssim:.3f}{scores.shift_text()} (dataset-mean image: MSE "
                  f"{extra.baselines.dataset_mean.mean_mse:.4f})")
        pictures = "grid.png, observed_grid.png" if "observed_indices" in record.arrays else "grid.png"
        print(f"wrote {out}{os.sep}: {pictures}, losses.png, metrics.json, reconstructions.npz, clone.keras")
        if record.interrupted and record.victim.training and record.victim.training.steps_done is not None:
            raise Interrupted(f"training stopped after {record.victim.training.steps_done} steps; the attack, as it stood "
                              f"then, is scored above and in {out / MARKER}")
        if record.interrupted and len(getattr(outcome.result, "restart_losses", ())) > 1:
            raise Interrupted(f"stopped in restart {len(outcome.result.restart_losses)}; the restarts finished before are "
                              f"compared and the one kept is scored above and in {out / MARKER}")
        if record.interrupted and args.attack == "unsplit" and config.mode != "sequential":  # all attacked together
            rounds = int(outcome.result.rounds_run.max())
            stage = (f"after round {rounds} of {config.main_iters}" if rounds < config.main_iters else
                     "after the rounds, while the stolen clone was refitted or the pictures refined (the last complete "
                     "pair is kept)")
            raise Interrupted(f"stopped {stage}; every picture is scored above and in {out / MARKER} as it stood then")
        if record.interrupted:
            attacked = record.headline.reconstruction.n
            raise Interrupted(f"{attacked} of {args.targets} targets were attacked (the last perhaps not to the end); "
                              f"the scores above and {out / MARKER} cover those only")
        return 0


def print_restarts(choice, config) -> None:
    """Which of UnSplit's restarts was kept and what they were compared by, as the record says (`RestartChoice`;
    None for one restart or another family: nothing printed)."""
    if choice is None:
        return
    by = {"agreement": "agreement with the others", "matching+agreement": "ranks by matching loss and agreement"}
    what = (by[config.keep] if choice.disagreement else "matching loss") + screened(config, choice.compared_after)
    losses = " / ".join("-" if value is None else f"{value:.4f}" for value in choice.matching_loss)
    apart = f"; disagreement {' / '.join(f'{v:.2f}' for v in choice.disagreement)}" if choice.disagreement else ""
    print(f"  restarts: kept {choice.kept + 1} of {len(choice.matching_loss)}, by {what} (matching loss {losses}{apart})")


def write_outputs(out: Path, outcome, data) -> None:
    """The run's files; metrics.json last (atomically), so a folder holding it holds a finished run."""
    import numpy as np

    from unsplit_tf.plots import curves, reconstruction_grid, save_figure
    from unsplit_tf.runs import as_uint8

    record, result = outcome.run, outcome.result
    head = record.headline
    out.mkdir(parents=True, exist_ok=True)
    indices = np.asarray(head.targets.indices, np.int64)
    originals, recovered = data.x_test[indices], outcome.reconstructions  # the scored targets only
    stream = {} if outcome.stream is None else {"observed_indices": outcome.stream[0],
                                                 "observed_reconstructions": as_uint8(outcome.stream[1])}
    np.savez_compressed(out / "reconstructions.npz", originals=originals, reconstructions=recovered, test_indices=indices, **stream)
    outcome.clone.save(out / "clone.keras")
    attack = f"{record.attack.preset} preset" if record.attack.preset else f"{record.attack.family}, aux {record.threat_model.auxiliary_images}"
    where = f"{data.name}, cut after {record.victim.cut_layer} (depth {record.victim.depth}), {attack}"
    title = f"{where}: mean MSE {head.reconstruction.mean_mse:.3f}"
    shown = recovered if head.minmax_normalised else np.clip(recovered, 0, 1)
    figure = reconstruction_grid(originals, shown, labels=list(head.targets.classes), scores=head.reconstruction.mse, title=title)
    save_figure(figure, out / "grid.png")
    if "observed_indices" in record.arrays:  # the sample of observed training images scored beside the targets
        sample, rows = record.evaluations[1], record.arrays["observed_indices"]
        figure = reconstruction_grid(data.x_train[rows], record.arrays["observed_reconstructions"] / 255.0,
                                     labels=list(sample.targets.classes), scores=sample.reconstruction.mse,
                                     title=f"{where}, observed training images: mean MSE {sample.reconstruction.mean_mse:.3f}")
        save_figure(figure, out / "observed_grid.png")
    if record.attack.family == "unsplit":
        histories = [history for history in result.matching_loss if len(history)]
        series = {f"{label} ({i})": history for i, (label, history) in enumerate(zip(head.targets.classes, histories))}
        figure = curves(series, xlabel="round", ylabel="MSE(clone(x_hat), z)", logy=True, integer_x=True,
                        title=f"Activation matching, {where}")
    else:  # the attack's losses, one value per step; the terms its config leaves out are all zero
        series = {name: values for name, values in result.history.items() if len(values) and np.all(values > 0)}
        figure = curves(series, xlabel="step", ylabel="loss", logy=True, integer_x=True, title=f"Attack losses, {where}")
    save_figure(figure, out / "losses.png")
    partial = out / f".{MARKER}.partial"
    partial.write_text(json.dumps(record.to_dict(), indent=2, allow_nan=False))
    partial.replace(out / MARKER)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return main_of(sys.modules[__name__], argv, prog)
