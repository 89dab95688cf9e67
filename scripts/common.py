"""What the scripts share: they are thin shims over the `unsplit-tf` verbs in unsplit_tf/cli/.

This checkout's package goes first on sys.path, so `python scripts/X.py`
runs the code beside it from a fresh clone, installed or not.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_verb(verb: str, *leading: str) -> None:
    """Run `unsplit-tf VERB` with this script's arguments (after `leading` ones) and exit with its code."""
    module = importlib.import_module(f"unsplit_tf.cli.{verb}")
    sys.exit(module.main([*leading, *sys.argv[1:]]))
