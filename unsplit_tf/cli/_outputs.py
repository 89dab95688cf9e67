"""Output locations, checked before any training or attack, so that no finished work is lost at the end.

A folder that a flag names must be a folder, or creatable, and writable. A
run folder that already holds a finished run is never overwritten silently:
the default folder (no flag given) moves on to a new numbered one, since the
user named nothing and a repeated command should just work; a folder the
user named explicitly is refused unless `--overwrite` says to replace it,
since writing somewhere other than asked would surprise more. A run folder is
also claimed while its run goes on (`unsplit_tf._claims`: a `.claimed` file
naming process and host), so that two runs started at once with the same folder
do not write over each other: the second is refused, or moves on to the next
numbered default folder; a claim left by a process that has died is taken over.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from unsplit_tf import _claims as claims
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


CLAIM = ".claimed"


@contextmanager
def run_folder(path: Path | None, default: Path, *, marker: str, overwrite: bool, flag: str = "--out") -> Iterator[Path]:
    """The folder a run writes to, `path` (given with `flag`) or `default`, checked before the run and claimed
    until the `with` block ends.

    `marker` is the file a finished run leaves there (e.g. metrics.json).
    """
    if path is None:
        chosen, number = default, 1
        while True:
            existed = chosen.exists()
            if not ((chosen / marker).exists() and not overwrite) and _claim(writable_folder(chosen, flag)):
                break
            number += 1
            chosen = default.with_name(f"{default.name}-{number}")
    else:
        chosen = writable_folder(path, flag)
        if (chosen / marker).exists() and not overwrite:
            raise CliError(
                f"{flag} {path} already holds a finished run ({marker}); pass --overwrite to replace it, or choose another {flag}"
            )
        existed = chosen.exists()
        if not _claim(chosen):
            raise CliError(f"{flag} {path} is being written by another run ({claims.holder(chosen / CLAIM)}); wait for it to "
                           f"finish, or choose another {flag}")
    try:
        yield chosen
    finally:
        claims.release(chosen / CLAIM)
        if not existed and not any(chosen.iterdir()):  # a run stopped before writing anything leaves no empty folder
            chosen.rmdir()


def _claim(folder: Path) -> bool:
    """Create `folder` and claim it for this process; False while another run holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    return claims.claim(folder / CLAIM)
