"""Typed runs grouped the way the report shows them: depth series, aux-size series, defense groups, label settings;
and the one rule that says whether a defense holds against an attack."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from unsplit_tf.attacks.inversion import PRESETS, InversionConfig, SDARConfig
from unsplit_tf.records import NO_DEFENSE, Evaluation, InversionRun, LabelRun
from unsplit_tf.runs import INVERSION_FAMILIES, OBSERVED_SAMPLE

DATASET_TITLES = {"f_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar": "CIFAR-10"}
FAMILY_TITLES = {"unsplit": "UnSplit", "sdar": "SDAR", "inverse_network": "the inverse network"}
MODE_ORDER = ("sequential", "batched")  # the authors' mode first: in tables, and in the depth grid when a preset has both
NOT_APPLICABLE = "-"
VARYING = ("model", "budget", "restarts", "simulator_steps", "changes", "epochs", "seed", "targets", "aux", "observations")
"""The parameters besides the attack that a label names when they differ between the lines it is told apart from."""
THREAT = ("aux", "observations")
"""The threat model's sizes: named wherever one setting stands alone (a defense group's title)."""


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
    train_images: int  # the client's training images (for an auxiliary-data family: those left once aux is held out)
    aux: int  # labelled auxiliary images the server holds (0: none)
    observations: int  # training examples a stream-mode attack read (0: only the targets')
    restarts: int  # UnSplit's restarts (a preset's count changed once: runs of both counts must not form one line)
    simulator_steps: int  # SDAR's simulator updates per observed batch (its default changed once, as the restarts)
    changes: str = ""  # settings unlike the preset's or the family's defaults, in words ("polish 0, l1 TV 0.675")

    @property
    def attack_label(self) -> str:
        name = (self.family if self.preset == NOT_APPLICABLE else self.preset if self.family == "unsplit"
                else f"{self.family} {self.preset}")
        return name if self.mode == NOT_APPLICABLE else f"{name}/{self.mode}"

    @property
    def _restarts_changed(self) -> bool:
        """Whether an UnSplit run's restarts differ from what its preset's name stands for (a label names them then)."""
        return self.family == "unsplit" and (self.preset not in PRESETS or self.restarts != PRESETS[self.preset].restarts)

    def details(self, varying: Sequence[str]) -> list[str]:
        """Those of the `varying` parameters (names of `VARYING`) that apply to this attack, as words."""
        extras = {"model": self.model, "budget": None if self.budget == NOT_APPLICABLE else self.budget,
                  "epochs": f"{self.epochs} epochs" if self.epochs else None,
                  "seed": f"seed {self.seed}", "targets": f"{self.targets} targets",
                  "aux": f"aux {self.aux}" if self.aux else None,
                  "observations": f"{self.observations} observed" if self.observations else None,
                  "restarts": f"{self.restarts} restart" + "s" * (self.restarts != 1) if self._restarts_changed else None,
                  "changes": self.changes or None,
                  "simulator_steps": (f"{self.simulator_steps} simulator step" + "s" * (self.simulator_steps != 1)
                                      if self.family == "sdar" and self.simulator_steps != SDARConfig().simulator_steps else None)}
        return [text for name in varying if (text := extras[name]) is not None]

    def label(self, varying: Sequence[str] = ()) -> str:
        """The attack, plus the `varying` parameters that apply to it: "sdar, aux 6000", "tuned/stream, 1000 observed"."""
        return ", ".join([self.attack_label, *self.details(varying)])

    def attack_title(self, varying: Sequence[str] | None = None) -> str:
        """The family for people ("SDAR"); with `varying`, told apart from its kin: "UnSplit (tuned/batched)",
        "SDAR (aux 600)"."""
        title = FAMILY_TITLES.get(self.family, self.family)
        if varying is None:
            return title
        parts = ([self.attack_label] if self.family == "unsplit" else []) + self.details(varying)
        return f"{title} ({', '.join(parts)})" if parts else title


def inversion_setting(run: InversionRun) -> InversionSetting:
    config = run.attack.config_as(INVERSION_FAMILIES[run.attack.family]) if run.attack.family in INVERSION_FAMILIES else None
    mode = getattr(config, "mode", NOT_APPLICABLE)
    rounds = [getattr(config, name, None) for name in ("main_iters", "input_iters", "model_iters")]
    budget = NOT_APPLICABLE if None in rounds else f"{rounds[0]}x({rounds[1]}+{rounds[2]})"
    training = run.victim.training
    return InversionSetting(
        run.data.name, run.data.fingerprint, run.victim.model.label, run.attack.family, run.attack.preset or NOT_APPLICABLE,
        mode, budget, training.epochs if training else 0, training.seed if training else getattr(config, "seed", 0),
        len(run.headline.targets.indices), training.samples if training else run.data.train_images,
        run.threat_model.auxiliary_images, run.threat_model.observed_examples, getattr(config, "restarts", 1),
        getattr(config, "simulator_steps", 1), _changes(config, run.attack.preset))


CHANGE_WORDS = {"polish_iters": "polish {}".format, "refit_iters": "refit {}".format, "refine_cycles": "{} refine cycles".format,
                "simulator_lr": "simulator learning rate {:g}".format, "lambda_ssim": "SSIM weight {:g}".format,
                "feature_memory": "feature memory {}".format,
                "mmd_class_width": lambda width: f"class-wise MMD {width:g}" if width else "class-blind MMD"}
"""How a label words a setting the grid verbs may set (`sweep.SETTING_FIELDS`; the TV term is worded whole, SDAR's
simulator steps have their own field), as a function of its value."""


def _changes(config, preset_name: str | None) -> str:
    """A run's settings that differ from its preset's (UnSplit) or the family's defaults (SDAR), in words; "" if none."""
    if isinstance(config, SDARConfig):
        reference = SDARConfig()
    elif isinstance(config, InversionConfig) and preset_name in PRESETS:
        reference = PRESETS[preset_name]
    else:
        return ""
    words = [words_of(getattr(config, name)) for name, words_of in CHANGE_WORDS.items()
             if hasattr(reference, name) and getattr(config, name) != getattr(reference, name)]
    if isinstance(config, InversionConfig) and (config.tv_norm, config.lambda_tv) != (reference.tv_norm, reference.lambda_tv):
        words.append(f"{config.tv_norm} TV {config.lambda_tv:g}")
    return ", ".join(words)


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
        return self.setting.label(varying)


