"""Label inference speed against the authors' one-example loop: python scripts/benchmark_labels.py

A shim over `unsplit-tf benchmark --only labels` (unsplit_tf/cli/benchmark.py); `python scripts/benchmark_labels.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("benchmark", "--only", "labels")
