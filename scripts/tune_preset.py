"""Compare inversion hyper-parameters on TRAINING images, to choose a preset without touching test targets.

    python scripts/tune_preset.py --dataset f_mnist --depth 2 --epochs 2

Targets are the first training image of each class (the reported results use the test split);
the clone is judged on the last 5,000 training images. Every candidate runs the same budget,
batched, from the same trained model. This is how the "tuned" preset was chosen
(docs/ALGORITHMS.md, "Presets").
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  first: this checkout's package on sys.path

import unsplit_tf.cli._quiet  # noqa: F401  quiets TensorFlow's start-up

from unsplit_tf import defaults
from unsplit_tf.attacks.inversion import PRESETS, InversionConfig, invert
from unsplit_tf.cli._common import add_data_flags, add_training_flags, cache_folder, load_data, train_config
from unsplit_tf.protocol import train_reference_net
from unsplit_tf.data import first_index_per_class
from unsplit_tf.scoring import clone_quality, reconstruction_scores
from unsplit_tf.split import split_model

base = InversionConfig(lambda_l2=0.0, box=(0.0, 1.0))  # the first step away from the paper's defaults
CANDIDATES = {
    "paper": PRESETS["paper"],
    "l2=0,box": base,
    "l2=0,box,in_lr=3e-3": base.replace(input_lr=3e-3),
    "l2=0,box,in_lr=1e-2": base.replace(input_lr=1e-2),
    "l2=0,box,in_lr=3e-2": base.replace(input_lr=3e-2),
    "l2=0,box,tv=0.01": base.replace(lambda_tv=0.01),
    "l2=0,box,tv=1": base.replace(lambda_tv=1.0),
    "l2=0,box,model_lr=1e-4": base.replace(model_lr=1e-4),
    "l2=0,box,in_lr=1e-2,model_lr=1e-4": base.replace(input_lr=1e-2, model_lr=1e-4),
    "l2=0,box,init=0": base.replace(init_value=0.0),
    # second round, around the best of the first (a slower clone drifts less with x_hat)
    "l2=0,box,model_lr=3e-5": base.replace(model_lr=3e-5),
    "l2=0,box,model_lr=1e-5": base.replace(model_lr=1e-5),
    "l2=0,box,model_lr=1e-4,tv=0.01": base.replace(model_lr=1e-4, lambda_tv=0.01),
    "l2=0,box,model_lr=1e-4,tv=0.03": base.replace(model_lr=1e-4, lambda_tv=0.03),
    "l2=0,box,model_lr=3e-5,tv=0.01": base.replace(model_lr=3e-5, lambda_tv=0.01),
    "l2=0,box,model_lr=1e-4,in_lr=3e-3": base.replace(model_lr=1e-4, input_lr=3e-3),
    "l2=0,box,model_lr=1e-4,tv=0.03,model_iters=50": base.replace(model_lr=1e-4, lambda_tv=0.03, model_iters=50),
    "l2=0,box,model_lr=3e-4,tv=0.03": base.replace(model_lr=3e-4, lambda_tv=0.03),
    "l2=0,box,tv=0.03": base.replace(lambda_tv=0.03),
    "l2=0,box,tv=0.01,in_lr=3e-3": base.replace(lambda_tv=0.01, input_lr=3e-3),
    "l2=0,box,tv=0.03,model_iters=50": base.replace(lambda_tv=0.03, model_iters=50),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_flags(parser)
    add_training_flags(parser, epochs_default=str(defaults.EPOCHS))
    parser.add_argument("--depth", type=int, default=defaults.DEPTH, help=f"split depth (default {defaults.DEPTH})")
    parser.add_argument("--main-iters", type=int, default=100, help="budget: rounds of (input + model) steps (default 100)")
    parser.add_argument("--only", nargs="*", help="candidate names to run (default all)")
    args = parser.parse_args()
    data = load_data(args)
    trained = train_reference_net(data, depth=args.depth, config=train_config(args, epochs=defaults.EPOCHS), cache_dir=cache_folder(args))
    split = split_model(trained.model, depth=args.depth)
    client, server = split.client, split.server
    targets = data.x_train[first_index_per_class(data.y_train)]
    observed = client(targets)
    held_out = slice(len(data.x_train) - 5000, None)  # training images the targets are not among, for the clone
    print(f"{'candidate':38s} {'MSE':>7s} {'SSIM':>6s} {'clone acc':>9s} {'agree':>6s} {'time':>6s}")
    for name, config in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        result = invert(client, observed, config.replace(main_iters=args.main_iters, mode="batched", seed=args.seed))
        scores = reconstruction_scores(targets, result.reconstructions)
        quality = clone_quality(client, result.clone, server, data.x_train[held_out], data.y_train[held_out])
        print(
            f"{name:38s} {scores.mean_mse:7.4f} {scores.mean_ssim:6.3f} {quality.clone_accuracy:9.1%} {quality.agreement:6.1%} {result.seconds:5.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f}s")
