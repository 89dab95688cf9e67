import json

import numpy as np
import pytest

from unsplit_tf.data import Dataset
from unsplit_tf.experiments import (
    Budget,
    CellResult,
    CellRunner,
    InversionCell,
    LabelCell,
    ResultStore,
    data_fingerprint,
    inversion_cells,
    run_sweep,
)
from unsplit_tf.report import write_report

TINY_BUDGET = Budget(1, 2, 2)


def tiny_dataset(seed: int = 0) -> Dataset:
    """Ten classes of bright horizontal bands, 3 test images per class: enough for every cell kind."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(10), 5)
    x = rng.random((len(y), 28, 28, 1), dtype=np.float32) * 0.2
    for i, label in enumerate(y):
        x[i, 2 + 2 * label : 4 + 2 * label] = 1.0
    return Dataset("f_mnist", x[:20], y[:20], x[20:], y[20:], "synthetic bands", tuple(str(c) for c in range(10)))


def plan(budget: Budget = TINY_BUDGET, seed: int = 0, depths=(1, 2, 3)) -> list[InversionCell]:
    return inversion_cells(tiny_dataset(), depths, [("paper", "sequential")], budget, epochs=1, seed=seed, targets=2)


class CountingRunner:
    """A fake runner: records which cells it ran; raises KeyboardInterrupt on call number `interrupt_at`."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.ran: list[str] = []
        self.interrupt_at = interrupt_at

    def __call__(self, cell) -> CellResult:
        if self.interrupt_at is not None and len(self.ran) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.ran.append(cell.key)
        return CellResult({"kind": cell.kind, "value": len(self.ran)}, {"pixels": np.full((2, 2), 7, np.uint8)})


def test_budget_reads_both_spellings_and_says_how_to_fix_a_bad_one():
    assert Budget.parse("100x100+100") == Budget.parse("100x(100+100)") == Budget(100, 100, 100)
    assert str(Budget(20, 10, 5)) == "20x(10+5)" and Budget(20, 10, 5).steps_per_target == 300
    with pytest.raises(ValueError, match="MAINxINPUT\\+MODEL"):
        Budget.parse("100 rounds")


def test_a_second_run_skips_finished_cells(tmp_path):
    store, cells = ResultStore(tmp_path), plan()
    first = CountingRunner()
    run_sweep(cells, store, first)
    assert first.ran == [cell.key for cell in cells]

    again, events = CountingRunner(), []
    records = run_sweep(cells, store, again, on_event=events.append)
    assert again.ran == []
    assert [event.status for event in events] == ["skipped"] * 3
    assert [record["value"] for record in records] == [1, 2, 3]  # the stored records, not new ones


def test_an_interrupted_sweep_keeps_finished_cells_and_resumes_where_it_stopped(tmp_path):
    store, cells = ResultStore(tmp_path), plan()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, store, CountingRunner(interrupt_at=2))
    assert [store.has(cell.key) for cell in cells] == [True, False, False]

    resumed = CountingRunner()
    run_sweep(cells, store, resumed)
    assert resumed.ran == [cells[1].key, cells[2].key]
    assert all(store.has(cell.key) for cell in cells)
    assert not list(store.cells_dir.glob(".*"))  # no temporary files left behind


def test_a_change_of_budget_seed_or_data_makes_new_cells(tmp_path):
    store = ResultStore(tmp_path)
    run_sweep(plan(), store, CountingRunner())
    for changed in (plan(budget=Budget(2, 2, 2)), plan(seed=1)):
        runner = CountingRunner()
        run_sweep(changed, store, runner)
        assert len(runner.ran) == 3
    other_data = inversion_cells(tiny_dataset(seed=1), [1], [("paper", "sequential")], TINY_BUDGET, epochs=1, seed=0, targets=2)
    assert other_data[0].key != plan()[0].key
    assert len(store.records()) == 9


