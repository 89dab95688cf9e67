"""Typed run records with made-up numbers, for tests of the store, the sweep and the report (no attack runs)."""

from __future__ import annotations

import numpy as np

from unsplit_tf.records import (
    DATA_OBLIVIOUS,
    AttackInfo,
    Baselines,
    CloneScores,
    DataInfo,
    Environment,
    Evaluation,
    ImageScores,
    InversionRun,
    LabelMethodScores,
    LabelRun,
    ModelSource,
    Targets,
    ThreatModel,
    Timings,
    Training,
    Victim,
)
from unsplit_tf.runs import OBSERVED_SAMPLE
from unsplit_tf.sweep import InversionCell, LabelCell

SHAPES = {"f_mnist": (28, 28, 1), "cifar": (32, 32, 3)}
ENVIRONMENT = Environment("0.1.0", "2.x", "3.x", "2.x", "3.11", "x86_64", 2, 0, 1.5)
TRAIN_IMAGES = 60_000


def scores(mse: float, ssim: float, n: int) -> ImageScores:
    return ImageScores((mse,) * n, (10.0,) * n, (ssim,) * n)


def inversion_run(cell: InversionCell, *, mse: float | None = None, ssim: float | None = None, accuracy: float = 0.86,
                  clone: float | None = None, observed: tuple[float, float] | None = None, observed_examples: int = 0
                  ) -> InversionRun:
    """A record shaped like the real runner's; by default `tuned` scores 10x lower MSE than `paper`, deeper cuts a bit
    worse, an auxiliary-data attack better the more aux images it holds; SSIM is 1 - MSE unless given.

    An SDAR record also has an observed-sample evaluation: `observed` (MSE, SSIM), by default half the MSE.
    `observed_examples`: the training examples a stream-mode attack read (its threat model says so).
    """
    auxiliary = cell.attack != "unsplit"
    if mse is None:
        mse = (0.02 + 3 / cell.aux if auxiliary else 0.1 if cell.preset == "paper" else 0.01) + 0.001 * cell.depth
    ssim = 1 - mse if ssim is None else ssim
    n = cell.targets
    baselines = Baselines(scores(0.181, 0.1, n), scores(0.264, 0.01, n), scores(0.088, 0.2, n))
    images = np.random.default_rng(cell.depth).integers(0, 256, (2, n, *SHAPES[cell.dataset]), dtype=np.uint8)
    config = cell.attack_config().replace(seed=cell.seed)
    if auxiliary:
        threat = ThreatModel("auxiliary-data", True, "smashed data", auxiliary_images=cell.aux, auxiliary_labels=True)
    else:
        threat = DATA_OBLIVIOUS if not observed_examples else ThreatModel(
            "data-oblivious", True, "smashed data", observed_examples=observed_examples)
    samples = cell.train_samples or TRAIN_IMAGES - cell.aux
    training = Training(cell.epochs, cell.batch_size, 1e-3, cell.seed, samples, False, 8.0)
    evaluations = (Evaluation("class_targets", Targets("test", tuple(range(n)), tuple(f"class {i}" for i in range(n))), False,
                              scores(mse, ssim, n), baselines, negative=scores(0.3, 0.0, n)),)
    if cell.attack == "sdar":
        observed = (mse / 2, 1 - mse / 2) if observed is None else observed
        evaluations += (Evaluation(OBSERVED_SAMPLE, Targets("train", tuple(range(10)), ("class 0",) * 10), False,
                                   scores(*observed, 10), Baselines(*(scores(0.09, 0.25, 10),) * 3)),)
    return InversionRun(
        environment=ENVIRONMENT,
        data=DataInfo(cell.dataset, "fake", cell.data_tag, TRAIN_IMAGES, 30, SHAPES[cell.dataset], 10),
        threat_model=threat,
        victim=Victim(ModelSource("reference", cell.dataset), f"layer{cell.depth}", cell.depth, cell.defense, training, accuracy),
        attack=AttackInfo.of(cell.attack, None if auxiliary else cell.preset, config),
        evaluations=evaluations,
        clone=CloneScores(0.8 - 0.1 * cell.depth if clone is None else clone, accuracy, 0.9, 30),
        clone_before_attack=CloneScores(0.1, accuracy, 0.1, 30),
        timings=Timings(30.0, 40.0, 8.0, 6000.0),
        distance_correlation=0.9,
        key=cell.key,
        arrays={"originals": images[0], "reconstructions": images[1], "indices": np.arange(n)},
    )


def label_run(cell: LabelCell, *, accuracy: float = 1.0, model_accuracy: float = 0.85) -> LabelRun:
    methods = tuple(
        LabelMethodScores(method, f"the {method} method", observation, "gradient_matching", accuracy, accuracy, 0.5, 20, 0, 0.15)
        for method, observation in (("authors", "weight_gradient"), ("activation_gradient", "activation_gradient"),
                                    ("direction_scoring", "activation_gradient")))
    methods += (LabelMethodScores("norm_scoring", "norm", "activation_gradient", "norm_scoring", None, None, 0.5, 20, 0, 0.15),)
    return LabelRun(
        environment=ENVIRONMENT,
        data=DataInfo(cell.dataset, "fake", cell.data_tag, 100, 30, SHAPES[cell.dataset], 10),
        threat_model=ThreatModel("label-inference", True, "dL/da", known_labels=10),
        victim=Victim(ModelSource("reference", cell.dataset), "pool1", cell.depth, cell.defense,
                      Training(cell.epochs, cell.batch_size, 1e-3, cell.seed, cell.samples), model_accuracy),
        samples=cell.samples, batch_size=cell.batch_size, methods=methods, timings=Timings(2.0, 3.0),
        gradient_norm_median=0.02, key=cell.key,
    )


def fake_runner(cell):
    """A runner that makes up a record from the cell (no attack runs)."""
    return inversion_run(cell) if isinstance(cell, InversionCell) else label_run(cell)
