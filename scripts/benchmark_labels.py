"""Label inference speed: examples attacked per second, against the authors' one-at-a-time loop.

    python scripts/benchmark_labels.py [--examples N] [--batch-sizes 1 8 64]   (--help for all flags)

`run()` returns the figures as a dict (for scripts/benchmark.py). The
attacked head is the MNIST net's (84 -> 10 logits). Its inputs and the
gradients the server observes come from a client head that trains on them
(one Adam step per batch), computed before the clock starts: only the attack
is timed, not split learning. Every attack includes its clone's training step,
as the original does.

The baseline is the authors' algorithm as they wrote it, in TensorFlow eager
mode: per example, ten backward passes through the clone (one per candidate
label), the MSE of each weight gradient with the observed one, then one
optimiser step. `main` also times the same loop in PyTorch eager, the authors'
framework, when torch is installed (scripts/pytorch_baseline.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import common  # noqa: F401  first: quiets TensorFlow's start-up

import keras  # noqa: E402
import pytorch_baseline  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from unsplit_tf.attacks.labels import KnownLabels, LabelInferenceAttack, LabelInferenceConfig  # noqa: E402
from unsplit_tf.protocol import cross_entropy  # noqa: E402

FEATURES, CLASSES = 84, 10
WARMUP = 2
"""Batches attacked before the clock starts (tracing, first calls)."""

Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # activations, kernel gradient, activation gradients, labels


def head_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(FEATURES,))
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(inputs), name="head")


def observations(count: int, batch: int, seed: int) -> list[Batch]:
    """What the server sees over `count` training steps of a client head (Adam step on the true labels each)."""
    rng = np.random.default_rng(seed)
    client = head_model(seed)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3, amsgrad=True)
    batches = []
    for _ in range(count):
        a = tf.constant(np.maximum(rng.normal(size=(batch, FEATURES)), 0), tf.float32)
        y = rng.integers(0, CLASSES, batch)
        with tf.GradientTape() as tape:
            tape.watch(a)
            loss = cross_entropy(y, client(a))
        d_a, *grads = tape.gradient(loss, [a, *client.trainable_variables])
        batches.append((a.numpy(), grads[0].numpy(), d_a.numpy(), y))
        optimizer.apply_gradients(zip(grads, client.trainable_variables))
    return batches


def original_attack(seed: int) -> Callable[[Batch], np.ndarray]:
    """The authors' label inference for one example: ten backward passes, then one clone step."""
    clone = head_model(seed)
    kernel = clone.layers[-1].kernel
    optimizer = keras.optimizers.Adam(learning_rate=1e-3, amsgrad=True)

    def attack(batch: Batch) -> np.ndarray:
        a, observed = tf.constant(batch[0]), batch[1]
        errors = []
        for candidate in range(CLASSES):
            with tf.GradientTape() as tape:
                loss = cross_entropy(tf.constant([candidate]), clone(a))
            errors.append(float(tf.reduce_mean(tf.square(tape.gradient(loss, kernel) - observed))))
        label = int(np.argmin(errors))
        with tf.GradientTape() as tape:
            loss = cross_entropy(tf.constant([label]), clone(a))
        optimizer.apply_gradients(zip(tape.gradient(loss, clone.trainable_variables), clone.trainable_variables))
        return np.array([label])

    return attack


def library_attack(observation: str, seed: int, *, recorded: bool = False) -> Callable[[Batch], np.ndarray]:
    """`LabelInferenceAttack` on one observation model: `step` per training step, or with `recorded`,
    `steps` per item of many stacked training steps.

    For activation gradients the first example of each class is known (they name the classes).
    """
    attack = LabelInferenceAttack(head_model(seed), LabelInferenceConfig(observation, seed=seed))
    infer = attack.steps if recorded else attack.step
    side_knowledge = KnownLabels(CLASSES)

    def run(item: Batch) -> np.ndarray:
        known = side_knowledge(item[3]) if observation == "activation_gradient" else None
        return infer(item[0], item[1 if observation == "weight_gradient" else 2], known_labels=known).labels

    return run


def stacked(stream: list[Batch], steps_per_call: int) -> list[Batch]:
    """Group consecutive training steps: each item holds `steps_per_call` steps, arrays stacked."""
    return [
        tuple(np.stack([batch[part] for batch in stream[i : i + steps_per_call]]) for part in range(4))
        for i in range(0, len(stream), steps_per_call)
    ]


