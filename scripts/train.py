"""Train a reference net the split-learning way and report its test accuracy.

    python scripts/train.py --dataset f_mnist --depth 2 --epochs 2
"""

from __future__ import annotations

import argparse

from common import add_data_flags, add_training_flags, load_data, trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_flags(parser)
    add_training_flags(parser)
    parser.add_argument("--depth", type=int, default=2, help="split depth (default 2)")
    args = parser.parse_args()
    trained_model(load_data(args), args, args.depth)


if __name__ == "__main__":
    main()
