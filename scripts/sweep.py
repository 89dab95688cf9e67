"""A resumable grid of runs (datasets x depths x attacks x defenses): python scripts/sweep.py

A shim over `unsplit-tf sweep` (unsplit_tf/cli/sweep.py); `python scripts/sweep.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("sweep")
