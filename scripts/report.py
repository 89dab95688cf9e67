"""Write results/REPORT.md and its figures from the cells a sweep stored.

    python scripts/report.py
    python scripts/report.py --results /tmp/my_sweep --notes /tmp/my_sweep/notes.md

Every table, plot and image grid is regenerated from RESULTS/cells/ (no attack
runs), and from RESULTS/defenses/ when scripts/defend.py has stored runs there.
NOTES (default RESULTS/notes.md, if present) is hand-written markdown, included
as the report's "Findings": the place to explain the numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import common  # noqa: F401  (first: quiets TensorFlow's start-up lines)

from unsplit_tf.defense_report import defense_report, write_defense_figures  # noqa: E402
from unsplit_tf.experiments import ResultStore  # noqa: E402
from unsplit_tf.report import write_report  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder of the sweep (default results/)")
    parser.add_argument("--notes", type=Path, help="markdown to include as 'Findings' (default RESULTS/notes.md if it exists)")
    args = parser.parse_args(argv)
    notes_path = args.notes or args.results / "notes.md"
    if args.notes and not args.notes.is_file():
        sys.exit(f"error: no notes file at {args.notes}")
    notes = notes_path.read_text() if notes_path.is_file() else None
    try:
        path = write_report(ResultStore(args.results), notes=notes)
    except ValueError as error:
        sys.exit(f"error: {error}")
    defenses = args.results / "defenses"
    if any(defenses.glob("*.json")):
        write_defense_figures(defenses)
        with path.open("a") as report:
            report.write("\n" + defense_report(defenses, relative_to=args.results))
    print(f"wrote {path} and its figures")


if __name__ == "__main__":
    main()
