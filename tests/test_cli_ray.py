"""The --backend flags of the grid verbs (sweep, defend): parsed and checked before any work, and what reaches run_sweep.

Nothing here starts Ray; tests/test_sweep_ray.py runs the backend itself.
"""

from __future__ import annotations

import pickle
import sys

import pytest

from cli_helpers import run_verb

from unsplit_tf.cli import _grid, defend, sweep
from unsplit_tf.cli._common import parser_for
from unsplit_tf.sweep import InversionCell, SweepEvent


@pytest.fixture
def no_work(monkeypatch):
    """Any data loading fails the test: what is checked must be refused before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command went on to load data")

    for verb in ("sweep", "defend"):
        monkeypatch.setattr(f"unsplit_tf.cli.{verb}.load_data", refuse)


def options(module, argv: list[str]) -> dict:
    return sweep.backend_options(parser_for(module).parse_args(argv))


@pytest.mark.parametrize("module", [sweep, defend])
def test_the_ray_flags_become_run_sweeps_backend_options(module):
    pytest.importorskip("ray")
    assert options(module, []) == {"backend": "serial"}
    assert options(module, ["--backend", "ray", "--address", "head:6379", "--cpus-per-cell", "2", "--gpus-per-cell", "0.25",
                            "--max-retries", "0"]) == {
        "backend": "ray", "address": "head:6379", "num_cpus": None, "num_gpus_per_cell": 0.25, "cpus_per_cell": 2.0,
        "max_retries": 0}
    assert options(module, ["--backend", "ray", "--num-cpus", "2"])["num_cpus"] == 2


@pytest.mark.parametrize("verb", ["sweep", "defend"])
@pytest.mark.parametrize("argv, message", [
    (["--num-cpus", "2"], "--num-cpus is an option of --backend ray"),
    (["--backend", "ray", "--cpus-per-cell", "0"], "cpus_per_cell must be positive"),
    (["--backend", "ray", "--gpus-per-cell", "1.5"], "a fraction of one GPU"),
    (["--backend", "ray", "--max-retries", "-1"], "max_retries must be at least 0"),
    (["--backend", "ray", "--num-cpus", "0"], "num_cpus must be at least 1"),
    (["--backend", "ray", "--address", "head:6379", "--num-cpus", "2"], "num_cpus sizes a local Ray only"),
])
def test_bad_backend_flags_are_refused_before_any_work(verb, argv, message, no_work, capsys):
    if "ray" in argv:
        pytest.importorskip("ray")
    code, _, err = run_verb(verb, argv, capsys)
    assert code == 2 and message in err and f"unsplit-tf {verb}: error:" in err


@pytest.mark.parametrize("verb", ["sweep", "defend"])
def test_without_ray_the_ray_backend_says_how_to_install_it(verb, no_work, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    monkeypatch.delitem(sys.modules, "unsplit_tf.sweep_ray", raising=False)
    code, _, err = run_verb(verb, ["--backend", "ray"], capsys)
    assert code == 2 and "error:" in err and "pip install 'unsplit-tf[ray]'" in err


def test_the_ray_runner_ships_without_console_callbacks_and_the_serial_one_keeps_them(tmp_path, monkeypatch):
    runners = []
    monkeypatch.setattr("unsplit_tf.sweep.run_sweep", lambda cells, store, runner, **options: runners.append(runner) or
                        type("Outcome", (), {"busy": []})())
    for backend in ({"backend": "ray", "num_cpus": 2}, {"backend": "serial"}):
        _grid.run_grid([], {}, results=tmp_path, cache=tmp_path, verb="sweep", argv=[], backend=backend)
    on_ray, serial = runners
    assert (on_ray.on_epoch, on_ray.on_round, on_ray.on_step) == (None, None, None) and pickle.loads(pickle.dumps(on_ray))
    assert serial.on_epoch is not None and serial.on_round is not None


def test_the_progress_line_shows_done_running_left_and_the_time_left(capsys):
    cell = InversionCell("f_mnist", "tag", 2)
    progress = _grid.CellProgress()
    progress.on_event(SweepEvent("started", cell, 6, 10, running=2, left=5))
    progress.on_event(SweepEvent("started", cell, 7, 10, running=2, left=4, eta_seconds=240.0))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("[3 done, 2 running, 5 left]") and lines[1].endswith("[4 done, 2 running, 4 left, ~4 min left]")