def _setting_rank(setting: InversionSetting) -> tuple:
    presets, families = list(PRESETS), list(INVERSION_FAMILIES)
    return (setting.dataset, families.index(setting.family) if setting.family in families else len(families), setting.family,
            presets.index(setting.preset) if setting.preset in presets else len(presets), setting.preset,
            MODE_ORDER.index(setting.mode) if setting.mode in MODE_ORDER else len(MODE_ORDER), setting.aux,
            setting.observations, setting)


def inversion_series(runs: Sequence[InversionRun | LabelRun]) -> dict[str, list[Series]]:
    """The undefended inversion runs as depth series, by dataset; ordered by family, preset, mode, aux, then the rest."""
    groups: dict[InversionSetting, list[InversionRun]] = {}
    for run in runs:
        if isinstance(run, InversionRun) and run.victim.defense == NO_DEFENSE:
            groups.setdefault(inversion_setting(run), []).append(run)
    by_dataset: dict[str, list[Series]] = {}
    for setting in sorted(groups, key=_setting_rank):
        ordered = tuple(sorted(groups[setting], key=lambda run: run.victim.depth))
        by_dataset.setdefault(setting.dataset, []).append(Series(setting, ordered))
    return by_dataset


def varying_fields(series: Sequence[Series | AuxSeries | DefenseGroup]) -> list[str]:
    """The parameters besides the attack whose value differs between the series' (or groups') inversion settings (a
    budget only where one applies)."""
    return _varying([one.setting for one in series])


def _varying(settings: Sequence[InversionSetting]) -> list[str]:
    """The names of `VARYING` whose value differs between `settings` (a budget only where one applies)."""
    def values(name: str) -> set:
        return {getattr(setting, name) for setting in settings} - ({NOT_APPLICABLE} if name == "budget" else set())

    return [name for name in VARYING if len(values(name)) > 1]


def observed_sample(run: InversionRun) -> Evaluation | None:
    """The run's evaluation on a sample of the training batches it observed, if it has one (SDAR)."""
    return next((evaluation for evaluation in run.evaluations if evaluation.name == OBSERVED_SAMPLE), None)


@dataclass(frozen=True)
class AuxSeries:
    """Undefended runs of one auxiliary-data attack at one depth that differ only in aux: a line against aux size."""

    setting: InversionSetting  # the runs' setting with aux 0 (and their client's training images, when not "the rest")
    depth: int
    runs: tuple[InversionRun, ...]  # sorted by aux

    @property
    def sizes(self) -> list[int]:
        return [run.threat_model.auxiliary_images for run in self.runs]

    def label(self, varying: Sequence[str] = ()) -> str:
        return f"{self.setting.label(varying)}, depth {self.depth}"


