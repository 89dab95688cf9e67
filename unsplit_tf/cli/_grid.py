"""Running a grid of cells from the command line (the `sweep` and `defend` verbs): progress per cell, Ctrl-C."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unsplit_tf.cli._common import Interrupted
from unsplit_tf.cli._progress import PICTURE_ROUND, Progress


def _summary(run) -> str:
    if run is None:
        return ""
    if run.kind == "labels":
        shown = [f"{m.id} {m.accuracy:.0%}" if m.accuracy is not None else f"{m.id} AUC {m.auc:.2f}" if m.auc is not None
                 else f"{m.id} -" for m in run.methods]
        return ", ".join(shown)
    head = run.headline
    clone = f" clone {run.clone.clone_accuracy:.1%}" if run.clone else ""
    return f"MSE {head.reconstruction.mean_mse:.3f} SSIM {head.reconstruction.mean_ssim:.3f}{clone} ({run.timings.attack_seconds:.0f} s attack)"


def _counts(event) -> str:
    """The backend's cells done / running / left and the time left, e.g. " [3 done, 2 running, 5 left, ~4 min left]"."""
    if event.done is None:  # None for "skipped" and "busy"
        return ""
    eta = "" if event.eta_seconds is None else f", ~{_duration(event.eta_seconds)} left"
    return f" [{event.done} done, {event.running} running, {event.left} left{eta}]"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class CellProgress:
    """One line per cell, and a progress line while a cell trains or attacks."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.done = 0
        self.targets = 1  # targets of the cell in progress: sequential mode reports them one at a time

    def on_event(self, event) -> None:
        head = f"[{event.index}/{event.total}] {event.cell.describe()}"
        if event.status == "skipped":
            print(f"{head}: done before, skipped ({_summary(event.run)})")
        elif event.status == "busy":
            print(f"{head}: another sweep ({event.holder}) is computing it, skipped")
        elif event.status == "started":
            print(f"{head} ...{_counts(event)}", flush=True)
            self.bar, self.done, self.targets = None, 0, getattr(event.cell, "targets", 1)
        else:
            self.close()
            print(f"{head}: {_summary(event.run)}{_counts(event)}", flush=True)

    def on_epoch(self, epoch: int, loss: float) -> None:
        print(f"  training epoch {epoch + 1}: loss {loss:.4f}", flush=True)

    def on_round(self, report) -> None:
        total = report.rounds_in_all * max(len(report.targets), self.targets)
        if self.bar is None:
            self.bar = Progress(total, PICTURE_ROUND, label="  attack")
        self.bar.extend(total)  # more once restarts that were screened all run on
        self.done += len(report.targets)
        self.bar.update(self.done, matching=float(report.matching_loss.mean()))

    def on_step(self, progress) -> None:
        if self.bar is None:
            self.bar = Progress(progress.steps, "step", label="  labels")
        self.bar.update(progress.step, loss=progress.loss)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_grid(cells, datasets: dict, *, results: Path, cache: Path, verb: str, argv: list[str], backend: Mapping[str, Any]):
    """Validate and run `cells` into the store at `results` on `backend` (`run_sweep`'s backend and options, from
    `cli.sweep.backend_options`); Ctrl-C keeps every finished cell (exit 130)."""
    from unsplit_tf.store import ResultStore
    from unsplit_tf.sweep import CellRunner, run_sweep

    store = ResultStore(results)
    progress = CellProgress()
    # Cells on Ray run in other processes: their runner ships without this console's callbacks.
    callbacks = {"on_epoch": progress.on_epoch, "on_round": progress.on_round, "on_step": progress.on_step} \
        if backend["backend"] == "serial" else {}
    runner = CellRunner(datasets, cache_dir=cache, **callbacks)
    command = f"unsplit-tf {verb} " + shlex.join(argv)
    try:
        outcome = run_sweep(cells, store, runner, datasets=datasets, command=command, on_event=progress.on_event, **backend)
    except KeyboardInterrupt:
        progress.close()
        raise Interrupted(f"the finished cells are in {store.cells_dir}; run the same command again to resume") from None
    if outcome.busy:
        print(f"{len(outcome.busy)} cells are being computed by another sweep; run again later to collect them")
    return store, outcome
