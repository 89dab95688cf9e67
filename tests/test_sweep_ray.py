"""The Ray backend of the sweep, through `run_sweep`, on a local Ray with 2 CPUs (started once for the module).

The runner makes up records (tests/fake_runs.py) and logs every attempt, so
the tests see what ran where without training anything.
"""

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs Ray: pip install 'unsplit-tf[ray]'")

import fake_runs  # noqa: E402
from fake_runs import inversion_run  # noqa: E402
from test_sweep import plan  # noqa: E402
from unsplit_tf.store import ResultStore  # noqa: E402
from unsplit_tf.sweep import run_sweep  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # Workers cannot import the test modules by name: ship what they define by value.
    for module in (sys.modules[__name__], fake_runs):
        ray.cloudpickle.register_pickle_by_value(module)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


class LoggingRunner:
    """`fake_runs.inversion_run` of the cell; logs every attempt (worker pid, call count) to `log_dir`.

    die_on: the key of a cell whose worker process dies (os._exit) on its first attempt.
    fail_on: the key of a cell that raises (a bug in a cell, not a lost worker).
    """

    def __init__(self, log_dir: Path, die_on: str | None = None, fail_on: str | None = None) -> None:
        self.log_dir, self.die_on, self.fail_on, self.calls = log_dir, die_on, fail_on, 0

    def __call__(self, cell):
        self.calls += 1  # counts on in a worker that keeps its runner (and with it a trained-model cache)
        attempts = self.log_dir / f"{cell.key}.attempts"
        with open(attempts, "a") as file:
            file.write(f"{os.getpid()} {self.calls}\n")
        if cell.key == self.die_on and len(attempts.read_text().splitlines()) == 1:
            os._exit(1)
        if cell.key == self.fail_on:
            raise ValueError(f"cell {cell.key} is broken")
        return inversion_run(cell)


def attempts(log_dir: Path) -> dict[str, int]:
    return {path.name.removesuffix(".attempts"): len(path.read_text().splitlines()) for path in log_dir.glob("*.attempts")}


def calls_by_worker(log_dir: Path) -> dict[str, list[int]]:
    """{worker pid: the runner's call counts there}, in order."""
    calls: dict[str, list[int]] = {}
    for path in log_dir.glob("*.attempts"):
        for line in path.read_text().splitlines():
            pid, count = line.split()
            calls.setdefault(pid, []).append(int(count))
    return {pid: sorted(counts) for pid, counts in calls.items()}


def no_claims(store: ResultStore, cells) -> bool:
    return not any(store.claim_path(cell.key).exists() for cell in cells)


def test_ray_gives_the_serial_runs_and_a_rerun_skips_everything(tmp_path):
    cells = plan(depths=(1, 2, 3, 4)) + plan(seed=1, depths=(1, 2))
    serial, on_ray = ResultStore(tmp_path / "serial"), ResultStore(tmp_path / "ray")
    (tmp_path / "log").mkdir()
    serial_events, events = [], []
    run_sweep(cells, serial, LoggingRunner(tmp_path), on_event=serial_events.append)
    result = run_sweep(cells, on_ray, LoggingRunner(tmp_path / "log"), backend="ray", on_event=events.append)

    assert [run.key for run in result.runs] == [cell.key for cell in cells] and sorted(on_ray.keys()) == sorted(serial.keys())
    for cell in cells:  # the same record, byte for byte, and the same images
        assert on_ray.json_path(cell.key).read_bytes() == serial.json_path(cell.key).read_bytes()
        assert all(np.array_equal(on_ray.arrays(cell.key)[name], array) for name, array in serial.arrays(cell.key).items())
    finished = [e for e in events if e.status == "finished"]
    assert sorted(e.cell.key for e in finished) == sorted(cell.key for cell in cells)  # each stored once
    assert max(e.running for e in events) == 2  # as many in flight as the 2 CPUs hold
    assert [e.done for e in finished] == list(range(1, 7)) and [e.left + e.running for e in finished] == list(range(5, -1, -1))
    assert finished[-1].eta_seconds == 0 and all(e.eta_seconds > 0 for e in finished[:-1])
    serial_finished = [e for e in serial_events if e.status == "finished"]  # the serial backend counts the same way
    assert [(e.done, e.running, e.left) for e in serial_finished] == [(i, 0, 6 - i) for i in range(1, 7)]
    assert no_claims(on_ray, cells)

    again = []
    run_sweep(cells, on_ray, LoggingRunner(tmp_path / "log"), backend="ray", on_event=again.append)
    assert {e.status for e in again} == {"skipped"} and len(again) == len(cells)
    assert set(attempts(tmp_path / "log").values()) == {1}  # nothing ran twice
    # The runner was unpickled once per worker process and kept there for its next cells.
    assert all(counts == list(range(1, len(counts) + 1)) for counts in calls_by_worker(tmp_path / "log").values())


def test_a_worker_killed_mid_cell_is_retried_not_lost_or_duplicated(tmp_path):
    cells = plan(depths=(1, 2, 3))
    store, events = ResultStore(tmp_path), []
    victim = cells[1].key
    run_sweep(cells, store, LoggingRunner(tmp_path, die_on=victim), backend="ray", on_event=events.append)

    assert attempts(tmp_path) == {cells[0].key: 1, victim: 2, cells[2].key: 1}
    assert sorted(e.cell.key for e in events if e.status == "finished") == sorted(cell.key for cell in cells)
    assert all(store.has(cell.key) for cell in cells) and no_claims(store, cells)


