"""`unsplit-tf VERB ...`: one installed command, one verb per front door.

One command rather than one per verb: a single name to discover and to
remember, `unsplit-tf --help` lists everything, and generic names such as
`invert` or `train` do not land on the user's PATH. The top-level help
imports no TensorFlow, so it answers at once; each verb imports only itself.
"""

from __future__ import annotations

import importlib
import sys

VERBS = {
    "invert": "model inversion + model stealing against a split model (the main command)",
    "labels": "label inference while a U-shaped split trains, with Li et al.'s baselines",
    "sweep": "a resumable grid of runs: datasets x depths x attacks x defenses",
    "report": "results/REPORT.md and its figures from the stored runs",
    "defend": "each defense at several strengths: what it costs, what it leaves the attacks",
    "train": "train (and cache) a reference net the split-learning way",
    "benchmark": "the attacks' speed on this machine",
}
PROG = "unsplit-tf"


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [f"usage: {PROG} VERB [flags]   ({PROG} VERB --help for a verb's flags)", "",
             "How much does a split-learning deployment leak? Verbs:", ""]
    lines += [f"  {verb:<{width}}  {text}" for verb, text in VERBS.items()]
    lines += ["", f"Start with: {PROG} invert --quick"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from unsplit_tf import __version__

        print(f"{PROG} {__version__}")
        return 0
    verb = argv[0]
    if verb not in VERBS:
        import difflib

        close = difflib.get_close_matches(verb, VERBS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        sys.stderr.write(f"{PROG}: error: unknown verb {verb!r}{hint} Choose one of: {', '.join(VERBS)}\n")
        return 2
    module = importlib.import_module(f"unsplit_tf.cli.{verb}")
    return module.main(argv[1:], prog=f"{PROG} {verb}")


if __name__ == "__main__":
    sys.exit(main())
