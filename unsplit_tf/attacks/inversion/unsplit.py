"""Model inversion + model stealing: UnSplit's attack 1, as one alternating optimisation.

The server knows the client's architecture and the cut-layer activations `z`
it received. It optimises an input guess `x_hat` and a clone of the client
(same architecture, fresh weights) so that `clone(x_hat) ≈ z`: `input_iters`
steps on `x_hat`, then `model_iters` steps on the clone, `main_iters` times.
The reconstructions are the inverted inputs; the clone is the stolen model.

Each round (input steps + model steps) is one XLA-compiled `tf.function`,
built once per attack, so the Python loop between rounds only reports progress.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.optim import ResettableAdam
from unsplit_tf.split import clone_architecture

MODES = ("batched", "sequential")


@dataclass(frozen=True)
class InversionConfig:
    """Hyper-parameters of the attack. The defaults are the authors' code's (UNSPLIT.md)."""

    main_iters: int = 1000
    input_iters: int = 100
    model_iters: int = 100
    lambda_tv: float = 0.1  # weight of the squared total variation of x_hat
    lambda_l2: float = 1.0  # weight of mean(x_hat²)
    input_lr: float = 1e-3  # Adam (amsgrad) on x_hat
    model_lr: float = 1e-3  # Adam (amsgrad) on the clone
    init_value: float = 0.5  # x_hat starts as a constant image
    box: tuple[float, float] | None = None  # clip x_hat to [low, high] after each step; None: unconstrained (paper)
    patience: int | None = None  # stop after this many rounds without improvement; None: run all rounds (paper)
    min_delta: float = 1e-3  # relative improvement of the matching loss that counts as progress
    mode: Literal["batched", "sequential"] = "batched"  # all targets at once, or one after another sharing the clone
    seed: int = 0  # initial weights of the clone
    jit_compile: bool | None = None  # compile each round with XLA; None: when it is faster (`uses_xla`)

    def __post_init__(self) -> None:
        for name in ("main_iters", "input_iters", "model_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lambda_tv", "lambda_l2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("input_lr", "model_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.box is not None and not self.box[0] < self.box[1]:
            raise ValueError(f"box must be (low, high) with low < high, got {self.box}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 round (or None to never stop early), got {self.patience}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def replace(self, **changes) -> InversionConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def steps_per_target(self) -> int:
        return self.main_iters * (self.input_iters + self.model_iters)


# Named starting points for `--preset`. "paper" is the authors' defaults. "tuned" was chosen by
# measurement on Fashion-MNIST *training* images at depth 2 (scripts/tune_preset.py), never on the
# reported test targets: no pull towards black (lambda_l2 = 0), pixels kept in [0, 1], a 10x slower
# clone so that it and x_hat do not drift off together, and a 3x faster x_hat.
PRESETS: dict[str, InversionConfig] = {
    "paper": InversionConfig(),
    "tuned": InversionConfig(lambda_l2=0.0, box=(0.0, 1.0), model_lr=1e-4, input_lr=3e-3),
}


def preset(name: str) -> InversionConfig:
    """The named preset's config; ValueError listing the names if unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class RoundReport:
    """Progress after one round, for a callback: which targets, which round, their losses."""

    targets: tuple[int, ...]
    round: int  # 1-based, within this group of targets
    rounds: int
    input_loss: np.ndarray  # the x_hat objective per target (matching + regularisers)
    matching_loss: np.ndarray  # MSE(clone(x_hat), z) per target after the clone's steps


@dataclass
class InversionResult:
    """What the attack recovered, and how the optimisation went."""

    reconstructions: np.ndarray  # (N, H, W, C): the inverted inputs
    clone: keras.Model  # the stolen client model
    matching_loss: list[np.ndarray]  # per target: MSE(clone(x_hat), z) after each round
    input_loss: list[np.ndarray]  # per target: the x_hat objective after each round
    finished: np.ndarray  # per target: ran all its rounds or stopped early (False if interrupted first)
    config: InversionConfig
    seconds: float
    interrupted: bool = False
    stopped_early: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def rounds_run(self) -> np.ndarray:
        return np.array([len(history) for history in self.matching_loss])


def total_variation(images: tf.Tensor) -> tf.Tensor:
    """Squared total variation of each NHWC image: its height and width differences, each averaged.

    The batch mean of this is the authors' TV (their sum over the batch divided by batch size).
    """
    down = tf.reduce_mean(tf.square(images[:, 1:, :, :] - images[:, :-1, :, :]), axis=[1, 2, 3])
    right = tf.reduce_mean(tf.square(images[:, :, 1:, :] - images[:, :, :-1, :]), axis=[1, 2, 3])
    return down + right


