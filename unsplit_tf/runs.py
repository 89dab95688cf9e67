"""The run layer: victim -> observations -> attack -> scores -> record, once for every caller.

`run_inversion` and `run_label_inference` build (or load) the victim, let the
server observe what crosses the wire, run the attack on that alone (what its
threat model grants), score the result outside the attack, and return a typed
record (`unsplit_tf.records`) with the artifacts a caller may save. The
command-line front doors, the sweep and the notebooks call these and nothing
else of the pipeline. Progress goes through callbacks; nothing here prints.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf import defaults
from unsplit_tf._watchers import LastEpochObservations, SDARWatcher
from unsplit_tf._validation import at_least
from unsplit_tf.attacks.inversion import (
    AuxiliaryResult,
    InverseNetworkConfig,
    InversionConfig,
    InversionResult,
    PRIOR_ASSUMPTIONS,
    RoundReport,
    SDARConfig,
    invert,
    query_free_attack,
)
from unsplit_tf.attacks.labels import (  # the label attacks, in one place
    DirectionScoring,
    KnownLabels,
    LabelInferenceAttack,
    LabelInferenceConfig,
    LabelInferenceResult,
    NormScoring,
)
from unsplit_tf.data import Dataset, indices_by_class
from unsplit_tf.defenses import (
    ACTIVATIONS,
    GRADIENTS,
    check_defense,
    distance_correlation,
    make_defense,
    split_u_shaped_with_defense,
    split_with_defense,
)
from unsplit_tf.models import reference_net, resnet20
from unsplit_tf.protocol import SplitTrainer, TrainConfig, UShapedTrainer, UShapedWireRecord, WireRecord, train_reference_net
from unsplit_tf.records import (
    DATA_OBLIVIOUS,
    NO_DEFENSE,
    AttackInfo,
    Baselines,
    CloneScores,
    DataInfo,
    DefenseSetting,
    Environment,
    Evaluation,
    ImageScores,
    InversionRun,
    LabelMethodScores,
    LabelRun,
    ModelSource,
    RestartChoice,
    Targets,
    ThreatModel,
    Timings,
    Training,
    Victim,
    now,
    to_jsonable,
)
from unsplit_tf.scoring import baseline_scores, clone_quality, evaluate_labels, minmax_normalize, reconstruction_scores
from unsplit_tf.split import Split, clone_architecture, split_model, split_u_shaped

MINMAX_DATASETS = ("cifar",)
"""Datasets whose reconstructions are min-max normalised before scoring (the authors' convention)."""

INVERSION_FAMILIES: dict[str, type] = {"unsplit": InversionConfig, "sdar": SDARConfig, "inverse_network": InverseNetworkConfig}
"""Attack family -> its config type. Every family but "unsplit" needs `aux` auxiliary images."""
AUXILIARY_FAMILIES = ("sdar", "inverse_network")

OBSERVED_SAMPLE = "observed_sample"
STREAM_SAMPLE_SIZE = 100
"""Attacked observations scored in stream mode: a seeded random sample (all are reconstructed; scoring is cheap)."""

CLASS_TARGETS = "class_targets"
TRAIN_ON_OBSERVED = -1
"""`train_samples` of a label run that trains on the observed examples only (the authors' demo)."""

EpochCallback = Callable[[int, float], None]
Alongside = Callable[[keras.Model, keras.Model], Callable[[WireRecord], None]]
"""(known client architecture, the server being trained) -> the `on_step` of an attack running alongside training."""


ARCHITECTURES: dict[str, Callable[[Dataset], keras.Model]] = {
    "reference": lambda data: reference_net(data.name),
    "resnet20": lambda data: resnet20(tuple(data.x_train.shape[1:]), data.num_classes),
}
"""The victim networks the run layer builds and trains itself."""


def default_training(seed: int = defaults.SEED) -> TrainConfig:
    """The victim's training config by default: `defaults.EPOCHS` epochs at `defaults.BATCH_SIZE`."""
    return TrainConfig(epochs=defaults.EPOCHS, batch_size=defaults.BATCH_SIZE, seed=seed)


@dataclass(frozen=True)
class VictimSpec:
    """The dataset's reference net, cut at `depth` (or after `layer`), trained split-learning style.

    defense: a named defense (`unsplit_tf.defenses.DEFENSES`) at the cut; "none" by default.
        An undefended reference net comes from the model cache when it was trained before.
    train_samples: train on the first N training images only (None: all).
    architecture: "reference" (the dataset's net of the paper) or "resnet20" (the net SDAR attacks,
        cut between blocks with layer="blockB_out"; always trained afresh).
    """

    depth: int | None = defaults.DEPTH
    layer: str | None = None
    defense: DefenseSetting = NO_DEFENSE
    training: TrainConfig = field(default_factory=default_training)
    train_samples: int | None = None
    architecture: str = "reference"

    def __post_init__(self) -> None:
        if (self.depth is None) == (self.layer is None):
            raise ValueError("give exactly one of depth= or layer= to say where the client ends")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
        check_defense(self.defense, ACTIVATIONS)
        if self.train_samples is not None:
            at_least("train_samples (or None for all)", self.train_samples, 1)


@dataclass(frozen=True)
class _Deployed:
    """A victim ready to attack: the deployed split, the architecture the server knows, and its record."""

    split: Split
    known_client: keras.Model  # the undefended client's architecture (the attack reads no weights of it)
    model: ModelSource
    defense: DefenseSetting
    training: Training | None
    test_accuracy: float | None
    interrupted: bool = False  # Ctrl-C stopped the training an attack watched; the split is as far as it got


def _training_data(data: Dataset, train_samples: int | None) -> Dataset:
    if train_samples is None:
        return data
    if train_samples > len(data.x_train):
        raise ValueError(f"train_samples {train_samples} is more than the {len(data.x_train)} training images of {data.name}")
    return dataclasses.replace(data, x_train=data.x_train[:train_samples], y_train=data.y_train[:train_samples])


def _deploy(data: Dataset, spec: VictimSpec, *, cache_dir, on_epoch: EpochCallback | None,
            alongside: Alongside | None = None) -> _Deployed:
    """Train (or load) the reference net with the spec's defense at the cut.

    With `alongside`, an attack observes every training step, so the victim is trained here and now,
    never loaded from the model cache (a cached victim has no training to watch); Ctrl-C then stops
    the training and returns the split as far as it got (`interrupted=True`), for the attack to be scored.
    """
    train_data = _training_data(data, spec.train_samples)
    config = spec.training
    cut = {"depth": spec.depth, "layer": spec.layer}
    started, interrupted = time.perf_counter(), False
    if spec.defense == NO_DEFENSE and alongside is None and spec.architecture == "reference":
        trained = train_reference_net(train_data, depth=spec.depth or 1, config=config, cache_dir=cache_dir, on_epoch=on_epoch)
        split = split_model(trained.model, **cut)
        known, accuracy, from_cache = split.client, trained.test_accuracy, trained.from_cache
    else:
        keras.utils.set_random_seed(config.seed)  # the same initial weights as the undefended victim
        model = ARCHITECTURES[spec.architecture](data)
        known = split_model(model, **cut).client
        split = (split_model(model, **cut) if spec.defense == NO_DEFENSE
                 else split_with_defense(model, make_defense(spec.defense, model, config.seed), **cut))
        trainer = SplitTrainer(split.client, split.server, config)
        on_step = None if alongside is None else alongside(known, split.server)
        try:
            trainer.fit(train_data.x_train, train_data.y_train, on_epoch=on_epoch, on_step=on_step)
        except KeyboardInterrupt:
            if alongside is None:
                raise
            interrupted = True
        accuracy, from_cache = trainer.evaluate(data.x_test, data.y_test), False
    seconds = None if from_cache else time.perf_counter() - started
    training = Training(config.epochs, config.batch_size, config.learning_rate, config.seed, len(train_data.x_train),
                        from_cache, seconds, trainer.steps_done if interrupted else None)
    source = ModelSource("reference", data.name) if spec.architecture == "reference" else ModelSource("builtin", spec.architecture)
    return _Deployed(split, known, source, spec.defense, training, accuracy, interrupted)


def _given(split: Split, model: ModelSource | None) -> _Deployed:
    """A split the caller trained: attacked as it is (its architecture is what the server knows)."""
    source = model or ModelSource("given", split.client.name.removesuffix("_client"))
    return _Deployed(split, split.client, source, NO_DEFENSE, None, None)


def _check_targets(data: Dataset, targets: int) -> np.ndarray:
    at_least("targets", targets, 1)
    if targets > len(data.x_test):
        raise ValueError(f"targets {targets} is more than the {len(data.x_test)} test images of {data.name}")
    return indices_by_class(data.y_test, targets)


def as_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (clipped) as uint8 0..255: small enough to keep every reconstruction."""
    return np.round(np.clip(np.asarray(images, np.float64), 0.0, 1.0) * 255).astype(np.uint8)


@dataclass(frozen=True)
class InversionOutcome:
    """A finished inversion run: its record, the attack's own result (an `InversionResult` for "unsplit", an
    `AuxiliaryResult` otherwise), the victim, and the float reconstructions of the scored targets."""

    run: InversionRun
    result: InversionResult | AuxiliaryResult
    split: Split
    reconstructions: np.ndarray
    stream: tuple[np.ndarray, np.ndarray] | None = None  # stream mode: (training-set rows, reconstructions) of every observation

    @property
    def clone(self) -> keras.Model:
        """The stolen client: UnSplit's clone, or an auxiliary-data attack's simulator."""
        return self.result.clone if isinstance(self.result, InversionResult) else self.result.simulator


def run_inversion(
    data: Dataset,
    config: InversionConfig | SDARConfig | InverseNetworkConfig,
    *,
    victim: VictimSpec | Split | None = None,
    aux: int = 0,
    observations: int = 0,
    preset: str | None = None,
    targets: int = defaults.TARGETS,
    model_source: ModelSource | None = None,
    cache_dir: Any = None,
    on_epoch: EpochCallback | None = None,
    on_round: Callable[[RoundReport], None] | None = None,
) -> InversionOutcome:
    """Input recovery and model stealing against one victim, scored outside the attack.

    Args:
        data: the dataset; the targets are its first `targets` test images class by class.
        config: the attack's config (its type names the family, see `INVERSION_FAMILIES`).
        victim: a `VictimSpec` (default `VictimSpec()`: the reference net at depth 2, trained
            `defaults.EPOCHS` epochs, cached), or a `Split` the caller trained (a user's model;
            "unsplit" only).
        aux: for "sdar" and "inverse_network": this many labelled training images, a seeded random
            draw, are held out of the client's training set and given to the server (0 for "unsplit").
        observations: "unsplit" in stream mode only: also attack the smashed data of the last this many
            training examples the server received (the end of the last epoch; see
            `LastEpochObservations`), with the targets, by one shared clone; the victim is then trained
            here, not loaded from the cache. A trained `Split` is observed through its final client
            on a seeded random draw of its training set (it has no training to watch).
        preset: the preset name `config` came from, for the record.
        model_source: with a `Split`, what it is (e.g. `ModelSource("file", name, sha256)`).
        on_epoch, on_round: progress of the victim's training and of UnSplit's rounds.

    "unsplit": the server observes the cut activations of the targets and knows the client's
    (undefended) architecture. "sdar" runs alongside training, one step per observed batch (so the
    victim is trained, never cached), and is also scored on a sample of the last epoch's batches,
    decoded when observed; "inverse_network" fits its shadow client after training, through the
    server. Ctrl-C during UnSplit's attack returns a record with `interrupted=True`, scored on the
    targets it attacked; Ctrl-C during training returns SDAR's record as far as it got
    (`interrupted=True`), and raises for the other families (they have nothing to score yet).
    """
    family = next((name for name, kind in INVERSION_FAMILIES.items() if isinstance(config, kind)), None)
    if family is None:
        raise ValueError(f"config must be one of {[kind.__name__ for kind in INVERSION_FAMILIES.values()]}, "
                         f"got {type(config).__name__}")
    chosen = _check_targets(data, targets)
    spec = VictimSpec() if victim is None else victim
    client_data, aux_x, aux_y, kept = _hold_out(data, spec, family, aux)
    client_rows = len(split_training_images(spec, client_data))
    check_observations(family, getattr(config, "mode", None), observations, client_rows)
    environment, started = Environment.current(), time.perf_counter()
    watcher = None
    if family == "sdar":
        watcher = SDARWatcher(config, aux_x, aux_y, spec.training, client_rows)
    elif observations and not isinstance(spec, Split):
        watcher = LastEpochObservations(observations, spec.training, client_rows)
    deployed = (_given(spec, model_source) if isinstance(spec, Split) else
                _deploy(client_data, spec, cache_dir=cache_dir, on_epoch=on_epoch,
                        alongside=None if watcher is None else watcher.start))
    if deployed.interrupted and not (isinstance(watcher, SDARWatcher) and watcher.started):
        raise KeyboardInterrupt
    split, originals = deployed.split, data.x_test[chosen]

    observed = split.client(originals, training=False)  # all the server sees of the targets
    interrupted, sampled, stream, restarts, tv = deployed.interrupted, None, None, None, None
    if family == "unsplit":
        seen_rows, seen = _observed_stream(watcher, split.client, client_data, observations, config.seed)
        # the targets (and a given Split's draw) are observed in inference mode; the watcher's rows, most of them, in training
        config = config.replace(observed_in="training" if isinstance(watcher, LastEpochObservations) else "inference")
        result = _attack(deployed.known_client, tf.concat([observed, seen], 0), config, on_round)
        attacked = result.rounds_run[: len(chosen)] > 0
        if not attacked.any():
            raise KeyboardInterrupt
        if observations:  # every attacked observation, and a scored sample of them beside the targets
            stream = (kept[seen_rows], result.reconstructions[len(chosen):])
            sample = np.sort(np.random.default_rng(config.seed).choice(observations, min(STREAM_SAMPLE_SIZE, observations), replace=False))
            sampled = (stream[0][sample], stream[1][sample])
        if result.interrupted:  # score only the targets the attack worked on
            chosen, originals = chosen[attacked], originals[attacked]
        result = dataclasses.replace(result, reconstructions=result.reconstructions[: len(attacked)][attacked])
        reconstructions, clone, interrupted = result.reconstructions, result.clone, result.interrupted
        if len(result.restart_losses) > 1:
            restarts = RestartChoice.of(result.restart_losses, result.restart_disagreement, result.kept_restart,
                                        result.compared_after)
        steps, tv = result.image_steps, result.tv_weight
        threat = _stream_threat(observations, isinstance(spec, Split)) if observations else DATA_OBLIVIOUS
        threat = dataclasses.replace(threat, image_prior=PRIOR_ASSUMPTIONS.get(config.prior, ""))
    else:
        result = (watcher.attack.result() if watcher is not None
                  else query_free_attack(deployed.known_client, split.server, aux_x, aux_y, config))
        reconstructions, clone, steps = result.reconstruct(observed), result.simulator, result.steps
        threat = _auxiliary_threat(family, config, aux)
        if watcher is not None and watcher.rows:
            sampled = (kept[np.asarray(watcher.rows)], np.concatenate(watcher.decoded))

    # ---- scoring, outside the attack: the true targets and the real client/server appear only here
    classes = tuple(data.class_names[label] for label in data.y_test[chosen])
    evaluation, scored = _evaluate(data, CLASS_TARGETS, Targets("test", tuple(int(i) for i in chosen), classes),
                                   originals, reconstructions, seed=config.seed)
    evaluations = (evaluation,)
    arrays = {"originals": as_uint8(originals), "reconstructions": as_uint8(scored), "indices": chosen}
    if sampled is not None:
        rows, decoded = sampled  # rows of the full training set
        names = tuple(data.class_names[label] for label in data.y_train[rows])
        sample_evaluation, sample_scored = _evaluate(data, OBSERVED_SAMPLE, Targets("train", tuple(int(i) for i in rows), names),
                                                     data.x_train[rows], decoded, seed=config.seed)
        evaluations += (sample_evaluation,)
        arrays |= {"observed_indices": rows, "observed_reconstructions": as_uint8(sample_scored)}
    fresh_clone = clone_architecture(deployed.known_client, seed=config.seed)  # the attack's starting point, for scale
    before = clone_quality(split.client, fresh_clone, split.server, data.x_test, data.y_test)
    quality = clone_quality(split.client, clone, split.server, data.x_test, data.y_test)
    sample = data.x_test[: defaults.DCOR_SAMPLES]
    dcor = float(distance_correlation(sample, split.client(sample, training=False)))
    run = InversionRun(
        environment=environment,
        data=DataInfo.of(data),
        threat_model=threat,
        victim=_victim_record(deployed, split, quality.original_accuracy),
        attack=AttackInfo.of(family, preset, config, restarts, tv),
        evaluations=evaluations,
        clone=CloneScores.of(quality),
        clone_before_attack=CloneScores.of(before),
        timings=Timings(result.seconds, time.perf_counter() - started,
                        None if deployed.training is None else deployed.training.seconds,
                        steps / result.seconds if result.seconds else None),
        distance_correlation=dcor,
        interrupted=interrupted,
        finished_at=now(),
        arrays=arrays,
    )
    return InversionOutcome(run, result, split, np.asarray(reconstructions), stream)


def split_training_images(spec: VictimSpec | Split, client_data: Dataset) -> np.ndarray:
    """The images the victim trains on (all of `client_data`'s training set for a trained `Split`)."""
    return client_data.x_train if isinstance(spec, Split) else _training_data(client_data, spec.train_samples).x_train


def check_observations(family: str, mode: str | None, observations: int, client_rows: int) -> None:
    """ValueError unless `observations` suits the attack (its family and UnSplit's mode) and the client's
    training set (before any work)."""
    at_least("observations", observations, 0)
    if not observations:
        return
    if family != "unsplit" or mode != "stream":
        raise ValueError(f"observations={observations} needs the UnSplit attack in stream mode "
                         f"(InversionConfig(mode='stream')), got {family!r}" + (f" in {mode} mode" if family == "unsplit" else ""))
    if observations > client_rows:
        raise ValueError(f"observations {observations} is more than the {client_rows} training examples the client "
                         "sends in one epoch; pass at most that many")


def _observed_stream(watcher: LastEpochObservations | None, client: keras.Model, client_data: Dataset,
                     observations: int, seed: int) -> tuple[np.ndarray, tf.Tensor]:
    """(rows of the client's training data, their smashed data) the stream attack reads besides the targets:
    what the watcher kept during training, or else the final `client`'s output on a seeded random draw."""
    if watcher is not None:
        rows, seen = watcher.observed()
        return rows, tf.constant(seen)
    rows = np.sort(np.random.default_rng(seed).choice(len(client_data.x_train), observations, replace=False))
    batches = [client(client_data.x_train[rows[i : i + 1024]], training=False) for i in range(0, observations, 1024)]
    return rows, tf.concat(batches, 0) if batches else tf.zeros((0, *client.output.shape[1:]))


def _stream_threat(observations: int, given: bool) -> ThreatModel:
    seen = ("the final client's smashed data of a random draw of" if given else
            "the smashed data it received during the last epoch, the latest")
    return dataclasses.replace(DATA_OBLIVIOUS, observations=f"{seen} {observations} training examples, and the "
                               "cut-layer activations of the attacked inputs", observed_examples=observations)


def check_aux(data: Dataset, family: str, aux: int, train_samples: int | None = None) -> None:
    """ValueError unless `aux` suits the family and leaves the client training data (before any work)."""
    if family not in AUXILIARY_FAMILIES:
        if aux:
            raise ValueError(f"aux={aux} but {family!r} uses no auxiliary data; pass aux=0, or choose an "
                             f"auxiliary-data family ({', '.join(AUXILIARY_FAMILIES)})")
        return
    at_least(f"aux (auxiliary images of {family!r})", aux, 2)
    client = train_samples or 1
    if aux + client > len(data.x_train):
        raise ValueError(f"aux {aux} plus {client} client training image(s) is more than the {len(data.x_train)} "
                         f"training images of {data.name}; pass a smaller aux")


def _hold_out(data: Dataset, spec: VictimSpec | Split, family: str, aux: int
              ) -> tuple[Dataset, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(the client's data, the server's aux images and labels, the client's rows of the training set).

    The aux images are a seeded random draw of the training set (the files are sorted by class); the
    client trains on the rest, in their order: the two are disjoint."""
    if family in AUXILIARY_FAMILIES and isinstance(spec, Split):
        raise ValueError(f"{family!r} holds its aux images out of the victim's training data: pass a VictimSpec, not a trained Split")
    check_aux(data, family, aux, None if isinstance(spec, Split) else spec.train_samples)
    if family not in AUXILIARY_FAMILIES:
        return data, None, None, np.arange(len(data.x_train))
    order = np.random.default_rng(spec.training.seed).permutation(len(data.x_train))
    held, kept = np.sort(order[:aux]), np.sort(order[aux:])
    client = dataclasses.replace(data, x_train=data.x_train[kept], y_train=data.y_train[kept])
    return client, data.x_train[held], data.y_train[held], kept


def _auxiliary_threat(family: str, config: SDARConfig | InverseNetworkConfig, aux: int) -> ThreatModel:
    observations = ("the smashed data of every training batch, through its own model as it trains" if family == "sdar"
                    else "the cut-layer activations of the attacked inputs, through its trained model")
    if family == "sdar" and config.class_wise_mmd:
        observations += ", and the batch's labels (it computes the loss with them)"
    return ThreatModel("auxiliary-data", config.simulator == "client", observations, auxiliary_images=aux,
                       auxiliary_labels=True)


def _attack(known_client: keras.Model, observed, config, on_round) -> InversionResult:
    """The attack, given only the client's architecture and the observations."""
    return invert(known_client, observed, config, on_round=on_round)


def _evaluate(data: Dataset, name: str, targets: Targets, originals: np.ndarray, reconstructions: np.ndarray, *,
              seed: int) -> tuple[Evaluation, np.ndarray]:
    """The evaluation of one target set, and the reconstructions as scored (min-max normalised for CIFAR-10)."""
    minmax = data.name in MINMAX_DATASETS
    scored = minmax_normalize(reconstructions) if minmax else np.asarray(reconstructions)
    guesses = baseline_scores(originals, seed=seed, mean_image=data.x_train.mean(axis=0))
    baselines = Baselines(ImageScores.of(guesses["constant_0.5"]), ImageScores.of(guesses["uniform_random"]),
                          ImageScores.of(guesses["dataset_mean"]))
    evaluation = Evaluation(
        name, targets, minmax, ImageScores.of(reconstruction_scores(originals, scored)), baselines,
        negative=ImageScores.of(reconstruction_scores(originals, 1.0 - np.clip(scored, 0.0, 1.0))),
    )
    return evaluation, scored


def _victim_record(deployed: _Deployed, split: Split, measured_accuracy: float) -> Victim:
    accuracy = deployed.test_accuracy if deployed.test_accuracy is not None else measured_accuracy
    return Victim(deployed.model, split.cut_layer, split.depth, deployed.defense, deployed.training, accuracy)


# ---------------------------------------------------------------- label inference


@dataclass(frozen=True)
class LabelMethod:
    """A label attack or baseline run in a label run: how to make it, whether it is told the known labels."""

    id: str
    description: str
    config: LabelInferenceConfig | None  # None: one of Li et al.'s baselines
    told_labels: bool
    ranks_only: bool = False  # gives scores, no labels (evaluated by AUC only)

    def make(self, head: keras.Model, num_classes: int, seed: int):
        if self.config is not None:
            return LabelInferenceAttack(head, dataclasses.replace(self.config, seed=seed))
        return NormScoring() if self.ranks_only else DirectionScoring(num_classes)


LABEL_METHODS: dict[str, LabelMethod] = {
    one.id: one for one in (
        LabelMethod("authors", "UnSplit as the authors' code: weight gradient, clone's softmax",
                    LabelInferenceConfig(observation="weight_gradient", softmax="clone"), False),
        LabelMethod("weight_gradient", "gradient matching on the weight gradient, best-fitting softmax",
                    LabelInferenceConfig(observation="weight_gradient"), False),
        LabelMethod("authors_on_activation_gradient", "UnSplit's algorithm on what a server really sees (dL/da)",
                    LabelInferenceConfig(observation="activation_gradient", clone_objective="cross_entropy"), True),
        LabelMethod("activation_gradient", "gradient matching on dL/da, clone fitted to the gradients",
                    LabelInferenceConfig(observation="activation_gradient"), True),
        LabelMethod("norm_scoring", "Li et al.'s norm scoring of dL/da (a ranking: AUC only)", None, True, ranks_only=True),
        LabelMethod("direction_scoring", "Li et al.'s direction (cosine) scoring of dL/da", None, True),
    )
}
LABEL_METHOD_SETS: dict[str, tuple[str, ...]] = {
    "all": tuple(LABEL_METHODS),
    "activation_gradient": ("activation_gradient", "direction_scoring", "norm_scoring"),
}
"""Named sets of methods; "activation_gradient" is what a real split-learning server can run (defense runs)."""


@dataclass(frozen=True)
class LabelProgress:
    """After one observed training step: the running label accuracy of each labelling method (known labels left out)."""

    step: int
    steps: int  # observed steps in all
    loss: float
    accuracy: dict[str, float | None]


@dataclass(frozen=True)
class LabelOutcome:
    """A finished label run: its record, each method's raw result, the running-accuracy curves."""

    run: LabelRun
    results: dict[str, LabelInferenceResult]
    curve_steps: list[int]
    curves: dict[str, list[float | None]]


def run_label_inference(
    data: Dataset,
    *,
    depth: int = defaults.LABEL_DEPTH,
    samples: int = defaults.LABEL_SAMPLES,
    batch_size: int = defaults.LABEL_BATCH_SIZE,
    epochs: int = defaults.LABEL_EPOCHS,
    train_samples: int | None = TRAIN_ON_OBSERVED,
    seed: int = defaults.SEED,
    defense: DefenseSetting = NO_DEFENSE,
    methods: str | Sequence[str] = "all",
    known_per_class: int = defaults.KNOWN_PER_CLASS,
    on_step: Callable[[LabelProgress], None] | None = None,
    on_epoch: EpochCallback | None = None,
) -> LabelOutcome:
    """Label inference while a fresh reference net trains U-shaped; every method scored outside the attacks.

    Args:
        depth: the client's bottom part ends after this layer; the client keeps the output layer too.
        samples: the attacks observe the first `samples` examples of training (whole batches).
        train_samples: train on a seeded random draw of this many training images; -1 (default):
            just the observed ones (one epoch of them: the authors' demo); None: all of them.
        defense: a gradient defense (`unsplit_tf.defenses`) at the input of the client's head.
        methods: a name of `LABEL_METHOD_SETS` or method ids of `LABEL_METHODS`.
        known_per_class: the server is told the labels of the first K examples of each class
            (the activation-gradient methods need it to name classes; left out of every score).

    Ctrl-C during training returns the record of the observed steps with `interrupted=True`.
    """
    check_defense(defense, GRADIENTS)
    chosen_methods = _label_methods(methods)
    for name, value, least in (("samples", samples, 1), ("batch_size", batch_size, 1), ("epochs", epochs, 1),
                               ("known_per_class", known_per_class, 0), ("depth", depth, 0)):
        at_least(name, value, least)
    size = samples if train_samples == TRAIN_ON_OBSERVED else len(data.x_train) if train_samples is None else train_samples
    if not samples <= size <= len(data.x_train):
        raise ValueError(f"samples {samples} and train_samples {size} must satisfy samples <= train_samples <= "
                         f"{len(data.x_train)} (the training images of {data.name})")
    environment, started = Environment.current(), time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = reference_net(data.name)
    known_head = split_u_shaped(model, depth=depth).client_head  # the architecture the server knows
    if defense == NO_DEFENSE:
        split = split_u_shaped(model, depth=depth)
    else:
        split = split_u_shaped_with_defense(model, make_defense(defense, model, seed), depth=depth)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
    trainer = UShapedTrainer(split, config)
    order = np.random.default_rng(seed).permutation(len(data.x_train))[:size] if size < len(data.x_train) else slice(None)
    x, y = data.x_train[order], data.y_train[order]
    attacks = {one.id: one.make(known_head, data.num_classes, seed) for one in chosen_methods}
    side_knowledge = KnownLabels(data.num_classes, known_per_class)
    observed_steps = -(-samples // batch_size)
    truth: list[np.ndarray] = []
    norms: list[np.ndarray] = []
    labelling = [one.id for one in chosen_methods if not one.ranks_only]
    correct, counted = dict.fromkeys(labelling, 0), [0]
    curve_steps: list[int] = []
    curves: dict[str, list[float | None]] = {method: [] for method in labelling}

    def observe(record: UShapedWireRecord) -> None:
        if record.step > observed_steps:
            return
        labels = y[record.indices]
        known = side_knowledge(labels)
        inferred = {method: attacks[method].attack_record(record, known_labels=known if LABEL_METHODS[method].told_labels
                                                          else None).labels for method in attacks}
        # ---- evaluation, outside the attacks: the true labels appear only here
        truth.append(labels)
        norms.append(np.linalg.norm(np.asarray(record.activation_gradients).reshape(len(labels), -1), axis=1))
        unknown = known < 0
        counted[0] += int(unknown.sum())
        curve_steps.append(record.step)
        for method in labelling:
            correct[method] += int(np.sum(inferred[method][unknown] == labels[unknown]))
            curves[method].append(correct[method] / counted[0] if counted[0] else None)
        if on_step is not None:
            on_step(LabelProgress(record.step, observed_steps, record.loss, {m: curves[m][-1] for m in labelling}))

    interrupted = False
    try:
        trainer.fit(x, y, on_step=observe, on_epoch=on_epoch)
    except KeyboardInterrupt:
        if not truth:
            raise
        interrupted = True
    train_seconds = time.perf_counter() - started
    accuracy = None if interrupted else trainer.evaluate(data.x_test, data.y_test)
    true_labels = np.concatenate(truth)
    results = {method: attack.result() for method, attack in attacks.items()}
    scores = tuple(_method_scores(LABEL_METHODS[method], evaluate_labels(results[method], true_labels, data.num_classes))
                   for method in attacks)
    observations = ("the gradients dL/da of the observed batches"
                    + (" and the head's weight gradient (which a real server does not see)"
                       if any(m.config is not None and m.config.observation == "weight_gradient" for m in chosen_methods) else ""))
    victim = Victim(ModelSource("reference", data.name), split.client_bottom.layers[-1].name, depth, defense,
                    Training(epochs, batch_size, config.learning_rate, seed, len(x), False, train_seconds), accuracy)
    run = LabelRun(
        environment=environment,
        data=DataInfo.of(data),
        threat_model=ThreatModel("label-inference", True, observations, known_labels=known_per_class * data.num_classes),
        victim=victim,
        samples=len(true_labels),
        batch_size=batch_size,
        methods=scores,
        timings=Timings(train_seconds, time.perf_counter() - started),
        gradient_norm_median=float(np.median(np.concatenate(norms))),
        interrupted=interrupted,
        finished_at=now(),
    )
    return LabelOutcome(run, results, curve_steps, curves)


def _label_methods(methods: str | Sequence[str]) -> list[LabelMethod]:
    ids = LABEL_METHOD_SETS.get(methods) if isinstance(methods, str) else tuple(methods)
    if ids is None:
        raise ValueError(f"unknown label method set {methods!r}; choose one of {', '.join(LABEL_METHOD_SETS)} "
                         "or give method ids")
    unknown = [method for method in ids if method not in LABEL_METHODS]
    if unknown or not ids:
        raise ValueError(f"unknown label methods {unknown}; choose from {', '.join(LABEL_METHODS)}")
    return [LABEL_METHODS[method] for method in dict.fromkeys(ids)]


def _method_scores(method: LabelMethod, scores) -> LabelMethodScores:
    return LabelMethodScores(method.id, method.description, scores.observation, scores.method, scores.accuracy,
                             scores.relabelled_accuracy, scores.auc, scores.evaluated, scores.known, scores.chance,
                             to_jsonable(method.config) if method.config is not None else {})
