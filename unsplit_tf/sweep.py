"""Grids of cells, run once each into a `ResultStore`, resumable, with a seam for other backends.

A *cell* is one run with every parameter that affects its result fixed:
an `InversionCell` (dataset × model × cut × defense(strength) × attack × budget
× seed, + auxiliary images for auxiliary-data families) or a `LabelCell`. Its
`key`, spelt from its fields, names its file in the store, so a change of any
parameter or of the data (a fingerprint of all of it) makes a new cell.

`run_sweep` validates the whole grid before running anything, skips the cells
the store holds, claims the others (so two sweeps on one folder split the work),
and hands them to a backend: `run_cells_serial` here, `sweep_ray.run_cells_ray`
beside it, both `(cells, run_cell, *, done, save, on_event)`. Cells and
`CellRunner` pickle, so a backend may ship them to workers. Ctrl-C keeps every
finished cell; running the same sweep again resumes it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import keras

from unsplit_tf import defaults
from unsplit_tf._validation import at_least
from unsplit_tf.attacks.inversion import MODES, InverseNetworkConfig, InversionConfig, SDARConfig, preset
from unsplit_tf.data import Dataset, dataset_fingerprint
from unsplit_tf.defenses import ACTIVATIONS, GRADIENTS, check_defense, default_settings, named_defense
from unsplit_tf.models import reference_net
from unsplit_tf.protocol import TrainConfig
from unsplit_tf.records import ABSENT, NO_DEFENSE, DefenseSetting, InversionRun, LabelRun, ModelSource
from unsplit_tf.runs import (
    AUXILIARY_FAMILIES,
    INVERSION_FAMILIES,
    LABEL_METHOD_SETS,
    TRAIN_ON_OBSERVED,
    VictimSpec,
    check_aux,
    check_observations,
    run_inversion,
    run_label_inference,
)
from unsplit_tf.split import split_model, split_u_shaped
from unsplit_tf.store import ResultStore

REFERENCE = "reference"
"""The `model` of a cell that attacks the dataset's reference net (trained in the run, cached)."""

_BUDGET_PATTERN = re.compile(r"^\s*(\d+)\s*[x×]\s*\(?\s*(\d+)\s*\+\s*(\d+)\s*\)?\s*$")


@dataclass(frozen=True)
class Budget:
    """The inversion budget per target: `main_iters` rounds of `input_iters` + `model_iters` steps."""

    main_iters: int
    input_iters: int
    model_iters: int

    def __post_init__(self) -> None:
        for name in ("main_iters", "input_iters", "model_iters"):
            at_least(f"budget {name}", getattr(self, name), 1)

    @classmethod
    def parse(cls, text: str) -> Budget:
        """Read "MAINxINPUT+MODEL", e.g. "100x100+100" or "100x(100+100)"."""
        match = _BUDGET_PATTERN.match(text)
        if match is None:
            raise ValueError(f"budget {text!r} is not of the form MAINxINPUT+MODEL; write e.g. 100x100+100 "
                             "(100 rounds of 100 input steps and 100 model steps)")
        return cls(*(int(group) for group in match.groups()))

    def __str__(self) -> str:
        return f"{self.main_iters}x({self.input_iters}+{self.model_iters})"

    @property
    def tag(self) -> str:
        return f"{self.main_iters}x{self.input_iters}+{self.model_iters}"


DEFAULT_BUDGET = Budget(*defaults.SWEEP_BUDGET)

STEP_FIELDS = ("polish_iters", "refit_iters", "refine_cycles")
"""UnSplit's steps after the rounds that a cell (and `sweep`/`defend --polish-iters ...`) may set; None: the preset's."""
SETTING_FIELDS = {"unsplit": STEP_FIELDS + ("tv_norm", "lambda_tv"),
                  "sdar": ("simulator_steps", "simulator_lr", "lambda_ssim", "feature_memory", "mmd_class_width")}
"""The fields of each family's config that a cell (and `sweep`/`defend --tv-norm ...`) may set: UnSplit's steps and
TV term; SDAR's simulator steps, simulator learning rate, decoder SSIM weight, feature memory and class-wise MMD;
None: the preset's, or the family's default."""

SDAR_KEY_TAGS = {"simulator_steps": "ss{}", "mmd_class_width": "mc{:g}", "simulator_lr": "sl{:g}", "lambda_ssim": "ls{:g}",
                 "feature_memory": "fm{}"}
