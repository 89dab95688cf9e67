"""Model inversion + model stealing against a split model: python scripts/invert.py --dataset f_mnist --depth 2

A shim over `unsplit-tf invert` (unsplit_tf/cli/invert.py); `python scripts/invert.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("invert")
