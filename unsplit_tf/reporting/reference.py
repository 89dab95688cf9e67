"""The authors' reference figures, kept as data (`unsplit_tf/resources/reference_figures.json`) and loaded here once."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

REFERENCE_FILE = "reference_figures.json"


@dataclass(frozen=True)
class AuthorsDepth:
    """One depth of the authors' code's sweep: mean MSE, clone and split accuracy, seconds for 10 targets."""

    mse: float
    clone_accuracy: float
    split_accuracy: float
    seconds: float


@dataclass(frozen=True)
class ReferenceFigures:
    """The authors' code measured under fixed conditions, and the paper's label-inference claim."""

    about: str
    dataset: str
    preset: str
    mode: str
    epochs: int
    targets: int
    budget: str  # "MAINx(INPUT+MODEL)"
    depths: dict[int, AuthorsDepth]
    baselines_mse: dict[str, float]  # by the field names of `records.Baselines`
    paper_label_accuracy: float


@functools.lru_cache(maxsize=1)
def reference_figures() -> ReferenceFigures:
    """The figures of the data file shipped with the package."""
    data = json.loads(resources.files("unsplit_tf").joinpath("resources", REFERENCE_FILE).read_text())
    conditions, budget = data["conditions"], data["conditions"]["budget"]
    return ReferenceFigures(
        about=data["about"],
        dataset=conditions["dataset"],
        preset=conditions["preset"],
        mode=conditions["mode"],
        epochs=conditions["epochs"],
        targets=conditions["targets"],
        budget=f"{budget['main_iters']}x({budget['input_iters']}+{budget['model_iters']})",
        depths={int(depth): AuthorsDepth(**figures) for depth, figures in data["depths"].items()},
        baselines_mse=dict(data["baselines_mse"]),
        paper_label_accuracy=data["paper_label_accuracy"],
    )
