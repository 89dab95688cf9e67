"""The command-line front doors: flags, help, output checks, errors, exit codes, progress output.

Everything here runs in-process on tiny synthetic data (a .npz the test writes) or checks what
happens *before* any training, so it stays fast; tests/test_cli_runs.py runs the verbs end to end.
"""

from __future__ import annotations

import io
import json
import os
import re
import runpy
import socket
import sys
from pathlib import Path

import keras
import pytest

from cli_helpers import run_verb, tiny_npz

from unsplit_tf.cli import _common, main as cli_main
from unsplit_tf.cli._common import CliError, guarded
from unsplit_tf.cli._outputs import run_folder, writable_folder
from unsplit_tf.cli._progress import Progress, Scalars

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SHIMS = ("invert", "label_inference", "sweep", "report", "defend", "train", "benchmark", "benchmark_labels", "tune_preset")



@pytest.fixture
def no_work(monkeypatch):
    """Any data loading or run fails the test: what is checked must be refused before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command went on to load data or run")

    for verb in ("invert", "labels", "train", "sweep", "defend"):
        monkeypatch.setattr(f"unsplit_tf.cli.{verb}.load_data", refuse, raising=False)
    monkeypatch.setattr("unsplit_tf.runs.run_inversion", refuse)
    monkeypatch.setattr("unsplit_tf.runs.run_label_inference", refuse)


# ---------------------------------------------------------------- the command and its help


def test_top_level_help_lists_every_verb_without_tensorflow(capsys):
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in cli_main.VERBS)


def test_unknown_verb_suggests_the_closest(capsys):
    assert cli_main.main(["invrt"]) == 2
    assert "did you mean 'invert'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", list(cli_main.VERBS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main.main([verb, "--help"])
    assert stop.value.code == 0
    assert f"unsplit-tf {verb}" in capsys.readouterr().out


@pytest.mark.parametrize("script", SHIMS)
def test_every_script_has_help_and_does_no_work(script, monkeypatch, capsys):
    """`scripts/benchmark_labels.py --help` ran the whole benchmark before."""
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / f"{script}.py"), "--help"])
    monkeypatch.syspath_prepend(str(SCRIPTS))
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(SCRIPTS / f"{script}.py"), run_name="__main__")
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "examples attacked per second" not in out.split("\n\n")[-1]


# ---------------------------------------------------------------- defaults from parsed values only


def parse(verb: str, argv: list[str]):
    module = __import__(f"unsplit_tf.cli.{verb}", fromlist=["add_arguments"])
    return _common.parser_for(module).parse_args(argv)


def test_a_shortened_flag_counts_like_the_full_one():
    """`--quick --epoch 1` trained 2 epochs: the script looked for the literal text `--epochs`."""
    from unsplit_tf.cli.invert import attack_config

    args = parse("invert", ["--quick", "--epoch", "1"])
    assert _common.train_config(args, epochs=2).epochs == 1
    assert attack_config(args).main_iters == 20  # --quick still shortens the attack
    assert _common.train_config(parse("invert", ["--quick"]), epochs=2).epochs == 2


def test_the_main_command_defaults_to_the_strongest_preset_and_paper_is_the_authors():
    from unsplit_tf.attacks.inversion import PRESETS
    from unsplit_tf.cli._common import kept_restarts
    from unsplit_tf.cli.invert import attack_config

    assert attack_config(parse("invert", [])) == PRESETS["tuned"].replace(seed=0)
    paper = attack_config(parse("invert", ["--preset", "paper"]))
    assert paper == PRESETS["paper"] and (paper.lambda_l2, paper.main_iters, paper.box) == (1.0, 1000, None)
    stream = PRESETS["stream"].replace(seed=0, prior="black_background")  # the stream's own, with the data's prior
    assert attack_config(parse("invert", ["--observations", "10"])) == stream
    assert (stream.restarts, stream.keep) == (3, "matching+agreement")  # ranks by matching loss and agreement
    assert attack_config(parse("invert", ["--observations", "10", "--keep", "matching"])).keep == "matching"
    assert stream.tv_scale == "observations" and PRESETS["tuned"].tv_scale == "absolute"  # the TV weight's scale
    assert attack_config(parse("invert", ["--observations", "10", "--tv-scale", "absolute"])).tv_scale == "absolute"
    assert stream.tv_norm == "squared" and attack_config(parse("invert", ["--observations", "10", "--tv-norm", "l1"])).tv_norm == "l1"
    deep = attack_config(parse("invert", ["--observations", "10", "--preset", "stream_deep"]))  # past the second pool
    assert deep == stream.replace(linear_start=5, keep="matching", tv_norm="l1", lambda_tv=0.675, restarts=5)
    assert attack_config(parse("invert", ["--observations", "10", "--linear-start", "3"])).linear_start == 3
    assert stream.screen_may_defer and not deep.screen_may_defer  # kept by the matching loss alone, the screen never defers
    assert "if no two agree" in kept_restarts(stream) and kept_restarts(deep) == ("5 restarts kept by matching after 5 of 15 "
                                                                                  "rounds, only the kept one running on")
    tuned_stream = attack_config(parse("invert", ["--observations", "10", "--preset", "tuned"]))
    assert tuned_stream == PRESETS["tuned"].replace(mode="stream", prior="black_background")
    assert attack_config(parse("invert", ["--observations", "10", "--prior", "none"])).prior == "none"  # named: kept
    assert attack_config(parse("invert", ["--observations", "10", "--dataset", "cifar"])).prior == "none"  # photographs


def test_sdar_flags_reach_its_config_and_are_refused_for_the_other_attacks(capsys, no_work):
    from unsplit_tf.attacks.inversion import SDARConfig
    from unsplit_tf.cli.invert import attack_config

    sdar = ["--attack", "sdar"]
    assert attack_config(parse("invert", sdar)) == SDARConfig(seed=0)
    given = attack_config(parse("invert", [*sdar, "--simulator-steps", "20", "--simulator-lr", "3e-3", "--lambda-ssim", "0",
                                           "--feature-memory", "512", "--mmd-class-width", "0.5", "--seed", "1"]))
    assert given == SDARConfig(seed=1, simulator_steps=20, simulator_lr=3e-3, lambda_ssim=0.0, feature_memory=512, mmd_class_width=0.5)
    for attack in ("unsplit", "inverse_network"):
        code, _, err = run_verb("invert", ["--attack", attack, "--lambda-ssim", "0"], capsys)
        assert code == 2 and "--lambda-ssim sets the SSIM term of SDAR's decoder loss" in err and "--attack sdar" in err
    code, _, err = run_verb("invert", [*sdar, "--lambda-ssim", "-1"], capsys)
    assert code == 2 and "--lambda-ssim must be 0 or more" in err
    code, _, err = run_verb("invert", [*sdar, "--simulator-lr", "0"], capsys)
    assert code == 2 and "--simulator-lr must be" in err
    code, _, err = run_verb("invert", [*sdar, "--feature-memory", "-1"], capsys)
    assert code == 2 and "--feature-memory must be" in err
    code, _, err = run_verb("invert", ["--mmd-class-width", "0.5"], capsys)
    assert code == 2 and "--mmd-class-width sets the class kernel of SDAR's MMD" in err


def test_labels_defaults_to_the_data_that_ships():
    assert parse("labels", []).dataset == "f_mnist"


# ---------------------------------------------------------------- refused up front, before any work


@pytest.mark.parametrize("flag", ["--lr", "--lambda-tv", "--input-lr", "--model-lr", "--lambda-l2"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_hyper_parameters_are_refused_up_front(flag, value, tmp_path, capsys, no_work):
    code, out, err = run_verb("invert", [flag, value, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "finite" in err and "Traceback" not in err
    assert "data:" not in out  # refused before loading anything


@pytest.mark.parametrize("flags, flag, field", [
    (["--observations", "10", "--stream-batch", "0"], "--stream-batch must be at least 1", "batch_size"),
    (["--observations", "10", "--linear-start", "20"], "(--main-iters)", "linear_start"),
    (["--observations", "10", "--refine-cycles", "2", "--refit-iters", "0"], "needs --refit-iters > 0", "refit_iters"),
    (["--attack", "sdar", "--simulator-steps", "0"], "--simulator-steps must be at least 1", "simulator_steps"),
    (["--observations", "10", "--keep", "agreement", "--restarts", "2"], "give --restarts 3 or more, or --keep 'matching'",
     "keep="),
])
def test_an_attack_setting_refused_by_its_config_is_named_by_its_flag(flags, flag, field, tmp_path, capsys, no_work):
    code, out, err = run_verb("invert", [*flags, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and flag in err and field not in err and "Traceback" not in err and "data:" not in out


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, no_work):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    code, out, err = run_verb("invert", ["--out", str(target)], capsys)
    assert code == 2 and "--out" in err and "is a file" in err and "data:" not in out


def test_a_cache_dir_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, no_work):
    target = tmp_path / "cache"
    target.write_text("")
    code, out, err = run_verb("train", ["--cache-dir", str(target)], capsys)
    assert code == 2 and "--cache-dir" in err and "data:" not in out


def test_too_many_targets_are_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("unsplit_tf.runs.run_inversion", lambda *a, **k: pytest.fail("the attack ran"))
    data = tiny_npz(tmp_path / "tiny.npz", train=60)
    code, out, err = run_verb("invert", ["--data-dir", str(data), "--targets", "21", "--out", str(tmp_path / "run"),
                                        "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2 and "--targets 21" in err and "20 test images" in err
    assert "training" not in out and not (tmp_path / "cache").exists()


def test_writable_folder_checks_without_creating(tmp_path):
    assert writable_folder(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(CliError, match="--results .* is a file"):
        writable_folder(tmp_path / "file", "--results")
    with pytest.raises(CliError, match="cannot be created: .* is a file"):
        writable_folder(tmp_path / "file" / "below", "--out")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a Linux /proc (unwritable even for root)")
def test_an_unwritable_folder_is_refused():
    with pytest.raises(CliError, match="--out /proc/unsplit_tf_test cannot be written"):
        writable_folder(Path("/proc/unsplit_tf_test"), "--out")


def folder_of(path, default, overwrite=False):
    with run_folder(path, default, marker="metrics.json", overwrite=overwrite) as out:
        return out


def test_a_finished_run_is_never_overwritten_silently(tmp_path):
    default = tmp_path / "runs" / "invert"
    default.mkdir(parents=True)
    (default / "metrics.json").write_text("{}")
    assert folder_of(None, default) == tmp_path / "runs" / "invert-2"
    with pytest.raises(CliError, match="already holds a finished run.*--overwrite"):
        folder_of(default, default)
    assert folder_of(default, default, overwrite=True) == default
    assert folder_of(tmp_path / "new", default) == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # a run that wrote nothing leaves no empty folder behind


def test_two_runs_at_once_never_share_a_folder(tmp_path):
    default = tmp_path / "runs" / "invert"
    with run_folder(None, default, marker="metrics.json", overwrite=False) as first:
        (first / "grid.png").write_bytes(b"")
        assert folder_of(None, default) == tmp_path / "runs" / "invert-2"  # the default moves on while a run holds it
        with pytest.raises(CliError, match=re.escape(f"--out {first} is being written by another run (pid {os.getpid()} on ")):
            folder_of(first, default, overwrite=True)
    assert not (first / ".claimed").exists() and (first / "grid.png").exists()  # released, the run's files kept
    dead = json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()})  # above Linux's largest pid: no such process
    (first / ".claimed").write_text(dead)
    assert folder_of(first, default, overwrite=True) == first  # a claim left by a dead process is taken over


# ---------------------------------------------------------------- a user's model, checked before the attack


def small_model(outputs: int = 10, *, sequential: bool = False, heads: int = 1) -> keras.Model:
    if sequential:
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3, name="conv"),
                                 keras.layers.Flatten(), keras.layers.Dense(outputs, name="logits")])
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    tails = [keras.layers.Dense(outputs, name=f"logits{i}")(x) for i in range(heads)]
    return keras.Model(inputs, tails if heads > 1 else tails[0])


@pytest.fixture
def tiny_data(tmp_path):
    from unsplit_tf.data import load_dataset

    return load_dataset("mnist", tiny_npz(tmp_path / "tiny.npz", train=60))


def test_a_sequential_model_file_is_accepted(tmp_path, tiny_data):
    from unsplit_tf.cli._model import load_user_model

    small_model(sequential=True).save(tmp_path / "seq.keras")
    model = load_user_model(tmp_path / "seq.keras", tiny_data)
    assert model.outputs[0].shape[-1] == 10 and [layer.name for layer in model.layers][1] == "conv"


@pytest.mark.parametrize("problem, make, message", [
    ("classes", lambda: small_model(5), "outputs 5 classes but mnist has 10"),
    ("outputs", lambda: small_model(10, heads=2), "has 2 outputs"),
])
def test_a_model_that_does_not_fit_the_data_is_refused(problem, make, message, tmp_path, tiny_data):
    from unsplit_tf.cli._model import load_user_model

    make().save(tmp_path / f"{problem}.keras")
    with pytest.raises(CliError, match=message):
        load_user_model(tmp_path / f"{problem}.keras", tiny_data)


@pytest.mark.parametrize("flags, message", [
    (["--layers", "conv"], "--layers names the cuts of --model"),
    (["--model", "m.keras", "--datasets", "mnist", "f_mnist", "--layers", "conv"], "one dataset"),
    (["--model", "m.keras"], "--model needs its cuts"),
    (["--model", "m.keras", "--layers", "conv", "--depths", "1"], "--model needs its cuts"),
    (["--model", "m.keras", "--layers", "conv", "--family", "sdar"], "use --family unsplit"),
    (["--model", "m.keras", "--layers", "conv", "--defense", "nopeek:1"], "attacked as saved"),
])
def test_sweep_refuses_user_model_flags_that_cannot_run_before_any_work(flags, message, no_work, capsys):
    code, _, err = run_verb("sweep", flags, capsys)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("verb, flags", [("sweep", ["--datasets", "mnist", "--attack", "stream:stream", "--observations", "10"]),
                                         ("defend", ["--dataset", "mnist"])])
def test_grids_name_the_flag_of_a_setting_a_cell_refuses(verb, flags, tmp_path, capsys):
    code, _, err = run_verb(verb, ["--data-dir", str(tiny_npz(tmp_path / "tiny.npz")), *flags, "--refit-iters", "0",
                                   "--refine-cycles", "2", "--results", str(tmp_path / "r")], capsys)
    assert code == 2 and "it needs --refit-iters > 0" in err and "refit_iters" not in err
    assert not (tmp_path / "r" / "cells").exists() or not list((tmp_path / "r" / "cells").iterdir())


def test_sweep_names_a_layer_the_users_model_lacks(tmp_path, capsys):
    small_model().save(tmp_path / "small.keras")
    code, _, err = run_verb("sweep", ["--data-dir", str(tiny_npz(tmp_path / "tiny.npz")), "--datasets", "mnist",
                                      "--model", str(tmp_path / "small.keras"), "--layers", "cnv",
                                      "--results", str(tmp_path / "r")], capsys)
    assert code == 2 and "no layer named 'cnv'" in err and "did you mean 'conv'" in err
    assert not (tmp_path / "r" / "cells").exists() or not list((tmp_path / "r" / "cells").iterdir())


def test_a_truncated_model_file_is_named_as_such(tmp_path, tiny_data):
    """Keras reports a truncated .keras file as "File not found"."""
    from unsplit_tf.cli._model import load_user_model

    small_model().save(tmp_path / "whole.keras")
    payload = (tmp_path / "whole.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(CliError, match="not a readable .keras archive"):
        load_user_model(tmp_path / "cut.keras", tiny_data)
    with pytest.raises(CliError, match="no such file"):
        load_user_model(tmp_path / "missing.keras", tiny_data)


# ---------------------------------------------------------------- Ctrl-C and errors: one line, an exit code


def test_ctrl_c_gives_exit_code_130_and_one_line(capsys):
    def work():
        raise KeyboardInterrupt

    assert guarded(work) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_library_value_errors_become_usage_errors():
    def work():
        raise ValueError("main_iters must be at least 1, got 0")

    with pytest.raises(CliError, match="main_iters") as caught:
        guarded(work)
    assert caught.value.code == 2


# ---------------------------------------------------------------- progress output


def test_progress_off_a_terminal_writes_clean_lines():
    """A log of the old progress bar held carriage returns, backspaces and colour codes on one line."""
    stream = io.StringIO()
    bar = Progress(200, "round", label="attack", stream=stream)
    for done in range(1, 201):
        bar.update(done, matching=1.0 / done)
    text = stream.getvalue()
    assert not set(text) & {"\r", "\b", "\x1b"}
    lines = text.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("attack: 200/200 rounds (100%)")
    assert "matching 0.005" in lines[-1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_claims_no_time_left_before_it_has_a_rate():
    """The first update (one epoch of two, or a round that compiled) gives no rate: no "~0s left" then."""
    stream = io.StringIO()
    bar = Progress(3, "epoch", stream=stream, seconds=0.0)
    bar.update(1, loss=0.5)
    bar.update(2, loss=0.4)
    bar.update(3, loss=0.3)
    first, second, last = stream.getvalue().splitlines()
    assert first == "1/3 epochs ( 33%) loss 0.5"
    assert re.fullmatch(r"2/3 epochs \( 67%\) \d+s, ~\d+s left loss 0\.4", second)
    assert re.fullmatch(r"3/3 epochs \(100%\) \d+s loss 0\.3", last)


def test_progress_goes_on_past_its_plan_once_extended():
    stream = io.StringIO()
    bar = Progress(4, "round", stream=stream, seconds=0.0)
    bar.update(4)
    bar.extend(8)
    bar.update(6)
    assert stream.getvalue().splitlines()[-1].startswith("6/8 rounds ( 75%)")


def test_progress_on_a_terminal_redraws_one_line():
    stream = _Terminal()
    bar = Progress(3, "epoch", stream=stream)
    for done in (1, 2, 3):
        bar.update(done, loss=0.5)
    assert stream.getvalue().count("\r") == 3 and stream.getvalue().endswith("\n")


def test_scalars_land_in_tensorboard_event_files(tmp_path):
    import tensorflow as tf

    scalars = Scalars(tmp_path / "board")
    for step in (1, 2, 3):
        scalars.log(step, **{"inversion/matching_loss": 1.0 / step, "skipped": None})
    scalars.close()
    events = list((tmp_path / "board").glob("events.out.tfevents.*"))
    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    assert tags == {"inversion/matching_loss"}



def test_progress_off_a_terminal_writes_a_line_at_least_every_so_often():
    """A long attack off a terminal must not stay silent until its first tenth is done."""
    stream = io.StringIO()
    bar = Progress(1_000_000, "round", stream=stream, seconds=0.0)
    bar.update(1)
    bar.update(2)
    assert len(stream.getvalue().splitlines()) == 2


def test_a_truncated_data_file_is_one_line(tmp_path, capsys):
    (tmp_path / "cut.npz").write_bytes(tiny_npz(tmp_path / "whole.npz").read_bytes()[:300])
    code, _, err = run_verb("invert", ["--data-dir", str(tmp_path / "cut.npz"), "--out", str(tmp_path / "run"),
                                       "--cache-dir", str(tmp_path / "cache")], capsys)
    # data.py names the file and refuses it as bad input (ValueError), which every verb answers with exit code 2
    assert code == 2 and "Traceback" not in err and "cut.npz" in err


def test_train_refuses_a_depth_the_net_does_not_have_before_any_work(capsys, no_work):
    """The model cache ignores the depth, so a cached model used to be "loaded" for any depth."""
    code, _, err = run_verb("train", ["--depth", "99"], capsys)
    assert code == 2 and "depth 99" in err


def test_a_sequential_cell_counts_rounds_over_all_its_targets_and_restarts(capsys):
    """Sequential mode reports one target at a time; the cell's bar must still span every target's rounds, over
    every restart."""
    import types

    import numpy as np

    from unsplit_tf.cli._grid import CellProgress
    from unsplit_tf.sweep import SweepEvent

    cell = types.SimpleNamespace(targets=10, describe=lambda: "inversion cell")
    progress = CellProgress()
    progress.on_event(SweepEvent("started", cell, 1, 1, running=1, left=0))
    for round_index in range(1, 4):
        progress.on_round(types.SimpleNamespace(targets=(0,), round=round_index, rounds=100, rounds_in_all=300,
                                                matching_loss=np.zeros(1)))
    assert progress.bar.total == 3000 and progress.bar.done == 3  # 10 targets x 100 rounds x 3 restarts
    progress.close()
