"""The notebooks in notebooks/: they run top to bottom, and they ship with the outputs of a real run.

Execution: each notebook is run with nbclient in a kernel on this interpreter
(so it imports this checkout's unsplit_tf whatever kernelspecs are installed),
with a cell inserted after its `parameters` cell that shrinks the budget and
reads the Fashion-MNIST subset embedded in the package, so no network and no
local dataset is needed. A cell that raises fails the test; the notebook's
metrics.json (the run layer's records) is then checked for real numbers.
"""

from __future__ import annotations

import json
import math
import sys
from importlib import resources
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from unsplit_tf.records import run_from_dict
from unsplit_tf.reporting.document import portable

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("model_inversion_stealing", "label_inference", "keras_callbacks", "auxiliary_data_attacks", "stream_mode")
EMBEDDED_SUBSET = str(resources.files("unsplit_tf") / "resources" / "fashion_mnist_subset.npz")
CELL_TIMEOUT = 300  # seconds; each notebook takes about 15 s here on a busy 2-core CPU
MAX_BYTES = 1_500_000


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A "python3" kernelspec that starts ipykernel on this very interpreter."""
    from ipykernel.kernelspec import write_kernel_spec

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / "python3")  # argv: [sys.executable, "-m", "ipykernel_launcher", ...]
    spec = KernelSpecManager(kernel_dirs=[str(kernels)]).get_kernel_spec("python3")
    assert spec.argv[0] == sys.executable
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def parameters_index(notebook: nbformat.NotebookNode) -> int:
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def execute(name: str, overrides: dict, workdir: Path, kernel_specs: KernelSpecManager) -> nbformat.NotebookNode:
    """Run notebooks/<name>.ipynb with `overrides` set right after its parameters cell; raises if a cell does."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    source = "\n".join(f"{key} = {value!r}" for key, value in overrides.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(parameters_index(notebook) + 1, injected)
    client = NotebookClient(
        notebook,
        km=AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs),
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


def images(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def test_model_inversion_stealing_runs(tmp_path, kernel_specs):
    out = tmp_path / "out"
    overrides = {
        "DATA_DIR": EMBEDDED_SUBSET,
        "DOWNLOAD": False,
        "TRAIN_LIMIT": 512,
        "TEST_LIMIT": 200,
        "EPOCHS": 1,
        "MAIN_ITERS": 3,
        "INPUT_ITERS": 5,
        "MODEL_ITERS": 5,
        "TARGETS": 3,
        "OUTPUT_DIR": str(out),
        "CACHE_DIR": str(tmp_path / "cache"),
    }
    notebook = execute("model_inversion_stealing", overrides, tmp_path, kernel_specs)

    metrics = json.loads((out / "metrics.json").read_text())  # a run record per preset, as the CLI writes them
    assert set(metrics["attacks"]) == {"tuned", "paper"}
    for name, attack in metrics["attacks"].items():
        record = run_from_dict(attack)
        assert record.attack.preset == name and record.victim.depth == 2
        assert record.data.train_images == 512 and record.data.test_images == 200
        assert record.headline.reconstruction.n == 3 and math.isfinite(record.headline.reconstruction.mean_mse)
        assert record.clone.n == 200 and 0 <= record.clone.clone_accuracy <= 1 and 0 <= record.clone.agreement <= 1
    assert metrics["attacks"]["paper"]["victim"]["training"]["from_cache"]  # the second preset attacks the same victim
    clone = keras.models.load_model(out / "clone.keras", safe_mode=True)
    assert clone(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 12, 12, 8)  # the client's output at depth 2
    for figure in ("observed.png", "grid.png", "grid_comparison.png", "losses.png", "losses_comparison.png"):
        assert (out / figure).stat().st_size > 0
    assert images(notebook) == 5


def test_label_inference_runs(tmp_path, kernel_specs):
    out = tmp_path / "out"
    overrides = {"DATA_DIR": EMBEDDED_SUBSET, "DOWNLOAD": False, "SAMPLES": 40, "BATCH_SIZES": (1, 8), "OUTPUT_DIR": str(out)}
    notebook = execute("label_inference", overrides, tmp_path, kernel_specs)

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["runs"]) == {"1", "8"}
    steps = {"1": 40, "8": 5}
    for batch, run in metrics["runs"].items():
        record = run_from_dict(run["record"])
        assert record.samples == 40 and record.batch_size == int(batch)
        assert len(run["curves"]["step"]) == steps[batch]
        assert all(len(values) == steps[batch] for values in run["curves"].values())
    batch1 = run_from_dict(metrics["runs"]["1"]["record"])
    weight = batch1.method("weight_gradient")
    assert weight.evaluated > 0 and weight.accuracy == 1.0  # exact recovery from weight gradients
    norm = batch1.method("norm_scoring")
    assert norm.accuracy is None and 0 <= norm.auc <= 1  # a ranking: AUC only
    assert images(notebook) == 2
    assert (out / "label_accuracy_b1.png").stat().st_size > 0