def invert(
    client_architecture: keras.Model,
    observed: np.ndarray | tf.Tensor,
    config: InversionConfig = InversionConfig(),
    *,
    on_round: Callable[[RoundReport], None] | None = None,
) -> InversionResult:
    """Recover the inputs behind `observed` cut-layer activations and steal the client model.

    `client_architecture` supplies only the architecture: the attack starts from a
    fresh, seeded clone of it and never reads its weights. `observed` holds one row
    per target. Ctrl-C stops between rounds and returns what was finished
    (`interrupted=True`).
    """
    observed = tf.convert_to_tensor(observed, tf.float32)
    expected = tuple(client_architecture.output.shape[1:])
    if observed.shape.rank < 1 or tuple(observed.shape[1:]) != expected:
        raise ValueError(
            f"observed activations have shape {tuple(observed.shape)} but the client architecture outputs "
            f"(N, {', '.join(map(str, expected))}); observe the activations at the same cut"
        )
    if observed.shape[0] == 0:
        raise ValueError("no targets: observed holds 0 rows")
    n_targets = observed.shape[0]
    clone = clone_architecture(client_architecture, seed=config.seed)
    group = n_targets if config.mode == "batched" else 1
    engine = _RoundEngine(clone, (group, *client_architecture.input.shape[1:]), config)

    reconstructions = np.full((n_targets, *client_architecture.input.shape[1:]), config.init_value, np.float32)
    matching = [np.zeros(0) for _ in range(n_targets)]
    objective = [np.zeros(0) for _ in range(n_targets)]
    finished, stopped_early = np.zeros(n_targets, bool), np.zeros(n_targets, bool)
    start, interrupted = time.perf_counter(), False
    try:
        for first in range(0, n_targets, group):
            targets = tuple(range(first, first + group))
            engine.restart()
            early = _optimise(engine, observed[first : first + group], targets, config, on_round, matching, objective)
            reconstructions[first : first + group] = engine.x_hat.numpy()
            finished[list(targets)], stopped_early[list(targets)] = True, early
    except KeyboardInterrupt:
        interrupted = True
        unfinished = [t for t in targets if not finished[t]]
        reconstructions[unfinished] = engine.x_hat.numpy()[: len(unfinished)]
    return InversionResult(
        reconstructions=reconstructions,
        clone=clone,
        matching_loss=matching,
        input_loss=objective,
        finished=finished,
        config=config,
        seconds=time.perf_counter() - start,
        interrupted=interrupted,
        stopped_early=stopped_early,
    )


def _optimise(engine, observed, targets, config, on_round, matching, objective) -> bool:
    """Run up to `main_iters` rounds on one group of targets; True if it stopped early."""
    best, stale = np.inf, 0
    for round_index in range(1, config.main_iters + 1):
        input_loss, matching_loss = (t.numpy() for t in engine.round(observed))
        for position, target in enumerate(targets):
            matching[target] = np.append(matching[target], matching_loss[position])
            objective[target] = np.append(objective[target], input_loss[position])
        if on_round is not None:
            on_round(RoundReport(targets, round_index, config.main_iters, input_loss, matching_loss))
        if config.patience is not None:
            current = float(matching_loss.mean())
            best, stale = (current, 0) if current < best * (1 - config.min_delta) else (best, stale + 1)
            if stale >= config.patience:
                return True
    return False


# Below this many images per step, XLA beats TensorFlow's oneDNN kernels on CPU (measured: about 3x
# faster at batch 1 on a 2-core CPU, 1.5-4x slower at batch 10-100, where XLA's CPU convolutions lose).
XLA_CPU_MAX_BATCH = 8


def uses_xla(config: InversionConfig, batch: int) -> bool:
    """Whether the attack's rounds are XLA-compiled: as configured, else on GPU or for small CPU batches."""
    if config.jit_compile is not None:
        return config.jit_compile
    return bool(tf.config.list_logical_devices("GPU")) or batch < XLA_CPU_MAX_BATCH


class _RoundEngine:
    """The variables and the compiled round of one attack; `restart()` starts a new group of targets."""

    def __init__(self, clone: keras.Model, input_shape: tuple[int, ...], config: InversionConfig) -> None:
        self.clone, self.config = clone, config
        self.x_hat = tf.Variable(tf.fill(input_shape, config.init_value), name="x_hat")
        self.input_optimizer = ResettableAdam([self.x_hat], config.input_lr)
        self.model_optimizer = ResettableAdam(clone.trainable_variables, config.model_lr)
        self.round = tf.function(self._round, jit_compile=uses_xla(config, input_shape[0]))

    def restart(self) -> None:
        """Fresh x_hat and fresh optimisers (the clone carries over), as the authors' code does per target."""
        self.x_hat.assign(tf.fill(self.x_hat.shape, self.config.init_value))
        self.input_optimizer.reset()
        self.model_optimizer.reset()

    def _objective(self, observed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Per target: the x_hat objective (matching + regularisers) and the matching MSE alone.

        Every target has the same size, so their means are the batch losses the authors minimise.
        """
        config, x_hat = self.config, self.x_hat
        feature_axes = list(range(1, observed.shape.rank))
        matching = tf.reduce_mean(tf.square(self.clone(x_hat, training=False) - observed), axis=feature_axes)
        objective = matching
        if config.lambda_tv:
            objective += config.lambda_tv * total_variation(x_hat)
        if config.lambda_l2:
            objective += config.lambda_l2 * tf.reduce_mean(tf.square(x_hat), axis=[1, 2, 3])
        return objective, matching

    def _round(self, observed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        config = self.config
        for _ in tf.range(config.input_iters):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(self._objective(observed)[0])
            self.input_optimizer.apply([tape.gradient(loss, self.x_hat)])
            if config.box is not None:
                self.x_hat.assign(tf.clip_by_value(self.x_hat, *config.box))
        variables = self.clone.trainable_variables
        for _ in tf.range(config.model_iters):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(self._objective(observed)[1])
            self.model_optimizer.apply(tape.gradient(loss, variables))
        return self._objective(observed)
