"""Claim files: who is working on something now, so that two processes never do the same work or write to
the same place at once.

A claim is a file created exclusively (O_EXCL) holding the claimer's pid and host: of two processes that
try at once, one wins. A claim left by a dead process on this host is taken over; one from another host is
honoured until it is removed (its process cannot be asked), and so is one of this very process (a second
sweep or run in the same process is refused too).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

UNREADABLE_CLAIM_SECONDS = 60.0
"""A claim file that cannot be read (its writer died between creating and filling it) is stale after this long."""


def claim(path: Path) -> bool:
    """Claim `path` for this process: True if it is now ours (new, or taken over from a dead claimer)."""
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if holder(path) is not None:
                return False
            path.unlink(missing_ok=True)  # stale: its claimer is gone
            continue
        with os.fdopen(descriptor, "wb") as file:
            file.write(mine)
        return True
    return False


def holder(path: Path) -> str | None:
    """Who holds a live claim on `path` ("pid N on HOST"), or None when nobody does (no claim, or a stale one)."""
    try:
        claimer = json.loads(path.read_text())
        pid, host = int(claimer["pid"]), str(claimer["host"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        return None if age > UNREADABLE_CLAIM_SECONDS else "a process that is writing its claim"
    if host == socket.gethostname() and not _alive(pid):
        return None
    return f"pid {pid} on {host}"


def release(path: Path) -> None:
    """Drop this process's claim on `path` (a claim of another process is left alone)."""
    try:
        claimer = json.loads(path.read_text())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return
    if claimer.get("pid") == os.getpid() and claimer.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