def aux_series(by_dataset: dict[str, list[Series]]) -> dict[str, list[AuxSeries]]:
    """The depth series' auxiliary-data runs regrouped against aux size, by dataset: only lines with two sizes or more."""
    lines: dict[tuple[InversionSetting, int], list[InversionRun]] = {}
    for series in by_dataset.values():
        for one in series:
            if not one.setting.aux:
                continue
            for run in one.runs:
                # The client trains on what aux leaves (unless told a size): that count follows aux, so it is no axis.
                rest = one.setting.train_images + one.setting.aux == run.data.train_images
                key = dataclasses.replace(one.setting, aux=0, train_images=0 if rest else one.setting.train_images)
                lines.setdefault((key, run.victim.depth), []).append(run)
    found: dict[str, list[AuxSeries]] = {}
    for (setting, depth), runs in sorted(lines.items(), key=lambda item: (_setting_rank(item[0][0]), item[0][1])):
        if len({run.threat_model.auxiliary_images for run in runs}) > 1:
            ordered = tuple(sorted(runs, key=lambda run: run.threat_model.auxiliary_images))
            found.setdefault(setting.dataset, []).append(AuxSeries(setting, depth, ordered))
    return found


HOLDS_MEANING = ("the attack's MSE is no lower than the dataset-mean image's and its SSIM no higher, on the targets and "
                 "on the observed sample where there is one, on raw scores and on the aligned ones the records hold "
                 "(each beside the mean image aligned the same way)")
"""What `defense_holds` decides, in words for the report."""


def defense_holds(run: InversionRun) -> bool:
    """Whether the defense of `run` holds against its attack: the one place of the rule (`HOLDS_MEANING` in words)."""
    def held(evaluation: Evaluation) -> bool:
        ours, mean = evaluation.reconstruction, evaluation.baselines.dataset_mean
        scores = [(ours.mean_mse, ours.mean_ssim, mean.mean_mse, mean.mean_ssim),
                  *evaluation.aligned_beside_mean_image().values()]
        return all(mse >= mean_mse and ssim <= mean_ssim for mse, ssim, mean_mse, mean_ssim in scores)

    return all(held(evaluation) for evaluation in run.evaluations)


def _defense_order(run: InversionRun | LabelRun) -> tuple:
    defense = run.victim.defense
    return (defense != NO_DEFENSE, defense.name, defense.strength or 0.0)


@dataclass(frozen=True)
class DefenseGroup:
    """Runs of one setting and depth that differ only in the defense: the undefended one first, then by name and strength."""

    title: str
    setting: InversionSetting | LabelSetting
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

    def defended(found: dict) -> list[tuple]:
        """(key, its runs in order) of the keys that hold at least one defended run."""
        return [(key, tuple(sorted(members, key=_defense_order))) for key, members in found.items()
                if any(member.victim.defense != NO_DEFENSE for member in members)]

    by_attack = sorted(defended(inversion), key=lambda item: (_setting_rank(item[0][0]), item[0][1]))

    def named(setting: InversionSetting, depth: int) -> list[str]:
        """The threat model's sizes, and whatever tells this group from the others at its dataset and depth."""
        kin = [other for (other, at), _ in by_attack if (other.dataset, at) == (setting.dataset, depth)]
        told = _varying(kin)
        return [name for name in VARYING if name in THREAT or name in told]

    return ([DefenseGroup(f"{title_of(setting.dataset)}, depth {depth}, {setting.label(named(setting, depth))}", setting,
                          members) for (setting, depth), members in by_attack],
            [DefenseGroup(f"{title_of(key.dataset)}, depth {key.depth}, batch {key.batch_size}", key, members)
             for key, members in sorted(defended(labels))])


def undefended_label_runs(runs: Sequence[InversionRun | LabelRun]) -> dict[str, list[LabelRun]]:
    """Label runs without a defense and outside any defense group, by dataset."""
    _, groups = defense_groups(runs)
    grouped = {id(run) for group in groups for run in group.runs}
    found: dict[str, list[LabelRun]] = {}
    for run in runs:
        if isinstance(run, LabelRun) and id(run) not in grouped:
            found.setdefault(run.data.name, []).append(run)
    return found
