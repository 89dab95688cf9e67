"""`defend --attack/--aux`: the activation defenses as cells of each attack family, refused flags before any work."""

import pytest

from cli_helpers import run_verb, tiny_npz
from unsplit_tf import defaults
from unsplit_tf.records import NO_DEFENSE, DefenseSetting
from unsplit_tf.sweep import InversionCell

NOPEEK = DefenseSetting("nopeek", 3.0)


@pytest.fixture
def planned(tmp_path, monkeypatch):
    """Runs `defend ARGV` on tiny data up to its grid; returns the cells it would run (nothing trains)."""
    cells = []
    monkeypatch.setattr("unsplit_tf.cli._grid.run_grid", lambda grid, *args, **kwargs: (cells.extend(grid), (None, None))[1])
    monkeypatch.setattr("unsplit_tf.reporting.write_report", lambda store: "REPORT.md")
    common = ["--dataset", "mnist", "--data-dir", str(tiny_npz(tmp_path / "tiny.npz")), "--results", str(tmp_path / "results"),
              "--cache-dir", str(tmp_path / "cache")]

    def plan(argv: list[str], capsys) -> list:
        code, _, err = run_verb("defend", [*common, *argv], capsys)
        assert code == 0, err
        return list(cells)

    return plan


def test_defend_attacks_with_unsplit_by_default(planned, capsys):
    cells = planned(["--defense", "nopeek", "--nopeek-weights", "3"], capsys)
    assert [(cell.attack, cell.aux, cell.defense) for cell in cells] == [("unsplit", 0, NO_DEFENSE), ("unsplit", 0, NOPEEK)]
    assert {cell.polish_iters for cell in cells} == {None}  # the preset's
    polished = planned(["--defense", "nopeek", "--nopeek-weights", "3", "--polish-iters", "5", "--tv-norm", "l1",
                        "--lambda-tv", "0.2"], capsys)[len(cells):]
    assert [(c.polish_iters, c.tv_norm, c.lambda_tv) for c in (cell.unsplit_config() for cell in polished)] == [(5, "l1", 0.2)] * 2


def test_defend_sets_each_familys_settings_on_its_cells_and_refuses_those_of_an_absent_family(planned, capsys):
    cells = planned(["--attack", "unsplit", "sdar", "--defense", "nopeek", "--nopeek-weights", "3", "--tv-norm", "l1",
                     "--simulator-steps", "5", "--simulator-lr", "3e-3", "--lambda-ssim", "0", "--feature-memory", "256",
                     "--mmd-class-width", "0.5"], capsys)
    configs = {cell.attack: cell.attack_config() for cell in cells if cell.kind == "inversion"}
    sdar = configs["sdar"]
    assert (configs["unsplit"].tv_norm, sdar.simulator_steps, sdar.simulator_lr, sdar.lambda_ssim) == ("l1", 5, 3e-3, 0.0)
    assert (sdar.feature_memory, sdar.mmd_class_width) == (256, 0.5)
    code, _, err = run_verb("defend", ["--attack", "sdar", "--tv-norm", "l1", "--quick"], capsys)
    assert code == 2 and "--tv-norm: settings of the unsplit attack; add unsplit to --attack" in err
    code, _, err = run_verb("defend", ["--attack", "unsplit", "--simulator-steps", "0", "--quick"], capsys)
    assert code == 2 and "add sdar to --attack" in err
    code, _, err = run_verb("defend", ["--attack", "sdar", "--simulator-lr", "0", "--quick"], capsys)
    assert code == 2 and "--simulator-lr must be more than 0, got 0" in err


def test_the_grid_verbs_have_a_flag_for_every_setting_a_cell_may_set():
    from unsplit_tf.cli.sweep import SETTING_FLAGS
    from unsplit_tf.sweep import SETTING_FIELDS

    assert list(SETTING_FLAGS) == [name for names in SETTING_FIELDS.values() for name in names]


def test_defend_attack_sdar_aux_builds_sdar_cells_beside_unsplits_and_the_label_side_once(planned, capsys):
    cells = planned(["--attack", "unsplit", "sdar", "--aux", "500", "--defense", "nopeek", "max_norm_noise",
                     "--nopeek-weights", "3"], capsys)
    inversion = [(cell.attack, cell.aux, cell.defense) for cell in cells if cell.kind == "inversion"]
    assert inversion == [("unsplit", 0, NO_DEFENSE), ("unsplit", 0, NOPEEK), ("sdar", 500, NO_DEFENSE), ("sdar", 500, NOPEEK)]
    assert [cell.defense.name for cell in cells if cell.kind == "labels"] == ["none", "max_norm_noise"]
    sdar = next(cell for cell in cells if cell.kind == "inversion" and cell.attack == "sdar")
    # the fields a sweep's SDAR cell has, so `sweep --family sdar` and `defend --attack sdar` share their undefended cell
    assert sdar.key == InversionCell(sdar.dataset, sdar.data_tag, defaults.DEPTH, attack="sdar", aux=500).key
    (inverse,) = [cell for cell in planned(["--attack", "inverse_network", "--defense", "none"], capsys)
                  if cell.kind == "inversion" and cell.attack == "inverse_network"]
    assert inverse.aux == defaults.AUX


@pytest.mark.parametrize("argv, message", [
    (["--aux", "100"], "--aux is for --attack sdar / inverse_network"),
    (["--attack", "sdar", "--aux", "1"], "--aux must be at least 2 images"),
    (["--attack", "gan"], "invalid choice: 'gan'"),
    (["--refit-iters", "-1"], "--refit-iters must be 0 or more"),
    (["--preset", "stream"], "--preset stream is made for the observation stream"),  # defend attacks the targets alone
    (["--preset", "stream_fast", "--attack", "unsplit", "sdar"], "use --preset tuned (the default) or paper"),
])
def test_bad_attack_flags_are_refused_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("unsplit_tf.cli.defend.load_data", lambda *args: pytest.fail("the command went on to load data"))
    code, _, err = run_verb("defend", [*argv, "--results", str(tmp_path / "results")], capsys)
    assert code == 2 and message in err