"""How a cell's key names an SDAR setting other than the one a key without it has always meant."""
SDAR_KEY_BASELINES = {field.name: field.metadata.get(ABSENT, field.default) for field in dataclasses.fields(SDARConfig)
                      if field.name in SDAR_KEY_TAGS}
"""That setting: what records written before a changed default read as (`records.ABSENT`: simulator steps 1, a
class-blind MMD), else the default. So stored cells keep their keys when a default changes."""


def default_budget(preset_name: str, mode: str) -> Budget:
    """A cell's budget when the sweep is given none: a preset made for stream mode, run in stream mode, keeps its
    own (its step sizes, prior and screen were tuned for those passes); every other attack the sweep's."""
    config = preset(preset_name)
    if config.mode == mode == "stream":
        return Budget(config.main_iters, config.input_iters, config.model_iters)
    return DEFAULT_BUDGET


def defense_tag(setting: DefenseSetting) -> str:
    """A defense setting in a key: "none", "nopeek3", "max_norm_noise"."""
    return setting.name if setting.strength is None else f"{setting.name}{setting.strength:g}"


def _model_tag(model: str, sha256: str) -> str:
    return "ref" if model == REFERENCE else f"{Path(model).stem}.{sha256[:8]}"


def _check_model(model: str, sha256: str, defense: DefenseSetting) -> None:
    if model != REFERENCE and not sha256:
        raise ValueError(f"cell model {model!r} needs its model_sha256: build the cell with **model_file(path)")
    if model != REFERENCE and defense != NO_DEFENSE:
        raise ValueError(f"a defense needs training with it at the cut; the saved model {model!r} is attacked as it is")


def model_file(path: str | Path) -> dict[str, str]:
    """The cell fields of a user's saved model: its path and the SHA-256 of its bytes (part of the key)."""
    return {"model": str(path), "model_sha256": ModelSource.of_file(path).sha256}


