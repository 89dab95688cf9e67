"""Defenses at the cut, measured on both sides: what each costs in accuracy, what it leaves the attacks.

    python scripts/defend.py                        # Fashion-MNIST, depth 2, every defense at its default strengths
    python scripts/defend.py --defense nopeek --nopeek-weights 0.5 5
    python scripts/defend.py --quick --out /tmp/defenses   # a two-minute smoke run
    python scripts/defend.py --report-only          # redraw REPORT.md and the figures from the finished runs

Inversion side. For each activation defense and strength, the reference net is
trained the split-learning way (two-party, cut at --depth, --epochs epochs,
the same initial weights every time) with the defense at the cut; its test
accuracy is taken with the defense active, as deployed. Then the server
attacks what the *defended* client sends for the first test image of each
class: model inversion + stealing with the `better` preset, 100 x (100 + 100)
steps, all targets in one batch. The attacker's clone has the client's
undefended architecture. Defenses:

  gaussian_noise, laplace_noise  ActivationNoise(s, relative=True): noise of stddev s
                                 x each example's RMS activation, in training and inference
  nopeek                         NoPeek(w): w x dCor(inputs, activations) added to the client's loss

Label side. For each gradient defense and strength, the reference net is
trained U-shaped from scratch (--label-batch-size, --epochs) with the defense
at the input of the client's head; during the first --label-samples examples
the server runs the label attacks on the dL/da it receives (gradient
matching, Li et al.'s direction and norm scoring; the first example of each
class known). Defenses:

  gradient_clipping     GradientClipping(c): each example's dL/da scaled to norm <= c
  gradient_noise        GradientNoise(s, relative=True): isotropic, noise norm = s x the batch's largest ||dL/da||
  label_subspace_noise  LabelSubspaceNoise(s, relative=True): as gradient_noise, all of it in the label subspace
  max_norm_noise        MaxNormNoise(): Li et al.'s max_norm (no strength)

One JSON per finished run goes to --out (default results/defenses); runs
already there are skipped, so an interrupted sweep resumes. Then REPORT.md
and the privacy-utility figures are (re)written from everything in --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from common import add_data_flags, load_data  # first: quiets TensorFlow

import keras  # noqa: E402
import numpy as np  # noqa: E402

from unsplit_tf.attacks.inversion import PRESETS, invert, preset  # noqa: E402
from unsplit_tf.attacks.labels import (  # noqa: E402
    DirectionScoring,
    LabelInferenceAttack,
    LabelInferenceConfig,
    NormScoring,
)
from unsplit_tf.data import Dataset, first_index_per_class  # noqa: E402
from unsplit_tf.experiments import environment  # noqa: E402
from unsplit_tf.defense_report import defense_report, write_defense_figures  # noqa: E402
from unsplit_tf.defenses import (  # noqa: E402
    ActivationNoise,
    GradientClipping,
    GradientNoise,
    LabelSubspaceNoise,
    MaxNormNoise,
    NoPeek,
    distance_correlation,
    split_u_shaped_with_defense,
    split_with_defense,
)
from unsplit_tf.scoring import baseline_scores, clone_quality, evaluate_labels, reconstruction_scores  # noqa: E402
from unsplit_tf.models import reference_net  # noqa: E402
from unsplit_tf.protocol import SplitTrainer, TrainConfig, UShapedTrainer  # noqa: E402
from unsplit_tf.split import clone_architecture, split_model, split_u_shaped  # noqa: E402

ACTIVATION_DEFENSES = ("gaussian_noise", "laplace_noise", "nopeek")
GRADIENT_DEFENSES = ("gradient_clipping", "gradient_noise", "label_subspace_noise", "max_norm_noise")
STRENGTH_MEANINGS = {
    "none": None,
    "gaussian_noise": "noise stddev / the example's RMS activation",
    "laplace_noise": "noise stddev / the example's RMS activation",
    "nopeek": "weight of dCor(x, z) in the client's loss",
    "gradient_clipping": "largest ‖dL/da‖ per example that passes",
    "gradient_noise": "noise norm / the batch's largest ‖dL/da‖",
    "label_subspace_noise": "noise norm / the batch's largest ‖dL/da‖",
    "max_norm_noise": None,
}
DCOR_SAMPLES = 512
QUICK = {"epochs": 1, "main_iters": 10, "label_samples": 128, "train_samples": 6000}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_flags(parser, default_dataset="f_mnist")
    parser.add_argument("--depth", type=int, default=2, help="split depth (default 2)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of every model (default 2)")
    parser.add_argument("--batch-size", type=int, default=64, help="two-party training batch size (default 64)")
    parser.add_argument(
        "--defense", nargs="+", choices=("none", *ACTIVATION_DEFENSES, *GRADIENT_DEFENSES),
        help="run only these defenses ('none' = the undefended baselines; default all)",
    )
    parser.add_argument("--noise-levels", type=float, nargs="+", default=[0.1, 0.5, 1.0, 2.0], help="relative stddev of gaussian_noise")
    parser.add_argument("--laplace-levels", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="relative stddev of laplace_noise")
    parser.add_argument("--nopeek-weights", type=float, nargs="+", default=[1.0, 3.0, 5.0, 10.0], help="NoPeek weights")
    parser.add_argument("--clip-norms", type=float, nargs="+", default=[0.01, 0.003, 0.001], help="gradient_clipping max norms")
    parser.add_argument(
        "--gradient-noise-levels", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
        help="relative noise of gradient_noise and label_subspace_noise",
    )
    parser.add_argument("--preset", default="tuned", choices=list(PRESETS), help="inversion preset (default better, the strongest)")
    parser.add_argument("--main-iters", type=int, default=100, help="inversion rounds (default 100)")
    parser.add_argument("--input-iters", type=int, default=100, help="x_hat steps per round (default 100)")
    parser.add_argument("--model-iters", type=int, default=100, help="clone steps per round (default 100)")
    parser.add_argument("--label-batch-size", type=int, default=64, help="U-shaped training batch size (default 64)")
    parser.add_argument("--label-samples", type=int, default=512, help="training examples the label attacks see (default 512)")
    parser.add_argument("--train-samples", type=int, help="train on the first N training images only (default all)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    parser.add_argument("--out", type=Path, help="results folder, one setting per folder (default results/defenses; runs/defenses_quick with --quick)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite REPORT.md and the figures from --out")
    args = parser.parse_args(argv)
    if args.quick:
        given = " ".join(argv if argv is not None else sys.argv)
        for name, value in QUICK.items():
            if f"--{name.replace('_', '-')}" not in given:
                setattr(args, name, value)
    if args.out is None:
        args.out = Path("runs/defenses_quick") if args.quick else Path("results/defenses")
    for flag in ("epochs", "batch_size", "main_iters", "input_iters", "model_iters", "label_batch_size", "label_samples"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


# ---------------------------------------------------------------- what to run


def planned_runs(args: argparse.Namespace) -> list[tuple[str, str, float | None]]:
    """(side, defense, strength) for every run the flags ask for, baselines first."""
    grids = {
        "gaussian_noise": args.noise_levels,
        "laplace_noise": args.laplace_levels,
        "nopeek": args.nopeek_weights,
        "gradient_clipping": args.clip_norms,
        "gradient_noise": args.gradient_noise_levels,
        "label_subspace_noise": args.gradient_noise_levels,
        "max_norm_noise": [None],
    }
    wanted = set(args.defense or ("none", *grids))
    runs = []
    for side, defenses in (("inversion", ACTIVATION_DEFENSES), ("labels", GRADIENT_DEFENSES)):
        if "none" in wanted or any(defense in wanted for defense in defenses):
            runs.append((side, "none", None))  # every curve starts from the undefended point
        runs += [(side, defense, strength) for defense in defenses if defense in wanted for strength in grids[defense]]
    return runs


def run_key(args: argparse.Namespace, data: Dataset, side: str, defense: str, strength: float | None) -> str:
    """A file name that changes with every flag the run's result depends on."""
    samples = f"-n{args.train_samples}" if args.train_samples else ""
    common = f"{data.name}-d{args.depth}-e{args.epochs}-s{args.seed}{samples}"
    if side == "inversion":
        setting = f"b{args.batch_size}-{args.preset}-{args.main_iters}x{args.input_iters}+{args.model_iters}"
    else:
        setting = f"b{args.label_batch_size}-a{args.label_samples}"
    level = "" if strength is None else f"-{strength:g}"
    return f"{side}-{common}-{setting}-{defense}{level}"


