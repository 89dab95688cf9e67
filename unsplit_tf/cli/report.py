"""Write RESULTS/REPORT.md and its figures from the runs a sweep (and `defend`) stored.

    unsplit-tf report
    unsplit-tf report --results DIR --notes DIR/notes.md

Every table, plot and image grid is regenerated from RESULTS/cells/ (no
attack runs). NOTES (default RESULTS/notes.md, if present) is hand-written
markdown, included as the report's "Findings": the place to explain the
numbers. A corrupt cell file is named, with what to do about it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import unsplit_tf.cli._quiet  # noqa: F401  first: quiets TensorFlow's start-up

from unsplit_tf.cli._common import CliError, main_of
from unsplit_tf.cli._outputs import writable_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), metavar="DIR", help="results folder of the sweep (default results/)")
    parser.add_argument("--notes", type=Path, metavar="FILE", help="markdown to include as 'Findings' (default RESULTS/notes.md if it exists)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where REPORT.md and the figures go (default: the results folder)")


def run(args: argparse.Namespace) -> int:
    from unsplit_tf.reporting import write_report
    from unsplit_tf.store import ResultStore

    if not args.results.is_dir():
        raise CliError(f"--results {args.results}: no such folder; run `unsplit-tf sweep --results {args.results}` first", code=1)
    if args.notes and not args.notes.is_file():
        raise CliError(f"--notes {args.notes}: no such file", code=1)
    out = writable_folder(args.out or args.results, "--out" if args.out else "--results")
    notes = args.notes.read_text() if args.notes else None  # None: the store's own notes, if any
    path = write_report(ResultStore(args.results), out, notes=notes)
    print(f"wrote {path} and its figures")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    return main_of(sys.modules[__name__], argv, prog)