@dataclass(frozen=True)
class InversionCell:
    """Input recovery + stealing of the first `targets` test images class by class, at one cut, defense, attack, seed."""

    kind: ClassVar[str] = "inversion"
    dataset: str
    data_tag: str  # `data.dataset_fingerprint` of the data
    depth: int
    defense: DefenseSetting = NO_DEFENSE
    attack: str = "unsplit"  # the family
    preset: str = defaults.PRESET
    mode: str = defaults.MODE
    budget: Budget = DEFAULT_BUDGET
    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    seed: int = defaults.SEED
    targets: int = defaults.TARGETS
    train_samples: int | None = None  # train on the first N training images (None: all)
    aux: int = 0  # auxiliary images of an auxiliary-data family (0 for "unsplit")
    observations: int = 0  # stream mode: the last N training examples observed, attacked with the targets
    polish_iters: int | None = None  # UnSplit's clone-polish steps (None: the preset's)
    refit_iters: int | None = None  # UnSplit's fresh-clone refit steps (None: the preset's)
    refine_cycles: int | None = None  # UnSplit's cycles of refining pictures and refitting (None: the preset's)
    tv_norm: str | None = None  # UnSplit's TV norm, "squared" or "l1" (None: the preset's)
    lambda_tv: float | None = None  # UnSplit's TV weight, on the preset's scale (None: the preset's)
    simulator_steps: int | None = None  # SDAR's simulator updates per observed batch (None: its default)
    simulator_lr: float | None = None  # SDAR's simulator learning rate (None: its default)
    lambda_ssim: float | None = None  # the weight of SDAR's decoder SSIM term (None: its default)
    feature_memory: int | None = None  # the observed rows SDAR aligns its simulator to (None: its default)
    mmd_class_width: float | None = None  # the class kernel of SDAR's MMD (None: its default)
    model: str = REFERENCE  # or the path of a user's saved model
    model_sha256: str = ""

    def __post_init__(self) -> None:
        if self.attack not in INVERSION_FAMILIES:
            raise ValueError(f"unknown attack {self.attack!r}; choose one of {', '.join(INVERSION_FAMILIES)}")
        preset(self.preset)  # raises for an unknown name
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        check_defense(self.defense, ACTIVATIONS)
        _check_model(self.model, self.model_sha256, self.defense)
        TrainConfig(epochs=self.epochs, batch_size=self.batch_size, seed=self.seed)  # its checks
        for name, least in (("depth", 1), ("epochs", 1), ("targets", 1), ("aux", 0), ("observations", 0), ("seed", 0)):
            at_least(f"cell {name}", getattr(self, name), least)
        if self.train_samples is not None:
            at_least("cell train_samples (or None for all)", self.train_samples, 1)
        if self.attack in AUXILIARY_FAMILIES:
            at_least(f"cell aux (auxiliary images of {self.attack!r})", self.aux, 2)
            if self.model != REFERENCE:
                raise ValueError(f"cell attack {self.attack!r} holds its aux images out of the victim's training: "
                                 "it attacks the reference nets only")
        elif self.aux:
            raise ValueError(f"cell attack {self.attack!r} uses no auxiliary data but aux is {self.aux}; pass aux=0")
        for family, names in SETTING_FIELDS.items():
            for name in names:
                if getattr(self, name) is not None and self.attack != family:
                    raise ValueError(f"cell {name} is a setting of the {family} attack, not of {self.attack!r}; pass None")
        for name in STEP_FIELDS:
            if getattr(self, name) is not None:
                at_least(f"cell {name} (or None for the preset's)", getattr(self, name), 0)
        try:
            self.attack_config()  # the config's own checks of the fields set
        except ValueError as error:
            raise ValueError(f"cell: {error}") from None
        if self.observations and (self.attack != "unsplit" or self.mode != "stream"):
            raise ValueError(f"cell observations {self.observations} need the unsplit attack in stream mode, "
                             f"got {self.attack} {self.mode}")

    def attack_config(self) -> InversionConfig | SDARConfig | InverseNetworkConfig:
        """The attack this cell runs, before its seed and UnSplit's prior: UnSplit's preset in the cell's mode and
        budget, or the family's defaults; with the fields of `SETTING_FIELDS` the cell sets."""
        changes = {name: getattr(self, name) for name in SETTING_FIELDS.get(self.attack, ()) if getattr(self, name) is not None}
        if self.attack != "unsplit":
            return INVERSION_FAMILIES[self.attack](**changes)
        return preset(self.preset).replace(mode=self.mode, **dataclasses.asdict(self.budget), **changes)

    def unsplit_config(self) -> InversionConfig | None:
        """The UnSplit attack this cell runs, before its seed and prior (None for the other families)."""
        return self.attack_config() if self.attack == "unsplit" else None

    @property
    def key(self) -> str:
        parts = ["inversion", self.dataset, _model_tag(self.model, self.model_sha256), f"d{self.depth}",
                 defense_tag(self.defense), self.attack, self.preset, self.mode, self.budget.tag, f"e{self.epochs}",
                 f"b{self.batch_size}", f"s{self.seed}", f"t{self.targets}"]
        parts += [f"n{self.train_samples}"] if self.train_samples is not None else []
        parts += [f"aux{self.aux}"] if self.aux else []
        parts += [f"o{self.observations}"] if self.observations else []
        config = self.unsplit_config()
        restarts = config.restarts if config else 1
        parts += [f"r{restarts}"] if restarts != 1 else []  # a preset's restarts changed once: keep those cells apart
        if config and config.screen_rounds < config.main_iters:  # so did stream's screen, and when it defers to the end
            parts += [f"sc{config.screen:.2f}" + (f"d{config.screen_defer:.2f}" if config.screen_defer < 1 else "")]
        parts += [f"rf{config.refit_iters}"] if config and config.refit_iters else []  # and stream's clone refit
        parts += [f"rc{config.refine_cycles}x{config.refine_passes}"] if config and config.refine_cycles else []  # its refinement
        if config and (config.tv_scale == "observations" or config.lambda_tv != preset(self.preset).lambda_tv):
            parts += [f"tv{config.lambda_tv:g}" + "o" * (config.tv_scale == "observations")]  # stream's TV weight, or one set
        parts += [config.tv_norm] if config and config.tv_norm != "squared" else []  # a TV norm other than the authors'
        if config and config.final_refit:  # and its last refit's
            parts += ["fr{}x{:g}".format(*config.final_refit)]
        if config and config.polish_iters != preset(self.preset).polish_iters:  # a polish other than the preset's
            parts += [f"po{config.polish_iters}"]
        if self.attack == "sdar":
            sdar = self.attack_config()
            parts += [tag.format(getattr(sdar, name)) for name, tag in SDAR_KEY_TAGS.items()
                      if getattr(sdar, name) != SDAR_KEY_BASELINES[name]]
        return "-".join(parts + [self.data_tag])

    def describe(self) -> str:
        defense = "" if self.defense == NO_DEFENSE else f", {self.defense.label}"
        settings = "".join(f", {name.replace('_', ' ')} {getattr(self, name)}" for name in SETTING_FIELDS.get(self.attack, ())
                           if getattr(self, name) is not None)
        if self.attack in AUXILIARY_FAMILIES:
            return f"inversion {self.dataset} depth {self.depth}{defense}, {self.attack} aux {self.aux}{settings}"
        seen = f", {self.observations} observed" if self.observations else ""
        return (f"inversion {self.dataset} depth {self.depth}{defense}, {self.attack} {self.preset}/{self.mode} "
                f"{self.budget}{settings}{seen}")


