"""Output locations, checked before any training or attack, so that no finished work is lost at the end.

A folder that a flag names must be a folder, or creatable, and writable. A
run folder that already holds a finished run is never overwritten silently:
the default folder (no flag given) moves on to a new numbered one, since the
user named nothing and a repeated command should just work; a folder the
user named explicitly is refused unless `--overwrite` says to replace it,
since writing somewhere other than asked would surprise more.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from unsplit_tf.cli._common import CliError


def writable_folder(path: Path, flag: str) -> Path:
    """`path` if it is (or can be created as) a folder this process can write; CliError naming `flag` otherwise.

    Nothing is created: the nearest existing ancestor must be a writable folder.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise CliError(f"{flag} {path} is a file, not a folder; give a folder path (or move the file away)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CliError(f"{flag} {path} cannot be created: {existing} is a file; give a folder path under a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise CliError(f"{flag} {path} cannot be written ({error.strerror} in {existing}); choose a folder you can write to") from None
    return path


def run_folder(path: Path | None, default: Path, *, marker: str, overwrite: bool, flag: str = "--out") -> Path:
    """The folder a run writes to: `path` (given with `flag`) or `default`, checked before the run.

    `marker` is the file a finished run leaves there (e.g. metrics.json).
    """
    if path is None:
        chosen, number = default, 1
        while (chosen / marker).exists() and not overwrite:
            number += 1
            chosen = default.with_name(f"{default.name}-{number}")
        return writable_folder(chosen, flag)
    if (path / marker).exists() and not overwrite:
        raise CliError(
            f"{flag} {path} already holds a finished run ({marker}); pass --overwrite to replace it, or choose another {flag}"
        )
    return writable_folder(path, flag)