def make_defense(defense: str, strength: float | None, model: keras.Model, seed: int) -> keras.layers.Layer:
    """The defense layer for a run (seeded, so a rerun draws the same noise)."""
    if defense == "gaussian_noise":
        return ActivationNoise(strength, "gaussian", relative=True, seed=seed, name="defense")
    if defense == "laplace_noise":
        return ActivationNoise(strength, "laplace", relative=True, seed=seed, name="defense")
    if defense == "nopeek":
        return NoPeek(strength, name="defense")
    if defense == "gradient_clipping":
        return GradientClipping(strength, name="defense")
    if defense == "gradient_noise":
        return GradientNoise(strength, relative=True, seed=seed, name="defense")
    if defense == "label_subspace_noise":
        return LabelSubspaceNoise(strength, model.layers[-1], relative=True, seed=seed, name="defense")
    if defense == "max_norm_noise":
        return MaxNormNoise(seed=seed, name="defense")
    raise ValueError(f"unknown defense {defense!r}")


# ---------------------------------------------------------------- the two sides


def run_inversion(args: argparse.Namespace, data: Dataset, x_train, y_train, defense: str, strength: float | None) -> dict:
    """Train with the activation defense, then invert and steal from what the defended client sends."""
    keras.utils.set_random_seed(args.seed)
    model = reference_net(data.name)
    plain = split_model(model, depth=args.depth)  # the architecture the attacker knows
    split = plain if defense == "none" else split_with_defense(model, make_defense(defense, strength, model, args.seed), depth=args.depth)
    trainer = SplitTrainer(split.client, split.server, TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed))
    trainer.fit(x_train, y_train, on_epoch=lambda epoch, loss: print(f"  epoch {epoch + 1}: loss {loss:.3f}", flush=True))
    accuracy = trainer.evaluate(data.x_test, data.y_test)

    chosen = first_index_per_class(data.y_test, data.num_classes)
    targets = data.x_test[chosen]
    observed = split.client(targets)  # all the server sees of the targets
    # The clone's seed is apart from the model's, as in scripts/label_inference.py and the sweep.
    config = preset(args.preset).replace(
        main_iters=args.main_iters, input_iters=args.input_iters, model_iters=args.model_iters, seed=args.seed
    )
    result = invert(plain.client, observed, config)
    scores = reconstruction_scores(targets, result.reconstructions)
    flipped = reconstruction_scores(targets, 1.0 - result.reconstructions)  # a negative image shows the shape too
    quality = clone_quality(split.client, result.clone, split.server, data.x_test, data.y_test)
    untrained = clone_quality(split.client, clone_architecture(plain.client, seed=config.seed), split.server, data.x_test, data.y_test)
    sample = data.x_test[:DCOR_SAMPLES]
    baselines = baseline_scores(targets, seed=args.seed, mean_image=data.x_train.mean(axis=0))
    return {
        "cut_layer": split.cut_layer,
        "test_accuracy": accuracy,
        "targets": {"test_indices": chosen.tolist(), "labels": [data.class_names[c] for c in data.y_test[chosen]]},
        "attack": {"preset": args.preset, **{k: getattr(config, k) for k in ("main_iters", "input_iters", "model_iters", "mode")}},
        "reconstruction": scores.to_dict(),
        "either_polarity": {  # per image the better of x_hat and 1 - x_hat: an attacker can tell which from the picture
            "mean_mse": float(np.minimum(scores.mse, flipped.mse).mean()),
            "mean_ssim": float(np.maximum(scores.ssim, flipped.ssim).mean()),
            "flipped": (flipped.mse < scores.mse).tolist(),
        },
        "baselines": {name: {"mean_mse": b.mean_mse, "mean_ssim": b.mean_ssim} for name, b in baselines.items()},
        "stolen_clone": quality.to_dict(),
        "clone_before_attack": untrained.to_dict(),  # the attack's starting point, for scale
        "distance_correlation": float(distance_correlation(sample, split.client(sample))),
        "attack_seconds": result.seconds,
        "images": {"originals": targets, "reconstructions": result.reconstructions},
    }