def test_the_store_writes_records_whole_or_not_at_all(tmp_path):
    store = ResultStore(tmp_path)
    cell = plan()[0]
    with pytest.raises(ValueError):  # NaN is not JSON: the write fails before anything named <key>.json exists
        store.save(cell.key, CellResult({"mse": float("nan")}))
    assert not store.has(cell.key)
    assert not list(store.cells_dir.glob(".*"))

    store.save(cell.key, CellResult({"mse": 0.5}, {"reconstructions": np.arange(4, dtype=np.uint8)}))
    assert store.load(cell.key) == {"mse": 0.5}
    assert store.images(cell.key)["reconstructions"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no finished cell"):
        store.load("inversion-missing")


def test_cells_check_their_parameters():
    tag = data_fingerprint(tiny_dataset())
    with pytest.raises(ValueError, match="preset"):
        InversionCell("f_mnist", 1, "fastest", "batched", TINY_BUDGET, 1, 0, 10, tag)
    with pytest.raises(ValueError, match="mode"):
        InversionCell("f_mnist", 1, "paper", "parallel", TINY_BUDGET, 1, 0, 10, tag)
    with pytest.raises(ValueError, match="targets"):
        InversionCell("f_mnist", 1, "paper", "batched", TINY_BUDGET, 1, 0, 11, tag)


def test_the_real_runner_stores_json_records_and_images_the_report_reads(tmp_path):
    data = tiny_dataset()
    store = ResultStore(tmp_path / "results")
    cells = inversion_cells(data, [2], [("tuned", "batched")], TINY_BUDGET, epochs=1, seed=0, targets=2)
    cells.append(LabelCell("f_mnist", 2, samples=12, batch_size=1, seed=0, data_tag=data_fingerprint(data)))
    runner = CellRunner({"f_mnist": data}, cache_dir=tmp_path / "models")
    records = run_sweep(cells, store, runner, extra={"command": "pytest"})

    inversion, labels = records[0], records[-1]
    assert inversion["cell"]["budget"] == {"main_iters": 1, "input_iters": 2, "model_iters": 2}
    assert inversion["targets"]["test_indices"] == [0, 1]  # the first test image of classes 0 and 1
    assert inversion["split"] == {"cut_layer": "pool1", "depth": 2}
    assert inversion["attack_config"]["seed"] == 0  # clone_architecture keeps the clone off the client's initial weights
    assert 0 <= inversion["clone"]["clone_accuracy"] <= 1 and inversion["model"]["train_seconds"] > 0
    assert inversion["command"] == "pytest" and inversion["attack_seconds"] > 0
    images = store.images(inversion["key"])
    assert images["originals"].dtype == np.uint8 and images["reconstructions"].shape == (2, 28, 28, 1)
    assert 0 <= inversion["clone_before_attack"]["clone_accuracy"] <= 1
    assert {method["id"] for method in labels["methods"]} >= {"authors", "activation_gradient", "norm_scoring"}
    assert all(method["evaluated"] + method["known"] == 12 for method in labels["methods"])
    json.dumps(records, allow_nan=False)  # every record is plain JSON

    report = write_report(store).read_text()
    assert "| 2 | `pool1` | better/batched |" in report and "### Label inference" in report


def test_an_attack_interrupted_mid_cell_stores_nothing(tmp_path):
    data = tiny_dataset()
    store = ResultStore(tmp_path)
    cell = inversion_cells(data, [1], [("paper", "batched")], Budget(3, 2, 2), epochs=1, seed=0, targets=2)[0]

    def press_ctrl_c(report):
        raise KeyboardInterrupt

    runner = CellRunner({"f_mnist": data}, cache_dir=tmp_path / "models", on_round=press_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_sweep([cell], store, runner)
    assert not store.has(cell.key) and not store.images_path(cell.key).exists()


def test_the_runner_refuses_cells_planned_for_other_data(tmp_path):
    cell = plan()[0]
    runner = CellRunner({"f_mnist": tiny_dataset(seed=1)}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fingerprint"):
        runner(cell)
