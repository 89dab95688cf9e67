"""Label inference against U-shaped split learning (UnSplit's second attack) and Li et al.'s baselines.

Setting: the client keeps the input layers *and* the output layer (the head)
with the labels; the server computes what lies between. The server sends the
head its activations `a` and, in training, sees a gradient come back. The
head is one dense layer, `logits = a @ W + b`, trained with the mean softmax
cross-entropy over a batch of B examples, so for example i with label y_i:

    g_i   = (softmax(logits_i) - onehot(y_i)) / B      d loss / d logits_i
    dL/dW = sum_i outer(a_i, g_i) = a^T G               (D x C, one matrix per batch)
    dL/da_i = g_i @ W^T                                 (one row per example)

Only the true label's entry of g_i is negative. For every candidate label c
the server can write down the gradient it would see, in closed form and for
all candidates at once (`candidate_*_gradients`; the tests check them against
`tf.GradientTape`), using its *clone* of the head in place of the client's.

Observation models (name one in every result; `OBSERVATIONS`):

- ``weight_gradient``: the server sees dL/dW, as the UnSplit authors' code
  assumes (a standard split-learning server does not). Since `a` is known,
  the per-example logit gradients are recovered exactly by least squares
  (`recover_logit_gradients`; float64 for B > 1) whenever the batch's activations have
  full row rank (B <= rank); each row is then matched against the C
  candidates. The score is the per-example weight-gradient MSE, as in the
  original, but by default against the *best-fitting* softmax for each
  candidate rather than the clone's (`softmax="best"`): only the true label's
  entry of a logit gradient is negative, so this is exact however wrong the
  clone is, while the clone's softmax fails once the client's head grows
  confident. When B > rank the batch sum leaves G undetermined; the
  minimum-norm solution still puts most of each row's own gradient in that
  row, and the labels stay mostly right (measured: 98 % at B = 128, 94 % at
  B = 256 with 84 features on MNIST; a search over the null space of a^T for
  valid gradients gained under 1 % and was dropped). In the limit of identical
  activations (a collapsed net) a weight gradient reveals only the batch's
  label counts. The clone takes the original's cross-entropy step on the
  inferred labels.
- ``activation_gradient``: the server sees dL/da, one row per example, which
  is what a split-learning server really receives. The rows mix the classes
  through the client's unknown W, so a clone with its own random weights
  predicts nothing useful (that is the original algorithm on this
  observation: ``clone_objective="cross_entropy"``; near chance). The default
  ``clone_objective="gradient_fit"`` keeps the original's cross-entropy step
  on the inferred labels (with the client's optimiser it mirrors the client's
  own update) and fits the clone's *starting* kernel to every observed
  gradient by ridge least squares (closed form), so the candidates' predicted
  gradients follow the client's real head; examples are matched one after
  another within a batch, then all re-matched with the batch's final fit.

What activation gradients cannot tell (a test checks it): relabelling the
classes and permuting the head's columns the same way leaves every dL/da,
and hence the whole training run as the server sees it, unchanged; the head's
initialisation is permutation-invariant. A data-oblivious server can therefore
find *which examples share a label* but not the label's name: its named
accuracy is at chance in expectation. Report `relabelled_accuracy` (best
one-to-one renaming) for that, and name the classes with side knowledge: a few
examples whose labels the attacker knows (`known_labels`), as Li et al.'s
direction scoring also assumes. `weight_gradient` has no such ambiguity, its
columns are indexed by class.

Baselines on activation gradients (Li et al., "Label Leakage and Protection in
Two-party Split Learning", ICLR 2022), generalised from their binary setting:
`NormScoring` ranks examples by ||dL/da|| (reported as macro one-vs-rest AUC;
it leaks through class imbalance and confidence, so expect little on balanced
multi-class data) and `DirectionScoring` predicts the class whose reference
gradient (the first known example of each class) has the highest cosine
similarity (reported as accuracy and macro one-vs-rest AUC).

Nothing here sees the true labels except through `known_labels`; evaluation
(`evaluate_labels`) happens outside the attacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from unsplit_tf.optim import ResettableAdam
from unsplit_tf.split import clone_architecture, counted_layers

OBSERVATIONS: tuple[str, ...] = ("weight_gradient", "activation_gradient")
DISTANCES: tuple[str, ...] = ("mse", "cosine")
CLONE_OBJECTIVES: tuple[str, ...] = ("cross_entropy", "gradient_fit")
SOFTMAXES: tuple[str, ...] = ("best", "clone")
UNKNOWN = -1
"""Label value meaning "not known" in `known_labels`, and "no guess" in a baseline's labels."""


