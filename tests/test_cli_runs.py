"""The verbs end to end on tiny synthetic data and budgets: the files they write, strict JSON, Ctrl-C, TensorBoard."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from cli_helpers import run_verb, tiny_npz

TINY_ATTACK = ["--restarts", "1", "--main-iters", "2", "--input-iters", "2", "--model-iters", "2", "--targets", "3",
               "--polish-iters", "10", "--refit-iters", "10"]


def strict_json(path: Path) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def common(tmp_path) -> list[str]:
    return ["--data-dir", str(tiny_npz(tmp_path / "tiny.npz")), "--cache-dir", str(tmp_path / "cache")]


def test_invert_writes_the_usual_files_and_strict_json(tmp_path, common, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_verb("invert", [*common, "--epochs", "1", *TINY_ATTACK, "--out", str(out),
                                          "--tensorboard", str(tmp_path / "board")], capsys)
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"grid.png", "losses.png", "metrics.json", "reconstructions.npz", "clone.keras"}
    record = strict_json(out / "metrics.json")
    assert record["kind"] == "inversion" and len(record["evaluations"][0]["reconstruction"]["mse"]) == 3
    assert "the dataset-mean image" in stdout  # the summary says whether the attack beat it
    assert list((tmp_path / "board").glob("events.out.tfevents.*"))
    assert "\r" not in stdout and "\b" not in stdout

    code, _, err = run_verb("invert", [*common, "--epochs", "1", *TINY_ATTACK, "--out", str(out)], capsys)
    assert code == 2 and "already holds a finished run" in err  # never overwritten silently
    code, _, _ = run_verb("invert", [*common, "--epochs", "1", *TINY_ATTACK, "--out", str(out), "--overwrite"], capsys)
    assert code == 0


def test_invert_with_observations_attacks_the_stream_and_writes_its_sample(tmp_path, common, capsys):
    import numpy as np

    out = tmp_path / "run"
    preset_restarts = TINY_ATTACK[2:]  # without "--restarts 1": the stream preset's 3
    code, stdout, err = run_verb("invert", [*common, "--epochs", "1", *preset_restarts, "--observations", "20", "--linear-start", "1",
                                            "--out", str(out)], capsys)
    assert code == 0, err
    assert "the clone's ReLUs and max pools (those it has) blended in from linear ones over its first 1 round" in stdout
    assert "stream" in stdout and "the last 20 training examples observed" in stdout and "observed sample (20 train images)" in stdout
    assert ("3 restarts kept by matching+agreement after 1 of 2 rounds, only the kept one running on (all run on to the end "
            "if no two agree by then)") in stdout  # the preset's screen
    apart = [float(v) for v in re.search(r"disagreement ([\d. /]+)\)", stdout).group(1).split(" / ")]
    when = "at the end (no two agreed after round 1)" if min(apart) > 0.9 else "after 1 of 2 rounds, only the kept one running on"
    assert f"ranks by matching loss and agreement {when} (matching loss" in stdout
    kept = int(re.search(r"restarts: kept (\d) of 3", stdout).group(1)) - 1
    assert (out / "observed_grid.png").exists()
    saved = np.load(out / "reconstructions.npz")
    assert saved["observed_reconstructions"].shape == (20, 28, 28, 1) and len(set(saved["observed_indices"].tolist())) == 20
    record = strict_json(out / "metrics.json")
    assert record["threat_model"]["observed_examples"] == 20
    assert record["attack"]["preset"] == "stream" and "attack: stream preset" in stdout  # the flag picks the stream preset
    assert record["attack"]["config"]["prior"] == "black_background"  # Fashion-MNIST's pictures: objects on black
    assert (record["attack"]["config"]["restarts"], record["attack"]["config"]["keep"]) == (3, "matching+agreement")
    assert record["attack"]["config"]["screen"] == pytest.approx(1 / 3) and record["attack"]["config"]["linear_start"] == 1
    choice = record["attack"]["restarts"]  # how the kept restart was chosen, as printed
    assert (choice["kept"], choice["compared_after"], len(choice["matching_loss"])) == (kept, 2 if min(apart) > 0.9 else 1, 3)
    assert [round(v, 2) for v in choice["disagreement"]] == apart
    assert "objects on black" in record["threat_model"]["image_prior"]
    weight = record["attack"]["tv_weight"]  # the TV term's, scaled by the observations' mean square; as printed
    assert weight > 0 and f"TV weight {weight:.3g} (squared differences): 1.5 x the observations' mean square" in stdout


def test_a_screen_that_defers_says_so_and_its_progress_never_claims_done_early(tmp_path, common, capsys):
    code, stdout, err = run_verb("invert", [*common, "--epochs", "1", *TINY_ATTACK[2:], "--observations", "20",
                                            "--screen-defer", "0", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err  # every disagreement is above 0: the three restarts run on to the end
    assert "ranks by matching loss and agreement at the end (no two agreed after round 1)" in stdout
    attack_lines = [line for line in stdout.splitlines() if line.startswith("attack: ") and " picture-rounds (" in line]
    assert attack_lines[-1].startswith(f"attack: {23 * 3 * 2}/{23 * 3 * 2} picture-rounds (100%)")  # 3 restarts x 2 rounds each
    assert not any("(100%)" in line for line in attack_lines[:-1])
    assert strict_json(tmp_path / "run" / "metrics.json")["attack"]["config"]["screen_defer"] == 0


def test_the_stream_benchmark_prints_the_attack_time_beside_what_it_recovered(common, capsys):
    code, stdout, err = run_verb("benchmark", ["--only", "stream_result", common[0], common[1], "--observations", "20",
                                               "--depth", "1"], capsys)
    assert code == 0, err
    assert "20 observations, stream_fast preset" in stdout and "image-steps/s" in stdout and "stolen clone" in stdout
    deferred = "at the end (no two agreed after round 5)" in stdout  # what the run did, not the plan
    assert deferred != ("after 5 of 10 rounds, only the kept one running on" in stdout) and "if no two agree by then" not in stdout
    assert (" s each" in stdout) == deferred  # all restarts ran every round only when compared at the end


@pytest.mark.parametrize("flags, says", [(["--observations", "0"], "at least 1"), (["--observations", "5", "--mode", "batched"], "stream"),
                                         (["--observations", "65"], "more than the 64 training images"),
                                         (["--observations", "5", "--attack", "sdar"], "--observations set UnSplit"),
                                         (["--observations", "5", "--restarts", "2"], "needs at least 3 restarts"),
                                         (["--screen", "0.3"], "add --observations N"),
                                         (["--preset", "stream_fast"], "--preset stream_fast is made for the observation stream"),
                                         (["--screen-defer", "0.5"], "--screen-defer is about comparing restarts"),
                                         (["--observations", "5", "--screen-defer", "2"], "--screen-defer is a disagreement"),
                                         (["--observations", "5", "--screen", "1"], "a share of the rounds"),
                                         (["--observations", "5", "--linear-start", "-1"], "--linear-start must be at least 0"),
                                         (["--preset", "paper", "--linear-start", "2"], "sequential mode the clone carries over")])
def test_impossible_observations_are_one_clear_line_before_any_work(flags, says, tmp_path, common, capsys):
    code, _, err = run_verb("invert", [*common, *flags, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_ctrl_c_during_the_attack_writes_the_attacked_targets_and_exits_130(tmp_path, common, capsys, monkeypatch):
    import unsplit_tf.attacks.inversion.unsplit as unsplit

    original = unsplit._Attempt._optimise
    calls = []

    def interrupt_second_target(*args, **kwargs):  # sequential mode: one target per group
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(unsplit._Attempt, "_optimise", interrupt_second_target)
    out = tmp_path / "run"
    code, _, err = run_verb("invert", [*common, "--epochs", "1", *TINY_ATTACK, "--mode", "sequential", "--out", str(out)], capsys)
    assert code == 130 and "Traceback" not in err and "1 of 3 targets" in err
    record = strict_json(out / "metrics.json")
    assert record["interrupted"] is True
    assert len(record["evaluations"][0]["reconstruction"]["mse"]) == 1  # only the target attacked is scored


@pytest.mark.parametrize("mode", ["batched", "stream"])
def test_ctrl_c_during_an_attack_on_all_targets_at_once_says_after_which_round(mode, tmp_path, common, capsys, monkeypatch):
    import unsplit_tf.attacks.inversion.unsplit as unsplit

    def interrupt_after_the_first_round(*args, **kwargs):  # asked after each round whether to stop early
        raise KeyboardInterrupt

    monkeypatch.setattr(unsplit._EarlyStop, "__call__", interrupt_after_the_first_round)
    out = tmp_path / "run"
    observations = ["--observations", "8"] if mode == "stream" else ["--mode", mode]
    code, _, err = run_verb("invert", [*common, "--epochs", "1", *TINY_ATTACK, "--main-iters", "3", *observations,
                                       "--out", str(out)], capsys)
    assert code == 130 and "Traceback" not in err and "stopped after round 1 of 3" in err and "targets were" not in err
    assert strict_json(out / "metrics.json")["interrupted"] is True


def test_ctrl_c_during_training_exits_130_without_a_traceback(tmp_path, common, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("unsplit_tf.protocol.SplitTrainer.fit", interrupted)
    code, _, err = run_verb("invert", [*common, "--epochs", "1", *TINY_ATTACK, "--out", str(tmp_path / "run")], capsys)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_labels_writes_its_record_and_plot(tmp_path, common, capsys):
    out = tmp_path / "labels"
    code, stdout, _ = run_verb("labels", [common[0], common[1], "--samples", "12", "--batch-size", "4", "--observation", "weight_gradient", "--out", str(out),
                                          "--tensorboard", str(tmp_path / "board")], capsys)
    assert code == 0
    record = strict_json(out / "label_inference.json")
    assert record["kind"] == "labels" and record["samples"] == 12
    weight = next(m for m in record["methods"] if m["id"] == "weight_gradient")
    assert weight["accuracy"] == 1.0  # exact recovery from the weight gradient
    assert (out / "label_accuracy.png").stat().st_size > 0
    assert list((tmp_path / "board").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("depth", [8, 99])  # 8 leaves the server only a ReLU; 99 is past the net
def test_labels_at_an_impossible_depth_is_one_clear_line(depth, tmp_path, common, capsys):
    """`label_inference.py --depth 8` crashed on a depth its own error message recommended."""
    code, _, err = run_verb("labels", [common[0], common[1], "--samples", "4", "--depth", str(depth), "--observation", "weight_gradient",
                                       "--out", str(tmp_path / "l")], capsys)
    assert code == 2 and "Traceback" not in err and "depth" in err and "unpack" not in err


def test_sweep_then_report(tmp_path, common, capsys):
    results = tmp_path / "results"
    argv = [*common, "--datasets", "mnist", "--depths", "1", "--attack", "paper:batched", "--budget", "2x2+2",
            "--epochs", "1", "--targets", "2", "--label-samples", "4", "--results", str(results)]
    code, stdout, _ = run_verb("sweep", argv, capsys)
    assert code == 0 and "2 cells" in stdout
    commands = {strict_json(path)["command"] for path in (results / "cells").glob("*.json")}
    assert commands == {"unsplit-tf sweep " + shlex.join(argv)}  # the verb once, then its flags as typed
    code, stdout, _ = run_verb("sweep", argv, capsys)
    assert code == 0 and stdout.count("done before, skipped") == 2
    code, _, _ = run_verb("report", ["--results", str(results)], capsys)
    assert code == 0 and (results / "REPORT.md").is_file()


def test_sweep_runs_stream_cells_on_the_observations_axis(tmp_path, common, capsys):
    argv = [*common, "--datasets", "mnist", "--depths", "1", "--budget", "1x2+2", "--epochs", "1", "--targets", "2",
            "--label-samples", "0", "--results", str(tmp_path / "r")]
    code, _, err = run_verb("sweep", [*argv, "--observations", "10"], capsys)
    assert code == 2 and "stream:stream" in err
    code, _, err = run_verb("sweep", [*argv, "--attack", "stream_fast:stream"], capsys)  # the targets alone
    assert code == 2 and "--attack stream_fast:stream is made for the observation stream" in err
    code, stdout, err = run_verb("sweep", [*argv, "--attack", "stream:stream", "--attack", "tuned:batched", "--observations", "10",
                                           "--polish-iters", "5", "--refit-iters", "7", "--tv-norm", "l1", "--lambda-tv", "0.5"],
                            capsys)
    assert code == 0, err
    records = sorted((strict_json(path) for path in (tmp_path / "r" / "cells").glob("*.json")),
                     key=lambda r: r["threat_model"]["observed_examples"])
    assert [r["threat_model"]["observed_examples"] for r in records] == [0, 10]  # batched, and stream on its axis
    tuned, stream = (record["attack"]["config"] for record in records)
    assert (stream["restarts"], stream["keep"], stream["main_iters"]) == (3, "matching+agreement", 1)  # the preset, the budget
    assert [(c["polish_iters"], c["refit_iters"], c["tv_norm"], c["lambda_tv"]) for c in (tuned, stream)] == [(5, 7, "l1", 0.5)] * 2
    weights = [record["attack"]["tv_weight"] for record in records]  # the TV term's weight each attack used
    assert weights[0] == tuned["lambda_tv"] and 0 < weights[1] != stream["lambda_tv"]  # stream's, scaled by the observations
    code, _, err = run_verb("sweep", [*argv, "--family", "sdar", "--polish-iters", "5"], capsys)
    assert code == 2 and "--polish-iters: settings of the unsplit attack; add unsplit to --family" in err


def test_invert_on_a_saved_model_says_its_stream_is_a_random_draw_seen_through_the_final_client(tmp_path, common, capsys):
    from models_for_tests import batch_norm_residual_model

    batch_norm_residual_model(width=4).save(tmp_path / "mine.keras")
    out = tmp_path / "run"
    code, stdout, err = run_verb("invert", [*common, "--dataset", "mnist", "--model", str(tmp_path / "mine.keras"), "--layer",
                                            "stem_relu", *TINY_ATTACK, "--observations", "12", "--out", str(out)], capsys)
    assert code == 0, err
    assert "a random draw of 12 training examples observed" in stdout and "the last 12" not in stdout  # no training watched
    assert strict_json(out / "metrics.json")["threat_model"]["observations"].startswith(
        "the final client's smashed data of a random draw of 12 training examples")


def test_sweep_attacks_a_users_saved_model_at_the_named_layers(tmp_path, common, capsys):
    from models_for_tests import batch_norm_residual_model

    batch_norm_residual_model(width=4).save(tmp_path / "mine.keras")
    results = tmp_path / "r"
    argv = [*common, "--datasets", "mnist", "--model", str(tmp_path / "mine.keras"), "--layers", "block1_out", "stem_relu",
            "--attack", "paper:batched", "--budget", "1x2+2", "--targets", "2", "--results", str(results)]
    code, stdout, err = run_verb("sweep", argv, capsys)
    assert code == 0, err
    records = [strict_json(path) for path in (results / "cells").glob("*.json")]  # no label cells with --model
    assert sorted(r["victim"]["cut_layer"] for r in records) == ["block1_out", "stem_relu"]
    assert all(r["victim"]["model"]["kind"] == "file" and r["victim"]["training"] is None for r in records)
    code, _, _ = run_verb("report", ["--results", str(results)], capsys)
    report = (results / "REPORT.md").read_text()
    assert code == 0 and "`block1_out`" in report and "Model mine.keras (a saved model, attacked as saved)" in report


def test_sweep_refuses_an_impossible_grid_before_running_any_cell(tmp_path, common, capsys):
    code, _, err = run_verb("sweep", [*common, "--datasets", "mnist", "--depths", "1", "99", "--label-samples", "0",
                                      "--results", str(tmp_path / "r")], capsys)
    assert code == 2 and "99" in err and "Traceback" not in err
    assert not list((tmp_path / "r").glob("cells/*.json"))


def test_report_without_results_says_what_to_run(tmp_path, capsys):
    code, _, err = run_verb("report", ["--results", str(tmp_path / "none")], capsys)
    assert code == 1 and "unsplit-tf sweep" in err


def test_labels_interrupted_mid_training_keeps_the_steps_seen(tmp_path, common, capsys, monkeypatch):
    from unsplit_tf.protocol import UShapedTrainer

    real_fit = UShapedTrainer.fit

    def fit_interrupted_after_three_steps(self, x, y=None, *, on_step=None, **kwargs):
        def step(record):
            on_step(record)
            if record.step == 3:
                raise KeyboardInterrupt

        return real_fit(self, x, y, on_step=step, **kwargs)

    monkeypatch.setattr(UShapedTrainer, "fit", fit_interrupted_after_three_steps)
    out = tmp_path / "stopped"
    code, _, err = run_verb("labels", [common[0], common[1], "--samples", "40", "--batch-size", "4", "--observation", "weight_gradient",
                                       "--out", str(out)], capsys)
    assert code == 130 and "Traceback" not in err
    record = strict_json(out / "label_inference.json")
    assert record["interrupted"] is True and record["samples"] == 12  # 3 steps of 4 examples, all attacked
    assert next(m for m in record["methods"] if m["id"] == "weight_gradient")["accuracy"] == 1.0
