"""The Ray backend of the sweep on a local Ray with 2 CPUs (started once for the module).

The fake cells and results are defined here, free of TensorFlow, so that a
fresh Ray worker starts in a second; one test runs real cells.
"""

import datetime
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs Ray: pip install 'unsplit-tf[ray]'")

from unsplit_tf.experiments import CellResult, CellRunner, ResultStore, inversion_cells, run_sweep  # noqa: E402
from unsplit_tf.sweep_ray import run_cells_ray  # noqa: E402

from test_experiments import TINY_BUDGET, tiny_dataset  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # Workers cannot import this test module by name: ship its classes by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@dataclass(frozen=True)
class FakeCell:
    kind = "fake"
    depth: int
    seed: int = 0

    @property
    def key(self) -> str:
        return f"fake-d{self.depth}-s{self.seed}"

    def params(self) -> dict:
        return {"kind": self.kind, "depth": self.depth, "seed": self.seed}


@dataclass(frozen=True)
class FakeResult:
    """What `run_sweep` and `ResultStore` read of a CellResult."""

    record: dict
    images: dict = field(default_factory=dict)


def plan(depths=(1, 2, 3), seed=0) -> list[FakeCell]:
    return [FakeCell(depth, seed) for depth in depths]


class FakeRunner:
    """Deterministic figures from the cell's key and seed; logs every attempt to `log_dir`.

    die_on: the key of a cell whose worker process dies (os._exit) on its first attempt.
    fail_on: the key of a cell that raises (a bug in a cell, not a lost worker).
    """

    def __init__(self, log_dir: Path, die_on: str | None = None, fail_on: str | None = None) -> None:
        self.log_dir, self.die_on, self.fail_on, self.calls = log_dir, die_on, fail_on, 0

    def __call__(self, cell: FakeCell) -> FakeResult:
        self.calls += 1  # counts on in a worker that keeps its runner (and with it a trained-model cache)
        attempts = self.log_dir / f"{cell.key}.attempts"
        with open(attempts, "a") as file:
            file.write(f"{os.getpid()} {self.calls}\n")
        if cell.key == self.die_on and len(attempts.read_text().splitlines()) == 1:
            os._exit(1)
        if cell.key == self.fail_on:
            raise ValueError(f"cell {cell.key} is broken")
        rng = np.random.default_rng([cell.seed, cell.depth])
        return FakeResult({"kind": cell.kind, "figures": rng.random(3).tolist()},
                          {"pixels": rng.integers(0, 255, (2, 2), dtype=np.uint8)})


