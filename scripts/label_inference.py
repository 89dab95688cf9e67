"""Label inference against U-shaped split learning (UnSplit attack 2), with Li et al.'s baselines.

    python scripts/label_inference.py --dataset mnist --data-dir ../shared/data
    python scripts/label_inference.py --dataset cifar --data-dir ../shared/data --batch-size 64 --samples 512
    python scripts/label_inference.py --dataset f_mnist --observation weight_gradient

Trains the dataset's reference net (untrained at the start, as in the paper's
demo) split U-shaped: the client runs the layers up to --depth and the output
layer, and holds the labels; the server runs the rest. Every training step the
server attacks the batch it just saw, under each observation model:

  weight_gradient      the gradient of the client's last-layer weights (what the
                       authors' code compares; a real server does not see it)
  activation_gradient  the gradient with respect to the activations the server
                       sent (what a split-learning server really receives)

Rows "[...]" are the authors' original variant of an attack, for comparison.
Activation gradients say which examples share a label, not the label's name
(renaming classes and the head's columns alike changes nothing the server
sees), so the attacker is told the labels of the first --known-per-class
examples of each class (Li et al.'s direction scoring needs the same); those
examples are left out of every score. "relabelled" is the accuracy after the
best renaming of the inferred classes. The norm-scoring baseline only ranks
examples: its score is a macro one-vs-rest AUC.

Writes <out>/label_inference.json and <out>/label_accuracy.png (running accuracy
over training steps). Ctrl-C stops training and still writes what was finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from common import add_data_flags, load_data  # first: quiets TensorFlow

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from unsplit_tf.attacks.labels import OBSERVATIONS, KnownLabels, NormScoring, label_methods  # noqa: E402
from unsplit_tf.scoring import evaluate_labels  # noqa: E402
from unsplit_tf.models import reference_net  # noqa: E402
from unsplit_tf.plots import curves, save_figure  # noqa: E402
from unsplit_tf.protocol import TrainConfig, UShapedTrainer  # noqa: E402
from unsplit_tf.split import split_u_shaped  # noqa: E402

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_flags(parser, default_dataset="mnist")
    parser.add_argument("--samples", type=int, default=100, help="training examples to attack, one epoch (default 100)")
    parser.add_argument("--batch-size", type=int, default=1, help="split-learning batch size (default 1, as the paper)")
    parser.add_argument(
        "--observation", default="all", choices=("all", *OBSERVATIONS), help="observation model(s) to attack (default all)"
    )
    parser.add_argument("--depth", type=int, default=2, help="the client's bottom ends after this layer (default 2)")
    parser.add_argument(
        "--known-per-class", type=int, default=1, help="labels of the first K examples of each class are known (default 1)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default runs/label_inference/<dataset>_b<batch>)")
    args = parser.parse_args(argv)
    for flag, value, least in (
        ("--samples", args.samples, 1),
        ("--batch-size", args.batch_size, 1),
        ("--known-per-class", args.known_per_class, 0),
    ):
        if value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    return args

def short_name(name: str) -> str:
    """Progress-bar label: "weight_gradient/gradient_matching[clone softmax]" -> "weight[orig]"."""
    observation, method = name.split("/")
    prefix = {"weight_gradient": "weight", "activation_gradient": "act"}[observation]
    if method.startswith("gradient_matching"):
        return prefix + ("[orig]" if "[" in method else "")
    return method.replace("_scoring", "")

def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    data = load_data(args)
    if args.samples > len(data.x_train):
        sys.exit(f"error: --samples {args.samples} is more than the {len(data.x_train)} training images")
    rng = np.random.default_rng(args.seed)
    chosen = rng.permutation(len(data.x_train))[: args.samples]
    x, y = data.x_train[chosen], data.y_train[chosen]

    keras.utils.set_random_seed(args.seed)
    model = reference_net(data.name)
    try:
        split = split_u_shaped(model, depth=args.depth)
    except ValueError as error:
        sys.exit(f"error: {error}")
    trainer = UShapedTrainer(split, TrainConfig(batch_size=args.batch_size, epochs=1, seed=args.seed))
    observations = OBSERVATIONS if args.observation == "all" else (args.observation,)
    methods = label_methods(split.client_head, data.num_classes, seed=args.seed, observations=observations)
    out = args.out or Path("runs") / "label_inference" / f"{data.name}_b{args.batch_size}"
    steps = -(-args.samples // args.batch_size)
    print(
        f"U-shaped split at depth {args.depth}: client bottom ends at '{split.client_bottom.layers[-1].name}', "
        f"head '{split.client_head.layers[-1].name}' ({split.client_head.input.shape[-1]} -> {data.num_classes}); "
        f"{args.samples} examples, batch {args.batch_size}, {steps} steps; first {args.known_per_class} of each class known"
    )

    side_knowledge = KnownLabels(data.num_classes, args.known_per_class)
    true: list[int] = []
    curve_steps: list[int] = []
    running: dict[str, list[float | None]] = {name: [] for name, method in methods.items() if not isinstance(method, NormScoring)}
    correct = dict.fromkeys(running, 0)
    counted = [0]
    timing = {"attack_s": 0.0}
    bar = keras.utils.Progbar(steps, stateful_metrics=[short_name(name) for name in running] + ["loss"], unit_name="step")

    def on_step(record) -> None:
        labels = y[record.indices]
        known = side_knowledge(labels)
        start = time.perf_counter()
        inferred = {name: method.attack_record(record, known_labels=known).labels for name, method in methods.items()}
        timing["attack_s"] += time.perf_counter() - start
        true.extend(labels.tolist())
        # Evaluation (the true labels), outside the attacks: running accuracy on the examples not given.
        unknown = known < 0
        counted[0] += int(unknown.sum())
        curve_steps.append(record.step)
        for name in running:
            correct[name] += int(np.sum(inferred[name][unknown] == labels[unknown]))
            running[name].append(correct[name] / counted[0] if counted[0] else None)
        shown = [(short_name(name), values[-1]) for name, values in running.items() if values[-1] is not None]
        bar.update(len(curve_steps), shown + [("loss", record.loss)])

    interrupted = False
    started = time.perf_counter()
    try:
        trainer.fit(x, y, on_step=on_step)
    except KeyboardInterrupt:
        interrupted = True
        print(f"\ninterrupted after {len(curve_steps)} of {steps} steps; writing what is finished")
    elapsed = time.perf_counter() - started

    report = {
        "dataset": data.name,
        "source": data.source,
        "depth": args.depth,
        "batch_size": args.batch_size,
        "samples": args.samples,
        "attacked": len(true),
        "steps": len(curve_steps),
        "known_per_class": args.known_per_class,
        "seed": args.seed,
        "observations": list(observations),
        "interrupted": interrupted,
        "elapsed_s": round(elapsed, 2),
        "attack_s": round(timing["attack_s"], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, TensorFlow {tf.__version__} "
        f"on {', '.join(d.device_type for d in tf.config.list_logical_devices())}",
        "results": [],
        "curves": {"step": curve_steps, **running},
    }
    print(f"\n{'observation/method':60s} {'accuracy':>9s} {'relabel':>9s} {'AUC':>7s} {'n':>6s} {'chance':>7s}")
    for name, method in methods.items():
        if not true:
            break
        scores = evaluate_labels(method.result(), true, data.num_classes)
        report["results"].append({"name": name, **scores.__dict__})
        cell = lambda value, pct=True: "-" if value is None else (f"{value:.1%}" if pct else f"{value:.3f}")  # noqa: E731
        print(
            f"{name:60s} {cell(scores.accuracy):>9s} {cell(scores.relabelled_accuracy):>9s} "
            f"{cell(scores.auc, False):>7s} {scores.evaluated:6d} {cell(scores.chance):>7s}"
        )

    out.mkdir(parents=True, exist_ok=True)
    (out / "label_inference.json").write_text(json.dumps(report, indent=2, default=_plain))
    if curve_steps:
        figure = curves(
            {name: [np.nan if v is None else v for v in values] for name, values in running.items()},
            x=curve_steps,
            xlabel="training step",
            ylabel="label accuracy so far (known labels excluded)",
            title=f"Label inference, {data.name}, batch {args.batch_size}, depth {args.depth}",
        )
        save_figure(figure, out / "label_accuracy.png")
    print(f"wrote {out / 'label_inference.json'} and {out / 'label_accuracy.png'} ({elapsed:.1f} s)")
    return report

def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

if __name__ == "__main__":
    main()