def run_labels(args: argparse.Namespace, data: Dataset, x_train, y_train, defense: str, strength: float | None) -> dict:
    """Train U-shaped with the gradient defense at the head's input; attack the first --label-samples examples."""
    keras.utils.set_random_seed(args.seed)
    model = reference_net(data.name)
    known_head = split_u_shaped(model, depth=args.depth).client_head  # the architecture the attacker knows
    if defense == "none":
        split = split_u_shaped(model, depth=args.depth)
    else:
        split = split_u_shaped_with_defense(model, make_defense(defense, strength, model, args.seed), depth=args.depth)
    config = TrainConfig(epochs=args.epochs, batch_size=args.label_batch_size, seed=args.seed)
    trainer = UShapedTrainer(split, config)
    methods = {
        "activation_gradient/gradient_matching": LabelInferenceAttack(
            known_head, LabelInferenceConfig("activation_gradient", seed=args.seed)
        ),
        "activation_gradient/direction_scoring": DirectionScoring(data.num_classes),
        "activation_gradient/norm_scoring": NormScoring(),
    }
    attacked_steps = -(-args.label_samples // args.label_batch_size)
    seen = np.zeros(data.num_classes, np.int64)
    true: list[int] = []
    norms: list[float] = []

    def on_step(record) -> None:
        if record.step > attacked_steps:
            return
        labels = y_train[record.indices]
        known = np.full(len(labels), -1, np.int64)
        for i, label in enumerate(labels):
            if seen[label] < 1:
                seen[label] += 1
                known[i] = label
        for method in methods.values():
            if isinstance(method, LabelInferenceAttack):
                method.attack_record(record, known_labels=known)
            else:
                method.step(record.activation_gradients, known_labels=known, step=record.step)
        true.extend(labels.tolist())
        norms.extend(np.linalg.norm(record.activation_gradients.numpy(), axis=1).tolist())

    trainer.fit(x_train, y_train, on_step=on_step,
                on_epoch=lambda epoch, loss: print(f"  epoch {epoch + 1}: loss {loss:.3f}", flush=True))
    scores = [{"name": name, **evaluate_labels(m.result(), true, data.num_classes).__dict__} for name, m in methods.items()]
    return {
        "cut_layer": split.client_bottom.layers[-1].name,
        "test_accuracy": trainer.evaluate(data.x_test, data.y_test),
        "attacked_samples": len(true),
        "known_per_class": 1,
        "labels": scores,
        "gradient_norm_median": float(np.median(norms)),
    }


# ---------------------------------------------------------------- main


def write_report(out: Path) -> None:
    written = write_defense_figures(out)
    (out / "REPORT.md").write_text(defense_report(out))
    print(f"wrote {out / 'REPORT.md'}" + "".join(f", {path.name}" for path in written))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        write_report(args.out)
        return
    data = load_data(args)
    x_train, y_train = data.x_train, data.y_train
    if args.train_samples:
        x_train, y_train = x_train[: args.train_samples], y_train[: args.train_samples]
    runs = planned_runs(args)
    started = time.perf_counter()
    for number, (side, defense, strength) in enumerate(runs, start=1):
        key = run_key(args, data, side, defense, strength)
        path = args.out / f"{key}.json"
        if path.exists():
            print(f"[{number}/{len(runs)}] {key}: finished before, skipped")
            continue
        print(f"[{number}/{len(runs)}] {key}", flush=True)
        run_started = time.perf_counter()
        run = run_inversion if side == "inversion" else run_labels
        measured = run(args, data, x_train, y_train, defense, strength)
        images = measured.pop("images", None)
        if images is not None:  # 8-bit pictures beside the record, for the reconstruction grid
            as_bytes = {name: np.round(np.clip(array, 0, 1) * 255).astype(np.uint8) for name, array in images.items()}
            np.savez_compressed(path.with_suffix(".npz"), **as_bytes)
        record = {
            "key": key,
            "side": side,
            "defense": defense,
            "strength": strength,
            "strength_meaning": STRENGTH_MEANINGS[defense],
            "dataset": data.name,
            "data_source": data.source,
            "train_images": len(x_train),
            "depth": args.depth,
            "training": {
                "epochs": args.epochs,
                "batch_size": args.batch_size if side == "inversion" else args.label_batch_size,
                "seed": args.seed,
                **({} if side == "inversion" else {"attacked_steps": -(-args.label_samples // args.label_batch_size)}),
            },
            **measured,
            "seconds": time.perf_counter() - run_started,
            "flags": {name: str(value) if isinstance(value, Path) else value for name, value in vars(args).items()},
            "command": " ".join(["python", *sys.argv]),
            "environment": environment(),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        path.write_text(json.dumps(record, indent=1))
        print(f"  -> {summary(record)} ({record['seconds']:.0f} s)", flush=True)
    print(f"{len(runs)} runs in {time.perf_counter() - started:.0f} s")
    write_report(args.out)


def summary(record: dict) -> str:
    """One line for the console."""
    if record["side"] == "inversion":
        return (
            f"accuracy {record['test_accuracy']:.1%}, inversion MSE {record['reconstruction']['mean_mse']:.3f} "
            f"SSIM {record['reconstruction']['mean_ssim']:.3f} (either polarity {record['either_polarity']['mean_mse']:.3f}), clone {record['stolen_clone']['clone_accuracy']:.1%}, "
            f"dCor {record['distance_correlation']:.3f}"
        )
    scores = ", ".join(
        f"{entry['method']} {entry['accuracy']:.1%}" if entry["accuracy"] is not None else f"{entry['method']} AUC {entry['auc']:.3f}"
        for entry in record["labels"]
    )
    return f"accuracy {record['test_accuracy']:.1%}; labels: {scores}"


if __name__ == "__main__":
    main()
