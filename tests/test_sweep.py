import json
import os
import socket

import numpy as np
import pytest

from fake_runs import inversion_run
from unsplit_tf.data import Dataset, dataset_fingerprint
from unsplit_tf.defenses import DEFENSES, defenses_of
from unsplit_tf.records import NO_DEFENSE, DefenseSetting, InversionRun, LabelRun
from unsplit_tf.reporting import write_report
from unsplit_tf.store import ResultStore
from unsplit_tf.sweep import (
    DEFAULT_BUDGET,
    Budget,
    CellRunner,
    InversionCell,
    LabelCell,
    defense_cells,
    inversion_cells,
    run_cells_serial,
    run_sweep,
    validate_grid,
)

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
    return inversion_cells(tiny_dataset(), depths, [("paper", "sequential")], seeds=[seed], budget=budget, epochs=1, targets=2)


class CountingRunner:
    """A fake runner: records which cells it ran; raises KeyboardInterrupt on call number `interrupt_at`."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.ran: list[str] = []
        self.interrupt_at = interrupt_at

    def __call__(self, cell) -> InversionRun:
        if self.interrupt_at is not None and len(self.ran) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.ran.append(cell.key)
        return inversion_run(cell, mse=0.001 * len(self.ran))


def test_budget_reads_both_spellings_and_says_how_to_fix_a_bad_one():
    assert Budget.parse("100x100+100") == Budget.parse("100x(100+100)") == Budget(100, 100, 100)
    assert str(Budget(20, 10, 5)) == "20x(10+5)"
    with pytest.raises(ValueError, match="MAINxINPUT\\+MODEL"):
        Budget.parse("100 rounds")


def test_without_a_budget_a_stream_preset_keeps_its_own_and_the_others_take_the_sweeps():
    from unsplit_tf.attacks.inversion import preset

    attacks = [("stream", "stream"), ("tuned", "stream"), ("stream", "batched"), ("tuned", "batched")]
    cells = inversion_cells(tiny_dataset(), [1], attacks)
    stream = preset("stream")
    assert [cell.budget for cell in cells] == [Budget(stream.main_iters, stream.input_iters, stream.model_iters)] + [DEFAULT_BUDGET] * 3
    assert cells[0].budget != DEFAULT_BUDGET
    assert {cell.budget for cell in inversion_cells(tiny_dataset(), [1], attacks, budget=TINY_BUDGET)} == {TINY_BUDGET}


def test_a_second_run_skips_finished_cells(tmp_path):
    store, cells = ResultStore(tmp_path), plan()
    first = CountingRunner()
    run_sweep(cells, store, first)
    assert first.ran == [cell.key for cell in cells]

    again, events = CountingRunner(), []
    result = run_sweep(cells, store, again, on_event=events.append)
    assert again.ran == []
    assert [event.status for event in events] == ["skipped"] * 3
    assert [run.headline.reconstruction.mean_mse for run in result.runs] == [0.001, 0.002, 0.003]  # the stored runs


def test_an_interrupted_sweep_keeps_finished_cells_and_resumes_where_it_stopped(tmp_path):
    store, cells = ResultStore(tmp_path), plan()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, store, CountingRunner(interrupt_at=2))
    assert [store.has(cell.key) for cell in cells] == [True, False, False]
    assert not list(store.cells_dir.glob("*.claim"))  # the interrupted sweep released its claims

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
    other_data = inversion_cells(tiny_dataset(seed=1), [1], [("paper", "sequential")], budget=TINY_BUDGET, epochs=1, targets=2)
    assert other_data[0].key != plan()[0].key
    assert len(store.runs()) == 9


def test_a_cell_key_is_readable_and_names_every_axis():
    cell = InversionCell("f_mnist", "abc", 3, DefenseSetting("nopeek", 3.0), preset="paper", mode="sequential",
                         budget=TINY_BUDGET, epochs=1, seed=4, targets=5)
    assert cell.key == "inversion-f_mnist-ref-d3-nopeek3-unsplit-paper-sequential-1x2+2-e1-b64-s4-t5-abc"
    label = LabelCell("f_mnist", "abc", defense=DefenseSetting("gradient_noise", 0.5), samples=12, batch_size=4)
    assert label.key == "labels-f_mnist-d2-gradient_noise0.5-all-n12-b4-e1-trobs-k1-s0-abc"


def test_cells_check_their_parameters():
    tag = dataset_fingerprint(tiny_dataset())
    with pytest.raises(ValueError, match="preset"):
        InversionCell("f_mnist", tag, 1, preset="fastest")
    with pytest.raises(ValueError, match="mode"):
        InversionCell("f_mnist", tag, 1, mode="parallel")
    with pytest.raises(ValueError, match="targets"):
        InversionCell("f_mnist", tag, 1, targets=0)
    with pytest.raises(ValueError, match="unknown attack"):
        InversionCell("f_mnist", tag, 1, attack="magic")
    with pytest.raises(ValueError, match="protects the gradients, not the activations"):
        InversionCell("f_mnist", tag, 1, DefenseSetting("gradient_noise", 1.0))
    with pytest.raises(ValueError, match="nopeek needs a strength"):
        InversionCell("f_mnist", tag, 1, DefenseSetting("nopeek"))
    with pytest.raises(ValueError, match="unknown defense 'noise'"):
        LabelCell("f_mnist", tag, defense=DefenseSetting("noise", 1.0))


def test_the_whole_grid_is_validated_before_any_cell_runs(tmp_path):
    data = tiny_dataset()
    cells = plan(depths=(1, 99)) + [LabelCell("f_mnist", dataset_fingerprint(data), depth=42)]
    cells.append(InversionCell("f_mnist", dataset_fingerprint(data), 1, targets=31, budget=TINY_BUDGET))
    runner = CountingRunner()
    with pytest.raises(ValueError) as error:
        run_sweep(cells, ResultStore(tmp_path), runner, datasets={"f_mnist": data})
    assert runner.ran == [] and not ResultStore(tmp_path).keys()  # depth 1 did not run
    message = str(error.value)
    assert message.startswith("3 of 4 cells cannot run, nothing was run")
    assert "-d99-" in message and "labels-f_mnist-d42" in message and "asks for 31 targets but f_mnist has 30" in message
    with pytest.raises(ValueError, match="fingerprint"):
        validate_grid(plan(), {"f_mnist": tiny_dataset(seed=1)})


def test_a_cell_claimed_by_another_live_sweep_is_left_to_it(tmp_path):
    store, cells = ResultStore(tmp_path), plan()
    store.cells_dir.mkdir(parents=True)
    other = {"pid": os.getppid(), "host": socket.gethostname(), "since": 0}  # a live process that is not us
    store.claim_path(cells[1].key).write_text(json.dumps(other))
    runner, events = CountingRunner(), []
    result = run_sweep(cells, store, runner, on_event=events.append)
    assert runner.ran == [cells[0].key, cells[2].key]
    assert result.busy == [cells[1]] and len(result.runs) == 2
    (busy,) = [e for e in events if e.status == "busy"]
    assert busy.cell == cells[1] and f"pid {os.getppid()}" in busy.holder


def test_two_sweeps_on_one_folder_share_the_grid_instead_of_skipping_it_all(tmp_path):
    store, cells = ResultStore(tmp_path), plan()

    class OtherSweepMeanwhile(CountingRunner):
        """While this sweep runs its first cell, another process claims the next one."""

        def __call__(self, cell):
            if not self.ran:
                store.claim_path(cells[1].key).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
            return super().__call__(cell)

    runner = OtherSweepMeanwhile()
    result = run_sweep(cells, store, runner)
    assert runner.ran == [cells[0].key, cells[2].key] and result.busy == [cells[1]]  # claimed when reached, not up front


def test_the_serial_backend_skips_what_is_done_and_saves_each_cell_as_it_finishes():
    cells, saved, events = plan(), [], []
    run_cells_serial(cells, CountingRunner(), done=lambda cell: cell is cells[0], save=lambda cell, run: saved.append(run.key),
                     on_event=events.append)
    assert saved == [cells[1].key, cells[2].key]
    assert [(e.status, e.index) for e in events] == [("started", 2), ("finished", 2), ("started", 3), ("finished", 3)]


def test_defenses_are_an_axis_of_cells_each_side_with_its_undefended_cell():
    data = tiny_dataset()
    cells = defense_cells(data, [DefenseSetting("nopeek", 1.0), DefenseSetting("gaussian_noise", 0.5),
                                 DefenseSetting("max_norm_noise")], depth=2, inversion={"budget": TINY_BUDGET})
    assert [(cell.kind, cell.defense) for cell in cells] == [
        ("inversion", NO_DEFENSE), ("inversion", DefenseSetting("nopeek", 1.0)), ("inversion", DefenseSetting("gaussian_noise", 0.5)),
        ("labels", NO_DEFENSE), ("labels", DefenseSetting("max_norm_noise"))]
    assert len({cell.key for cell in cells}) == len(cells)
    assert cells[3].methods == "activation_gradient" and cells[3].train_samples is None  # trained on all the data
    everything = defense_cells(data)
    assert len(everything) == 2 + sum(len(one.default_strengths) for one in DEFENSES.values())
    assert {cell.defense.name for cell in everything if cell.kind == "labels"} == {"none", *defenses_of("gradients")}


def test_cells_and_the_runner_pickle_for_other_backends(tmp_path):
    import pickle

    cells = plan() + defense_cells(tiny_dataset(), [DefenseSetting("max_norm_noise")])
    assert pickle.loads(pickle.dumps(cells)) == cells
    runner = pickle.loads(pickle.dumps(CellRunner({"f_mnist": tiny_dataset()}, cache_dir=tmp_path)))
    assert runner.datasets["f_mnist"].name == "f_mnist"


def test_the_real_runner_stores_typed_records_and_images_the_report_reads(tmp_path):
    data = tiny_dataset()
    store = ResultStore(tmp_path / "results")
    cells = inversion_cells(data, [2], [("tuned", "batched")], budget=TINY_BUDGET, epochs=1, targets=2)
    cells.append(LabelCell("f_mnist", dataset_fingerprint(data), 2, samples=12, batch_size=4))
    runner = CellRunner({"f_mnist": data}, cache_dir=tmp_path / "models")
    runs = run_sweep(cells, store, runner, command="pytest").runs

    inversion, labels = runs
    assert isinstance(inversion, InversionRun) and isinstance(labels, LabelRun)
    assert (inversion.attack.config["main_iters"], inversion.attack.config["input_iters"]) == (1, 2)
    assert inversion.headline.targets.indices == (0, 1)  # the first test image of classes 0 and 1
    assert (inversion.victim.cut_layer, inversion.victim.depth) == ("pool1", 2)
    assert inversion.attack.config["seed"] == 0  # clone_architecture keeps the clone off the client's initial weights
    assert 0 <= inversion.clone.clone_accuracy <= 1 and inversion.victim.training.seconds > 0
    assert inversion.command == "pytest" and inversion.timings.attack_seconds > 0
    assert inversion.arrays["originals"].dtype == np.uint8 and inversion.arrays["reconstructions"].shape == (2, 28, 28, 1)
    assert 0 <= inversion.clone_before_attack.clone_accuracy <= 1
    assert {method.id for method in labels.methods} >= {"authors", "activation_gradient", "norm_scoring"}
    assert all(method.evaluated + method.known == 12 for method in labels.methods)
    for run in runs:
        json.dumps(run.to_dict(), allow_nan=False)  # every record is plain JSON

    report = write_report(store).read_text()
    assert "| 2 | `pool1` | tuned/batched |" in report and "### Label inference" in report


def test_an_attack_interrupted_mid_cell_stores_nothing(tmp_path):
    data = tiny_dataset()
    store = ResultStore(tmp_path)
    cell = inversion_cells(data, [1], [("paper", "batched")], budget=Budget(3, 2, 2), epochs=1, targets=2)[0]

    def press_ctrl_c(report):
        raise KeyboardInterrupt

    runner = CellRunner({"f_mnist": data}, cache_dir=tmp_path / "models", on_round=press_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_sweep([cell], store, runner)
    assert not store.has(cell.key) and not store.arrays_path(cell.key).exists()


def test_the_runner_refuses_cells_planned_for_other_data(tmp_path):
    cell = plan()[0]
    runner = CellRunner({"f_mnist": tiny_dataset(seed=1)}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fingerprint"):
        runner(cell)


def test_stream_cells_carry_their_observations_and_refuse_them_elsewhere():
    from unsplit_tf.sweep import InversionCell

    cell = InversionCell("f_mnist", "tag", 3, mode="stream", observations=1000)
    assert "-o1000-" in cell.key and "1000 observed" in cell.describe()
    assert InversionCell("f_mnist", "tag", 3, mode="stream").key != cell.key
    with pytest.raises(ValueError, match="stream mode"):
        InversionCell("f_mnist", "tag", 3, mode="batched", observations=10)


def test_a_presets_restarts_are_part_of_the_cell_key():
    from unsplit_tf.attacks.inversion import preset
    from unsplit_tf.sweep import InversionCell

    assert preset("tuned").restarts == 3 and preset("paper").restarts == 1
    assert "-r3-" in InversionCell("f_mnist", "tag", 2, preset="tuned").key  # not the cells of one restart
    parts = InversionCell("f_mnist", "tag", 2, preset="paper").key.split("-")
    assert not any(part[0] == "r" and part[1:].isdigit() for part in parts)  # the keys of stored paper cells stand
    stream = InversionCell("f_mnist", "tag", 3, preset="stream", mode="stream", observations=1000).key
    assert "-r3-sc0.33d0.90-rf1000-rc4x3-tv1.5o-fr3000x0.01-" in stream  # compared after a third of the rounds unless
    # none agree, the clone refit, 4 cycles of 3 refining passes, a TV weight per unit of the observations' mean square
    # and a longer, faster last refit
    assert "-tv" not in InversionCell("f_mnist", "tag", 2, preset="tuned").key  # an absolute TV weight: stored keys stand
    assert "-rf" not in InversionCell("f_mnist", "tag", 2, preset="tuned").key  # no refit: the stored cells' keys stand
    assert "-rc" not in InversionCell("f_mnist", "tag", 2, preset="tuned").key
    assert "-sc" not in InversionCell("f_mnist", "tag", 2, preset="tuned").key
    one_round = InversionCell("f_mnist", "tag", 3, preset="stream", mode="stream", observations=1000, budget=Budget(1, 2, 2))
    polished = InversionCell("f_mnist", "tag", 2, preset="tuned", polish_iters=5, refit_iters=7, refine_cycles=2)
    assert "-rf7-rc2x3-po5-" in polished.key  # steps the preset did not choose
    assert "polish iters 5, refit iters 7, refine cycles 2" in polished.describe()
    unrefined = InversionCell("f_mnist", "tag", 3, preset="stream", mode="stream", refine_cycles=0)
    assert unrefined.key.endswith("-rf1000-tv1.5o-fr3000x0.01-tag")  # not the stream preset's cells from before the refinement
    unfitted = InversionCell("f_mnist", "tag", 3, preset="stream", mode="stream", refit_iters=0, refine_cycles=0)
    assert unfitted.key.endswith("-tv1.5o-tag")  # no refit: no last refit either
    fast = InversionCell("f_mnist", "tag", 3, preset="stream_fast", mode="stream", observations=1000).key
    assert "-rf500-rc3x2-tv1.5o-tag" in fast  # stream_fast's last refit is its other refits': its stored cells stand
    assert polished.unsplit_config().polish_iters == 5
    assert InversionCell("f_mnist", "tag", 2, preset="tuned", polish_iters=2000).key == InversionCell("f_mnist", "tag", 2).key
    with pytest.raises(ValueError, match="polish_iters is a setting of the unsplit attack"):
        InversionCell("f_mnist", "tag", 2, attack="sdar", aux=10, polish_iters=5)
    assert one_round.unsplit_config().screen_rounds == 1 and "-sc" not in one_round.key  # the key says what runs: no screen


def test_a_cells_tv_term_is_the_presets_unless_set_and_its_key_says_when_it_is_not():
    tuned = InversionCell("f_mnist", "tag", 2, preset="tuned")
    l1 = InversionCell("f_mnist", "tag", 2, preset="tuned", tv_norm="l1", lambda_tv=0.5)
    assert (l1.unsplit_config().tv_norm, l1.unsplit_config().lambda_tv) == ("l1", 0.5)
    assert l1.key.endswith("-tv0.5-l1-tag") and "-tv" not in tuned.key
    assert "tv norm l1, lambda tv 0.5" in l1.describe()
    assert InversionCell("f_mnist", "tag", 2, preset="tuned", tv_norm="squared", lambda_tv=0.1).key == tuned.key
    stream = InversionCell("f_mnist", "tag", 3, preset="stream", mode="stream", tv_norm="l1", lambda_tv=0.675)
    assert stream.key.endswith("-tv0.675o-l1-fr3000x0.01-tag")  # the weight stays on the preset's scale
    with pytest.raises(ValueError, match="cell: tv_norm must be one of squared, l1"):
        InversionCell("f_mnist", "tag", 2, tv_norm="l2")
    with pytest.raises(ValueError, match="cell: lambda_tv"):
        InversionCell("f_mnist", "tag", 2, lambda_tv=-1.0)
    with pytest.raises(ValueError, match="tv_norm is a setting of the unsplit attack"):
        InversionCell("f_mnist", "tag", 2, attack="sdar", aux=10, tv_norm="l1")


def test_an_sdar_cells_settings_are_the_defaults_unless_set_and_its_key_says_when_they_are_not():
    sdar = InversionCell("f_mnist", "tag", 6, attack="sdar", aux=600)
    tuned = InversionCell("f_mnist", "tag", 6, attack="sdar", aux=600, simulator_steps=20, lambda_ssim=0.0)
    assert (tuned.attack_config().simulator_steps, tuned.attack_config().lambda_ssim) == (20, 0.0)
    assert sdar.key.endswith("-aux600-ss3-mc0.5-tag") and tuned.key.endswith("-aux600-ss20-mc0.5-ls0-tag")
    faster = InversionCell("f_mnist", "tag", 6, attack="sdar", aux=600, simulator_lr=3e-3)
    assert faster.attack_config().simulator_lr == 3e-3 and faster.key.endswith("-aux600-ss3-mc0.5-sl0.003-tag")
    aligned = InversionCell("f_mnist", "tag", 6, attack="sdar", aux=600, feature_memory=512, mmd_class_width=0.5)
    assert aligned.key.endswith("-aux600-ss3-mc0.5-fm512-tag")
    blind = InversionCell("f_mnist", "tag", 6, attack="sdar", aux=600, mmd_class_width=0.0)
    assert blind.key.endswith("-aux600-ss3-tag")  # class-blind: the key of every cell before the class-wise default
    assert "sdar aux 600, simulator steps 20, lambda ssim 0.0" in tuned.describe()
    assert InversionCell("f_mnist", "tag", 6, attack="sdar", aux=600, simulator_steps=3, lambda_ssim=0.5).key == sdar.key
    with pytest.raises(ValueError, match="cell: simulator_steps"):
        InversionCell("f_mnist", "tag", 6, attack="sdar", aux=600, simulator_steps=0)
    with pytest.raises(ValueError, match="simulator_steps is a setting of the sdar attack, not of 'inverse_network'"):
        InversionCell("f_mnist", "tag", 6, attack="inverse_network", aux=600, simulator_steps=5)
