import dataclasses
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from fake_runs import inversion_run, label_run
from unsplit_tf.store import CorruptCellError, ResultStore
from unsplit_tf.sweep import InversionCell, LabelCell


@pytest.fixture
def run():
    return inversion_run(InversionCell("f_mnist", "tag", 1, targets=2))


def test_the_store_gives_back_typed_records_with_their_arrays(tmp_path, run):
    store = ResultStore(tmp_path)
    store.save(run)
    back = store.load(run.key)
    assert back == run and back.arrays["reconstructions"].tolist() == run.arrays["reconstructions"].tolist()
    labels = label_run(LabelCell("f_mnist", "tag", samples=20))
    store.save(labels)
    assert store.runs() == sorted([run, labels], key=lambda r: r.key) and store.keys() == sorted([run.key, labels.key])
    with pytest.raises(ValueError, match="no finished cell"):
        store.load("inversion-missing")


def test_the_store_writes_records_whole_or_not_at_all(tmp_path, run):
    store = ResultStore(tmp_path)
    broken = dataclasses.replace(run, distance_correlation=float("nan"))
    with pytest.raises(ValueError):  # NaN is not JSON: the write fails before anything named <key>.json exists
        store.save(broken)
    assert not store.has(run.key)
    assert not list(store.cells_dir.glob(".*"))


def test_a_corrupt_cell_file_is_named_with_what_to_do(tmp_path, run):
    store = ResultStore(tmp_path)
    store.save(run)
    path = store.json_path(run.key)
    path.write_text('{"kind": "inversion", "sch')
    with pytest.raises(CorruptCellError, match=f"cell file {re.escape(str(path))} is not valid JSON .*delete it to recompute"):
        store.runs()
    path.write_text(json.dumps({**run.to_dict(), "schema": 0}))
    with pytest.raises(CorruptCellError, match=f"cell file {re.escape(str(path))} is not a record of schema 1 .*delete it"):
        store.load(run.key)
    store.arrays_path(run.key).write_bytes(b"not a zip")
    path.write_text(json.dumps(run.to_dict()))
    with pytest.raises(CorruptCellError, match="not a readable .npz"):
        store.load(run.key)


def test_keys_that_are_not_file_names_are_refused(tmp_path, run):
    with pytest.raises(ValueError, match="letters, digits"):
        ResultStore(tmp_path).has("../escape")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        ResultStore(tmp_path / "file")


def test_a_claim_is_held_once_and_released_by_its_holder_only(tmp_path):
    store = ResultStore(tmp_path)
    assert store.claim("cell-a") and not store.claim("cell-a")  # a second sweep in this process is refused too
    assert store.claim_holder("cell-a") == f"pid {os.getpid()} on {socket.gethostname()}"
    store.release("cell-a")
    assert store.claim_holder("cell-a") is None and store.claim("cell-a")


def test_a_claim_of_a_dead_process_here_is_taken_over_and_one_from_another_host_is_honoured(tmp_path):
    store = ResultStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    store.cells_dir.mkdir(parents=True)
    store.claim_path("cell-a").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": 0}))
    assert store.claim_holder("cell-a") is None and store.claim("cell-a")
    store.claim_path("cell-b").write_text(json.dumps({"pid": int(dead.stdout), "host": "elsewhere", "since": 0}))
    assert store.claim_holder("cell-b") == f"pid {int(dead.stdout)} on elsewhere" and not store.claim("cell-b")
    store.release("cell-b")  # not ours: left alone
    assert store.claim_path("cell-b").exists()


def test_an_unreadable_claim_is_held_while_fresh(tmp_path):
    store = ResultStore(tmp_path)
    store.cells_dir.mkdir(parents=True)
    store.claim_path("cell-a").write_text("")
    assert not store.claim("cell-a")
    old = store.claim_path("cell-a").stat().st_mtime - 3600
    os.utime(store.claim_path("cell-a"), (old, old))
    assert store.claim("cell-a")