@dataclass(frozen=True)
class LabelCell:
    """Label inference while a fresh reference net trains U-shaped, observing its first `samples` examples."""

    kind: ClassVar[str] = "labels"
    dataset: str
    data_tag: str
    depth: int = defaults.LABEL_DEPTH
    defense: DefenseSetting = NO_DEFENSE
    methods: str = "all"  # a name of `runs.LABEL_METHOD_SETS`
    samples: int = defaults.LABEL_SAMPLES
    batch_size: int = defaults.LABEL_BATCH_SIZE
    epochs: int = defaults.LABEL_EPOCHS
    train_samples: int | None = TRAIN_ON_OBSERVED  # -1: the observed examples only; None: all
    known_per_class: int = defaults.KNOWN_PER_CLASS
    seed: int = defaults.SEED

    def __post_init__(self) -> None:
        check_defense(self.defense, GRADIENTS)
        if self.methods not in LABEL_METHOD_SETS:
            raise ValueError(f"unknown label method set {self.methods!r}; choose one of {', '.join(LABEL_METHOD_SETS)}")
        for name, least in (("depth", 1), ("samples", 1), ("batch_size", 1), ("epochs", 1), ("known_per_class", 0),
                            ("seed", 0)):
            at_least(f"cell {name}", getattr(self, name), least)
        if self.train_samples is not None and self.train_samples != TRAIN_ON_OBSERVED:
            at_least("cell train_samples", self.train_samples, 1)
        if self.train_samples is not None and self.train_samples != TRAIN_ON_OBSERVED and self.train_samples < self.samples:
            raise ValueError(f"train_samples {self.train_samples} must be at least samples {self.samples} "
                             "(or -1: the observed ones only, None: all)")

    @property
    def key(self) -> str:
        train = {None: "all", TRAIN_ON_OBSERVED: "obs"}.get(self.train_samples, str(self.train_samples))
        return "-".join(["labels", self.dataset, f"d{self.depth}", defense_tag(self.defense), self.methods,
                         f"n{self.samples}", f"b{self.batch_size}", f"e{self.epochs}", f"tr{train}",
                         f"k{self.known_per_class}", f"s{self.seed}", self.data_tag])

    def describe(self) -> str:
        defense = "" if self.defense == NO_DEFENSE else f", {self.defense.label}"
        return f"labels {self.dataset} depth {self.depth}{defense}, {self.samples} samples, batch {self.batch_size}"


Cell = InversionCell | LabelCell
Run = InversionRun | LabelRun


# ---------------------------------------------------------------- planning grids


def inversion_cells(
    data: Dataset,
    depths: Iterable[int],
    attacks: Sequence[tuple[str, str]] = ((defaults.PRESET, defaults.MODE),),
    *,
    defenses: Sequence[DefenseSetting] = (NO_DEFENSE,),
    seeds: Sequence[int] = (defaults.SEED,),
    budget: Budget | None = None,
    **fields: Any,
) -> list[InversionCell]:
    """One cell per depth × defense × (preset, mode) × seed, depth-major; `fields` set the rest (epochs, ...).
    `budget` None: each attack's `default_budget`."""
    tag = dataset_fingerprint(data)
    return [InversionCell(data.name, tag, depth, defense, preset=name, mode=mode, seed=seed,
                          budget=budget or default_budget(name, mode), **fields)
            for depth in depths for defense in defenses for name, mode in attacks for seed in seeds]


