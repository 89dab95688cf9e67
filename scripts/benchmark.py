"""The attacks' speed on this machine: python scripts/benchmark.py

A shim over `unsplit-tf benchmark` (unsplit_tf/cli/benchmark.py); `python scripts/benchmark.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("benchmark")
