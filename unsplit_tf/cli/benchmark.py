"""Print the attacks' speed on this machine.

    unsplit-tf benchmark                          # inversion at batch 1, 10, 100, then label inference
    unsplit-tf benchmark --only inversion --rounds 20
    unsplit-tf benchmark --only labels
    unsplit-tf benchmark --only stream_result      # the stream attack end to end on Fashion-MNIST, depth 3 (minutes)
    unsplit-tf benchmark --only stream_result --preset stream   # the same with the strongest stream preset

Inversion: image-steps per second of the alternating optimisation (MNIST net,
depth 2, untrained: speed does not depend on the weights), after the first
round, which pays for compilation; "auto" is what the attack chooses (XLA on
GPU and for small CPU batches, a graph otherwise). Label inference: examples
attacked per second against the authors' one-example loop, live (one call per
training step) and on a recorded run (many steps per compiled call). The
PyTorch column times the authors' loops in their framework when torch is
installed. The stream result (only when asked for, it trains a victim) is
the stream attack end to end on Fashion-MNIST with the `stream_fast` preset (or
`--preset stream`): the attack's seconds beside what it recovered.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import unsplit_tf.cli._quiet  # noqa: F401  first: quiets TensorFlow's start-up

from unsplit_tf import defaults
from unsplit_tf.cli._common import CliError, add_data_flags, kept_restarts, load_data, main_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", choices=["inversion", "labels", "stream_result"],
                        help="run one benchmark (default inversion and labels; stream_result only when named)")
    parser.add_argument("--rounds", type=int, default=10, help="timed inversion rounds of 200 steps per measurement (default 10)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100], help="inversion batch sizes (default 1 10 100)")
    parser.add_argument("--stream", type=int, nargs="*", default=[1000],
                        help="stream-mode observation counts (minibatches of 100; default 1000; none to skip)")
    parser.add_argument("--examples", type=int, default=2048, help="label-inference examples per measurement (default 2048)")
    parser.add_argument("--observations", type=int, default=5000, help="stream_result: observations attacked (default 5000)")
    parser.add_argument("--depth", type=int, default=3, help="stream_result: split depth of the reference net (default 3)")
    parser.add_argument("--preset", choices=[defaults.FAST_STREAM_PRESET, defaults.STREAM_PRESET], default=defaults.FAST_STREAM_PRESET,
                        help=f"stream_result: the stream preset timed (default {defaults.FAST_STREAM_PRESET}, about 3 minutes at "
                             f"depth 3 on 2 cores; {defaults.STREAM_PRESET}: the strongest, slower)")
    add_data_flags(parser)


def run(args: argparse.Namespace) -> int:
    import tensorflow as tf

    if min(args.rounds, args.examples, args.observations, args.depth, *args.batches, *args.stream) < 1:
        raise CliError("--rounds, --examples, --batches, --stream, --observations and --depth must be at least 1")
    devices = ", ".join(device.name for device in tf.config.list_logical_devices())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; TensorFlow {tf.__version__} on {devices}")
    if args.only in (None, "inversion"):
        print_inversion_speeds(args)
    if args.only in (None, "labels"):
        print_label_speeds(args)
    if args.only == "stream_result":
        print_stream_result(args)
    return 0


def print_inversion_speeds(args: argparse.Namespace) -> None:
    from unsplit_tf.attacks.inversion import InversionConfig, uses_xla
    from unsplit_tf.benchmarks import pytorch
    from unsplit_tf.benchmarks.inversion import inversion_speed

    print("inversion + stealing, MNIST net, depth 2 (image-steps per second):")
    print(f"{'batch':>6s} {'auto':>10s} {'XLA':>10s} {'graph':>10s} {'PyTorch':>10s}   auto uses")
    for batch in args.batches:
        xla, graph = (inversion_speed(batch, args.rounds, jit) for jit in (True, False))
        auto_uses_xla = uses_xla(InversionConfig(), batch)  # auto runs one of the two: not timed a third time
        speeds = [xla if auto_uses_xla else graph, xla, graph]
        torch_speed = pytorch.inversion_speed(batch, args.rounds) if pytorch.available() else None
        chosen = "XLA" if auto_uses_xla else "graph"
        torch_text = f"{torch_speed:10,.0f}" if torch_speed else f"{'-':>10s}"
        print(f"{batch:6d} " + " ".join(f"{speed:10,.0f}" for speed in speeds) + f" {torch_text}   {chosen}", flush=True)
    if not pytorch.available():
        print("(PyTorch column: pip install torch to time the authors' framework on the same loop)")
    if args.stream:
        print("stream mode (one clone, minibatches of 100 observations, 20 input + 10 model steps each):")
    for observations in args.stream:
        speed = inversion_speed(observations, max(2, args.rounds // 5), mode="stream", batch_size=100, input_iters=20, model_iters=10)
        print(f"{observations:6d} observations {speed:10,.0f} image-steps/s", flush=True)


def print_stream_result(args: argparse.Namespace) -> None:
    from unsplit_tf.attacks.inversion import preset
    from unsplit_tf.runs import VictimSpec, default_training, run_inversion

    data = load_data(args)
    config = preset(args.preset).replace(prior=defaults.image_prior(data.name, "stream"), seed=args.seed)
    print(f"stream attack end to end: {data.name}, reference net depth {args.depth}, {args.observations} observations, "
          f"{args.preset} preset, prior {config.prior} (trains the victim first)", flush=True)
    run = run_inversion(data, config, victim=VictimSpec(depth=args.depth, training=default_training(args.seed)),
                        observations=args.observations, preset=args.preset).run
    rate = run.timings.image_steps_per_second
    compared_after = run.attack.restarts.compared_after if run.attack.restarts else None  # what the run did, not the plan
    each = f", {run.timings.attack_seconds / config.restarts:.0f} s each" if compared_after == config.main_iters else ""
    restarts = f" for {kept_restarts(config, compared_after)}{each}" if config.restarts > 1 else ""
    print(f"  attack {run.timings.attack_seconds:.0f} s{restarts} ({rate:,.0f} image-steps/s), training {run.timings.train_seconds:.0f} s")
    print(f"  {run.summary()}")
    for evaluation in run.evaluations[1:]:
        print(f"  {evaluation.name}: MSE {evaluation.reconstruction.mean_mse:.4f}, SSIM {evaluation.reconstruction.mean_ssim:.3f}")


def print_label_speeds(args: argparse.Namespace) -> None:
    from unsplit_tf.benchmarks import labels, pytorch

    report = labels.run(examples=args.examples, examples_per_call=args.examples)
    torch_speed = pytorch.label_inference_speed() if pytorch.available() else None
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


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return main_of(sys.modules[__name__], argv, prog)
