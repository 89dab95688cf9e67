"""Model inversion + model stealing against a split model (UnSplit attack 1).

    python scripts/invert.py --dataset f_mnist --depth 2
    python scripts/invert.py --dataset f_mnist --depth 2 --preset better --quick
    python scripts/invert.py --dataset cifar --data-dir ../shared/data --model my.keras --layer block1_pool

Trains (or loads the cached) split model, lets the server observe the cut-layer
activations of the first test image of each class, runs the attack with a
progress bar and writes to --out: grid.png (originals above reconstructions),
losses.png, metrics.json, reconstructions.npz and the stolen clone, clone.keras.
Ctrl-C stops the attack and still writes what was finished.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import add_data_flags, add_training_flags, load_data, trained_model  # first: quiets TensorFlow

import keras  # noqa: E402
import numpy as np  # noqa: E402

from unsplit_tf.attacks.inversion import MODES, PRESETS, InversionConfig, RoundReport, invert, preset
from unsplit_tf.data import Dataset, indices_by_class
from unsplit_tf.scoring import baseline_scores, clone_quality, reconstruction_scores
from unsplit_tf.plots import curves, reconstruction_grid, save_figure
from unsplit_tf.split import Split, split_model

# Flags that override a field of the preset's InversionConfig, named as in the authors' code.
CONFIG_FLAGS = {
    "main_iters": int,
    "input_iters": int,
    "model_iters": int,
    "lambda_tv": float,
    "lambda_l2": float,
    "input_lr": float,
    "model_lr": float,
    "patience": int,
}
QUICK = {"main_iters": 20}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_flags(parser)
    add_training_flags(parser)
    parser.add_argument("--depth", type=int, help="split depth, the paper's 0-based layer count (default 2)")
    parser.add_argument("--preset", default="paper", choices=list(PRESETS), help="starting hyper-parameters (default paper)")
    for name, kind in CONFIG_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"override the preset's {name}")
    parser.add_argument("--lr", type=float, help="learning rate of both optimisers (sets --input-lr and --model-lr)")
    parser.add_argument("--box", type=float, nargs=2, metavar=("LOW", "HIGH"), help="clip x_hat to [LOW, HIGH]")
    parser.add_argument("--no-box", action="store_true", help="leave x_hat unconstrained even if the preset clips it")
    parser.add_argument("--mode", choices=MODES, default=InversionConfig.mode, help="all targets at once, or one by one sharing the clone")
    parser.add_argument("--targets", type=int, default=10, help="number of test images to attack, taken class by class (default 10)")
    parser.add_argument("--quick", action="store_true", help=f"a one-minute demonstration: {QUICK['main_iters']} rounds, 2 training epochs")
    parser.add_argument("--model", type=Path, help="attack your own saved functional model (.keras, loaded in safe mode) instead")
    parser.add_argument("--layer", help="with --model: the name of the client's last layer (or use --depth)")
    parser.add_argument("--out", type=Path, help="output folder (default runs/invert_<dataset>_<cut>_<preset>_<mode>)")
    args = parser.parse_args(argv)
    if args.quick and "--epochs" not in " ".join(argv or sys.argv):
        args.epochs = 2
    if args.layer and not args.model:
        parser.error("--layer needs --model; the reference nets are cut with --depth")
    if args.layer and args.depth is not None:
        parser.error("give --layer or --depth, not both")
    if args.targets < 1:
        parser.error("--targets must be at least 1")
    return args


def attack_config(args: argparse.Namespace) -> InversionConfig:
    """The preset with every flag the user gave applied on top."""
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
    try:
        return preset(args.preset).replace(mode=args.mode, seed=args.seed, **changes)
    except ValueError as error:
        sys.exit(f"error: {error}")


def split_under_attack(data: Dataset, args: argparse.Namespace) -> tuple[Split, float | None]:
    """The user's model cut at --layer/--depth, or the trained reference net cut at --depth."""
    try:
        if args.model:
            if not args.model.exists():
                sys.exit(f"error: no model file at {args.model}")
            model = keras.models.load_model(args.model, safe_mode=True, compile=False)
            if tuple(model.input.shape[1:]) != data.input_shape:
                sys.exit(f"error: {args.model} takes inputs of shape {tuple(model.input.shape[1:])} but {data.name} images are {data.input_shape}")
            if args.layer:
                return split_model(model, layer=args.layer), None
            return split_model(model, depth=2 if args.depth is None else args.depth), None
        depth = 2 if args.depth is None else args.depth
        trained = trained_model(data, args, depth)
        return split_model(trained.model, depth=depth), trained.test_accuracy
    except ValueError as error:
        sys.exit(f"error: {error}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = attack_config(args)
    data = load_data(args)
    split, split_accuracy = split_under_attack(data, args)
    chosen = indices_by_class(data.y_test, args.targets)
    targets = data.x_test[chosen]
    observed = split.client(targets)  # all the server sees of the targets
    out = args.out or Path("runs") / f"invert_{data.name}_{split.cut_layer}_{args.preset}_{config.mode}"
    print(
        f"attack: {args.preset} preset, {config.mode}, {len(chosen)} targets, cut after '{split.cut_layer}' (depth {split.depth}), "
        f"{config.main_iters} x ({config.input_iters} + {config.model_iters}) steps per target"
    )

    bar = keras.utils.Progbar(len(chosen) * config.main_iters, stateful_metrics=["matching"], unit_name="round")
    done = [0]

    def show(report: RoundReport) -> None:
        done[0] += len(report.targets)
        bar.update(done[0], [("matching", float(report.matching_loss.mean()))])

    result = invert(split.client, observed, config, on_round=show)
    if result.interrupted:
        print(f"\ninterrupted: {int(result.finished.sum())} of {len(chosen)} targets finished; writing what there is")
    write_outputs(out, args, config, data, split, split_accuracy, chosen, targets, result)


def write_outputs(out, args, config, data, split, split_accuracy, chosen, targets, result) -> None:
    out.mkdir(parents=True, exist_ok=True)
    minmax = data.name == "cifar"  # the authors' convention for CIFAR-10 reconstructions
    scores = reconstruction_scores(targets, result.reconstructions, minmax=minmax)
    baselines = baseline_scores(targets, seed=args.seed, mean_image=data.x_train.mean(axis=0))
    quality = clone_quality(split.client, result.clone, split.server, data.x_test, data.y_test)
    steps = int(result.rounds_run.sum()) * (config.input_iters + config.model_iters)
    labels = [data.class_names[label] for label in data.y_test[chosen]]
    metrics = {
        "dataset": data.name,
        "data_source": data.source,
        "model": str(args.model) if args.model else f"reference net, {args.epochs} epochs, seed {args.seed}",
        "cut_layer": split.cut_layer,
        "depth": split.depth,
        "split_test_accuracy": split_accuracy,
        "preset": args.preset,
        "config": {**config.__dict__, "box": list(config.box) if config.box else None},
        "targets": {"test_indices": chosen.tolist(), "labels": labels},
        "minmax_normalised": minmax,
        "reconstruction": scores.to_dict(),
        "baselines": {name: baseline.to_dict() for name, baseline in baselines.items()},
        "stolen_clone": quality.to_dict(),
        "seconds": result.seconds,
        "image_steps_per_second": steps / result.seconds if result.seconds else None,
        "interrupted": result.interrupted,
        "finished": result.finished.tolist(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    np.savez_compressed(out / "reconstructions.npz", originals=targets, reconstructions=result.reconstructions, test_indices=chosen)
    result.clone.save(out / "clone.keras")
    title = f"{data.name}, cut after {split.cut_layer} (depth {split.depth}), {args.preset} preset: mean MSE {scores.mean_mse:.3f}"
    shown = np.clip(result.reconstructions, 0, 1) if not minmax else result.reconstructions
    save_figure(reconstruction_grid(targets, shown, labels=labels, scores=scores.mse, title=title), out / "grid.png")
    series = {f"{label} ({i})": history for i, (label, history) in enumerate(zip(labels, result.matching_loss)) if len(history)}
    if series:
        save_figure(curves(series, xlabel="round", ylabel="MSE(clone(x_hat), z)", logy=True, title="activation matching"), out / "losses.png")
    grey = baselines["constant_0.5"]
    print(f"reconstruction: mean MSE {scores.mean_mse:.4f}, SSIM {scores.mean_ssim:.3f}, PSNR {scores.mean_psnr:.1f} dB")
    print(f"  grey image:    mean MSE {grey.mean_mse:.4f}, SSIM {grey.mean_ssim:.3f}")
    print(f"  dataset mean:  mean MSE {baselines['dataset_mean'].mean_mse:.4f}, SSIM {baselines['dataset_mean'].mean_ssim:.3f}")
    print(
        f"stolen clone: server(clone(x)) accuracy {quality.clone_accuracy:.2%} vs server(client(x)) {quality.original_accuracy:.2%}, "
        f"agreement {quality.agreement:.2%} on {quality.n} test images"
    )
    print(f"time: {result.seconds:.1f}s ({metrics['image_steps_per_second']:.0f} image-steps/s); wrote {out}/")


if __name__ == "__main__":
    main()