def test_without_retries_a_killed_worker_fails_the_sweep_and_keeps_the_other_cells(tmp_path):
    cells = plan(depths=(1, 2))
    store = ResultStore(tmp_path)
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        run_sweep(cells, store, LoggingRunner(tmp_path, die_on=cells[0].key), backend="ray", max_retries=0)
    assert not store.has(cells[0].key) and no_claims(store, cells)  # claims released: a re-run takes the cell


def test_a_cell_that_raises_stops_the_sweep_with_its_error_and_is_not_retried(tmp_path):
    cells = plan(depths=(1, 2, 3))
    store = ResultStore(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"cell {cells[0].key} is broken")):
        run_sweep(cells, store, LoggingRunner(tmp_path, fail_on=cells[0].key), backend="ray")
    assert attempts(tmp_path)[cells[0].key] == 1 and not store.has(cells[0].key) and no_claims(store, cells)


def test_ctrl_c_keeps_finished_cells_and_the_rerun_does_only_the_rest(tmp_path):
    cells = plan(depths=(1, 2, 3, 4, 5))
    store = ResultStore(tmp_path)

    def press_ctrl_c(event):
        if event.status == "finished":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, store, LoggingRunner(tmp_path), backend="ray", on_event=press_ctrl_c)
    kept = store.keys()
    assert 1 <= len(kept) < len(cells) and no_claims(store, cells)

    events = []
    run_sweep(cells, store, LoggingRunner(tmp_path), backend="ray", on_event=events.append)
    assert sorted(e.cell.key for e in events if e.status == "skipped") == sorted(kept)
    assert all(store.has(cell.key) for cell in cells)
    assert all(attempts(tmp_path)[key] == 1 for key in kept)  # the kept cells were not run again


def test_without_ray_the_backend_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    monkeypatch.delitem(sys.modules, "unsplit_tf.sweep_ray", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'unsplit-tf\[ray\]'"):
        run_sweep(plan(depths=(1,)), ResultStore(tmp_path), LoggingRunner(tmp_path), backend="ray")
    assert attempts(tmp_path) == {}


def test_bad_resource_requests_are_refused_before_anything_runs(tmp_path):
    store, cells = ResultStore(tmp_path), plan(depths=(1,))

    def sweep(**options):
        return run_sweep(cells, store, LoggingRunner(tmp_path), backend="ray", **options)

    with pytest.raises(ValueError, match="no GPU"):
        sweep(num_gpus_per_cell=0.5)
    with pytest.raises(ValueError, match="has 2.0"):
        sweep(cpus_per_cell=3)
    with pytest.raises(ValueError, match="cpus_per_cell must be positive"):
        sweep(cpus_per_cell=0)
    with pytest.raises(ValueError, match="a fraction of one GPU"):
        sweep(num_gpus_per_cell=1.5)
    with pytest.raises(ValueError, match="num_cpus sizes a local Ray only"):
        sweep(address="auto", num_cpus=2)
    assert attempts(tmp_path) == {} and not store.keys() and no_claims(store, cells)


class FakeRay:
    """What `_Driver` calls of Ray, over refs that are cell keys: `back` have come back, `broken` of them raised."""

    def __init__(self, back: list[str], broken: set[str]) -> None:
        self.back, self.broken, self.cancelled = back, broken, []

    def wait(self, refs, num_returns=1, timeout=None):
        ready = [ref for ref in self.back if ref in refs]
        return (ready if timeout is not None else ready[:num_returns]), [ref for ref in refs if ref not in self.back]

    def get(self, ref):
        if ref in self.broken:
            raise ValueError(f"cell {ref} is broken")
        return f"run of {ref}"

    def cancel(self, ref, force):
        self.cancelled.append(ref)


@pytest.mark.parametrize("interrupt", [False, True])
def test_a_stopped_sweep_stores_what_comes_back_and_cancels_only_cells_still_running(monkeypatch, interrupt):
    # Stopped by Ctrl-C after one cell finished, or by a cell that raised first. Ray 2.60 aborts the driver
    # (exit code 1) when a task is force-cancelled while its reply is handled: what came back is never cancelled.
    from unsplit_tf import sweep_ray

    cells = plan(depths=(1, 2, 3))
    finished, broken, running = (cell.key for cell in cells)
    fake = FakeRay(back=[finished, broken] if interrupt else [broken, finished], broken={broken})
    monkeypatch.setattr(sweep_ray, "ray", fake)
    saved = []

    def press_ctrl_c(event):
        if event.status == "finished":
            raise KeyboardInterrupt

    driver = sweep_ray._Driver(cells, done=lambda cell: False, save=lambda cell, run: saved.append(run), on_event=press_ctrl_c)
    with pytest.raises(KeyboardInterrupt if interrupt else ValueError):
        driver.run(lambda cell: cell.key, capacity=3)
    assert fake.cancelled == [running] and saved == [f"run of {finished}"]
