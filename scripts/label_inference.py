"""Label inference against U-shaped split learning, with Li et al.'s baselines: python scripts/label_inference.py

A shim over `unsplit-tf labels` (unsplit_tf/cli/labels.py); `python scripts/label_inference.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("labels")