def defense_cells(
    data: Dataset,
    settings: Sequence[DefenseSetting] | None = None,
    *,
    depth: int = defaults.DEPTH,
    seed: int = defaults.SEED,
    inversion: Mapping[str, Any] | None = None,
    labels: Mapping[str, Any] | None = None,
) -> list[Cell]:
    """The defense axis: every setting (default: each registered defense at its default strengths) on its side,
    each side preceded by its undefended cell.

    Activation defenses become inversion cells, gradient defenses label cells
    (trained on all the data for `defaults.EPOCHS`, observing the first
    `defaults.DEFENSE_LABEL_SAMPLES` examples; what a real server can run).
    `inversion` / `labels` override cell fields of that side.
    """
    chosen = default_settings() if settings is None else [check_defense(setting) for setting in settings]
    tag = dataset_fingerprint(data)
    label_fields = {"depth": defaults.LABEL_DEPTH, "methods": "activation_gradient", "samples": defaults.DEFENSE_LABEL_SAMPLES,
                    "batch_size": defaults.DEFENSE_LABEL_BATCH_SIZE, "epochs": defaults.EPOCHS, "train_samples": None,
                    **dict(labels or {})}
    cells: list[Cell] = []
    for side in (ACTIVATIONS, GRADIENTS):
        mine = [s for s in chosen if s == NO_DEFENSE or named_defense(s.name).protects == side]
        if not mine:
            continue
        for setting in [NO_DEFENSE] + [s for s in mine if s != NO_DEFENSE]:
            if side == ACTIVATIONS:
                cells.append(InversionCell(data.name, tag, depth, setting, seed=seed, **dict(inversion or {})))
            else:
                cells.append(LabelCell(data.name, tag, defense=setting, seed=seed, **label_fields))
    return cells


def validate_grid(cells: Sequence[Cell], datasets: Mapping[str, Dataset] | None = None) -> list[Cell]:
    """The cells, without repeats, if every one can run; else one ValueError listing every problem.

    Checks each cut against its net (so `depths 1 99` fails before depth 1 runs), and with
    `datasets` that each cell's data is loaded, has the fingerprint it was planned with, and
    has the test and training images it asks for.
    """
    unique = list({cell.key: cell for cell in cells}.values())
    problems: list[str] = []
    nets: dict[str, keras.Model] = {}
    for cell in unique:
        try:
            _check_cut(cell, nets)
            if datasets is not None:
                _check_data(cell, datasets)
        except ValueError as error:
            problems.append(f"{cell.key}: {error}")
    if problems:
        raise ValueError(f"{len(problems)} of {len(unique)} cells cannot run, nothing was run:\n  " + "\n  ".join(problems))
    return unique


def _check_cut(cell: Cell, nets: dict[str, keras.Model]) -> None:
    if cell.kind == InversionCell.kind and cell.model != REFERENCE:
        return  # a user's model is checked when it is loaded
    if cell.dataset not in nets:
        nets[cell.dataset] = reference_net(cell.dataset)
    if isinstance(cell, InversionCell):
        split_model(nets[cell.dataset], depth=cell.depth)
    else:
        split_u_shaped(nets[cell.dataset], depth=cell.depth)


def _check_data(cell: Cell, datasets: Mapping[str, Dataset]) -> None:
    if cell.dataset not in datasets:
        raise ValueError(f"needs dataset {cell.dataset!r}, but only {sorted(datasets)} were loaded")
    data = datasets[cell.dataset]
    if dataset_fingerprint(data) != cell.data_tag:
        raise ValueError(f"was planned for other {cell.dataset} data (fingerprint {cell.data_tag}, the loaded data has "
                         f"{dataset_fingerprint(data)}); plan it from the loaded data")
    train, test = len(data.x_train), len(data.x_test)
    if isinstance(cell, InversionCell) and cell.targets > test:
        raise ValueError(f"asks for {cell.targets} targets but {cell.dataset} has {test} test images")
    if isinstance(cell, InversionCell):
        check_aux(data, cell.attack, cell.aux, cell.train_samples)
        check_observations(cell.attack, cell.mode, cell.observations, cell.train_samples or train)
    wanted = cell.train_samples if isinstance(cell.train_samples, int) and cell.train_samples > 0 else 0
    if isinstance(cell, LabelCell):
        wanted = max(wanted, cell.samples)
    if wanted > train:
        raise ValueError(f"asks for {wanted} training images but {cell.dataset} has {train}")


