"""The Ray backend of the sweep: each cell is a Ray task, each run is stored on the driver.

`run_sweep(..., backend="ray", **options)` hands it the cells the store lacks.
The driver keeps as many cells in flight as the cluster has room for (CPUs,
and GPUs when a cell asks for a fraction of one), asks `done(cell)` right
before it submits a cell (so a claim is taken as late as in the serial
backend) and stores each run the moment it comes back (in completion order)
through `save`, so workers need no shared filesystem and the store stays the
one atomic writer. A task whose worker process dies is resubmitted by Ray
(`max_retries`, system failures only; an exception raised by a cell is not
retried and stops the sweep). Ctrl-C on the driver, or a cell that raised,
stores the runs that come back within `GRACE_SECONDS`, cancels the tasks still
running and re-raises: running the sweep again resumes it.

The cell runner is shipped once through Ray's object store and unpickled once
per worker process, which keeps it there for the next cells: its loaded data
travels with it (workers need no copy of the data files) and its trained-model
cache lives per worker (training is deterministic for a key, so each worker
trains or loads a model at most once).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from unsplit_tf._validation import at_least, non_negative, positive
from unsplit_tf.sweep import Cell, EventCallback, Pace, Run, _notify

try:
    import ray
except ImportError as error:  # the serial backend needs no Ray; this one says how to get it
    raise ImportError("the Ray backend of the sweep needs Ray: pip install 'unsplit-tf[ray]'") from error


@dataclass(frozen=True)
class RayOptions:
    """Where and how cells run on Ray (the options of `run_cells_ray`), checked when made.

    address: a Ray cluster to join ("auto", "HOST:PORT" or "ray://HOST:PORT");
        None starts a local Ray with `num_cpus` CPUs (default: all), or uses
        the one this process already started. A Ray started here is shut down
        at the end.
    num_gpus_per_cell: a fraction of one GPU (cells share it) or whole GPUs.
    max_retries: how often a cell whose worker process died is run again.
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus_per_cell: float = 0.0
    cpus_per_cell: float = 1.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        positive("cpus_per_cell", self.cpus_per_cell)
        if non_negative("num_gpus_per_cell", self.num_gpus_per_cell) > 1 and self.num_gpus_per_cell % 1:
            raise ValueError(f"num_gpus_per_cell must be a fraction of one GPU or a whole number, got {self.num_gpus_per_cell}")
        at_least("max_retries", self.max_retries, 0)
        if self.num_cpus is not None:
            at_least("num_cpus", self.num_cpus, 1)
            if self.address is not None:
                raise ValueError("num_cpus sizes a local Ray only; a cluster joined by address has the CPUs its nodes offer")


def run_cells_ray(
    cells: Sequence[Cell],
    run_cell: Callable[[Cell], Run],
    *,
    done: Callable[[Cell], bool],
    save: Callable[[Cell, Run], None],
    on_event: EventCallback | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus_per_cell: float = 0.0,
    cpus_per_cell: float = 1.0,
    max_retries: int = 2,
) -> None:
    """Run each cell not `done` as a Ray task and `save` its run on the driver the moment it comes back.

    run_cell: picklable (a `CellRunner` without progress callbacks); called on a worker.
    The other options are `RayOptions`'. Nothing starts for no cells.
    """
    options = RayOptions(address, num_cpus, num_gpus_per_cell, cpus_per_cell, max_retries)
    if not cells:
        return
    started_here = _connect(options.address, options.num_cpus)
    try:
        capacity = _capacity(options.cpus_per_cell, options.num_gpus_per_cell)
        resources = {"num_cpus": options.cpus_per_cell, "num_gpus": options.num_gpus_per_cell,
                     "max_retries": options.max_retries}
        if options.num_gpus_per_cell:  # TensorFlow takes a whole GPU's memory unless told to grow: cells share GPUs
            resources["runtime_env"] = {"env_vars": {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}}
        task = ray.remote(_run_on_worker).options(**resources)
        runner = [ray.put(run_cell)]  # in a list, so that workers get the reference and keep what it unpickles to
        _Driver(cells, done, save, on_event).run(lambda cell: task.remote(runner, cell), capacity)
    finally:
        if started_here:
            ray.shutdown()


GRACE_SECONDS = 1.0
"""How long cells in flight get to come back when a sweep stops, before the rest are cancelled."""


class _Driver:
    """Keeps up to `capacity` cells in flight and stores each run on the driver as it comes back."""

    def __init__(self, cells: Sequence[Cell], done: Callable[[Cell], bool], save: Callable[[Cell, Run], None],
                 on_event: EventCallback | None) -> None:
        self.waiting, self.done, self.save, self.on_event = deque(cells), done, save, on_event
        self.pending: dict[ray.ObjectRef, Cell] = {}
        self.pace = Pace(cells)

    def run(self, submit: Callable[[Cell], ray.ObjectRef], capacity: int) -> None:
        try:
            while True:
                while len(self.pending) < capacity and (cell := self._next()) is not None:
                    self.pending[submit(cell)] = cell
                    self._notify("started", cell)
                if not self.pending:
                    return
                ready, _ = ray.wait(list(self.pending), num_returns=1)
                cell = self.pending.pop(ready[0])  # out of `pending` before it is read: a cell that raised is not cancelled
                self._store(cell, ray.get(ready[0]))
        except BaseException:  # Ctrl-C, or a cell that raised or whose worker died for good
            self._store_what_came_back()
            self._cancel()
            raise

    def _next(self) -> Cell | None:
        """The next cell to submit: `done` is asked (and claims it) only now."""
        while self.waiting:
            cell = self.waiting.popleft()
            if not self.done(cell):
                return cell
        return None

    def _store(self, cell: Cell, run: Run) -> None:
        self.save(cell, run)
        self._notify("finished", cell, run)

    def _store_what_came_back(self) -> None:
        """Store the cells that come back within `GRACE_SECONDS`: work about to finish is kept, not cancelled."""
        ready, _ = (ray.wait(list(self.pending), num_returns=len(self.pending), timeout=GRACE_SECONDS)
                    if self.pending else ([], []))
        for ref in ready:
            cell = self.pending.pop(ref)
            try:
                run = ray.get(ref)
            except Exception:  # a failed cell stores nothing
                continue
            self.save(cell, run)

    def _cancel(self) -> None:
        """Kill the workers of the cells still running (a cell deep in TensorFlow would not see a softer cancel).

        Only tasks that have not come back, after the grace: Ray 2.60 aborts the driver (a failed check, exit
        code 1) when a task is force-cancelled while its reply is being processed, as happened to a cell that
        had raised. A task finishing in the instant between the check and the cancel still could.
        """
        _, running = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0) if self.pending else ([], [])
        for ref in running:
            ray.cancel(ref, force=True)

    def _notify(self, status: str, cell: Cell, run: Run | None = None) -> None:
        _notify(self.on_event, self.pace.event(status, cell, running=len(self.pending), left=len(self.waiting), run=run))


_worker_runner: tuple[str, Callable] | None = None  # per worker process: the runner of the current sweep


def _run_on_worker(runner: list, cell: Cell) -> Run:
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
                             "ask for no GPU per cell or add GPU nodes")
        fits = min(fits, int(resources["GPU"] // num_gpus_per_cell))
    if fits < 1:
        raise ValueError(f"a cell asks for {cpus_per_cell} CPUs but the Ray cluster has {resources.get('CPU', 0)}; "
                         "ask for fewer CPUs per cell or add nodes")
    return fits
