"""An atomic, resumable store of run records: one finished cell per JSON file, its images beside it.

`ResultStore` keeps `<root>/cells/<key>.json` (the record's `to_dict()`) and,
for an inversion run, `<key>.npz` (its uint8 arrays). Both are written
atomically (temporary file, then `os.replace`), the .npz first, so a JSON file
on disk always means a finished, complete cell. Reading gives typed records
back (`records.run_from_dict`); a file that is not one is named in the error.

`claim(key)` lets two sweeps share one results folder: it creates
`<key>.claim` exclusively (O_EXCL) holding the claimer's pid and host, so only
one of them computes the cell. A claim left by a dead process on this host is
taken over; one from another host is honoured until it is removed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from unsplit_tf import _claims as claims
from unsplit_tf.records import SCHEMA_VERSION, InversionRun, LabelRun, RecordError, run_from_dict

Run = InversionRun | LabelRun

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")


class CorruptCellError(ValueError):
    """A cell file that is not a valid record; the message names the file and says to delete it."""


def check_key(key: str) -> str:
    """`key` if it can name a cell file (letters, digits and `_.+=,-`, no separators); else ValueError."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(f"cell key {key!r} must be letters, digits and _.+=,- only (it names a file)")
    return key


class ResultStore:
    """Finished cells under `<root>/cells/`: `<key>.json` (the record), `<key>.npz` (its arrays), `<key>.claim`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"results folder {self.root} is a file; give a folder")
        if self.cells_dir.exists() and not self.cells_dir.is_dir():
            raise ValueError(f"{self.cells_dir} is a file, not the store's cells folder; move it away")

    def json_path(self, key: str) -> Path:
        return self.cells_dir / f"{check_key(key)}.json"

    def arrays_path(self, key: str) -> Path:
        return self.cells_dir / f"{check_key(key)}.npz"

    def claim_path(self, key: str) -> Path:
        return self.cells_dir / f"{check_key(key)}.claim"

    def has(self, key: str) -> bool:
        """Whether the cell `key` finished (its JSON file exists)."""
        return self.json_path(key).is_file()

    def keys(self) -> list[str]:
        """The keys of every finished cell, sorted."""
        return sorted(path.stem for path in self.cells_dir.glob("*.json")) if self.cells_dir.is_dir() else []

    # ---------------------------------------------------------------- writing and reading

    def save(self, run: Run) -> Path:
        """Write the run's arrays (if any), then its record, each atomically, under `run.key`. Returns the JSON path."""
        key = check_key(run.key)
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        arrays = getattr(run, "arrays", {})
        if arrays:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **arrays)
            _write_atomically(self.arrays_path(key), buffer.getvalue())
        text = json.dumps(run.to_dict(), indent=1, allow_nan=False)
        _write_atomically(self.json_path(key), text.encode())
        return self.json_path(key)

    def load(self, key: str) -> Run:
        """The typed record of a finished cell (an inversion run with its arrays); CorruptCellError naming a bad file."""
        path = self.json_path(key)
        if not path.is_file():
            raise ValueError(f"no finished cell {key!r} in {self.cells_dir}; run the sweep that makes it first")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptCellError(f"cell file {path} is not valid JSON ({error}): delete it to recompute the cell") from None
        try:
            run = run_from_dict(data)
        except RecordError as error:
            raise CorruptCellError(f"cell file {path} is not a record of schema {SCHEMA_VERSION} ({error}): "
                                   "delete it to recompute the cell") from None
        if run.key != key:
            raise CorruptCellError(f"cell file {path} holds the record of cell {run.key!r}: delete it to recompute the cell")
        if isinstance(run, InversionRun):
            return _with_arrays(run, self.arrays(key))
        return run

    def runs(self) -> list[Run]:
        """Every finished cell's record, in key order."""
        return [self.load(key) for key in self.keys()]

    def arrays(self, key: str) -> dict[str, np.ndarray]:
        """The arrays stored with cell `key` (empty if it has none); CorruptCellError naming a bad file."""
        path = self.arrays_path(key)
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}
        except (OSError, ValueError) as error:
            raise CorruptCellError(f"cell file {path} is not a readable .npz ({error}): delete it and the .json "
                                   "beside it to recompute the cell") from None

    # ---------------------------------------------------------------- claims

    def claim(self, key: str) -> bool:
        """Claim cell `key` for this process: True if it is now ours (new, or taken over from a dead claimer)."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        return claims.claim(self.claim_path(key))

    def claim_holder(self, key: str) -> str | None:
        """Who holds a live claim on `key` ("pid N on HOST"), or None when nobody does (no claim, or a stale one)."""
        return claims.holder(self.claim_path(key))

    def release(self, key: str) -> None:
        """Drop this process's claim on `key` (a claim of another process is left alone)."""
        claims.release(self.claim_path(key))


def _with_arrays(run: InversionRun, arrays: dict[str, np.ndarray]) -> InversionRun:
    return dataclasses.replace(run, arrays=arrays)


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write to a hidden temporary file beside `path`, then rename it over `path` (atomic on POSIX)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
