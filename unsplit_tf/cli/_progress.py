"""What a run reports while it goes: a progress line on the console, scalars in TensorBoard.

On a terminal the line is redrawn in place; anywhere else (a log file, a pipe,
CI) it is written as plain, complete lines, one per tenth of the work (and at
least one a minute), one at the end, with no carriage returns, backspaces or colour codes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

PICTURE_ROUND = "picture-round"
"""The attack's unit of progress: one round of one attacked picture (a round of 5,010 pictures counts 5,010)."""


class Progress:
    """Progress over `total` units of `unit` (e.g. 1000 rounds), with named values (e.g. the matching loss)."""

    def __init__(self, total: int, unit: str, *, label: str = "", stream: TextIO | None = None, lines: int = 10,
                 seconds: float = 60.0) -> None:
        self.total, self.unit, self.label = max(int(total), 1), unit, label
        self.stream = stream or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.lines, self.written, self.done = lines, 0, 0
        self._first: tuple[float, int] | None = None  # (time, units done) of the first update: the clock starts there
        self.seconds, self._last_line = seconds, time.perf_counter()
        self._width = 0

    def update(self, done: int, **values: float) -> None:
        """`done` units finished so far; `values` shown beside the count."""
        self.done = min(int(done), self.total)
        text = self._text(values)
        if self.live:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
            if self.done == self.total:
                self.stream.write("\n")
        elif (self.done * self.lines >= (self.written + 1) * self.total or self.done == self.total
              or time.perf_counter() - self._last_line >= self.seconds):
            self.written = self.done * self.lines // self.total
            self._last_line = time.perf_counter()
            self.stream.write(text + "\n")
        self.stream.flush()

    def extend(self, total: int) -> None:
        """More units than first planned (e.g. restarts that all run on): the count goes on towards `total`."""
        self.total = max(self.total, int(total))

    def close(self) -> None:
        """End a redrawn line that stopped short of the total (e.g. on Ctrl-C)."""
        if self.live and 0 < self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()

    def _text(self, values: dict[str, float]) -> str:
        now = time.perf_counter()
        if self._first is None:  # the units of the first update (compiling, warming up) give no rate
            self._first = (now, self.done)
        elapsed, counted = now - self._first[0], self.done - self._first[1]
        clock = ""
        if counted > 0:
            clock = f" {elapsed:.0f}s" + (f", ~{elapsed / counted * (self.total - self.done):.0f}s left" if self.done < self.total else "")
        shown = "".join(f" {name} {_number(value)}" for name, value in values.items())
        head = f"{self.label}: " if self.label else ""
        return f"{head}{self.done}/{self.total} {self.unit}s ({self.done / self.total:4.0%}){clock}{shown}"


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Scalars:
    """TensorBoard scalars under `directory` (nothing at all when it is None), one `log` call per step.

    Written with TensorFlow's own summary op and the scalars plugin's metadata, so the
    TensorBoard package is needed only to look at them, not to write them.
    """

    def __init__(self, directory: Path | None) -> None:
        self._writer = None
        if directory is not None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(directory))

    def log(self, step: int, **values: float | None) -> None:
        if self._writer is None:
            return
        import tensorflow as tf

        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        with self._writer.as_default(step=int(step)):
            for name, value in values.items():
                if value is not None:
                    tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=metadata.SerializeToString())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
