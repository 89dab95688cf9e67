"""Print the attacks' speed on this machine.

    python scripts/benchmark.py                   # inversion at batch 1, 10, 100, then label inference
    python scripts/benchmark.py --only inversion --rounds 20
    python scripts/benchmark.py --only inversion --batches 100 200 --stream 1000

Inversion: image-steps per second of the alternating optimisation (MNIST net,
depth 2, untrained: speed does not depend on the weights), after the first
round, which pays for compilation. One image-step is one optimiser step for
one target image. Targets (2-core CPU): >= 3,000 steps/s at batch 1,
>= 20,000 image-steps/s at batch 10 or more and >= 40,000 at 100 or more
(batched and stream mode); the authors' PyTorch code does about 1,000-1,500
at batch 1.

Label inference: examples attacked per second against the authors' one-example
loop (scripts/benchmark_labels.py says how each is measured); target >= 100x.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import common  # noqa: F401  first: quiets TensorFlow's start-up

import benchmark_labels  # noqa: E402
import numpy as np  # noqa: E402
import pytorch_baseline  # noqa: E402
import tensorflow as tf  # noqa: E402

from unsplit_tf.attacks.inversion import InversionConfig, invert, uses_xla  # noqa: E402
from unsplit_tf.models import mnist_net  # noqa: E402
from unsplit_tf.split import split_model  # noqa: E402


def inversion_speed(batch: int, rounds: int, jit_compile: bool | None = None, **changes) -> float:
    """Image-steps per second of the inversion attack at `batch` targets, compilation excluded.

    `changes` alter the config (e.g. stream mode, where a round is one epoch over all targets).
    """
    client = split_model(mnist_net(), depth=2).client
    targets = np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)
    config = InversionConfig(main_iters=rounds + 1, jit_compile=jit_compile, **changes)
    stamps: list[float] = []
    invert(client, client(targets), config, on_round=lambda report: stamps.append(time.perf_counter()))
    seconds_per_round = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return batch * (config.input_iters + config.model_iters) / seconds_per_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of 200 steps per measurement (default 10)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100], help="inversion batch sizes")
    parser.add_argument("--stream", type=int, nargs="*", default=[1000], help="stream-mode observation counts")
    parser.add_argument("--only", choices=["inversion", "labels"], help="run one of the two benchmarks")
    args = parser.parse_args()
    devices = ", ".join(device.name for device in tf.config.list_logical_devices())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; TensorFlow {tf.__version__} on {devices}")
    if args.only != "labels":
        print_inversion_speeds(args)
    if args.only != "inversion":
        benchmark_labels.main()


def print_inversion_speeds(args: argparse.Namespace) -> None:
    print("inversion + stealing, MNIST net, depth 2 (image-steps per second):")
    print(f"{'batch':>6s} {'auto':>10s} {'XLA':>10s} {'graph':>10s} {'PyTorch':>10s}   auto uses")
    for batch in args.batches:
        speeds = [inversion_speed(batch, args.rounds, jit) for jit in (None, True, False)]
        torch_speed = pytorch_baseline.inversion_speed(batch, args.rounds) if pytorch_baseline.available() else None
        chosen = "XLA" if uses_xla(InversionConfig(), batch) else "graph"
        torch_text = f"{torch_speed:10,.0f}" if torch_speed else f"{'-':>10s}"
        print(f"{batch:6d} " + " ".join(f"{speed:10,.0f}" for speed in speeds) + f" {torch_text}   {chosen}", flush=True)
    if not pytorch_baseline.available():
        print("(PyTorch column: pip install torch to time the authors' framework on the same loop)")
    print("stream mode (one clone, minibatches of 100 observations, 20 input + 10 model steps each):")
    for observations in args.stream:
        speed = inversion_speed(observations, max(2, args.rounds // 5), mode="stream", batch_size=100, input_iters=20, model_iters=10)
        print(f"{observations:6d} observations {speed:10,.0f} image-steps/s", flush=True)


if __name__ == "__main__":
    main()