def stored_by(store: ResultStore, saved: list[str]):
    """A `save` for the Ray backend that stores records as `run_sweep` does, and logs each key it saved."""

    def save(cell, result) -> dict:
        saved.append(cell.key)
        record = {"key": cell.key, "cell": cell.params(), **result.record,
                  "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        store.save(cell.key, CellResult(record, result.images))
        return record

    return save


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


def without_times(record: dict) -> dict:
    timings = {"finished_at", "cell_seconds", "attack_seconds", "image_steps_per_second", "environment"}
    record = {name: value for name, value in record.items() if name not in timings}
    record["model"] = {name: value for name, value in record.get("model", {}).items() if name != "train_seconds"}
    return record


def test_ray_gives_the_serial_records_and_a_rerun_skips_everything(tmp_path):
    cells = plan(depths=(1, 2, 3, 4)) + plan(seed=1, depths=(1, 2))
    (tmp_path / "serial").mkdir(), (tmp_path / "ray").mkdir()
    serial = run_sweep(cells, ResultStore(tmp_path / "serial"), FakeRunner(tmp_path / "serial"))
    store, saved, events = ResultStore(tmp_path / "ray"), [], []
    records = run_cells_ray(cells, FakeRunner(tmp_path / "ray"), done=store.has, save=stored_by(store, saved),
                            on_event=events.append)

    assert [r["key"] for r in records] == [r["key"] for r in serial] == [cell.key for cell in cells]
    assert [without_times(r) for r in records] == [without_times(r) for r in serial]
    assert all(np.array_equal(store.images(c.key)["pixels"], ResultStore(tmp_path / "serial").images(c.key)["pixels"])
               for c in cells)
    finished = [e for e in events if e.status == "finished"]
    assert sorted(saved) == sorted(cell.key for cell in cells) and len(finished) == len(cells)
    assert max(e.running for e in events) == 2  # as many in flight as the 2 CPUs hold
    assert [e.done for e in finished] == list(range(1, 7)) and [e.left for e in finished] == list(range(5, -1, -1))
    assert finished[-1].eta_seconds == 0 and all(e.eta_seconds > 0 for e in finished[:-1])

    again = []
    assert run_cells_ray(cells, FakeRunner(tmp_path / "ray"), done=store.has, save=stored_by(store, saved),
                         on_event=again.append) == []
    assert {e.status for e in again} == {"skipped"} and len(saved) == len(cells)
    assert set(attempts(tmp_path / "ray").values()) == {1}  # nothing ran twice
    # The runner was unpickled once per worker process and kept there for its next cells.
    assert all(counts == list(range(1, len(counts) + 1)) for counts in calls_by_worker(tmp_path / "ray").values())


def test_a_worker_killed_mid_cell_is_retried_not_lost_or_duplicated(tmp_path):
    cells = plan(depths=(1, 2, 3))
    store, saved = ResultStore(tmp_path), []
    victim = cells[1].key
    records = run_cells_ray(cells, FakeRunner(tmp_path, die_on=victim), done=store.has, save=stored_by(store, saved))

    assert attempts(tmp_path) == {cells[0].key: 1, victim: 2, cells[2].key: 1}
    assert sorted(saved) == sorted(cell.key for cell in cells)  # each stored once
    assert [r["key"] for r in records] == [cell.key for cell in cells] and store.load(victim)["figures"]


def test_without_retries_a_killed_worker_fails_the_sweep_and_keeps_the_other_cells(tmp_path):
    cells = plan(depths=(1, 2))
    store, saved = ResultStore(tmp_path), []
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        run_cells_ray(cells, FakeRunner(tmp_path, die_on=cells[0].key), done=store.has, save=stored_by(store, saved),
                      max_retries=0)
    assert not store.has(cells[0].key) and saved in ([], [cells[1].key])


def test_a_cell_that_raises_stops_the_sweep_with_its_error_and_is_not_retried(tmp_path):
    cells = plan(depths=(1, 2, 3))
    store, saved = ResultStore(tmp_path), []
    with pytest.raises(ValueError, match="cell fake-d1-s0 is broken"):
        run_cells_ray(cells, FakeRunner(tmp_path, fail_on=cells[0].key), done=store.has, save=stored_by(store, saved))
    assert attempts(tmp_path)[cells[0].key] == 1 and not store.has(cells[0].key)
    assert all(store.has(key) for key in saved)


def test_ctrl_c_keeps_finished_cells_and_the_rerun_does_only_the_rest(tmp_path):
    cells = plan(depths=(1, 2, 3, 4, 5))
    store, saved = ResultStore(tmp_path), []

    def press_ctrl_c(event):
        if event.status == "finished":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cells_ray(cells, FakeRunner(tmp_path), done=store.has, save=stored_by(store, saved), on_event=press_ctrl_c)
    kept = list(saved)
    assert 1 <= len(kept) < len(cells) and all(store.load(key)["figures"] for key in kept)

    run_cells_ray(cells, FakeRunner(tmp_path), done=store.has, save=stored_by(store, saved))
    assert sorted(saved) == sorted(cell.key for cell in cells)  # the kept cells were not run again
    assert all(store.has(cell.key) for cell in cells)


def test_a_real_cell_on_ray_scores_as_the_serial_one(tmp_path):
    data = tiny_dataset()
    cells = inversion_cells(data, [2], [("tuned", "batched")], TINY_BUDGET, epochs=1, seed=0, targets=2)
    store = ResultStore(tmp_path / "ray")
    runner = CellRunner({"f_mnist": data}, cache_dir=tmp_path / "ray")  # trains the model again, on a worker
    with ThreadPoolExecutor(1) as pool:  # the serial run meanwhile, here: the test takes the longer of the two
        on_ray = pool.submit(run_cells_ray, cells, runner, done=store.has, save=stored_by(store, []))
        serial = run_sweep(cells, ResultStore(tmp_path / "serial"), CellRunner({"f_mnist": data}, cache_dir=tmp_path / "serial"))
        records = on_ray.result()

    assert [without_times(r) for r in records] == [without_times(r) for r in serial]
    assert records[0]["reconstruction"]["mean_mse"] > 0


def test_without_ray_the_module_says_how_to_install_it():
    hide_ray = "import sys; sys.modules['ray'] = None; import unsplit_tf.sweep_ray"
    run = subprocess.run([sys.executable, "-c", hide_ray], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 1 and "pip install 'unsplit-tf[ray]'" in run.stderr


def test_bad_resource_requests_are_refused_before_anything_runs(tmp_path):
    store = ResultStore(tmp_path)
    common = {"done": store.has, "save": stored_by(store, [])}
    with pytest.raises(ValueError, match="no GPU"):
        run_cells_ray(plan(depths=(1,)), FakeRunner(tmp_path), num_gpus_per_cell=0.5, **common)
    with pytest.raises(ValueError, match="has 2.0"):
        run_cells_ray(plan(depths=(1,)), FakeRunner(tmp_path), cpus_per_cell=3, **common)
    with pytest.raises(ValueError, match="cpus_per_cell must be positive"):
        run_cells_ray(plan(depths=(1,)), FakeRunner(tmp_path), cpus_per_cell=0, **common)
    assert attempts(tmp_path) == {}
