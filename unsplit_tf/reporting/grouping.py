"""Typed runs grouped the way the report shows them: depth series, defense groups, label settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unsplit_tf.attacks.inversion import PRESETS
from unsplit_tf.records import NO_DEFENSE, InversionRun, LabelRun
from unsplit_tf.runs import INVERSION_FAMILIES

DATASET_TITLES = {"f_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar": "CIFAR-10"}
MODE_ORDER = ("sequential", "batched")  # the authors' mode first: in tables, and in the depth grid when a preset has both
NOT_APPLICABLE = "-"


def title_of(dataset: str) -> str:
    """A dataset's name for people."""
    return DATASET_TITLES.get(dataset, dataset)


@dataclass(frozen=True, order=True)
class InversionSetting:
    """Everything that fixes an inversion run but its depth and its defense."""

    dataset: str
    data_tag: str
    model: str
    family: str
    preset: str
    mode: str
    budget: str  # "MAINx(INPUT+MODEL)", or "-" for a family without rounds
    epochs: int
    seed: int
    targets: int
    train_images: int

    @property
    def attack_label(self) -> str:
        name = self.preset if self.family == "unsplit" else f"{self.family} {self.preset}"
        return name if self.mode == NOT_APPLICABLE else f"{name}/{self.mode}"


def inversion_setting(run: InversionRun) -> InversionSetting:
    config = run.attack.config_as(INVERSION_FAMILIES[run.attack.family]) if run.attack.family in INVERSION_FAMILIES else None
    mode = getattr(config, "mode", NOT_APPLICABLE)
    rounds = [getattr(config, name, None) for name in ("main_iters", "input_iters", "model_iters")]
    budget = NOT_APPLICABLE if None in rounds else f"{rounds[0]}x({rounds[1]}+{rounds[2]})"
    training = run.victim.training
    return InversionSetting(
        run.data.name, run.data.fingerprint, run.victim.model.label, run.attack.family, run.attack.preset or NOT_APPLICABLE,
        mode, budget, training.epochs if training else 0, training.seed if training else getattr(config, "seed", 0),
        len(run.headline.targets.indices), training.samples if training else run.data.train_images)


@dataclass(frozen=True)
class Series:
    """Undefended inversion runs that differ only in depth: one line of a plot, one block of a table."""

    setting: InversionSetting
    runs: tuple[InversionRun, ...]  # sorted by depth

    @property
    def depths(self) -> list[int]:
        return [run.victim.depth for run in self.runs]

    def at(self, depth: int) -> InversionRun | None:
        return next((run for run in self.runs if run.victim.depth == depth), None)

    def label(self, varying: Sequence[str] = ()) -> str:
        """The attack, plus the other parameters named in `varying` (those that differ between series)."""
        s = self.setting
        extras = {"budget": s.budget, "epochs": f"{s.epochs} epochs", "seed": f"seed {s.seed}", "targets": f"{s.targets} targets"}
        return ", ".join([s.attack_label] + [extras[name] for name in varying if name in extras])


def _setting_rank(setting: InversionSetting) -> tuple:
    presets = list(PRESETS)
    return (setting.dataset, setting.family != "unsplit", setting.family,
            presets.index(setting.preset) if setting.preset in presets else len(presets), setting.preset,
            MODE_ORDER.index(setting.mode) if setting.mode in MODE_ORDER else len(MODE_ORDER), setting)


def inversion_series(runs: Sequence[InversionRun | LabelRun]) -> dict[str, list[Series]]:
    """The undefended inversion runs as depth series, by dataset; ordered by family, preset, mode, then the rest."""
    groups: dict[InversionSetting, list[InversionRun]] = {}
    for run in runs:
        if isinstance(run, InversionRun) and run.victim.defense == NO_DEFENSE:
            groups.setdefault(inversion_setting(run), []).append(run)
    by_dataset: dict[str, list[Series]] = {}
    for setting in sorted(groups, key=_setting_rank):
        ordered = tuple(sorted(groups[setting], key=lambda run: run.victim.depth))
        by_dataset.setdefault(setting.dataset, []).append(Series(setting, ordered))
    return by_dataset


def varying_fields(series: Sequence[Series]) -> list[str]:
    """The parameters besides the attack whose value differs between the series."""
    return [name for name in ("budget", "epochs", "seed", "targets") if len({getattr(s.setting, name) for s in series}) > 1]


def _defense_order(run: InversionRun | LabelRun) -> tuple:
    defense = run.victim.defense
    return (defense != NO_DEFENSE, defense.name, defense.strength or 0.0)


@dataclass(frozen=True)
class DefenseGroup:
    """Runs of one setting and depth that differ only in the defense: the undefended one first, then by name and strength."""

    title: str
    runs: tuple[InversionRun, ...] | tuple[LabelRun, ...]

    @property
    def baseline(self):
        return next((run for run in self.runs if run.victim.defense == NO_DEFENSE), None)


@dataclass(frozen=True, order=True)
class LabelSetting:
    """Everything that fixes a label run but its defense."""

    dataset: str
    data_tag: str
    depth: int
    methods: tuple[str, ...]
    samples: int
    batch_size: int
    epochs: int
    train_images: int
    seed: int


def label_setting(run: LabelRun) -> LabelSetting:
    training = run.victim.training
    return LabelSetting(run.data.name, run.data.fingerprint, run.victim.depth, tuple(m.id for m in run.methods), run.samples,
                        run.batch_size, training.epochs, training.samples, training.seed)


def defense_groups(runs: Sequence[InversionRun | LabelRun]) -> tuple[list[DefenseGroup], list[DefenseGroup]]:
    """(inversion groups, label groups) that hold at least one defended run."""
    inversion: dict[tuple, list[InversionRun]] = {}
    labels: dict[LabelSetting, list[LabelRun]] = {}
    for run in runs:
        if isinstance(run, InversionRun):
            inversion.setdefault((inversion_setting(run), run.victim.depth), []).append(run)
        else:
            labels.setdefault(label_setting(run), []).append(run)

    def groups(found: dict, title) -> list[DefenseGroup]:
        return [DefenseGroup(title(key), tuple(sorted(members, key=_defense_order))) for key, members in sorted(found.items())
                if any(member.victim.defense != NO_DEFENSE for member in members)]

    return (groups(inversion, lambda key: f"{title_of(key[0].dataset)}, depth {key[1]}, {key[0].attack_label}"),
            groups(labels, lambda key: f"{title_of(key.dataset)}, depth {key.depth}, batch {key.batch_size}"))


def undefended_label_runs(runs: Sequence[InversionRun | LabelRun]) -> dict[str, list[LabelRun]]:
    """Label runs without a defense and outside any defense group, by dataset."""
    _, groups = defense_groups(runs)
    grouped = {id(run) for group in groups for run in group.runs}
    found: dict[str, list[LabelRun]] = {}
    for run in runs:
        if isinstance(run, LabelRun) and id(run) not in grouped:
            found.setdefault(run.data.name, []).append(run)
    return found
