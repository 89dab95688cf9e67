"""Defenses at the cut, measured on both sides: python scripts/defend.py --quick

A shim over `unsplit-tf defend` (unsplit_tf/cli/defend.py); `python scripts/defend.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("defend")