# ---------------------------------------------------------------- running cells


@dataclass(frozen=True)
class SweepEvent:
    """Progress of a sweep: a cell was "skipped" (stored before), "busy" (claimed by another sweep), "started" or "finished".

    A backend's "started" and "finished" also say how many of its cells are
    `running` and `left` (not started yet; the others are done) and
    `eta_seconds`: the time left at the pace of the cells finished in this
    sweep so far (wall time per cell, so a parallel backend's is shorter),
    None until one has finished.
    """

    status: str
    cell: Cell
    index: int  # 1-based position in the grid
    total: int
    run: Run | None = None  # for "skipped" and "finished"
    holder: str | None = None  # for "busy": who holds the claim
    running: int | None = None
    left: int | None = None
    eta_seconds: float | None = None

    @property
    def done(self) -> int | None:
        """The backend's cells finished (or left to another sweep), when it counts them."""
        return None if self.running is None or self.left is None else self.total - self.running - self.left


class Pace:
    """A backend's clock: builds its "started" / "finished" events with the counts and the time left."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        self.index = {cell.key: index for index, cell in enumerate(cells, start=1)}
        self.start, self.finished = time.monotonic(), 0

    def event(self, status: str, cell: Cell, *, running: int, left: int, run: Run | None = None) -> SweepEvent:
        self.finished += status == "finished"
        elapsed = time.monotonic() - self.start
        eta = (running + left) * elapsed / self.finished if self.finished else None
        return SweepEvent(status, cell, self.index[cell.key], len(self.index), run, running=running, left=left,
                          eta_seconds=eta)


@dataclass(frozen=True)
class SweepResult:
    """What a sweep left: the runs of every cell the store holds now, and the cells another sweep is computing."""

    runs: list[Run]
    busy: list[Cell]


EventCallback = Callable[[SweepEvent], None]


def run_cells_serial(
    cells: Sequence[Cell],
    run_cell: Callable[[Cell], Run],
    *,
    done: Callable[[Cell], bool],
    save: Callable[[Cell, Run], None],
    on_event: EventCallback | None = None,
) -> None:
    """Run each cell not `done` in this process, in order, and `save` it the moment it finishes.

    `done(cell)` is asked right before a cell would run: a False answer means "run it now" (run_sweep's
    `done` claims the cell for this sweep when it answers False).
    """
    pace = Pace(cells)
    for index, cell in enumerate(cells, start=1):
        if done(cell):
            continue
        _notify(on_event, pace.event("started", cell, running=1, left=len(cells) - index))
        run = run_cell(cell)
        save(cell, run)
        _notify(on_event, pace.event("finished", cell, running=0, left=len(cells) - index, run=run))


def _ray_backend(*args, **kwargs):
    from unsplit_tf.sweep_ray import run_cells_ray  # Ray is optional: imported only when asked for

    return run_cells_ray(*args, **kwargs)


BACKENDS: dict[str, Callable[..., None]] = {"serial": run_cells_serial, "ray": _ray_backend}


def run_sweep(
    cells: Sequence[Cell],
    store: ResultStore,
    runner: Callable[[Cell], Run],
    *,
    backend: str = "serial",
    datasets: Mapping[str, Dataset] | None = None,
    command: str = "",
    on_event: EventCallback | None = None,
    **backend_options: Any,
) -> SweepResult:
    """Validate the whole grid, then run every cell the store lacks and no other sweep has claimed.

    A cell is claimed just before it runs (so two sweeps on one folder share the
    grid) and stored the moment it finishes, with its cell's key and `command`.
    A KeyboardInterrupt stops the sweep after the finished cells were stored (its
    claims released); running the same sweep again resumes it.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    unique = validate_grid(cells, datasets)
    todo = []
    for index, cell in enumerate(unique, start=1):
        if store.has(cell.key):
            _notify(on_event, SweepEvent("skipped", cell, index, len(unique), store.load(cell.key)))
        else:
            todo.append(cell)
    claimed: set[str] = set()
    busy: dict[str, Cell] = {}

    def done(cell: Cell) -> bool:
        """True when this sweep need not run `cell` (stored, or another sweep holds it); False claims it."""
        if cell.key in claimed:
            return store.has(cell.key)
        if store.has(cell.key):
            return True
        if store.claim(cell.key):
            claimed.add(cell.key)
            busy.pop(cell.key, None)
            return False
        busy[cell.key] = cell
        _notify(on_event, SweepEvent("busy", cell, todo.index(cell) + 1, len(todo), holder=store.claim_holder(cell.key)))
        return True

    def save(cell: Cell, run: Run) -> None:
        store.save(dataclasses.replace(run, key=cell.key, command=command or run.command))
        store.release(cell.key)

    try:
        BACKENDS[backend](todo, runner, done=done, save=save, on_event=on_event, **backend_options)
    finally:
        for key in claimed:
            store.release(key)
    return SweepResult([store.load(cell.key) for cell in unique if store.has(cell.key)],
                       [cell for cell in busy.values() if not store.has(cell.key)])