def check_observation(observation: str) -> str:
    """Return `observation` if it is one of OBSERVATIONS; else raise a ValueError listing them."""
    if observation not in OBSERVATIONS:
        close = difflib.get_close_matches(str(observation), OBSERVATIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown observation model {observation!r}; valid ones: {', '.join(OBSERVATIONS)}.{hint}")
    return observation


@dataclass(frozen=True)
class LabelInferenceConfig:
    """Hyper-parameters of the gradient-matching label attack; defaults follow the authors' code where it has one.

    observation: what the server observes, one of OBSERVATIONS.
    learning_rate, amsgrad: the clone's Adam optimiser for its cross-entropy step on
        the inferred labels (the original: 1e-3, amsgrad).
    distance: how an observed gradient is compared with a candidate's, "mse" (the
        original) or "cosine" (activation_gradient only; ignores the scale).
    softmax: weight_gradient only: which softmax a candidate's predicted gradient
        (softmax - onehot(c)) uses. "clone" (the original): the clone's. "best": the one
        that fits the observation best, i.e. the score is the distance from the observed
        gradient to the nearest gradient *any* head could produce with label c. Only the
        true label's entry of a logit gradient is negative, so this is exact whenever the
        per-example gradients are recovered (B <= rank), however wrong the clone is; the
        clone's softmax is not (it fails once the client's head grows confident).
    clone_objective: how the clone learns. "cross_entropy" (the original): an Adam step
        on the inferred labels. "gradient_fit" (activation_gradient only): the same step,
        plus the clone's starting kernel refitted after every batch to all observed
        gradients (ridge least squares, with the clone's own updates since then added).
        None picks "cross_entropy" for weight_gradient and "gradient_fit" for
        activation_gradient.
    memory: gradient_fit's forgetting factor per example (0 < memory <= 1): the fit
        weighs an example seen n examples ago by memory**n (1: all equally; lower it if
        the clone's updates may not mirror the client's, e.g. another optimiser).
    ridge: gradient_fit's ridge (Tikhonov) term; keeps classes not seen yet at zero.
    rank_tolerance: singular values of the activations below this fraction of the largest
        count as zero when recovering per-example gradients from a weight gradient
        (float32 observations carry about 7 significant digits).
    seed: the clone's initial weights.
    jit_compile: compile the sequential part (matching and the clone's steps) with XLA
        (the default: several times faster on CPU for this many small operations; each
        new batch shape compiles once, in about a second), or run the same loop as a
        plain TensorFlow graph (False).
    """

    observation: str = "weight_gradient"
    learning_rate: float = 1e-3
    amsgrad: bool = True
    distance: str = "mse"
    softmax: str = "best"
    clone_objective: str | None = None
    memory: float = 1.0
    ridge: float = 1e-3
    rank_tolerance: float = 1e-6
    seed: int = 0
    jit_compile: bool = True

    def __post_init__(self) -> None:
        check_observation(self.observation)
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; valid ones: {', '.join(DISTANCES)}")
        if self.softmax not in SOFTMAXES:
            raise ValueError(f"unknown softmax {self.softmax!r}; valid ones: {', '.join(SOFTMAXES)}")
        if self.observation == "activation_gradient" and self.softmax != "best":
            raise ValueError("softmax applies to weight_gradient only; activation_gradient uses its clone's softmax")
        if self.clone_objective is not None and self.clone_objective not in CLONE_OBJECTIVES:
            raise ValueError(f"unknown clone_objective {self.clone_objective!r}; valid ones: {', '.join(CLONE_OBJECTIVES)}")
        if self.observation == "weight_gradient":
            if self.clone_objective == "gradient_fit":
                raise ValueError(
                    "clone_objective='gradient_fit' needs activation gradients (a weight gradient does not depend "
                    "on the head's weights); use it with observation='activation_gradient'"
                )
            if self.distance != "mse":
                raise ValueError("weight_gradient compares gradients by MSE, as the original; distance must be 'mse'")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 < self.memory <= 1:
            raise ValueError(f"memory must be in (0, 1], got {self.memory}")
        if not self.ridge > 0:
            raise ValueError(f"ridge must be positive, got {self.ridge}")
        if not 0 < self.rank_tolerance < 1:
            raise ValueError(f"rank_tolerance must be in (0, 1), got {self.rank_tolerance}")

    @property
    def objective(self) -> str:
        """The clone objective in force (resolving None)."""
        if self.clone_objective is not None:
            return self.clone_objective
        return "cross_entropy" if self.observation == "weight_gradient" else "gradient_fit"

    @property
    def method(self) -> str:
        """A short name for results: "gradient_matching", plus what differs from the defaults, e.g. "[clone softmax]"."""
        default = "cross_entropy" if self.observation == "weight_gradient" else "gradient_fit"
        changes = [f"{self.objective} clone"] if self.objective != default else []
        changes += [f"{self.softmax} softmax"] if self.softmax != "best" else []
        changes += [f"{self.distance} distance"] if self.distance != "mse" else []
        return "gradient_matching" + (f"[{', '.join(changes)}]" if changes else "")


# ---------------------------------------------------------------- closed-form candidate gradients


def candidate_logit_gradients(logits: tf.Tensor) -> tf.Tensor:
    """d(mean batch loss)/d logits_i if example i had label c, for every i and c: shape (B, C, C).

    Entry [i, c] is (softmax(logits_i) - onehot(c)) / B; the 1/B is the mean over the batch.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    batch = tf.cast(tf.shape(logits)[0], tf.float32)
    num_classes = tf.shape(logits)[-1]
    return (tf.nn.softmax(logits)[:, None, :] - tf.eye(num_classes)[None]) / batch


def candidate_kernel_gradients(activations: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Example i's share of d loss / d kernel if it had label c: outer(a_i, g_ic), shape (B, C, D, C).

    The observed kernel gradient of a batch is the sum over i of the entries at the true labels.
    """
    activations = tf.convert_to_tensor(activations, tf.float32)
    return activations[:, None, :, None] * candidate_logit_gradients(logits)[:, :, None, :]


def candidate_activation_gradients(logits: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """d loss / d a_i if example i had label c: g_ic @ kernel^T, shape (B, C, D)."""
    return tf.einsum("bkc,dc->bkd", candidate_logit_gradients(logits), tf.convert_to_tensor(kernel, tf.float32))


def recover_logit_gradients(activations: tf.Tensor, kernel_gradients: tf.Tensor, rank_tolerance: float = 1e-6) -> tf.Tensor:
    """Per-example logit gradients times B from a batch's kernel gradient: G with a^T G = B dL/dW, shape (..., B, C).

    The minimum-norm least-squares solution, pinv(a^T) B dL/dW, for any leading axes
    (..., B, D) and (..., D, C). At B = 1 it is a dL/dW / ||a||^2. Otherwise it is
    computed in float64 through the eigenvectors of the Gram
    matrix a a^T = U diag(s^2) U^T, as pinv(a^T) = U diag(s^-2) U^T a: one small
    symmetric eigenproblem (B x B) instead of an SVD, several times faster for many
    small batches. Singular values below `rank_tolerance` times the largest count as zero
    (float32 observations carry about 7 significant digits); float64 because activations
    can be nearly collinear (CIFAR's sigmoid features drift to 0.5 as the net trains).
    When B > rank(a) each recovered row mixes in the others' gradients (weighted by the
    hat matrix a pinv(a)); the labels stay right as long as its own part dominates.
    """
    activations = tf.convert_to_tensor(activations, tf.float32)
    kernel_gradients = tf.convert_to_tensor(kernel_gradients, tf.float32)

    def one_example() -> tf.Tensor:  # pinv(a^T) = a / ||a||^2: no eigensolver, no float64 copy, no tiny matmuls
        squares = tf.reduce_sum(tf.square(activations), axis=-1, keepdims=True)  # (..., 1, 1)
        projected = tf.reduce_sum(activations[..., 0, :, None] * kernel_gradients, axis=-2)[..., None, :]  # (..., 1, C)
        return tf.math.divide_no_nan(projected, squares)

    def any_batch() -> tf.Tensor:
        a = tf.cast(activations, tf.float64)
        target = tf.cast(kernel_gradients, tf.float64) * tf.cast(tf.shape(a)[-2], tf.float64)  # = a^T G (1/B known)
        squares, vectors = tf.linalg.eigh(tf.matmul(a, a, transpose_b=True))  # ascending
        keep = squares > rank_tolerance**2 * squares[..., -1:]
        inverse = tf.where(keep, 1.0 / tf.where(keep, squares, 1.0), 0.0)
        projected = tf.matmul(vectors, tf.matmul(a, target), transpose_a=True)  # U^T a target
        return tf.cast(tf.matmul(vectors, inverse[..., None] * projected), tf.float32)

    return tf.cond(tf.shape(activations)[-2] == 1, one_example, any_batch)


UNROLLED_SOLVE_MAX = 16
"""Largest system `solve_positive_definite` writes out step by step; larger ones go to tf.linalg.solve."""


def solve_positive_definite(matrix: tf.Tensor, rhs: tf.Tensor) -> tf.Tensor:
    """X with matrix @ X = rhs, for a small symmetric positive definite (n, n) matrix of static size.

    Gauss-Jordan elimination without pivoting (stable for positive definite matrices),
    unrolled for n <= UNROLLED_SOLVE_MAX: XLA fuses it into a few kernels, about 5x faster
    on CPU than tf.linalg.solve's LU inside the attack's compiled loop (measured 1.3 vs
    6.8 us for 10 x 10 with 84 right-hand sides).
    """
    size = matrix.shape[-1]
    if size is None or size > UNROLLED_SOLVE_MAX:
        return tf.linalg.solve(matrix, rhs)
    rows = tf.unstack(tf.concat([matrix, rhs], axis=1))
    for k in range(size):
        pivot = rows[k] / rows[k][k]
        rows = [pivot if i == k else row - row[k] * pivot for i, row in enumerate(rows)]
    return tf.stack(rows)[:, size:]


def project_to_simplex(vectors: tf.Tensor) -> tf.Tensor:
    """Euclidean projection of each vector along the last axis onto the probability simplex.

    The projection is max(v - t, 0) with threshold t = max over k of (sum of the k largest
    entries - 1) / k (Duchi et al., ICML 2008). Taking k over each entry's "how many are at
    least as large" (O(C^2) per vector) gives the same maximum without sorting, which is
    slow on CPU for many short vectors. Vectorised over the leading axes.
    """
    vectors = tf.convert_to_tensor(vectors, tf.float32)
    at_least = tf.cast(vectors[..., None, :] >= vectors[..., :, None], tf.float32)  # [k, j]: v_j >= v_k
    threshold = tf.reduce_max((tf.reduce_sum(at_least * vectors[..., None, :], axis=-1) - 1.0) / tf.reduce_sum(at_least, axis=-1), axis=-1)
    return tf.maximum(vectors - threshold[..., None], 0.0)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class LabelInferenceStep:
    """One batch's output of an attack: a label per example and a score per example and candidate."""

    labels: np.ndarray  # (B,) int64; known labels are passed through; UNKNOWN where a baseline has no guess
    scores: np.ndarray  # (B, C) higher = more likely (negated distances, or cosine similarities); (B,) for norm scoring


@dataclass(frozen=True)
class LabelInferenceResult:
    """Everything an attack or baseline inferred over a run, in the order examples were seen.

    `known` marks examples whose label the attacker was given (they are passed
    through, and evaluation leaves them out). `steps` is the training step of
    each example. `labels` is None for a pure ranking (norm scoring).
    """

    observation: str
    method: str
    labels: np.ndarray | None
    scores: np.ndarray
    known: np.ndarray
    steps: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.observation}/{self.method}"


class _History:
    def __init__(self) -> None:
        self.labels: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.known: list[np.ndarray] = []
        self.steps: list[np.ndarray] = []
        self.count = 0

    def add(self, out: LabelInferenceStep, known: np.ndarray, step: int | None) -> None:
        """One training step's output."""
        self.extend(out.labels[None], out.scores[None], known[None], None if step is None else [step])

    def extend(self, labels: np.ndarray, scores: np.ndarray, known: np.ndarray, steps: Sequence[int] | None = None) -> None:
        """T training steps' outputs, (T, B, ...) each; `steps` numbers them (default: counting on)."""
        count, batch = known.shape
        numbers = np.arange(self.count + 1, self.count + count + 1) if steps is None else np.asarray(steps, np.int64)
        self.count += count
        self.labels.append(labels.reshape(count * batch))
        self.scores.append(scores.reshape(count * batch, *scores.shape[2:]))
        self.known.append(known.reshape(-1) >= 0)
        self.steps.append(np.repeat(numbers, batch))

    def result(self, observation: str, method: str, *, with_labels: bool = True, **details) -> LabelInferenceResult:
        def cat(parts, shape, dtype):
            return np.concatenate(parts) if parts else np.zeros(shape, dtype)

        return LabelInferenceResult(
            observation,
            method,
            cat(self.labels, (0,), np.int64) if with_labels else None,
            cat(self.scores, (0,), np.float32),
            cat(self.known, (0,), bool),
            cat(self.steps, (0,), np.int64),
            dict(details),
        )


# ---------------------------------------------------------------- the attack


class LabelInferenceAttack:
    """UnSplit's label inference by gradient matching, vectorised over candidates and examples.

    head: the client's head, of which the server knows the architecture only
        (e.g. `split_u_shaped(model, depth=d).client_head`); it must be a single
        linear Dense layer producing the logits. Its weights are never read: the
        server works with a clone (`clone_architecture`).
    Feed it one training step at a time with `step(activations, observed)` or
    `attack_record(record)` (a `protocol.UShapedWireRecord`), or many recorded
    steps in one compiled call with `steps(...)`; `result()` gathers everything
    inferred so far. Each call infers the labels, then trains the clone.
    """

    def __init__(self, head: keras.Model, config: LabelInferenceConfig = LabelInferenceConfig()) -> None:
        dense = head_dense_layer(head)
        self.config = config
        self.feature_dim = int(dense.kernel.shape[0])
        self.num_classes = int(dense.kernel.shape[1])
        self.clone = clone_architecture(head, seed=config.seed)
        clone_dense = head_dense_layer(self.clone)
        self._kernel = clone_dense.kernel
        self._bias = clone_dense.bias if clone_dense.use_bias else None
        self._optimizer = ResettableAdam(self._clone_variables(), config.learning_rate, amsgrad=config.amsgrad)
        d, c = self.feature_dim, self.num_classes
        self._fit_gg = tf.Variable(tf.zeros((c, c)), trainable=False, name="fit_gg")
        self._fit_go = tf.Variable(tf.zeros((c, d)), trainable=False, name="fit_go")
        self._drift = tf.Variable(tf.zeros((d, c)), trainable=False, name="drift")
        if config.objective == "gradient_fit":
            self._kernel.assign(tf.zeros_like(self._kernel))  # = the ridge fit of no data
        self._body = {
            ("weight_gradient", "cross_entropy"): self._weight_step,
            ("activation_gradient", "cross_entropy"): self._activation_step,
            ("activation_gradient", "gradient_fit"): self._activation_fit_step,
        }[(config.observation, config.objective)]
        steps_of = lambda *shape: tf.TensorSpec((None, None, *shape), tf.float32)  # (T, B, ...)
        # Traced once, here, and called as concrete functions: online, one call per training step,
        # tf.function's dispatch would cost several times the arithmetic.
        if config.observation == "weight_gradient":
            self._recover = tf.function(
                lambda a, observed: recover_logit_gradients(a, observed, config.rank_tolerance)
            ).get_concrete_function(steps_of(d), tf.TensorSpec((None, d, c), tf.float32))
        evidence = steps_of(c) if config.observation == "weight_gradient" else steps_of(d)
        self._run = tf.function(
            self._run_body, jit_compile=config.jit_compile
        ).get_concrete_function(steps_of(d), evidence, tf.TensorSpec((None, None), tf.int64))
        self._history = _History()

    # -- public

    def step(self, activations: Any, observed: Any, *, known_labels: Any = None, step: int | None = None) -> LabelInferenceStep:
        """Infer the labels of one training batch, then update the clone (as the original does every step).

        activations: (B, D) what the server sent to the client's head.
        observed: for weight_gradient the head's kernel gradient, (D, C); for
            activation_gradient d loss / d activations, (B, D).
        known_labels: optional (B,) labels the attacker knows, UNKNOWN (-1) elsewhere;
            they are used as given instead of inferred.
        """
        a, observed, known = self._check_inputs(activations, observed, known_labels)
        labels, distances = self._infer(a[None], observed[None], known[None])
        out = LabelInferenceStep(labels[0], -distances[0])
        self._history.add(out, known, step)
        return out

    def steps(self, activations: Any, observed: Any, *, known_labels: Any = None) -> LabelInferenceStep:
        """`step` on T training steps of equal batch size B, in order, in one compiled call.

        For attacking a recorded run fast (e.g. batch 1, where calling `step` per example costs
        more in dispatch than in arithmetic). activations: (T, B, D); observed: (T, D, C) for
        weight_gradient, (T, B, D) for activation_gradient; known_labels: (T, B) or None.
        Returns labels (T, B) and scores (T, B, C); the clone learns step by step as with `step`.
        """
        a = np.asarray(activations, dtype=np.float32)
        observed = np.asarray(observed, dtype=np.float32)
        if a.ndim != 3 or a.shape[0] < 1:
            raise ValueError(f"activations must have shape (steps >= 1, batch, {self.feature_dim}), got {a.shape}")
        if len(observed) != len(a):
            raise ValueError(f"{len(a)} steps of activations but {len(observed)} of observations")
        self._check_inputs(a[0], observed[0], None)  # one step's shapes stand for all: they are the same at every step
        known = check_known_labels(known_labels, a.shape[:2], self.num_classes)
        labels, distances = self._infer(a, observed, known)
        self._history.extend(labels, -distances, known)
        return LabelInferenceStep(labels, -distances)

    def attack_record(self, record: Any, *, known_labels: Any = None) -> LabelInferenceStep:
        """`step` on a `protocol.UShapedWireRecord`, taking the observation this attack's config names."""
        observed = record.head_kernel_gradient if self.config.observation == "weight_gradient" else record.activation_gradients
        return self.step(record.activations, observed, known_labels=known_labels, step=record.step)

    def result(self) -> LabelInferenceResult:
        """All labels inferred so far (known ones included, and marked)."""
        return self._history.result(
            self.config.observation, self.config.method, distance=self.config.distance, clone_objective=self.config.objective
        )

    # -- checks

    def _check_inputs(self, activations, observed, known_labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.asarray(activations, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self.feature_dim:
            raise ValueError(
                f"activations must have shape (batch, {self.feature_dim}) (the head's input), got {a.shape}"
            )
        batch = a.shape[0]
        if batch < 1:
            raise ValueError("batch size must be at least 1: activations hold no example")
        observed = np.asarray(observed, dtype=np.float32)
        weights = self.config.observation == "weight_gradient"
        expected = (self.feature_dim, self.num_classes) if weights else (batch, self.feature_dim)
        if observed.shape != expected:
            what = "the head's kernel gradient" if weights else "d loss / d activations"
            raise ValueError(
                f"observation {self.config.observation!r} expects {what} of shape {expected} for a batch of {batch}, "
                f"got {observed.shape}"
            )
        return a, observed, check_known_labels(known_labels, (batch,), self.num_classes)

    # -- compiled parts

    def _infer(self, a: np.ndarray, observed: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels (T, B) and distances (T, B, C) of T checked steps; the clone learns after each step.

        A weight gradient's per-example logit gradients do not depend on the clone, so they are
        recovered for all T steps at once, outside XLA (which does float64 linear algebra
        slowly); the sequential part, matching and the clone's updates, runs as one
        XLA-compiled loop.
        """
        a = tf.constant(a)
        evidence = self._recover(a, tf.constant(observed)) if self.config.observation == "weight_gradient" else observed
        labels, distances = self._run(a, tf.convert_to_tensor(evidence), tf.constant(known))
        return labels.numpy().astype(np.int64), distances.numpy()

    def _run_body(self, activations: tf.Tensor, evidence: tf.Tensor, known: tf.Tensor):
        weights = self.config.observation == "weight_gradient"
        count = tf.shape(activations)[0]
        if weights and self.config.softmax == "best":  # matching ignores the clone: all steps at once, then train it
            distances = self._clone_free_distances(evidence)
            labels = tf.where(known >= 0, known, tf.argmin(distances, axis=-1, output_type=tf.int64))
            for t in tf.range(count):
                self._train_clone(activations[t], labels[t])
        else:
            step_labels = tf.TensorArray(tf.int64, size=count)
            step_distances = tf.TensorArray(tf.float32, size=count)
            for t in tf.range(count):
                labels_t, distances_t = self._body(activations[t], evidence[t], known[t])
                step_labels = step_labels.write(t, labels_t)
                step_distances = step_distances.write(t, distances_t)
            labels, distances = step_labels.stack(), step_distances.stack()
        if weights:  # example i's predicted vs recovered share of the kernel gradient, as an MSE over its D x C entries
            batch = tf.cast(tf.shape(activations)[1], tf.float32)
            distances *= tf.reduce_sum(tf.square(activations), axis=-1, keepdims=True) / (
                float(self.feature_dim * self.num_classes) * tf.square(batch)
            )
        return labels, distances

    def _logits(self, a: tf.Tensor, kernel: tf.Tensor | None = None) -> tf.Tensor:
        logits = tf.matmul(a, self._kernel if kernel is None else kernel)
        return logits if self._bias is None else logits + self._bias

    def _train_clone(self, a: tf.Tensor, labels: tf.Tensor) -> None:
        """The original's clone update: one Adam step on the mean cross-entropy of the inferred labels.

        The gradients are written in closed form (the head is one Dense layer):
        d loss / d logits = (softmax - onehot) / B, as `candidate_logit_gradients`.
        """
        logit_grads = (tf.nn.softmax(self._logits(a)) - tf.one_hot(labels, self.num_classes)) / tf.cast(tf.shape(a)[0], tf.float32)
        grads = [tf.matmul(a, logit_grads, transpose_a=True)]
        if self._bias is not None:
            grads.append(tf.reduce_sum(logit_grads, axis=0))
        self._optimizer.apply(grads)

    def _clone_variables(self) -> list:
        return [self._kernel] + ([self._bias] if self._bias is not None else [])

    def _clone_free_distances(self, recovered: tf.Tensor) -> tf.Tensor:
        """softmax="best" distances, for all T steps at once: they do not depend on the clone. (T, B, C).

        The gap between recovered + onehot(c) and the probability simplex: the distance to
        the nearest logit gradient any head could produce with label c.
        """
        implied = recovered[..., None, :] + tf.eye(self.num_classes)
        return tf.reduce_sum(tf.square(implied - project_to_simplex(implied)), axis=-1)

    def _weight_step(self, a: tf.Tensor, recovered: tf.Tensor, known: tf.Tensor):
        """softmax="clone", the original: candidate c predicts the clone's softmax - onehot(c); then train the clone.

        (softmax="best" does not depend on the clone and is matched for all steps at once, in `_run_body`.)
        """
        probs = tf.nn.softmax(self._logits(a))
        distances = tf.reduce_sum(tf.square(recovered[:, None, :] - (probs[:, None, :] - tf.eye(self.num_classes))), axis=-1)
        labels = tf.where(known >= 0, known, tf.argmin(distances, axis=1, output_type=tf.int64))
        self._train_clone(a, labels)
        return labels, distances

    def _activation_distances(self, predicted: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """Distances between predicted (..., C, D) and observed (..., D) gradients, both scaled by B."""
        if self.config.distance == "cosine":
            return 1.0 - tf.reduce_sum(
                tf.math.l2_normalize(predicted, axis=-1) * tf.math.l2_normalize(target, axis=-1)[..., None, :], axis=-1
            )
        return tf.reduce_mean(tf.square(predicted - target[..., None, :]), axis=-1)

    def _activation_step(self, a: tf.Tensor, observed: tf.Tensor, known: tf.Tensor):
        """The original algorithm on activation gradients: match against the clone's own predictions."""
        batch_f = tf.cast(tf.shape(a)[0], tf.float32)
        predicted = candidate_activation_gradients(self._logits(a), self._kernel) * batch_f  # (B, C, D)
        distances = self._activation_distances(predicted, observed * batch_f) / tf.square(batch_f)
        labels = tf.where(known >= 0, known, tf.argmin(distances, axis=1, output_type=tf.int64))
        self._train_clone(a, labels)
        return labels, distances

    def _fitted_kernel(self, gg: tf.Tensor, go: tf.Tensor) -> tf.Tensor:
        """Ridge least squares: the kernel W minimising sum_i ||o_i - g_i W^T||^2 + ridge ||W||^2, (D, C).

        Every g_i sums to 0 (softmax - onehot), so the all-ones vector is an eigenvector of
        gg + ridge I with eigenvalue `ridge` and go has no component along it: the solution
        has none either (adding a vector to every column of W changes no prediction). Adding
        ones ones^T to the matrix therefore changes nothing in exact arithmetic, and keeps the
        float32 solve well conditioned after many examples (else its condition number grows
        as examples / ridge, and rounding error along that direction swamps the logits).
        """
        ones = tf.ones((self.num_classes, self.num_classes))
        return tf.transpose(solve_positive_definite(gg + self.config.ridge * tf.eye(self.num_classes) + ones, go))

    def _activation_fit_step(self, a: tf.Tensor, observed: tf.Tensor, known: tf.Tensor):
        """Match against a clone whose kernel is fitted to the observed gradients under the inferred labels.

        The clone's kernel is W0 + drift: drift sums the clone's own cross-entropy updates on the
        inferred labels (with the client's optimiser these mirror the client's updates), and W0 is
        the ridge least-squares fit of sum_t ||o_t - g_t (W0 + drift_t)^T||^2 over the examples seen.
        """
        num_classes, memory = self.num_classes, self.config.memory
        batch = tf.shape(a)[0]
        batch_f = tf.cast(batch, tf.float32)
        eye = tf.eye(num_classes)
        target = observed * batch_f  # g_i W^T with g_i = softmax - onehot, no 1/B
        drift = tf.identity(self._drift)
        gg0, go0 = tf.identity(self._fit_gg), tf.identity(self._fit_go)

        def kernel_of(gg, go):
            return self._fitted_kernel(gg, go) + drift

        # Pass 1: one example after another, refitting after each, so that a batch can hold new classes.
        def one(row, gg, go):
            kernel = kernel_of(gg, go)
            probs = tf.nn.softmax(self._logits(a[row][None], kernel))[0]
            predicted = tf.matmul(probs[None] - eye, kernel, transpose_b=True)  # (C, D)
            distances = self._activation_distances(predicted, target[row])
            label = tf.where(known[row] >= 0, known[row], tf.argmin(distances, output_type=tf.int64))
            g = probs - tf.one_hot(label, num_classes)
            residual = target[row] - tf.linalg.matvec(drift, g)  # = g W0^T
            return row + 1, memory * gg + g[:, None] * g[None], memory * go + g[:, None] * residual[None]

        _, gg, go = tf.while_loop(lambda row, *_: row < batch, one, (tf.constant(0), gg0, go0))
        # Pass 2: every example of the batch against the batch's final fit.
        kernel = kernel_of(gg, go)
        probs = tf.nn.softmax(self._logits(a, kernel))
        predicted = tf.einsum("bkc,dc->bkd", probs[:, None, :] - eye[None], kernel)
        distances = self._activation_distances(predicted, target)
        labels = tf.where(known >= 0, known, tf.argmin(distances, axis=1, output_type=tf.int64))
        grads = probs - tf.one_hot(labels, num_classes)
        decay = tf.pow(memory, batch_f)
        gg = decay * gg0 + tf.matmul(grads, grads, transpose_a=True)
        go = decay * go0 + tf.matmul(grads, target - tf.matmul(grads, drift, transpose_b=True), transpose_a=True)
        self._fit_gg.assign(gg)
        self._fit_go.assign(go)
        self._kernel.assign(kernel_of(gg, go))
        # The clone's own training step on the inferred labels (as the original), kept as drift.
        before = tf.identity(self._kernel)
        self._train_clone(a, labels)
        self._drift.assign(drift + (self._kernel - before))
        return labels, distances / tf.square(batch_f)


def head_dense_layer(head: keras.Model) -> keras.layers.Dense:
    """The head's only layer, checked to be a linear Dense layer (the closed-form gradients assume it)."""
    if not isinstance(head, keras.Model):
        raise ValueError(f"head must be a keras.Model (the client's head), got {type(head).__name__}")
    counted = counted_layers(head)
    if len(counted) != 1 or not isinstance(counted[0], keras.layers.Dense):
        raise ValueError(
            f"label inference needs the client's head to be one Dense layer producing logits "
            f"(split_u_shaped(..., head_layers=1)); head '{head.name}' has layers "
            f"{', '.join(layer.name for layer in counted) or 'none'}"
        )
    dense = counted[0]
    if dense.activation not in (keras.activations.linear, None):
        raise ValueError(
            f"the head's Dense layer '{dense.name}' applies {dense.activation.__name__}; it must output logits "
            "(activation=None), the loss applies the softmax"
        )
    if len(dense.kernel.shape) != 2:
        raise ValueError(f"the head's Dense layer '{dense.name}' must act on flat features, kernel shape {dense.kernel.shape}")
    return dense


def check_known_labels(known_labels: Any, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    """int64 labels of `shape` (one per example) with UNKNOWN where not known; None means none known."""
    if known_labels is None:
        return np.full(shape, UNKNOWN, np.int64)
    known = np.asarray(known_labels)
    if known.shape != tuple(shape):
        raise ValueError(f"known_labels must have shape {tuple(shape)}, one per example (-1 = unknown), got {known.shape}")
    if known.size and (not np.issubdtype(known.dtype, np.integer) or known.min() < UNKNOWN or known.max() >= num_classes):
        raise ValueError(f"known_labels must be integers in 0..{num_classes - 1}, or -1 for unknown")
    return known.astype(np.int64)


# ---------------------------------------------------------------- Li et al. baselines (activation gradients)


def _check_gradients(activation_gradients: Any) -> np.ndarray:
    grads = np.asarray(activation_gradients, dtype=np.float32)
    if grads.ndim != 2 or grads.shape[0] < 1:
        raise ValueError(f"activation gradients must have shape (batch >= 1, features), got {grads.shape}")
    return grads


def norm_scores(activation_gradients: Any) -> np.ndarray:
    """Li et al.'s norm score: ||d loss / d a_i|| per example, (B,)."""
    return np.linalg.norm(_check_gradients(activation_gradients).astype(np.float64), axis=1)


def cosine_similarities(activation_gradients: Any, references: Any) -> np.ndarray:
    """Cosine similarity of every gradient row (B, D) with every reference row (K, D): (B, K)."""
    grads = _check_gradients(activation_gradients).astype(np.float64)
    refs = np.asarray(references, dtype=np.float64)
    if refs.ndim != 2 or refs.shape[1] != grads.shape[1]:
        raise ValueError(f"references must have shape (K, {grads.shape[1]}), got {refs.shape}")
    unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-30)  # noqa: E731
    return unit(grads) @ unit(refs).T


class _ActivationGradientBaseline:
    """What Li et al.'s baselines share: they read the activation gradients of a wire record."""

    observation = "activation_gradient"

    def attack_record(self, record: Any, *, known_labels: Any = None) -> LabelInferenceStep:
        """`step` on a `protocol.UShapedWireRecord`, as `LabelInferenceAttack.attack_record`."""
        return self.step(np.asarray(record.activation_gradients), known_labels=known_labels, step=record.step)


class NormScoring(_ActivationGradientBaseline):
    """Li et al.'s norm scoring: a ranking by gradient norm, no labels. Evaluate it by AUC."""

    method = "norm_scoring"

    def __init__(self) -> None:
        self._history = _History()

    def step(self, activation_gradients: Any, *, known_labels: Any = None, step: int | None = None) -> LabelInferenceStep:
        scores = norm_scores(activation_gradients)
        known = check_known_labels(known_labels, scores.shape, np.iinfo(np.int64).max)
        out = LabelInferenceStep(np.full(len(scores), UNKNOWN, np.int64), scores)
        self._history.add(out, known, step)
        return out

    def result(self) -> LabelInferenceResult:
        return self._history.result(self.observation, self.method, with_labels=False)


class DirectionScoring(_ActivationGradientBaseline):
    """Li et al.'s direction scoring for C classes: cosine similarity to a known example's gradient per class.

    The reference of a class is the activation gradient of the first example
    whose label the attacker knows (`known_labels`); it is kept thereafter, as
    in Li et al. An example is labelled with its most similar reference's class
    (UNKNOWN until some reference exists); a class without a reference scores
    -2, below any cosine.
    """

    method = "direction_scoring"

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.references: np.ndarray | None = None
        self.has_reference = np.zeros(num_classes, bool)
        self._history = _History()

    def step(self, activation_gradients: Any, *, known_labels: Any = None, step: int | None = None) -> LabelInferenceStep:
        grads = _check_gradients(activation_gradients)
        known = check_known_labels(known_labels, grads.shape[:1], self.num_classes)
        if self.references is None:
            self.references = np.zeros((self.num_classes, grads.shape[1]), np.float64)
        elif self.references.shape[1] != grads.shape[1]:
            raise ValueError(f"activation gradients have {grads.shape[1]} features, earlier ones had {self.references.shape[1]}")
        for row in np.flatnonzero(known >= 0):
            if not self.has_reference[known[row]]:
                self.references[known[row]] = grads[row]
                self.has_reference[known[row]] = True
        scores = np.where(self.has_reference[None], cosine_similarities(grads, self.references), -2.0)
        labels = scores.argmax(axis=1) if self.has_reference.any() else np.full(len(grads), UNKNOWN)
        labels = np.where(known >= 0, known, labels).astype(np.int64)
        out = LabelInferenceStep(labels, scores)
        self._history.add(out, known, step)
        return out

    def result(self) -> LabelInferenceResult:
        return self._history.result(self.observation, self.method, references=int(self.has_reference.sum()))


# ---------------------------------------------------------------- running every method on a training run


class KnownLabels:
    """The side knowledge of an attacker: the labels of the first `per_class` examples of each class it meets.

    Activation gradients cannot name the classes (see the module docstring); Li et
    al.'s direction scoring assumes the same knowledge. Call it on the true labels
    of each batch, in training order; it returns them where known, UNKNOWN elsewhere.
    """

    def __init__(self, num_classes: int, per_class: int = 1) -> None:
        if per_class < 0:
            raise ValueError(f"per_class must be 0 or more, got {per_class}")
        self.per_class = per_class
        self.seen = np.zeros(num_classes, np.int64)

    def __call__(self, labels: Any) -> np.ndarray:
        labels = np.asarray(labels, np.int64)
        known = np.full(labels.shape, UNKNOWN, np.int64)
        for index, label in np.ndenumerate(labels):
            if self.seen[label] < self.per_class:
                self.seen[label] += 1
                known[index] = label
        return known


def label_methods(
    head: keras.Model, num_classes: int, *, seed: int = 0, observations: Sequence[str] = OBSERVATIONS
) -> dict[str, LabelInferenceAttack | NormScoring | DirectionScoring]:
    """Every attack and baseline for the observation models asked, by result name; the authors' variants beside ours.

    Each takes `attack_record(record, known_labels=...)` and gives `result()`.
    """
    configs = []
    for observation in map(check_observation, observations):
        variant = {"softmax": "clone"} if observation == "weight_gradient" else {"clone_objective": "cross_entropy"}
        configs += [LabelInferenceConfig(observation, seed=seed), LabelInferenceConfig(observation, seed=seed, **variant)]
    methods: dict[str, LabelInferenceAttack | NormScoring | DirectionScoring] = {
        f"{c.observation}/{c.method}": LabelInferenceAttack(head, c) for c in configs
    }
    if "activation_gradient" in observations:
        for baseline in (DirectionScoring(num_classes), NormScoring()):
            methods[f"{baseline.observation}/{baseline.method}"] = baseline
    return methods


# ---------------------------------------------------------------- evaluation (uses the true labels)


@dataclass(frozen=True)
class LabelScores:
    """How well one attack or baseline inferred the labels, over the examples whose label it was not given.

    accuracy: fraction of exactly right labels (None for a ranking-only method).
    relabelled_accuracy: accuracy after the best one-to-one renaming of the inferred
        classes: how well the method groups examples by label, names aside.
    auc: macro-average one-vs-rest ROC AUC of the scores (None when undefined).
    chance: accuracy of always guessing the most frequent class among the evaluated examples.
    """

    observation: str
    method: str
    accuracy: float | None
    relabelled_accuracy: float | None
    auc: float | None
    evaluated: int
    known: int
    chance: float

    @property
    def name(self) -> str:
        return f"{self.observation}/{self.method}"

    def summary(self) -> str:
        parts = [f"{self.name}:"]
        for label, value in (("accuracy", self.accuracy), ("relabelled", self.relabelled_accuracy), ("AUC", self.auc)):
            if value is not None:
                parts.append(f"{label} {value:.1%}" if label != "AUC" else f"AUC {value:.3f}")
        parts.append(f"on {self.evaluated} examples ({self.known} known, chance {self.chance:.1%})")
        return " ".join(parts)


def evaluate_labels(result: LabelInferenceResult, true_labels: Any, num_classes: int | None = None) -> LabelScores:
    """Score `result` against the true labels (in the order the examples were attacked), leaving out known ones."""
    true = np.asarray(true_labels).astype(np.int64).reshape(-1)
    if len(true) != len(result.known):
        raise ValueError(f"{len(true)} true labels for {len(result.known)} attacked examples")
    scores = np.asarray(result.scores)
    if num_classes is None:
        num_classes = scores.shape[1] if scores.ndim == 2 else int(true.max(initial=0)) + 1
    keep = ~result.known
    true_kept = true[keep]
    chance = float(np.bincount(true_kept, minlength=num_classes).max() / len(true_kept)) if len(true_kept) else 0.0
    accuracy = relabelled = None
    if result.labels is not None:
        accuracy = label_accuracy(result.labels[keep], true_kept)
        relabelled = relabelled_accuracy(result.labels[keep], true_kept, num_classes)
    auc = one_vs_rest_auc(scores[keep], true_kept, num_classes)
    return LabelScores(
        result.observation, result.method, accuracy, relabelled, auc, int(keep.sum()), int(result.known.sum()), chance
    )


def label_accuracy(predicted: Any, true: Any) -> float | None:
    """Fraction of equal labels; None for no examples."""
    predicted, true = np.asarray(predicted).reshape(-1), np.asarray(true).reshape(-1)
    if predicted.shape != true.shape:
        raise ValueError(f"{len(predicted)} predicted labels for {len(true)} true ones")
    return float(np.mean(predicted == true)) if len(true) else None


def relabelled_accuracy(predicted: Any, true: Any, num_classes: int) -> float | None:
    """Accuracy after renaming the predicted classes by the best one-to-one map (Hungarian algorithm)."""
    predicted, true = np.asarray(predicted).reshape(-1), np.asarray(true).reshape(-1)
    if predicted.shape != true.shape:
        raise ValueError(f"{len(predicted)} predicted labels for {len(true)} true ones")
    if not len(true):
        return None
    confusion = np.zeros((num_classes, num_classes))
    valid = (predicted >= 0) & (predicted < num_classes)
    np.add.at(confusion, (predicted[valid], true[valid]), 1)
    assignment = best_assignment(-confusion)
    return float(confusion[np.arange(num_classes), assignment].sum() / len(true))


def best_assignment(cost: Any) -> np.ndarray:
    """Minimum-cost perfect matching of a square cost matrix: column chosen for each row (Hungarian, O(n^3))."""
    cost = np.asarray(cost, dtype=np.float64)
    n = cost.shape[0]
    if cost.ndim != 2 or cost.shape[1] != n:
        raise ValueError(f"cost must be a square matrix, got shape {cost.shape}")
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=np.int64)  # match[column] = row, 1-based; 0 = free
    for row in range(1, n + 1):
        match[0], column = row, 0
        minimum = np.full(n + 1, np.inf)
        way = np.zeros(n + 1, dtype=np.int64)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[column] = True
            current_row = match[column]
            free = ~used[1:]
            reduced = cost[current_row - 1] - u[current_row] - v[1:]
            better = free & (reduced < minimum[1:])
            minimum[1:][better] = reduced[better]
            way[1:][better] = column
            candidates = np.where(free, minimum[1:], np.inf)
            nxt = int(np.argmin(candidates)) + 1
            delta = candidates[nxt - 1]
            u[match[used]] += delta
            v[used] -= delta
            minimum[1:][free] -= delta
            column = nxt
            if match[column] == 0:
                break
        while column:
            previous = way[column]
            match[column] = match[previous]
            column = previous
    assignment = np.zeros(n, dtype=np.int64)
    assignment[match[1:] - 1] = np.arange(n)
    return assignment


def one_vs_rest_auc(scores: Any, true: Any, num_classes: int) -> float | None:
    """Macro-average ROC AUC of class c vs the rest, over classes with positives and negatives.

    scores: (N, C), column c scoring "is class c", or (N,) one score used for every class
    (norm scoring: a larger gradient norm is taken as the positive class, as in Li et al.).
    Ties count one half. None when no class has both positives and negatives.
    """
    scores, true = np.asarray(scores, dtype=np.float64), np.asarray(true).reshape(-1)
    if scores.shape[0] != len(true):
        raise ValueError(f"{scores.shape[0]} scores for {len(true)} labels")
    aucs = []
    for c in range(num_classes):
        column = scores[:, c] if scores.ndim == 2 else scores
        positive, negative = column[true == c], np.sort(column[true != c])
        if len(positive) and len(negative):
            below = np.searchsorted(negative, positive, side="left")
            ties = np.searchsorted(negative, positive, side="right") - below
            aucs.append(float((below + 0.5 * ties).sum() / (len(positive) * len(negative))))
    return float(np.mean(aucs)) if aucs else None


def summarize(scores: Sequence[LabelScores]) -> str:
    """One line per method, for people."""
    return "\n".join(score.summary() for score in scores)