def timed(attack: Callable[[Batch], np.ndarray], stream: list[Batch]) -> tuple[float, float]:
    """(examples per second after the warm-up items, accuracy over the whole stream)."""
    labels, start = [], time.perf_counter()
    for position, batch in enumerate(stream):
        if position == WARMUP:
            start = time.perf_counter()
        labels.append(np.asarray(attack(batch)).reshape(-1))
    seconds = time.perf_counter() - start
    examples = sum(batch[3].size for batch in stream[WARMUP:])
    accuracy = float(np.mean(np.concatenate(labels) == np.concatenate([batch[3].reshape(-1) for batch in stream])))
    return examples / seconds, accuracy


def run(
    *,
    examples: int = 2048,
    original_examples: int = 100,
    batch_sizes: tuple[int, ...] = (1, 8, 64),
    examples_per_call: int = 2048,
    seed: int = 0,
) -> dict:
    """Examples attacked per second: the original loop, and `LabelInferenceAttack` per observation model and batch size.

    Online: one `step` call per training step, as a server attacking live. Recorded: a
    recorded run attacked `examples_per_call` examples per `steps` call (the same
    arithmetic, one compiled loop; at least 10 calls timed). Keys of report["attack"] are "<observation>/b<batch>
    online" and "<observation>/b<batch> recorded".
    """
    speed, accuracy = timed(original_attack(seed + 1), observations(WARMUP + original_examples, 1, seed))
    report = {
        "head": f"{FEATURES} -> {CLASSES} (MNIST net)",
        "machine": f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}",
        "original_loop": {"examples_per_s": speed, "accuracy": accuracy},
        "examples_per_call": examples_per_call,
        "attack": {},
    }
    for observation in ("weight_gradient", "activation_gradient"):
        for batch in batch_sizes:
            per_call = max(1, examples_per_call // batch)
            for mode, steps_per_call, calls in (
                ("online", 1, max(1, examples // batch)),
                ("recorded", per_call, max(10, examples // (batch * per_call))),
            ):
                stream = observations((WARMUP + calls) * steps_per_call, batch, seed)
                if steps_per_call > 1:
                    stream = stacked(stream, steps_per_call)
                attack_speed, accuracy = timed(library_attack(observation, seed + 1, recorded=mode == "recorded"), stream)
                report["attack"][f"{observation}/b{batch} {mode}"] = {
                    "examples_per_s": attack_speed,
                    "speedup_vs_original": attack_speed / speed,
                    "accuracy": accuracy,
                }
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Prints examples attacked per second.")
    parser.add_argument("--examples", type=int, default=2048, help="examples attacked per online measurement (default 2048)")
    parser.add_argument("--original-examples", type=int, default=100, help="examples for the authors' loop (default 100)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64], help="batch sizes to time (default 1 8 64)")
    parser.add_argument("--examples-per-call", type=int, default=2048, help="examples per recorded `steps` call (default 2048)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("examples", "original_examples", "examples_per_call", "batch_sizes"):
        values = getattr(args, flag)
        if min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """The benchmark with flags `argv` (None: the defaults, as scripts/benchmark.py calls it)."""
    args = parse_args([] if argv is None else argv)
    report = run(
        examples=args.examples,
        original_examples=args.original_examples,
        batch_sizes=tuple(args.batch_sizes),
        examples_per_call=args.examples_per_call,
        seed=args.seed,
    )
    torch_speed = pytorch_baseline.label_inference_speed() if pytorch_baseline.available() else None
    print(f"label inference, head {report['head']}, {report['machine']} (examples attacked per second, clone step included):")
    original = report["original_loop"]
    name = "original loop, TF eager, 10 backward passes each"
    print(f"  {name:55s} {original['examples_per_s']:10,.0f} {'':8s} accuracy {original['accuracy']:.1%}")
    if torch_speed:
        print(f"  {'original loop, PyTorch eager (the authors framework)':55s} {torch_speed:10,.0f}")
    header = "speed-up vs TF eager" + (" / vs PyTorch" if torch_speed else "")
    print(f"  {'':55s} {'':10s} {header}")
    for name, row in report["attack"].items():
        versus_torch = f" {row['examples_per_s'] / torch_speed:7,.0f}x" if torch_speed else ""
        print(f"  {name:55s} {row['examples_per_s']:10,.0f} {row['speedup_vs_original']:7,.0f}x{versus_torch}  accuracy {row['accuracy']:.1%}")
    print(f"  recorded: {report['examples_per_call']} examples per `steps` call (one compiled loop); online: one `step` call per training step")


if __name__ == "__main__":
    main(sys.argv[1:])