def test_keras_callbacks_runs(tmp_path, kernel_specs):
    out = tmp_path / "out"
    overrides = {"DATA_DIR": EMBEDDED_SUBSET, "DOWNLOAD": False, "TRAIN_LIMIT": 256, "EPOCHS": 2, "LABEL_PROBE": 64,
                 "MAIN_ITERS": 2, "INPUT_ITERS": 5, "MODEL_ITERS": 5, "OUTPUT_DIR": str(out)}
    notebook = execute("keras_callbacks", overrides, tmp_path, kernel_specs)

    metrics = json.loads((out / "metrics.json").read_text())
    assert [entry["epoch"] for entry in metrics["inversion"]] == [1, 2] == [entry["epoch"] for entry in metrics["labels"]]
    assert all(math.isfinite(entry["audit_inversion_mse"]) for entry in metrics["inversion"])
    assert "audit_gradient_matching_accuracy" in (out / "history.csv").read_text().splitlines()[0]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert images(notebook) == 3


def test_auxiliary_data_attacks_runs(tmp_path, kernel_specs):
    out = tmp_path / "out"
    overrides = {"DATA_DIR": EMBEDDED_SUBSET, "DOWNLOAD": False, "TRAIN_LIMIT": 512, "TEST_LIMIT": 200, "AUX": 64,
                 "EPOCHS": 1, "MAIN_ITERS": 2, "INPUT_ITERS": 5, "MODEL_ITERS": 5, "TARGETS": 3, "OUTPUT_DIR": str(out)}
    notebook = execute("auxiliary_data_attacks", overrides, tmp_path, kernel_specs)

    metrics = json.loads((out / "metrics.json").read_text())
    sdar, unsplit = (run_from_dict(metrics[name]) for name in ("SDAR", "UnSplit"))
    assert sdar.attack.family == "sdar" and sdar.threat_model.auxiliary_images == 64
    assert unsplit.attack.family == "unsplit" and unsplit.threat_model.auxiliary_images == 0
    assert sdar.victim.depth == unsplit.victim.depth == 6
    assert sdar.victim.test_accuracy == unsplit.victim.test_accuracy and sdar.victim.model == unsplit.victim.model  # one victim
    assert sdar.victim.training.samples == 512 - 64  # the client trained on what the server's aux images left
    assert [e.name for e in sdar.evaluations] == ["class_targets", "observed_sample"]
    assert all(math.isfinite(run.headline.reconstruction.mean_mse) and run.headline.reconstruction.n == 3 for run in (sdar, unsplit))
    simulator = keras.models.load_model(out / "simulator.keras", safe_mode=True)
    assert simulator(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 120)  # the client's output at depth 6
    assert np.load(out / "reconstructions.npz")["sdar"].shape == (3, 28, 28, 1)
    assert images(notebook) == 2


def test_stream_mode_runs(tmp_path, kernel_specs):
    out = tmp_path / "out"
    overrides = {"DATA_DIR": EMBEDDED_SUBSET, "DOWNLOAD": False, "TRAIN_LIMIT": 512, "TEST_LIMIT": 200, "OBSERVATIONS": 40,
                 "EPOCHS": 1, "PRESET": "stream_fast", "MAIN_ITERS": 2, "TARGETS": 3, "SHOWN": 4, "OUTPUT_DIR": str(out)}
    notebook = execute("stream_mode", overrides, tmp_path, kernel_specs)

    run = run_from_dict(json.loads((out / "metrics.json").read_text()))
    assert run.attack.preset == "stream_fast" and run.threat_model.observed_examples == 40
    assert run.threat_model.image_prior  # the prior it assumed is stated
    assert run.headline.reconstruction.n == 3 and [e.name for e in run.evaluations] == ["class_targets", "observed_sample"]
    saved = np.load(out / "reconstructions.npz")
    assert saved["stream_recovered"].shape == (40, 28, 28, 1) and len(set(saved["stream_rows"])) == 40
    clone = keras.models.load_model(out / "clone.keras", safe_mode=True)
    assert clone(np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 8, 8, 16)  # the client's output at depth 3
    assert images(notebook) == 2


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_outputs_of_a_real_run(name):
    """What a reader sees on the repository's web page: every cell run in order, pictures, no errors, full data."""
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; keep it small"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    parameters_index(notebook)
    assert not any("injected-parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "not run top to bottom in one go"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert images(notebook) >= 2
    text = "".join(output.get("text", "") for output in outputs)
    assert "embedded subset" not in text and "fashion_mnist_subset" not in text, "outputs of a run on the small embedded subset"
    assert portable(text) == text, "an absolute path of the machine it ran on; notebooks/run_notebooks.py shortens them"
