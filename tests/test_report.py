import numpy as np
import pytest

from unsplit_tf.experiments import Budget, CellResult, InversionCell, LabelCell, ResultStore, run_sweep
from unsplit_tf.report import AUTHORS_CODE_FASHION_MNIST, comparison_table, inversion_series, write_report

PAPER_BUDGET = Budget(100, 100, 100)
SHAPES = {"f_mnist": (28, 28, 1), "cifar": (32, 32, 3)}


def cells(dataset: str, depths, attacks=(("paper", "sequential"), ("tuned", "batched")), budget=PAPER_BUDGET, targets=3):
    return [InversionCell(dataset, depth, name, mode, budget, 2, 0, targets, "fake") for depth in depths for name, mode in attacks]


def fake_runner(cell) -> CellResult:
    """A record shaped like CellRunner's, with numbers that follow from the cell (better = 10x lower MSE)."""
    if isinstance(cell, LabelCell):
        methods = [{"id": "authors", "description": "the authors' algorithm", "observation": "weight_gradient",
                    "method": "gradient_matching", "accuracy": 1.0, "relabelled_accuracy": 1.0, "auc": 1.0,
                    "evaluated": 20, "known": 0, "chance": 0.15}]
        return CellResult({"kind": "labels", "training": {"head": "logits"}, "methods": methods, "cell_seconds": 3.0})
    mse = (0.1 if cell.preset == "paper" else 0.01) + 0.001 * cell.depth
    per_image = [mse] * cell.targets
    guess = {"mean_mse": 0.181, "mean_ssim": 0.1, "mean_psnr": 7.4}
    images = np.random.default_rng(cell.depth).integers(0, 256, (2, cell.targets, *SHAPES[cell.dataset]), dtype=np.uint8)
    record = {
        "kind": "inversion",
        "data": {"source": "fake", "train_images": 100, "test_images": 30},
        "model": {"split_test_accuracy": 0.86, "epochs": cell.epochs, "train_seconds": 8.0},
        "split": {"cut_layer": f"layer{cell.depth}", "depth": cell.depth},
        "targets": {"classes": [f"class {index}" for index in range(cell.targets)]},
        "reconstruction": {"mean_mse": mse, "mean_psnr": 10.0, "mean_ssim": 0.5, "mse": per_image},
        "baselines": {"constant_0.5": guess, "dataset_mean": {**guess, "mean_mse": 0.088}},
        "clone": {"clone_accuracy": 0.8 - 0.1 * cell.depth, "agreement": 0.9, "original_accuracy": 0.86},
        "clone_before_attack": {"clone_accuracy": 0.1},
        "attack_seconds": 30.0,
        "image_steps_per_second": 6000.0,
        "environment": {"cpu_count": 2, "machine": "x86_64", "gpus": 0, "tensorflow": "2.x", "keras": "3.x",
                        "load_average_1min": 1.5},
    }
    return CellResult(record, {"originals": images[0], "reconstructions": images[1]})


@pytest.fixture
def store(tmp_path):
    """A small sweep: two Fashion-MNIST depths, one CIFAR-10 depth at its own budget, one label cell."""
    store = ResultStore(tmp_path / "results")
    planned = cells("f_mnist", [1, 2]) + cells("cifar", [1], budget=Budget(20, 20, 20))
    planned.append(LabelCell("f_mnist", 2, 20, 1, 0, "fake"))
    run_sweep(planned, store, fake_runner, extra={"command": "python scripts/sweep.py --fake"})
    return store


def test_the_report_has_a_table_plots_and_a_grid_per_dataset(store):
    report = write_report(store).read_text()
    for dataset, title in (("f_mnist", "## Fashion-MNIST"), ("cifar", "## CIFAR-10")):
        assert title in report
        for figure in ("mse_by_depth", "clone_accuracy_by_depth", "depth_grid"):
            assert (store.root / f"{dataset}_{figure}.png").stat().st_size > 1000
            assert f"({dataset}_{figure}.png)" in report
    assert report.count("| 2 | `layer2` |") == 2  # paper and better at depth 2
    assert "| 2 | `layer2` | paper/sequential | 0.102 |" in report
    assert "| 1 | `layer1` | better/batched | 0.011 |" in report  # the CIFAR-10 row
    assert "### Label inference (20 training examples, batch size 1, seed 0)" in report
    assert "python scripts/sweep.py --fake" in report


def test_the_comparison_puts_the_authors_figures_beside_both_presets_depth_by_depth(tmp_path):
    store = ResultStore(tmp_path)
    run_sweep(cells("f_mnist", range(1, 7), targets=10), store, fake_runner)
    table = comparison_table(inversion_series(store.records())["f_mnist"])
    rows = table.splitlines()[2:]
    assert len(rows) == len(AUTHORS_CODE_FASHION_MNIST) + 1  # the depths, then their mean
    authors = AUTHORS_CODE_FASHION_MNIST[3]
    assert rows[2].startswith(f"| 3 | {authors.mse:.3f} | 0.103 | 0.013 | 0.500 | 0.500 | {100 * authors.clone_accuracy:.1f} % |")
    assert rows[-1].startswith("| mean |")


def test_the_comparison_says_what_to_run_when_its_cells_are_missing(tmp_path):
    store = ResultStore(tmp_path)
    run_sweep(cells("f_mnist", [1, 2], budget=Budget(10, 10, 10)), store, fake_runner)
    report = write_report(store).read_text()
    assert "No stored cells match the authors' conditions yet" in report
    assert "--attack paper:sequential" in report


def test_the_report_is_regenerated_from_the_stored_cells(store):
    first = write_report(store).read_text()
    assert "50x(100+100)" not in first
    run_sweep(cells("f_mnist", [1], budget=Budget(50, 100, 100)), store, fake_runner)  # a new budget: new rows
    again = write_report(store, notes="Numbers explained here.").read_text()
    assert "paper/sequential, 50x(100+100)" in again and "paper/sequential, 100x(100+100)" in again
    assert again.endswith("## Findings\n\nNumbers explained here.\n")


def test_an_empty_store_says_to_run_the_sweep(tmp_path):
    with pytest.raises(ValueError, match="sweep.py"):
        write_report(ResultStore(tmp_path))
