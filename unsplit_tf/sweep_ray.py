"""The Ray backend of the sweep: each unfinished cell is a Ray task, each result is stored on the driver.

The driver decides which cells are finished (`done(key)`), keeps as many
cells in flight as the cluster has room for (CPUs, and GPUs when a cell asks
for a fraction of one), and stores each result the moment it comes back (in
completion order) through `save`, so workers need no shared filesystem and the
store stays the one atomic writer. A task whose worker process dies is
resubmitted by Ray (`max_retries`, system failures only; an exception raised
by a cell is not retried and stops the sweep). Ctrl-C on the driver stores
the results that already came back, cancels the running tasks and re-raises:
running the sweep again resumes it.

The cell runner is shipped once through Ray's object store and unpickled once
per worker process, which keeps it there for the next cells: its loaded data
travels with it (workers need no copy of the data files) and its trained-model
cache lives per worker (training is deterministic for a key, so each worker
trains or loads a model at most once).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from unsplit_tf._validation import at_least, non_negative, positive

try:
    import ray
except ImportError as error:  # the serial backend needs no Ray; this one says how to get it
    raise ImportError("the Ray backend of the sweep needs Ray: pip install 'unsplit-tf[ray]'") from error


class KeyedCell(Protocol):
    """What the backend needs of a cell: a key naming everything its result depends on (and being picklable)."""

    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class RayProgress:
    """Progress of a Ray sweep: a cell was skipped (finished before), submitted or finished (and stored).

    done counts finished cells, before or in this run; running the submitted
    ones not back yet; left the cells not finished (running or waiting).
    eta_seconds is left × the wall time per cell finished in this run so far
    (so it reflects the cluster's parallelism), None until one has finished.
    """

    status: str  # "skipped", "submitted" or "finished"
    cell: Any
    done: int
    running: int
    left: int
    total: int
    eta_seconds: float | None = None
    record: Any = None  # what `save` returned, for "finished"


def run_cells_ray(
    cells: Sequence[KeyedCell],
    run_cell: Callable[[Any], Any],
    *,
    done: Callable[[str], bool],
    save: Callable[[Any, Any], Any],
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus_per_cell: float = 0.0,
    cpus_per_cell: float = 1,
    max_retries: int = 2,
    on_event: Callable[[RayProgress], None] | None = None,
) -> list[Any]:
    """Run every cell that is not `done` as a Ray task; returns what `save` returned for the cells run, in cell order.

    run_cell: picklable; called on a worker with a cell, returns its result
        (e.g. a CellResult), which `save(cell, result)` stores on the driver.
    address: a Ray cluster to join ("auto", "HOST:PORT" or "ray://HOST:PORT");
        None starts a local Ray with `num_cpus` CPUs (default: all), or uses
        the one this process already started. A Ray started here is shut down
        at the end.
    Cells with the same key run once. Nothing starts when every cell is done.
    """
    positive("cpus_per_cell", cpus_per_cell)
    if non_negative("num_gpus_per_cell", num_gpus_per_cell) > 1 and num_gpus_per_cell % 1:
        raise ValueError(f"num_gpus_per_cell must be a fraction of one GPU or a whole number, got {num_gpus_per_cell}")
    at_least("max_retries", max_retries, 0)
    if address is not None and num_cpus is not None:
        raise ValueError("num_cpus sizes a local Ray only; a cluster joined by address has the CPUs its nodes offer")
    unique = list({cell.key: cell for cell in cells}.values())
    finished_before = {cell.key for cell in unique if done(cell.key)}
    waiting = deque(cell for cell in unique if cell.key not in finished_before)
    finished = len(finished_before)
    for cell in unique:
        if cell.key in finished_before:
            _notify(on_event, RayProgress("skipped", cell, finished, 0, len(waiting), len(unique)))
    if not waiting:
        return []
    started_here = _connect(address, num_cpus)
    try:
        options = {"num_cpus": cpus_per_cell, "num_gpus": num_gpus_per_cell, "max_retries": max_retries}
        if num_gpus_per_cell:  # TensorFlow takes a whole GPU's memory unless told to grow: cells share GPUs
            options["runtime_env"] = {"env_vars": {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}}
        task = ray.remote(_run_on_worker).options(**options)
        runner = [ray.put(run_cell)]  # in a list, so that workers get the reference and keep what it unpickles to
        driver = _Driver(unique, finished, save, on_event)
        driver.run(waiting, lambda cell: task.remote(runner, cell), _capacity(cpus_per_cell, num_gpus_per_cell))
        return [driver.records[cell.key] for cell in unique if cell.key in driver.records]
    finally:
        if started_here:
            ray.shutdown()


class _Driver:
    """Keeps up to `capacity` cells in flight and stores each result on the driver as it comes back."""

    def __init__(self, unique, finished, save, on_event) -> None:
        self.total, self.finished, self.save, self.on_event = len(unique), finished, save, on_event
        self.pending: dict[Any, Any] = {}  # ObjectRef -> cell
        self.records: dict[str, Any] = {}  # key -> what `save` returned, for the cells run now
        self.start = time.monotonic()

    def run(self, waiting: deque, submit: Callable[[Any], Any], capacity: int) -> None:
        try:
            while waiting or self.pending:
                while waiting and len(self.pending) < capacity:
                    cell = waiting.popleft()
                    self.pending[submit(cell)] = cell
                    self._notify("submitted", cell)
                ready, _ = ray.wait(list(self.pending), num_returns=1)
                cell = self.pending.pop(ready[0])
                self._store(cell, ray.get(ready[0]))
                self._notify("finished", cell, self.records[cell.key])
        except KeyboardInterrupt:
            self._store_what_came_back()
            self._cancel()
            raise
        except BaseException:
            self._cancel()
            raise

    def _store(self, cell: Any, result: Any) -> None:
        self.records[cell.key] = self.save(cell, result)

    def _store_what_came_back(self) -> None:
        ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0) if self.pending else ([], [])
        for ref in ready:
            try:
                result = ray.get(ref)
            except Exception:  # a failed cell stores nothing
                continue
            self._store(self.pending.pop(ref), result)

    def _cancel(self) -> None:
        for ref in self.pending:
            ray.cancel(ref, force=True)  # kills the worker: a cell deep in TensorFlow would not see a softer cancel

    def _notify(self, status: str, cell: Any, record: Any = None) -> None:
        done = self.finished + len(self.records)
        ran = len(self.records)
        eta = (self.total - done) * (time.monotonic() - self.start) / ran if ran else None
        _notify(self.on_event, RayProgress(status, cell, done, len(self.pending), self.total - done, self.total, eta, record))


_worker_runner: tuple[str, Callable] | None = None  # per worker process: the runner of the current sweep


def _run_on_worker(runner: list, cell: Any) -> Any:
    """Run `cell` with the sweep's runner, unpickled once per worker process and kept for the next cells."""
    global _worker_runner
    (ref,) = runner
    if _worker_runner is None or _worker_runner[0] != ref.hex():
        _worker_runner = ref.hex(), ray.get(ref)
    return _worker_runner[1](cell)


def _connect(address: str | None, num_cpus: int | None) -> bool:
    """Join `address`, or start a local Ray unless this process runs one already; True if started here."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)
    return True


def _capacity(cpus_per_cell: float, num_gpus_per_cell: float) -> int:
    """How many cells the cluster can run at once (so that "running" means running, and Ctrl-C cancels few)."""
    resources = ray.cluster_resources()
    fits = int(resources.get("CPU", 0) // cpus_per_cell)
    if num_gpus_per_cell:
        if not resources.get("GPU"):
            raise ValueError(f"the cells ask for {num_gpus_per_cell} GPU each but the Ray cluster has no GPU; "
                             "use num_gpus_per_cell=0 or add GPU nodes")
        fits = min(fits, int(resources["GPU"] // num_gpus_per_cell))
    if fits < 1:
        raise ValueError(f"a cell asks for {cpus_per_cell} CPUs but the Ray cluster has {resources.get('CPU', 0)}; "
                         "ask for fewer CPUs per cell or add nodes")
    return fits


def _notify(on_event: Callable[[RayProgress], None] | None, event: RayProgress) -> None:
    if on_event is not None:
        on_event(event)
