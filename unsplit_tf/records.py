"""The records of runs: the one contract between the run layer and everything that writes or reads results.

Every record is a frozen dataclass. `to_dict()` / `from_dict()` are one generic
implementation (`Record`) driven by the fields' type hints, so a key is defined
once, as a field name. The two run records, `InversionRun` and `LabelRun`, carry
the `SCHEMA_VERSION` they were written with and are read back by `run_from_dict`;
a record of another schema is refused with a `RecordError` that says what to do.

Image arrays (originals, reconstructions) travel with an `InversionRun` in its
`arrays` field but are not part of its JSON: a store keeps them beside it as .npz.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import platform
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np

from unsplit_tf.data import dataset_fingerprint

SCHEMA_VERSION = 1
"""The version of the record layout; raise it whenever a field changes meaning or is removed."""

KIND_KEY = "kind"
SCHEMA_KEY = "schema"
ARRAYS = "arrays"  # field metadata flag: kept out of the JSON, stored as .npz beside it
ABSENT = "absent"
"""Field metadata key: the value a record written before the field existed ran with (when it differs from the
field's default now), so that an older record is never read as having used a newer default."""

R = TypeVar("R", bound="Record")
T = TypeVar("T")


class RecordError(ValueError):
    """A dict that is not a valid record of this schema; the message names the problem."""


def to_jsonable(value: Any) -> Any:
    """`value` with dataclasses as dicts, tuples as lists and numpy scalars/arrays as Python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {item.name: to_jsonable(getattr(value, item.name))
                for item in dataclasses.fields(value) if not item.metadata.get(ARRAYS)}
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(hint: Any, value: Any, where: str) -> Any:
    """Build a value of type `hint` from its JSON form (the inverse of `to_jsonable`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise RecordError(f"{where}: {value!r} is not one of {args}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _decode(options[0], value, where)
        for option in options:
            try:
                return _decode(option, value, where)
            except RecordError:
                continue
        raise RecordError(f"{where}: {value!r} is none of {hint}")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
        if len(args) != len(value):
            raise RecordError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_decode(arg, item, f"{where}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
    if origin in (dict, Mapping, typing.get_origin(Mapping[str, Any])):
        if not isinstance(value, Mapping):
            raise RecordError(f"{where}: expected an object, got {value!r}")
        return {key: _decode(args[1] if args else Any, item, f"{where}.{key}") for key, item in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise RecordError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _decode_dataclass(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, Mapping):
        raise RecordError(f"{where}: expected an object for {cls.__name__}, got {value!r}")
    hints = typing.get_type_hints(cls)
    stored = [item for item in dataclasses.fields(cls) if item.init and not item.metadata.get(ARRAYS)]
    unknown = set(value) - {item.name for item in stored} - {KIND_KEY, SCHEMA_KEY}
    if unknown:
        raise RecordError(f"{where}: unknown keys {sorted(unknown)} for {cls.__name__}")
    kwargs = {}
    for item in stored:
        if item.name in value:
            kwargs[item.name] = _decode(hints[item.name], value[item.name], f"{where}.{item.name}")
        elif ABSENT in item.metadata:
            kwargs[item.name] = item.metadata[ABSENT]
        elif item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where}: {cls.__name__} needs key {item.name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise RecordError(f"{where}: {error}") from error


class Record:
    """Mixin of every record dataclass: the one generic `to_dict()` / `from_dict()`."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the fields (arrays left out)."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record `to_dict` made; RecordError naming the first bad key."""
        return _decode_dataclass(cls, data, cls.__name__)


def now() -> str:
    """The current UTC time, as records state it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- where and on what a run happened


@dataclass(frozen=True)
class Environment(Record):
    """The software and machine a run happened on, and how busy the machine was when it started."""

    package: str
    tensorflow: str
    keras: str
    numpy: str
    python: str
    machine: str
    cpu_count: int | None
    gpus: int
    load_average_1min: float | None = None

    @classmethod
    def current(cls) -> Environment:
        import keras
        import tensorflow as tf

        import unsplit_tf

        return cls(
            package=unsplit_tf.__version__,
            tensorflow=tf.__version__,
            keras=keras.__version__,
            numpy=np.__version__,
            python=platform.python_version(),
            machine=platform.machine(),
            cpu_count=os.cpu_count(),
            gpus=len(tf.config.list_logical_devices("GPU")),
            load_average_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        )


@dataclass(frozen=True)
class DataInfo(Record):
    """Which data a run used: its name, where it came from, and a fingerprint of all of it."""

    name: str
    source: str
    fingerprint: str
    train_images: int
    test_images: int
    image_shape: tuple[int, ...]
    num_classes: int

    @classmethod
    def of(cls, data: Any) -> DataInfo:
        """The record of a `unsplit_tf.data.Dataset`."""
        return cls(data.name, data.source, dataset_fingerprint(data), len(data.x_train), len(data.x_test),
                   tuple(int(n) for n in data.x_train.shape[1:]), len(data.class_names))


@dataclass(frozen=True)
class ThreatModel(Record):
    """What the attacker (an honest-but-curious server) is granted; every run states it.

    name: e.g. "data-oblivious" (architecture + observations only) or "auxiliary-data".
    observations: what crossed the wire that the attack reads.
    auxiliary_images: images from the same distribution the server holds (0: none).
    auxiliary_labels: whether those come with labels.
    known_labels: how many labels of observed examples the server is told (side knowledge).
    observed_examples: training examples whose smashed data the attack read (stream mode; 0: only the targets').
    image_prior: what the attack assumes about the pictures ("" for nothing).
    """

    name: str
    knows_architecture: bool
    observations: str
    auxiliary_images: int = 0
    auxiliary_labels: bool = False
    known_labels: int = 0
    observed_examples: int = 0
    image_prior: str = ""

    def summary(self) -> str:
        parts = [self.name, "knows the client's architecture" if self.knows_architecture else "architecture unknown",
                 f"sees {self.observations}"]
        if self.auxiliary_images:
            parts.append(f"holds {self.auxiliary_images} auxiliary images"
                         + (" with labels" if self.auxiliary_labels else " without labels"))
        if self.known_labels:
            parts.append(f"is told {self.known_labels} labels")
        if self.observed_examples:
            parts.append(f"attacks the smashed data of {self.observed_examples} training examples with one clone")
        if self.image_prior:
            parts.append(f"assumes {self.image_prior}")
        return ", ".join(parts)


DATA_OBLIVIOUS = ThreatModel("data-oblivious", True, "the cut-layer activations of the attacked inputs")
"""UnSplit's threat model: the client's architecture and the smashed data, nothing else."""


# ---------------------------------------------------------------- the victim


@dataclass(frozen=True)
class ModelSource(Record):
    """Which network the client and server run: the dataset's reference net or a user's file (hashed)."""

    kind: str  # "reference", "builtin" (another net of `unsplit_tf.models`), "file" (a user's saved model) or "given" (a split passed in)
    name: str  # the dataset's reference net name, the builtin's name ("resnet20"), or the file's name
    sha256: str | None = None  # of the user's file

    @classmethod
    def of_file(cls, path: str | os.PathLike) -> ModelSource:
        """A user's saved model, named by its file and identified by the SHA-256 of its bytes."""
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        return cls("file", os.path.basename(os.fspath(path)), digest.hexdigest())

    @property
    def label(self) -> str:
        return "reference net" if self.kind == "reference" else self.name


@dataclass(frozen=True)
class DefenseSetting(Record):
    """A named defense of `unsplit_tf.defenses` at one strength ("none": undefended)."""

    name: str = "none"
    strength: float | None = None

    @property
    def label(self) -> str:
        return self.name if self.strength is None else f"{self.name} {self.strength:g}"


NO_DEFENSE = DefenseSetting()


@dataclass(frozen=True)
class Training(Record):
    """How the victim was trained (split learning), and whether it came from the model cache."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    samples: int  # training images used
    from_cache: bool = False
    seconds: float | None = None  # None when loaded from the cache
    steps_done: int | None = None  # training steps run, when Ctrl-C stopped the training before the end (else None)


@dataclass(frozen=True)
class Victim(Record):
    """The attacked deployment: the model, where it is cut, its defense, how it was trained, how good it is."""

    model: ModelSource
    cut_layer: str
    depth: int
    defense: DefenseSetting
    training: Training | None
    test_accuracy: float | None  # of the whole split model on the test set (None if not measured)

    def summary(self) -> str:
        text = f"{self.model.label}, depth {self.depth} ({self.cut_layer})"
        text += "" if self.defense.name == NO_DEFENSE.name else f", defense {self.defense.label}"
        return text + ("" if self.test_accuracy is None else f", test accuracy {self.test_accuracy:.1%}")


# ---------------------------------------------------------------- the attack and its scores


@dataclass(frozen=True)
class RestartChoice(Record):
    """How UnSplit's restarts were compared and which one the result is: from what the server computes (the
    matching loss, the pictures' disagreement), never from the true error."""

    matching_loss: tuple[float | None, ...]  # each restart's when compared (None: stopped before its first round)
    disagreement: tuple[float, ...]  # each compared restart's, when the rule used it (else empty)
    kept: int  # the restart the result is, 0-based
    compared_after: int  # the round they were compared after (`main_iters`: at the end)

    @classmethod
    def of(cls, losses: Any, disagreement: Any, kept: int, compared_after: int) -> RestartChoice:
        return cls(tuple(float(v) if np.isfinite(v) else None for v in losses), tuple(float(v) for v in disagreement),
                   int(kept), int(compared_after))


@dataclass(frozen=True)
class AttackInfo(Record):
    """Which attack ran: its family ("unsplit", "sdar", "inverse_network", ...), preset and full config, and for
    UnSplit with restarts how one was kept, and the weight its TV term had (the config's `lambda_tv`, times the
    observations' mean square when its `tv_scale` says so)."""

    family: str
    preset: str | None
    config: dict[str, Any]  # the config dataclass's fields, JSON-safe
    restarts: RestartChoice | None = None
    tv_weight: float | None = None  # UnSplit's; None for the other families

    @classmethod
    def of(cls, family: str, preset: str | None, config: Any, restarts: RestartChoice | None = None,
           tv_weight: float | None = None) -> AttackInfo:
        return cls(family, preset, to_jsonable(config), restarts, tv_weight)

    def config_as(self, config_type: type[T]) -> T:
        """The config as its typed dataclass (e.g. `InversionConfig` for "unsplit")."""
        return _decode_dataclass(config_type, self.config, f"{self.family} config")


@dataclass(frozen=True)
class ImageScores(Record):
    """Per-image MSE, PSNR (dB) and SSIM (data range 1) of one set of images against the originals.

    `affine_aligned_*`: the same after each image's best affine fit of intensities (a·x̂ + b), so a
    recovered but inverted or dimmed picture is not scored as no leak; `shift_aligned_*`: after the one
    translation of all images, at most `scoring.SHIFT_RADIUS` pixels per axis, that fits them best, and `shift`
    that translation (rows, columns), so pictures a pixel or two off are not either (empty when not computed).
    """

    mse: tuple[float, ...]
    psnr: tuple[float, ...]
    ssim: tuple[float, ...]
    affine_aligned_mse: tuple[float, ...] = ()
    affine_aligned_ssim: tuple[float, ...] = ()
    shift_aligned_mse: tuple[float, ...] = ()
    shift_aligned_ssim: tuple[float, ...] = ()
    shift: tuple[int, ...] = ()

    @classmethod
    def of(cls, scores: Any) -> ImageScores:
        """From `unsplit_tf.scoring.ReconstructionScores`."""
        def floats(name: str) -> tuple[float, ...]:
            values = getattr(scores, name, None)
            return () if values is None else tuple(float(v) for v in values)

        names = ("mse", "psnr", "ssim", "affine_aligned_mse", "affine_aligned_ssim", "shift_aligned_mse", "shift_aligned_ssim")
        shift = getattr(scores, "shift", None)
        return cls(*(floats(name) for name in names), shift=() if shift is None else tuple(int(v) for v in shift))

    @property
    def mean_affine_aligned_mse(self) -> float | None:
        return float(np.mean(self.affine_aligned_mse)) if self.affine_aligned_mse else None

    @property
    def mean_affine_aligned_ssim(self) -> float | None:
        return float(np.mean(self.affine_aligned_ssim)) if self.affine_aligned_ssim else None

    @property
    def mean_shift_aligned_mse(self) -> float | None:
        return float(np.mean(self.shift_aligned_mse)) if self.shift_aligned_mse else None

    @property
    def mean_shift_aligned_ssim(self) -> float | None:
        return float(np.mean(self.shift_aligned_ssim)) if self.shift_aligned_ssim else None

    @property
    def shift_name(self) -> str:
        """"(ROWS, COLUMNS) px" when a translation fits better than none, else ""."""
        if not any(self.shift):
            return ""
        rows, columns = self.shift
        return f"({rows:+d}, {columns:+d}) px"

    def shift_text(self) -> str:
        """", shifted by (ROWS, COLUMNS) px: MSE m, SSIM s" when a translation fits better than none, else ""."""
        if not self.shift_name:
            return ""
        return (f", shifted by {self.shift_name}: MSE {self.mean_shift_aligned_mse:.4f}, "
                f"SSIM {self.mean_shift_aligned_ssim:.3f}")

    @property
    def n(self) -> int:
        return len(self.mse)

    @property
    def mean_mse(self) -> float:
        return float(np.mean(self.mse))

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))


@dataclass(frozen=True)
class Baselines(Record):
    """Scores of guesses that use no leaked information, on the same targets."""

    constant_grey: ImageScores
    uniform_random: ImageScores
    dataset_mean: ImageScores


@dataclass(frozen=True)
class Targets(Record):
    """Which images were attacked: rows of the test set (or of the observed training data)."""

    split: str  # "test" or "train"
    indices: tuple[int, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation(Record):
    """The reconstructions of one target set, scored against the originals and beside the baselines."""

    name: str  # e.g. "class_targets" (first test image of each class) or "observed_sample"
    targets: Targets
    minmax_normalised: bool  # reconstructions min-max normalised before scoring (CIFAR-10, as the authors do)
    reconstruction: ImageScores
    baselines: Baselines
    negative: ImageScores | None = None  # scores of 1 - x_hat: a negative shows the object too

    @property
    def either_polarity(self) -> tuple[float, float]:
        """Mean MSE and SSIM of the better of x_hat and 1 - x_hat per image, as an attacker who looks would pick."""
        if self.negative is None:
            return self.reconstruction.mean_mse, self.reconstruction.mean_ssim
        return (float(np.mean(np.minimum(self.reconstruction.mse, self.negative.mse))),
                float(np.mean(np.maximum(self.reconstruction.ssim, self.negative.ssim))))

    @property
    def beats_mean_image(self) -> bool:
        """Lower MSE and higher SSIM than the training set's mean image: the attack learnt something."""
        mean = self.baselines.dataset_mean
        return self.reconstruction.mean_mse < mean.mean_mse and self.reconstruction.mean_ssim > mean.mean_ssim

    def aligned_beside_mean_image(self) -> dict[str, tuple[float, float, float, float]]:
        """By alignment ("affine", "shift"): (MSE, SSIM, the mean image's MSE, its SSIM), each image aligned the same
        way; only the alignments the record holds for both."""
        ours, mean = self.reconstruction, self.baselines.dataset_mean
        found = {}
        for kind in ("affine", "shift"):
            values = tuple(getattr(scores, f"mean_{kind}_aligned_{name}") for scores in (ours, mean) for name in ("mse", "ssim"))
            if None not in values:
                found[kind] = values
        return found

    @property
    def beats_mean_image_aligned(self) -> bool | None:
        """Whether the affine- or the shift-aligned scores beat the mean image's, aligned the same way (lower MSE and
        higher SSIM): a picture recovered up to a change the clone absorbs is a leak too. None where the record
        holds neither alignment for both."""
        pairs = self.aligned_beside_mean_image().values()
        return any(mse < mean_mse and ssim > mean_ssim for mse, ssim, mean_mse, mean_ssim in pairs) if pairs else None

    def verdict_text(self) -> str:
        """"yes" or "no" against the mean image on the raw scores, "no (yes once aligned)" when only an alignment
        beats it."""
        if self.beats_mean_image:
            return "yes"
        return "no (yes once aligned)" if self.beats_mean_image_aligned else "no"


@dataclass(frozen=True)
class CloneScores(Record):
    """A stolen client through the real server: accuracy of server(clone(x)), of server(client(x)), agreement."""

    clone_accuracy: float
    original_accuracy: float
    agreement: float
    n: int

    @classmethod
    def of(cls, quality: Any) -> CloneScores:
        """From `unsplit_tf.scoring.CloneQuality`."""
        return cls(quality.clone_accuracy, quality.original_accuracy, quality.agreement, quality.n)


@dataclass(frozen=True)
class Timings(Record):
    """Seconds spent, and the attack's throughput."""

    attack_seconds: float
    total_seconds: float
    train_seconds: float | None = None  # None: the victim came from the cache (or was given)
    image_steps_per_second: float | None = None


# ---------------------------------------------------------------- the two run records


class RunRecord(Record):
    """A finished (or interrupted) run: adds its kind and the schema version to its dict, and checks them back."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {KIND_KEY: self.kind, SCHEMA_KEY: SCHEMA_VERSION, **super().to_dict()}

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        if not isinstance(data, Mapping) or data.get(KIND_KEY) != cls.kind:
            found = data.get(KIND_KEY) if isinstance(data, Mapping) else type(data).__name__
            raise RecordError(f"not a {cls.kind} record (kind {found!r})")
        if data.get(SCHEMA_KEY) != SCHEMA_VERSION:
            raise RecordError(f"a record of schema {data.get(SCHEMA_KEY)!r}; this version reads schema {SCHEMA_VERSION}")
        return super().from_dict(data)


@dataclass(frozen=True)
class InversionRun(RunRecord):
    """Input recovery (and model stealing) against one victim: what ran, on what, how well.

    `evaluations[0]` is the headline (the class targets); more sets (e.g. a sample of
    the observed training batches) may follow. `arrays` (uint8 originals and
    reconstructions, target indices) travel with the record but not in its JSON.
    """

    kind: ClassVar[str] = "inversion"
    environment: Environment
    data: DataInfo
    threat_model: ThreatModel
    victim: Victim
    attack: AttackInfo
    evaluations: tuple[Evaluation, ...]
    clone: CloneScores | None  # the stolen client (None when the family steals none)
    clone_before_attack: CloneScores | None  # the clone's starting point, for scale
    timings: Timings
    distance_correlation: float | None = None  # dCor(x, z) of test images and what the server receives
    interrupted: bool = False
    finished_at: str = ""
    key: str = ""  # the sweep cell's key, when a sweep made it
    command: str = ""  # the command line that made it, when one did
    arrays: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False, metadata={ARRAYS: True})

    @property
    def headline(self) -> Evaluation:
        return self.evaluations[0]

    def summary(self) -> str:
        """One line: attack, victim, headline MSE/SSIM, whether it beat the dataset-mean image, the clone."""
        head = self.headline
        mean = head.baselines.dataset_mean
        verdict = "beats" if head.beats_mean_image else "does NOT beat"
        text = (f"{self.attack.family}" + (f" ({self.attack.preset})" if self.attack.preset else "")
                + f" on {self.data.name}, {self.victim.summary()}: MSE {head.reconstruction.mean_mse:.4f}, "
                f"SSIM {head.reconstruction.mean_ssim:.3f}"
                + (f" (affine-aligned {head.reconstruction.mean_affine_aligned_ssim:.3f})"
                   if head.reconstruction.mean_affine_aligned_ssim is not None else "")
                + head.reconstruction.shift_text()
                + f" over {head.reconstruction.n} targets; {verdict} the "
                f"dataset-mean image (MSE {mean.mean_mse:.4f}, SSIM {mean.mean_ssim:.3f})"
                + (" on raw scores, but beats it once aligned" if not head.beats_mean_image and head.beats_mean_image_aligned
                   else ""))
        if self.clone is not None:
            text += f"; stolen clone {self.clone.clone_accuracy:.1%} (model {self.clone.original_accuracy:.1%})"
        return text + (" [INTERRUPTED]" if self.interrupted else "")


@dataclass(frozen=True)
class LabelMethodScores(Record):
    """How one label-inference attack or baseline did, over the examples whose label it was not told."""

    id: str
    description: str
    observation: str
    method: str
    accuracy: float | None
    relabelled_accuracy: float | None
    auc: float | None
    evaluated: int
    known: int
    chance: float
    config: dict[str, Any] = field(default_factory=dict)  # the attack's config, JSON-safe (empty for baselines)

    def summary(self) -> str:
        parts = [f"{self.id}:"]
        if self.accuracy is not None:
            parts.append(f"accuracy {self.accuracy:.1%}")
        if self.relabelled_accuracy is not None:
            parts.append(f"relabelled {self.relabelled_accuracy:.1%}")
        if self.auc is not None:
            parts.append(f"AUC {self.auc:.3f}")
        parts.append(f"(chance {self.chance:.1%}, {self.evaluated} examples)")
        return " ".join(parts)


@dataclass(frozen=True)
class LabelRun(RunRecord):
    """Label inference while a victim trains (U-shaped split): every method's scores."""

    kind: ClassVar[str] = "labels"
    environment: Environment
    data: DataInfo
    threat_model: ThreatModel
    victim: Victim
    samples: int  # training examples observed
    batch_size: int
    methods: tuple[LabelMethodScores, ...]
    timings: Timings
    gradient_norm_median: float | None = None  # median ||dL/da|| the server received
    interrupted: bool = False
    finished_at: str = ""
    key: str = ""
    command: str = ""

    def method(self, method_id: str) -> LabelMethodScores:
        for scores in self.methods:
            if scores.id == method_id:
                return scores
        raise KeyError(f"no method {method_id!r} in this run; it has {[m.id for m in self.methods]}")

    def summary(self) -> str:
        """One line: victim, observations, then the best accuracy and every method briefly."""
        best = max((m for m in self.methods if m.accuracy is not None), key=lambda m: m.accuracy, default=None)
        text = f"label inference on {self.data.name}, {self.victim.summary()}, {self.samples} examples in batches of {self.batch_size}"
        if best is not None:
            text += f": best {best.id} {best.accuracy:.1%} (chance {best.chance:.1%})"
        return text + (" [INTERRUPTED]" if self.interrupted else "")


RUN_TYPES: dict[str, type[RunRecord]] = {InversionRun.kind: InversionRun, LabelRun.kind: LabelRun}


def run_from_dict(data: Mapping[str, Any]) -> InversionRun | LabelRun:
    """The run record of either kind; RecordError if it is neither or of another schema."""
    kind = data.get(KIND_KEY) if isinstance(data, Mapping) else None
    if kind not in RUN_TYPES:
        raise RecordError(f"not a run record: kind {kind!r}, expected one of {sorted(RUN_TYPES)}")
    return RUN_TYPES[kind].from_dict(data)


__all__ = [
    "DATA_OBLIVIOUS", "NO_DEFENSE", "RUN_TYPES", "SCHEMA_VERSION", "AttackInfo", "Baselines", "CloneScores",
    "DataInfo", "DefenseSetting", "Environment", "Evaluation", "ImageScores", "InversionRun", "LabelMethodScores",
    "LabelRun", "ModelSource", "Record", "RecordError", "RestartChoice", "RunRecord", "Targets", "ThreatModel", "Timings",
    "Training", "Victim", "now", "run_from_dict", "to_jsonable",
]
