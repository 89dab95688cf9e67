"""results/REPORT.md and its figures from the stored runs: python scripts/report.py

A shim over `unsplit-tf report` (unsplit_tf/cli/report.py); `python scripts/report.py --help` lists the flags.
"""

from common import run_verb

if __name__ == "__main__":
    run_verb("report")
