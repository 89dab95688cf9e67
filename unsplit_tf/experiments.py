"""Depth sweeps of the attacks, stored one finished cell at a time so that a sweep can resume.

A *cell* is one attack run with every parameter that affects its result fixed:
an `InversionCell` (model inversion + stealing of the class targets at one
split depth) or a `LabelCell` (label inference during split-learning
training). Its `key` spells out all of those parameters, including a
fingerprint of the data, so a change of budget, epochs, seed or data makes a
new cell instead of overwriting an old one.

`ResultStore` keeps one JSON file per finished cell under `<root>/cells/`,
plus the reconstructions of an inversion cell as a small uint8 .npz beside it
(enough to redraw the figures). Both are written atomically (temporary file,
then `os.replace`), the .npz first, so a JSON file on disk always means a
finished, complete cell. `run_sweep` runs only the cells that have no JSON
file yet: re-running a sweep skips finished cells, and Ctrl-C loses at most
the cell in progress.

`CellRunner` runs cells on real data (training each model once, cached);
`run_sweep` takes any runner, so tests can count calls with a fake one.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.attacks.inversion import MODES, InversionConfig, RoundReport, invert, preset
from unsplit_tf.attacks.labels import (
    DirectionScoring,
    KnownLabels,
    LabelInferenceAttack,
    LabelInferenceConfig,
    NormScoring,
)
from unsplit_tf.data import Dataset, first_index_per_class
from unsplit_tf.scoring import baseline_scores, clone_quality, evaluate_labels, minmax_normalize, reconstruction_scores
from unsplit_tf.models import reference_net
from unsplit_tf.protocol import TrainConfig, TrainedModel, UShapedTrainer, UShapedWireRecord, train_reference_net
from unsplit_tf.split import clone_architecture, split_model, split_u_shaped

MINMAX_DATASETS = ("cifar",)
"""Datasets whose reconstructions are min-max normalised before scoring (the authors' convention, UNSPLIT.md)."""

_BUDGET_PATTERN = re.compile(r"^\s*(\d+)\s*[x×]\s*\(?\s*(\d+)\s*\+\s*(\d+)\s*\)?\s*$")


@dataclass(frozen=True)
class Budget:
    """The inversion budget per target: `main_iters` rounds of `input_iters` + `model_iters` steps."""

    main_iters: int
    input_iters: int
    model_iters: int

    def __post_init__(self) -> None:
        for name in ("main_iters", "input_iters", "model_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"budget {name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Read "MAINxINPUT+MODEL", e.g. "100x100+100" or "100x(100+100)"."""
        match = _BUDGET_PATTERN.match(text)
        if match is None:
            raise ValueError(
                f"budget {text!r} is not of the form MAINxINPUT+MODEL; write e.g. 100x100+100 "
                "(100 rounds of 100 input steps and 100 model steps)"
            )
        return cls(*(int(group) for group in match.groups()))

    def __str__(self) -> str:
        return f"{self.main_iters}x({self.input_iters}+{self.model_iters})"

    @property
    def tag(self) -> str:
        return f"{self.main_iters}x{self.input_iters}+{self.model_iters}"

    @property
    def steps_per_target(self) -> int:
        return self.main_iters * (self.input_iters + self.model_iters)


@dataclass(frozen=True)
class InversionCell:
    """Model inversion + stealing of the first `targets` class targets, one depth, one preset and mode."""

    kind: ClassVar[str] = "inversion"
    dataset: str
    depth: int
    preset: str
    mode: str
    budget: Budget
    epochs: int
    seed: int
    targets: int
    data_tag: str

    def __post_init__(self) -> None:
        preset(self.preset)  # raises for an unknown name
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 1 <= self.targets <= 10:
            raise ValueError(f"targets must be 1..10 (the first test image of each class), got {self.targets}")

    @property
    def key(self) -> str:
        return (f"inversion-{self.dataset}-d{self.depth}-{self.preset}-{self.mode}-{self.budget.tag}"
                f"-e{self.epochs}-s{self.seed}-t{self.targets}-{self.data_tag}")

    def params(self) -> dict[str, Any]:
        """The cell's parameters as a JSON-safe dict."""
        return {**_fields(self), "budget": dataclasses.asdict(self.budget)}

    def attack_config(self) -> InversionConfig:
        """The preset with this cell's budget, mode and seed (`clone_architecture` keeps the clone off the training draw)."""
        budget = dataclasses.asdict(self.budget)
        return preset(self.preset).replace(mode=self.mode, seed=self.seed, **budget)


@dataclass(frozen=True)
class LabelCell:
    """Label inference while a fresh model trains on `samples` training images at `batch_size` (U-shaped split)."""

    kind: ClassVar[str] = "labels"
    dataset: str
    depth: int
    samples: int
    batch_size: int
    seed: int
    data_tag: str

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1:
            raise ValueError(f"samples and batch_size must be at least 1, got {self.samples} and {self.batch_size}")

    @property
    def key(self) -> str:
        return f"labels-{self.dataset}-d{self.depth}-n{self.samples}-b{self.batch_size}-s{self.seed}-{self.data_tag}"

    def params(self) -> dict[str, Any]:
        """The cell's parameters as a JSON-safe dict."""
        return _fields(self)


Cell = InversionCell | LabelCell


def _fields(cell: Cell) -> dict[str, Any]:
    return {"kind": cell.kind, **{item.name: getattr(cell, item.name) for item in dataclasses.fields(cell)}}


def data_fingerprint(data: Dataset) -> str:
    """A short hash of a dataset's name, sizes and a sample of its contents, for cell keys."""
    digest = hashlib.sha1(data.name.encode())
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array[:: max(1, len(array) // 256)]).tobytes())
    return digest.hexdigest()[:8]


def inversion_cells(
    data: Dataset,
    depths: Iterable[int],
    attacks: Sequence[tuple[str, str]],
    budget: Budget,
    *,
    epochs: int,
    seed: int,
    targets: int = 10,
) -> list[InversionCell]:
    """One cell per depth and (preset, mode) pair, in the order depth-major."""
    tag = data_fingerprint(data)
    return [InversionCell(data.name, depth, name, mode, budget, epochs, seed, targets, tag)
            for depth in depths for name, mode in attacks]


# ---------------------------------------------------------------- the store


@dataclass(frozen=True)
class CellResult:
    """What running a cell produced: a JSON-safe record and, optionally, named uint8 image arrays."""

    record: dict[str, Any]
    images: dict[str, np.ndarray] = field(default_factory=dict)


class ResultStore:
    """One JSON file per finished cell under `<root>/cells/`, and its images as `<key>.npz`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def json_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def images_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.npz"

    def has(self, key: str) -> bool:
        """Whether the cell `key` finished (its JSON file exists)."""
        return self.json_path(key).is_file()

    def save(self, key: str, result: CellResult) -> Path:
        """Write the cell's images (if any), then its record; each atomically. Returns the JSON path."""
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        if result.images:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **result.images)
            _write_atomically(self.images_path(key), buffer.getvalue())
        text = json.dumps(result.record, indent=1, allow_nan=False)
        _write_atomically(self.json_path(key), text.encode())
        return self.json_path(key)

    def load(self, key: str) -> dict[str, Any]:
        """The record of a finished cell."""
        if not self.has(key):
            raise ValueError(f"no finished cell {key!r} in {self.cells_dir}; run the sweep that makes it first")
        return json.loads(self.json_path(key).read_text())

    def records(self) -> list[dict[str, Any]]:
        """Every finished cell's record, in key order."""
        return [json.loads(path.read_text()) for path in sorted(self.cells_dir.glob("*.json"))]

    def images(self, key: str) -> dict[str, np.ndarray]:
        """The images stored with cell `key` (empty if it has none)."""
        path = self.images_path(key)
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write to a hidden temporary file beside `path`, then rename it over `path` (atomic on POSIX)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------- running a sweep


@dataclass(frozen=True)
class SweepEvent:
    """Progress of a sweep, for a callback: a cell was skipped (already stored), started or finished."""

    status: str  # "skipped", "started" or "finished"
    cell: Cell
    index: int  # 1-based position in the sweep
    total: int
    record: dict[str, Any] | None = None  # the stored record, for "skipped" and "finished"


def run_sweep(
    cells: Sequence[Cell],
    store: ResultStore,
    run_cell: Callable[[Cell], CellResult],
    *,
    extra: Mapping[str, Any] | None = None,
    on_event: Callable[[SweepEvent], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every cell the store does not hold yet, storing each the moment it finishes.

    The stored record is the runner's record plus `key`, `cell` (its parameters),
    `finished_at` and `extra` (e.g. the command line). Returns the records of all
    `cells`, stored before or now. A KeyboardInterrupt stops the sweep after the
    finished cells were stored; running the same sweep again resumes it.
    """
    unique = list({cell.key: cell for cell in cells}.values())
    records = []
    for index, cell in enumerate(unique, start=1):
        if store.has(cell.key):
            record = store.load(cell.key)
            _notify(on_event, SweepEvent("skipped", cell, index, len(unique), record))
        else:
            _notify(on_event, SweepEvent("started", cell, index, len(unique)))
            result = run_cell(cell)
            record = {
                "key": cell.key,
                "cell": cell.params(),
                **result.record,
                "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **dict(extra or {}),
            }
            store.save(cell.key, CellResult(record, result.images))
            _notify(on_event, SweepEvent("finished", cell, index, len(unique), record))
        records.append(record)
    return records


def _notify(on_event: Callable[[SweepEvent], None] | None, event: SweepEvent) -> None:
    if on_event is not None:
        on_event(event)


TrainFunction = Callable[[Dataset, TrainConfig], TrainedModel]


class CellRunner:
    """Runs cells on real data: each model is trained (or loaded from the cache) once per process.

    datasets: the loaded datasets, by canonical name.
    train: trains or loads the reference net for (data, config); default
        `train_reference_net` with `cache_dir` (trained weights do not depend
        on the split depth, so one model serves a whole depth sweep).
    on_round: passed on to the inversion attack, for progress display.
    """

    def __init__(
        self,
        datasets: Mapping[str, Dataset],
        *,
        train: TrainFunction | None = None,
        cache_dir: str | os.PathLike | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
    ) -> None:
        self.datasets = dict(datasets)
        self.train = train or (lambda data, config: train_reference_net(data, depth=1, config=config, cache_dir=cache_dir))
        self.on_round = on_round
        self._trained: dict[tuple[str, int, int], tuple[TrainedModel, float | None]] = {}

    def __call__(self, cell: Cell) -> CellResult:
        data = self._dataset(cell)
        if isinstance(cell, InversionCell):
            trained, train_seconds = self._trained_model(data, cell.epochs, cell.seed)
            result = run_inversion_cell(data, trained, cell, on_round=self.on_round)
            result.record["model"]["train_seconds"] = train_seconds  # None: loaded from the cache
            return result
        return run_label_cell(data, cell)

    def _dataset(self, cell: Cell) -> Dataset:
        if cell.dataset not in self.datasets:
            raise ValueError(f"cell {cell.key} needs dataset {cell.dataset!r}, but only {sorted(self.datasets)} were loaded")
        data = self.datasets[cell.dataset]
        if data_fingerprint(data) != cell.data_tag:
            raise ValueError(f"cell {cell.key} was planned for other {cell.dataset} data (fingerprint "
                             f"{cell.data_tag}, loaded data has {data_fingerprint(data)}); plan it from the loaded data")
        return data

    def _trained_model(self, data: Dataset, epochs: int, seed: int) -> tuple[TrainedModel, float | None]:
        """The trained model, and the seconds its training took if it was trained (not loaded) here."""
        key = (data.name, epochs, seed)
        if key not in self._trained:
            start = time.perf_counter()
            trained = self.train(data, TrainConfig(epochs=epochs, seed=seed))
            self._trained[key] = trained, None if trained.from_cache else time.perf_counter() - start
        return self._trained[key]


def environment() -> dict[str, Any]:
    """The software and machine a cell ran on, and how busy the machine was when it started."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": len(tf.config.list_logical_devices("GPU")),
        "load_average_1min": load,
    }


def as_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (clipped) as uint8 0..255: small enough to keep every reconstruction."""
    return np.round(np.clip(np.asarray(images, np.float64), 0.0, 1.0) * 255).astype(np.uint8)


def run_inversion_cell(
    data: Dataset,
    trained: TrainedModel,
    cell: InversionCell,
    *,
    on_round: Callable[[RoundReport], None] | None = None,
) -> CellResult:
    """Attack the first test image of each class at `cell.depth` and score the reconstructions and the clone.

    The record holds the reconstruction scores (min-max normalised first for
    CIFAR-10, as the authors do), the random-guess baselines on the same
    targets, the stolen clone's accuracy through the real server (and that of
    the untrained clone the attack starts from, for scale), and timings.
    The images are the targets and the reconstructions as scored (uint8).
    Raises KeyboardInterrupt if the attack was interrupted, so that no partial
    cell is stored.
    """
    if trained.dataset != data.name or trained.config.epochs != cell.epochs or trained.config.seed != cell.seed:
        raise ValueError(f"the trained model ({trained.dataset}, {trained.config.epochs} epochs, seed "
                         f"{trained.config.seed}) is not the one cell {cell.key} names")
    started, load_before = time.perf_counter(), environment()
    split = split_model(trained.model, depth=cell.depth)
    chosen = first_index_per_class(data.y_test, data.num_classes)[: cell.targets]
    targets = data.x_test[chosen]
    config = cell.attack_config()
    # The attack's starting point (same seed, same fresh weights): how much of the clone's accuracy is not stolen.
    untrained_clone = clone_architecture(split.client, seed=config.seed)
    before = clone_quality(split.client, untrained_clone, split.server, data.x_test, data.y_test)
    result = invert(split.client, split.client(targets), config, on_round=on_round)
    if result.interrupted:
        raise KeyboardInterrupt
    minmax = data.name in MINMAX_DATASETS
    scored = minmax_normalize(result.reconstructions) if minmax else result.reconstructions
    scores = reconstruction_scores(targets, scored)
    baselines = baseline_scores(targets, seed=cell.seed, mean_image=data.x_train.mean(axis=0))
    quality = clone_quality(split.client, result.clone, split.server, data.x_test, data.y_test)
    record = {
        "kind": cell.kind,
        "data": {"source": data.source, "train_images": len(data.x_train), "test_images": len(data.x_test)},
        "model": {"split_test_accuracy": trained.test_accuracy, **dataclasses.asdict(trained.config),
                  "cache_file": trained.path.name},
        "split": {"cut_layer": split.cut_layer, "depth": split.depth},
        "attack_config": {**dataclasses.asdict(config), "box": list(config.box) if config.box else None},
        "targets": {"test_indices": chosen.tolist(), "classes": [data.class_names[data.y_test[i]] for i in chosen]},
        "minmax_normalised": minmax,
        "reconstruction": scores.to_dict(),
        "baselines": {name: baseline.to_dict() for name, baseline in baselines.items()},
        "clone": quality.to_dict(),
        "clone_before_attack": before.to_dict(),
        "attack_seconds": result.seconds,
        "image_steps_per_second": cell.targets * config.steps_per_target / result.seconds,
        "cell_seconds": time.perf_counter() - started,
        "environment": load_before,
    }
    images = {"originals": as_uint8(targets), "reconstructions": as_uint8(scored), "test_indices": chosen}
    return CellResult(record, images)


# Label inference methods run in a label cell: (id, what it is, attack config or baseline name, given known labels).
LABEL_METHODS: tuple[tuple[str, str, LabelInferenceConfig | str, bool], ...] = (
    ("authors", "UnSplit as the authors' code: weight gradient, clone's softmax",
     LabelInferenceConfig(observation="weight_gradient", softmax="clone"), False),
    ("weight_gradient", "gradient matching on the weight gradient, best-fitting softmax",
     LabelInferenceConfig(observation="weight_gradient"), False),
    ("authors_on_activation_gradient", "UnSplit's algorithm on what a server really sees (dL/da)",
     LabelInferenceConfig(observation="activation_gradient", clone_objective="cross_entropy"), True),
    ("activation_gradient", "gradient matching on dL/da, clone fitted to the gradients",
     LabelInferenceConfig(observation="activation_gradient"), True),
    ("norm_scoring", "Li et al.'s norm scoring of dL/da (a ranking: AUC only)", "norm", True),
    ("direction_scoring", "Li et al.'s direction (cosine) scoring of dL/da", "direction", True),
)


def run_label_cell(data: Dataset, cell: LabelCell) -> CellResult:
    """Train a fresh U-shaped split of the reference net on `cell.samples` images and infer their labels.

    As in the authors' demo nothing is pre-trained: labels are inferred from
    the first training steps, one batch at a time, by every method in
    `LABEL_METHODS`. The activation-gradient methods are told the label of the
    first example of each class seen (side knowledge needed to name classes;
    see `unsplit_tf.attacks.labels`); the weight-gradient ones are told nothing.
    Evaluation leaves the known examples out.
    """
    if cell.samples > len(data.x_train):
        raise ValueError(f"cell {cell.key} asks for {cell.samples} samples but {data.name} has {len(data.x_train)} training images")
    started, load_before = time.perf_counter(), environment()
    keras.utils.set_random_seed(cell.seed)
    split = split_u_shaped(reference_net(data.name), depth=cell.depth, head_layers=1)
    trainer = UShapedTrainer(split, TrainConfig(epochs=1, batch_size=cell.batch_size, seed=cell.seed))
    chosen = np.random.default_rng(cell.seed).choice(len(data.x_train), cell.samples, replace=False)
    x, y = data.x_train[chosen], data.y_train[chosen]
    methods = {}
    for method_id, _, config, _ in LABEL_METHODS:
        if isinstance(config, LabelInferenceConfig):
            methods[method_id] = LabelInferenceAttack(split.client_head, dataclasses.replace(config, seed=cell.seed))
        else:
            methods[method_id] = NormScoring() if config == "norm" else DirectionScoring(data.num_classes)
    given_known = {method_id: gets_known for method_id, _, _, gets_known in LABEL_METHODS}
    side_knowledge = KnownLabels(data.num_classes)
    true_labels: list[np.ndarray] = []

    def observe(record: UShapedWireRecord) -> None:
        labels = y[record.indices]
        known = side_knowledge(labels)
        true_labels.append(labels)
        for method_id, method in methods.items():
            method.attack_record(record, known_labels=known if given_known[method_id] else None)

    trainer.fit(x, y, on_step=observe)
    truth = np.concatenate(true_labels)
    results = []
    for method_id, description, _, _ in LABEL_METHODS:
        scores = evaluate_labels(methods[method_id].result(), truth, data.num_classes)
        results.append({"id": method_id, "description": description, **dataclasses.asdict(scores)})
    record = {
        "kind": cell.kind,
        "data": {"source": data.source, "train_images": len(data.x_train), "test_images": len(data.x_test)},
        "training": {"from_scratch": True, "epochs": 1, "samples": cell.samples, "batch_size": cell.batch_size,
                     "head": split.client_head.layers[-1].name},
        "methods": results,
        "cell_seconds": time.perf_counter() - started,
        "environment": load_before,
    }
    return CellResult(record)
