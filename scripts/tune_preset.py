"""Compare inversion hyper-parameters on TRAINING images, to choose a preset without touching test targets.

    python scripts/tune_preset.py --dataset f_mnist --depth 2 --epochs 2

Targets are the first training image of each class (the reported results use the test split).
Every candidate runs the same budget, batched, from the same trained model.
"""

from __future__ import annotations

import argparse
import time

from common import add_data_flags, add_training_flags, load_data, trained_model

from unsplit_tf.attacks.inversion import PRESETS, InversionConfig, invert
from unsplit_tf.data import first_index_per_class
from unsplit_tf.scoring import clone_quality, reconstruction_scores
from unsplit_tf.split import split_model

better = InversionConfig(lambda_l2=0.0, box=(0.0, 1.0))  # the first step away from the paper's defaults
CANDIDATES = {
    "paper": PRESETS["paper"],
    "l2=0,box": better,
    "l2=0,box,in_lr=3e-3": better.replace(input_lr=3e-3),
    "l2=0,box,in_lr=1e-2": better.replace(input_lr=1e-2),
    "l2=0,box,in_lr=3e-2": better.replace(input_lr=3e-2),
    "l2=0,box,tv=0.01": better.replace(lambda_tv=0.01),
    "l2=0,box,tv=1": better.replace(lambda_tv=1.0),
    "l2=0,box,model_lr=1e-4": better.replace(model_lr=1e-4),
    "l2=0,box,in_lr=1e-2,model_lr=1e-4": better.replace(input_lr=1e-2, model_lr=1e-4),
    "l2=0,box,init=0": better.replace(init_value=0.0),
    # second round, around the best of the first (a slower clone drifts less with x_hat)
    "l2=0,box,model_lr=3e-5": better.replace(model_lr=3e-5),
    "l2=0,box,model_lr=1e-5": better.replace(model_lr=1e-5),
    "l2=0,box,model_lr=1e-4,tv=0.01": better.replace(model_lr=1e-4, lambda_tv=0.01),
    "l2=0,box,model_lr=1e-4,tv=0.03": better.replace(model_lr=1e-4, lambda_tv=0.03),
    "l2=0,box,model_lr=3e-5,tv=0.01": better.replace(model_lr=3e-5, lambda_tv=0.01),
    "l2=0,box,model_lr=1e-4,in_lr=3e-3": better.replace(model_lr=1e-4, input_lr=3e-3),
    "l2=0,box,model_lr=1e-4,tv=0.03,model_iters=50": better.replace(model_lr=1e-4, lambda_tv=0.03, model_iters=50),
    "l2=0,box,model_lr=3e-4,tv=0.03": better.replace(model_lr=3e-4, lambda_tv=0.03),
    "l2=0,box,tv=0.03": better.replace(lambda_tv=0.03),
    "l2=0,box,tv=0.01,in_lr=3e-3": better.replace(lambda_tv=0.01, input_lr=3e-3),
    "l2=0,box,tv=0.03,model_iters=50": better.replace(lambda_tv=0.03, model_iters=50),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_flags(parser)
    add_training_flags(parser)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--main-iters", type=int, default=100, help="budget: rounds of (input + model) steps")
    parser.add_argument("--only", nargs="*", help="candidate names to run (default all)")
    args = parser.parse_args()
    data = load_data(args)
    split = split_model(trained_model(data, args, args.depth).model, depth=args.depth)
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
