import pytest

from fake_runs import fake_runner, inversion_run, label_run
from unsplit_tf.records import DefenseSetting
from unsplit_tf.reporting import comparison_table, inversion_series, reference_figures, write_report
from unsplit_tf.store import ResultStore
from unsplit_tf.sweep import Budget, InversionCell, LabelCell, run_sweep

PAPER_BUDGET = Budget(100, 100, 100)


def cells(dataset: str, depths, attacks=(("paper", "sequential"), ("tuned", "batched")), budget=PAPER_BUDGET, targets=3):
    return [InversionCell(dataset, "fake", depth, preset=name, mode=mode, budget=budget, epochs=2, targets=targets)
            for depth in depths for name, mode in attacks]


@pytest.fixture
def store(tmp_path):
    """A small sweep: two Fashion-MNIST depths, one CIFAR-10 depth at its own budget, one label cell."""
    store = ResultStore(tmp_path / "results")
    planned = cells("f_mnist", [1, 2]) + cells("cifar", [1], budget=Budget(20, 20, 20))
    planned.append(LabelCell("f_mnist", "fake", 2, samples=20, batch_size=1))
    run_sweep(planned, store, fake_runner, command="python scripts/sweep.py --fake")
    return store


def test_the_report_has_a_table_plots_and_a_grid_per_dataset(store):
    report = write_report(store).read_text()
    for dataset, title in (("f_mnist", "## Fashion-MNIST"), ("cifar", "## CIFAR-10")):
        assert title in report
        for figure in ("mse_by_depth", "clone_accuracy_by_depth", "depth_grid"):
            assert (store.root / f"{dataset}_{figure}.png").stat().st_size > 1000
            assert f"({dataset}_{figure}.png)" in report
    assert report.count("| 2 | `layer2` |") == 2  # paper and tuned at depth 2
    assert "| 2 | `layer2` | paper/sequential | 0.102 |" in report
    assert "| 1 | `layer1` | tuned/batched | 0.011 |" in report  # the CIFAR-10 row
    assert "### Label inference (20 training examples, batch size 1, seed 0)" in report
    assert "python scripts/sweep.py --fake" in report


def test_the_report_opens_with_a_summary_a_newcomer_understands(store):
    report = write_report(store).read_text()
    summary = report.split("\n\n")[1]
    assert summary.startswith("**In short.**") and report.index("**In short.**") < report.index("| depth |")
    assert "On Fashion-MNIST, a server that knows only the client's architecture" in summary
    assert "at depth 1–2 (best MSE 0.011 at depth 1, against the mean image's 0.088)" in summary
    assert "infers 100.0 % of the Fashion-MNIST training labels" in summary
    assert "No defense runs are stored yet" in summary


def test_the_comparison_puts_the_authors_figures_beside_both_presets_depth_by_depth(tmp_path):
    store = ResultStore(tmp_path)
    run_sweep(cells("f_mnist", range(1, 7), targets=10), store, fake_runner)
    table = comparison_table(inversion_series(store.runs())["f_mnist"])
    rows = table.splitlines()[2:]
    authors = reference_figures().depths
    assert len(rows) == len(authors) + 1  # the depths, then their mean
    assert rows[2].startswith(f"| 3 | {authors[3].mse:.3f} | 0.103 | 0.013 | 0.897 | 0.987 | {100 * authors[3].clone_accuracy:.1f} % |")
    assert rows[-1].startswith("| mean |")


def test_the_reference_figures_are_data_loaded_in_one_place():
    figures = reference_figures()
    assert figures.budget == "100x(100+100)" and figures.preset == "paper" and figures.mode == "sequential"
    assert figures.depths[1].mse == 0.140 and figures.baselines_mse["dataset_mean"] == 0.088


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


def test_every_rewrite_of_the_report_keeps_the_stores_hand_written_notes(store):
    (store.root / "notes.md").write_text("Why the numbers are what they are.")
    assert write_report(store).read_text().endswith("## Findings\n\nWhy the numbers are what they are.\n")
    assert write_report(store, notes="Other notes.").read_text().endswith("## Findings\n\nOther notes.\n")


def test_an_empty_store_says_to_run_the_sweep(tmp_path):
    with pytest.raises(ValueError, match="sweep"):
        write_report(ResultStore(tmp_path))


def test_the_figures_module_imports_matplotlib_only_inside_its_drawing_functions():
    import unsplit_tf.reporting.figures as figures

    header = open(figures.__file__).read().split("\ndef ", 1)[0]
    assert "import matplotlib" not in header and "from matplotlib" not in header and "unsplit_tf.plots" not in header


def test_defense_runs_in_the_store_get_tables_figures_and_a_summary_of_what_stops_what(tmp_path):
    store = ResultStore(tmp_path)
    base = InversionCell("f_mnist", "fake", 2, targets=2)
    settings = [(DefenseSetting("gaussian_noise", 1.0), 0.80, 0.1), (DefenseSetting("gaussian_noise", 0.5), 0.84, 0.05),
                (DefenseSetting("nopeek", 3.0), 0.83, 0.2)]
    runs = [inversion_run(base, mse=0.02)]
    runs += [inversion_run(InversionCell("f_mnist", "fake", 2, defense, targets=2), mse=mse, ssim=0.1, accuracy=accuracy)
             for defense, accuracy, mse in settings]  # SSIM 0.1: below the mean image's 0.2
    label_base = LabelCell("f_mnist", "fake", samples=512, batch_size=64, epochs=2, train_samples=None)
    runs += [label_run(label_base), label_run(LabelCell("f_mnist", "fake", defense=DefenseSetting("gradient_noise", 2.0),
                                                        samples=512, batch_size=64, epochs=2, train_samples=None),
                                              accuracy=0.2, model_accuracy=0.8)]
    for run in runs:
        store.save(run)
    report = write_report(store).read_text()
    rows = [line for line in report.splitlines() if line.startswith("| gaussian noise")]
    assert [row.split(" | ")[1] for row in rows] == ["0.5", "1"]  # ordered by strength
    assert "| gradient noise | 2 | 80.0 % | 20.0 % | 20.0 % | 20.0 % | 0.500 |" in report
    for name in ("defenses_inversion_1.png", "defenses_labels_1.png", "defenses_reconstructions_1.png"):
        assert (tmp_path / name).stat().st_size > 1000 and f"({name})" in report
    summary = report.split("\n\n")[1]
    assert "nopeek at strength 3 (costing 3.0 points of accuracy)" in summary  # MSE 0.2 > the mean image's 0.088
    assert "gaussian noise at strength 1 (costing 6.0 points of accuracy)" in summary  # 0.5 still leaks (0.05)
    assert "gradient noise at strength 2 (costing 5.0 points of accuracy)" in summary
    assert "noise stddev / the example's RMS activation" in report  # the registry's strength meanings


def test_the_report_shows_no_folder_of_the_machine_a_run_happened_on():
    from unsplit_tf.reporting.document import portable

    command = "unsplit-tf sweep --data-dir mnist=/home/me/data/mnist_5k.npz --results /tmp/run/results"
    assert portable(command) == "unsplit-tf sweep --data-dir mnist=DIR/mnist_5k.npz --results DIR/results"
    assert portable("IDX files in /usr/share/datasets/fashion-mnist") == "IDX files in DIR/fashion-mnist"
    assert portable("x/y shuffled, 4000/1000 held out") == "x/y shuffled, 4000/1000 held out"