def _notify(on_event: EventCallback | None, event: SweepEvent) -> None:
    if on_event is not None:
        on_event(event)


class CellRunner:
    """Runs cells on loaded data through the run layer (`run_inversion`, `run_label_inference`).

    datasets: the loaded datasets, by canonical name.
    cache_dir: the trained-model cache (default `protocol.default_cache_dir()`).
    on_epoch, on_round, on_step: progress callbacks passed on to the runs (picklable ones, for other backends).
    """

    def __init__(
        self,
        datasets: Mapping[str, Dataset],
        *,
        cache_dir: str | Path | None = None,
        on_epoch: Callable | None = None,
        on_round: Callable | None = None,
        on_step: Callable | None = None,
    ) -> None:
        self.datasets = dict(datasets)
        self.cache_dir = cache_dir
        self.on_epoch, self.on_round, self.on_step = on_epoch, on_round, on_step

    def __call__(self, cell: Cell) -> Run:
        """The cell's run record (keyed); KeyboardInterrupt if the run was interrupted, so that nothing partial is stored."""
        _check_data(cell, self.datasets)
        data = self.datasets[cell.dataset]
        if isinstance(cell, InversionCell):
            run = self._inversion(cell, data)
        else:
            run = run_label_inference(
                data, depth=cell.depth, samples=cell.samples, batch_size=cell.batch_size, epochs=cell.epochs,
                train_samples=cell.train_samples, seed=cell.seed, defense=cell.defense, methods=cell.methods,
                known_per_class=cell.known_per_class, on_step=self.on_step, on_epoch=self.on_epoch).run
        if run.interrupted:
            raise KeyboardInterrupt
        return dataclasses.replace(run, key=cell.key)

    def _inversion(self, cell: InversionCell, data: Dataset) -> InversionRun:
        if cell.attack in AUXILIARY_FAMILIES:  # the family's defaults and the cell's settings; preset, mode and budget are UnSplit's
            config, name = cell.attack_config().replace(seed=cell.seed), None
        else:
            prior = defaults.image_prior(cell.dataset, cell.mode)
            config, name = cell.unsplit_config().replace(seed=cell.seed, prior=prior), cell.preset
        options: dict[str, Any] = {"preset": name, "targets": cell.targets, "cache_dir": self.cache_dir, "aux": cell.aux,
                                   "observations": cell.observations,
                                   "on_epoch": self.on_epoch, "on_round": self.on_round}
        if cell.model == REFERENCE:
            training = TrainConfig(epochs=cell.epochs, batch_size=cell.batch_size, seed=cell.seed)
            victim = VictimSpec(depth=cell.depth, defense=cell.defense, training=training, train_samples=cell.train_samples)
            return run_inversion(data, config, victim=victim, **options).run
        source = ModelSource.of_file(cell.model)
        if source.sha256 != cell.model_sha256:
            raise ValueError(f"{cell.model} changed since the cell was planned (SHA-256 {source.sha256[:8]}, the cell "
                             f"names {cell.model_sha256[:8]}); plan the sweep again")
        model = keras.models.load_model(cell.model, safe_mode=True, compile=False)
        return run_inversion(data, config, victim=split_model(model, depth=cell.depth), model_source=source, **options).run
