"""Train (and cache) a reference net the split-learning way: python scripts/train.py --dataset f_mnist --depth 2

A shim over `unsplit-tf train` (unsplit_tf/cli/train.py); `python scripts/train.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("train")
