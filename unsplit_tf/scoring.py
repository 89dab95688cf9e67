"""Score reconstructions against the true inputs, a stolen clone against the client, inferred labels against the true ones.

Images are float NHWC batches in [0, 1], as numpy arrays or tensors. Every
function returns numpy arrays or python floats, so results can be logged or
written to JSON directly. The attacks never call these: evaluation uses the
ground truth the attacker does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import keras
import numpy as np
import tensorflow as tf

if TYPE_CHECKING:
    from unsplit_tf.attacks.labels import LabelInferenceResult

PSNR_CAP_DB = 100.0
"""PSNR reported for identical images (and the ceiling for any pair), in dB.

A finite cap keeps means and JSON output usable; 100 dB is far above any real
reconstruction (it needs an MSE of 1e-10 at max_val 1).
"""

SSIM_FILTER_SIZE = 11
"""Gaussian window of tf.image.ssim; shrunk to the image side for smaller images."""

ModelLike = Callable[[Any], Any]
"""A keras.Model or any callable from a batch to a batch."""


def _as_batch(images: Any, name: str) -> np.ndarray:
    """Return `images` as a float64 NHWC array, or raise ValueError saying what is wrong."""
    array = np.asarray(images, dtype=np.float64)
    if array.ndim != 4:
        raise ValueError(
            f"{name} must be a batch of NHWC images (4 dimensions), got shape {array.shape}; "
            "add a batch axis (images[None]) for a single image."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {array.shape}); pass at least one image.")
    return array


def _as_pair(true: Any, recon: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return both batches as arrays after checking that their shapes match."""
    true_array = _as_batch(true, "true")
    recon_array = _as_batch(recon, "recon")
    if true_array.shape != recon_array.shape:
        raise ValueError(
            f"true has shape {true_array.shape} but recon has shape {recon_array.shape}; "
            "pass one reconstruction per true image, with the same height, width and channels."
        )
    return true_array, recon_array


def _check_max_val(max_val: float) -> None:
    if not max_val > 0:
        raise ValueError(f"max_val must be positive (the dynamic range of the images), got {max_val}.")


def minmax_normalize(images: Any) -> np.ndarray:
    """Rescale each image on its own to span [0, 1].

    The paper's authors do this to CIFAR-10 reconstructions before scoring,
    because the attack does not clamp its estimate. A constant image has no
    range and becomes all zeros (not NaN).
    """
    array = _as_batch(images, "images")
    low = array.min(axis=(1, 2, 3), keepdims=True)
    span = array.max(axis=(1, 2, 3), keepdims=True) - low
    safe_span = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (array - low) / safe_span, 0.0)


def mse_per_image(true: Any, recon: Any) -> np.ndarray:
    """Mean squared error of each image pair, averaged over height, width and channels; shape (N,)."""
    true_array, recon_array = _as_pair(true, recon)
    return np.mean((true_array - recon_array) ** 2, axis=(1, 2, 3))


def psnr_per_image(true: Any, recon: Any, max_val: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each image pair: 10 log10(max_val² / MSE); shape (N,).

    Capped at PSNR_CAP_DB, so identical images give a finite PSNR_CAP_DB rather than inf.
    """
    _check_max_val(max_val)
    mse = mse_per_image(true, recon)
    with np.errstate(divide="ignore"):
        psnr = 10.0 * np.log10(max_val**2 / mse)
    return np.minimum(psnr, PSNR_CAP_DB)


def ssim_per_image(true: Any, recon: Any, max_val: float = 1.0) -> np.ndarray:
    """Structural similarity of each image pair (tf.image.ssim, averaged over channels); shape (N,).

    1 means identical, values near 0 mean unrelated structure. MSE alone rates
    a flat grey guess well; SSIM does not. tf.image.ssim needs images at least
    as large as its 11x11 window, so the window shrinks to fit smaller images
    (28x28 and 32x32 use the standard 11x11).
    """
    _check_max_val(max_val)
    true_array, recon_array = _as_pair(true, recon)
    filter_size = min(SSIM_FILTER_SIZE, true_array.shape[1], true_array.shape[2])
    ssim = tf.image.ssim(
        tf.convert_to_tensor(true_array, dtype=tf.float32),
        tf.convert_to_tensor(recon_array, dtype=tf.float32),
        max_val=max_val,
        filter_size=filter_size,
    )
    return ssim.numpy().astype(np.float64)


# ---------------------------------------------------------------- alignment-invariant image scores

def affine_aligned(true: Any, recon: Any) -> np.ndarray:
    """Each reconstruction after its best affine fit of intensities, a·recon + b (least squares per image).

    A clone that absorbs a sign or affine change of its input (a first conv, a BatchNormalization)
    can hand back recon = 1 - x, or a contrast-squeezed x: recovered to the eye, far off by raw
    MSE. Aligning first scores the structure that leaked. A constant reconstruction aligns to the
    true image's mean, so its aligned MSE is that image's variance: the no-information floor.
    """
    true_array, recon_array = _as_pair(true, recon)
    axes = (1, 2, 3)
    recon_centred = recon_array - recon_array.mean(axis=axes, keepdims=True)
    true_mean = true_array.mean(axis=axes, keepdims=True)
    spread = np.sum(recon_centred**2, axis=axes, keepdims=True)
    covariance = np.sum(recon_centred * (true_array - true_mean), axis=axes, keepdims=True)
    slope = np.where(spread > 0, covariance / np.where(spread > 0, spread, 1.0), 0.0)
    return slope * recon_centred + true_mean


def affine_aligned_mse_per_image(true: Any, recon: Any) -> np.ndarray:
    """MSE after the best per-image affine fit of intensities (`affine_aligned`); shape (N,)."""
    return mse_per_image(true, affine_aligned(true, recon))


def affine_aligned_ssim_per_image(true: Any, recon: Any, max_val: float = 1.0) -> np.ndarray:
    """SSIM after the best per-image affine fit of intensities (`affine_aligned`); shape (N,)."""
    return ssim_per_image(true, affine_aligned(true, recon), max_val)


SHIFT_RADIUS = 2  # pixels per axis: the radius of a 5x5 kernel (the first convolution of the MNIST-size reference net)


def shift_aligned(true: Any, recon: Any, radius: int = SHIFT_RADIUS) -> tuple[np.ndarray, tuple[int, int]]:
    """All reconstructions moved by the one translation, at most `radius` pixels per axis, that brings them closest
    to the true images (lowest mean MSE; the edge pixels fill the gap), and that translation (rows, columns).

    A clone's first convolution absorbs a small translation of its input by moving each kernel's content inside its
    window, and the same clone serves every target: the attack can hand back every picture a pixel or two off, a
    full leak to the eye that raw MSE scores as a poor one. One translation for all targets, as the clone's is, and
    the smallest of equally good ones, so pictures already in place stay where they are.
    """
    true_array, recon_array = _as_pair(true, recon)
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 0:
        raise ValueError(f"radius must be a whole number of pixels >= 0, got {radius!r}")
    height, width = recon_array.shape[1:3]
    padded = np.pad(recon_array, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")

    def moved(rows: int, columns: int) -> np.ndarray:
        return padded[:, radius - rows : radius - rows + height, radius - columns : radius - columns + width]

    shifts = sorted(((rows, columns) for rows in range(-radius, radius + 1) for columns in range(-radius, radius + 1)),
                    key=lambda shift: (abs(shift[0]) + abs(shift[1]), shift))
    errors = [float(np.mean((moved(*shift) - true_array) ** 2)) for shift in shifts]
    best = shifts[int(np.argmin(errors))]  # the first of equal errors: the smallest translation
    return moved(*best), best


ALIGNED_FIELDS = ("affine_aligned_mse", "affine_aligned_ssim", "shift_aligned_mse", "shift_aligned_ssim")


@dataclass(frozen=True, eq=False)
class ReconstructionScores:
    """Per-image MSE, PSNR (dB) and SSIM of one set of reconstructions, with their means.

    `affine_aligned_mse` / `affine_aligned_ssim` score each reconstruction after its best affine fit
    of intensities (`affine_aligned`), so an inverted but recovered picture still counts as a leak;
    `shift_aligned_mse` / `shift_aligned_ssim` score them all after the one small translation that fits them best
    (`shift_aligned`), `shift` (rows, columns); `reconstruction_scores` fills them. The arrays are stored read-only
    so a frozen score really cannot change.
    """

    mse: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    affine_aligned_mse: np.ndarray | None = None
    affine_aligned_ssim: np.ndarray | None = None
    shift_aligned_mse: np.ndarray | None = None
    shift_aligned_ssim: np.ndarray | None = None
    shift: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("mse", "psnr", "ssim", *ALIGNED_FIELDS):
            if getattr(self, name) is None:
                continue
            values = np.array(getattr(self, name), dtype=np.float64)
            values.flags.writeable = False
            object.__setattr__(self, name, values)
        if not self.mse.shape == self.psnr.shape == self.ssim.shape or self.mse.ndim != 1:
            raise ValueError(
                f"mse, psnr and ssim must be 1-D arrays of one length, got shapes "
                f"{self.mse.shape}, {self.psnr.shape} and {self.ssim.shape}; "
                "build scores with reconstruction_scores()."
            )
        for name in ALIGNED_FIELDS:
            if getattr(self, name) is not None and getattr(self, name).shape != self.mse.shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, mse {self.mse.shape}; they must match")

    @property
    def n(self) -> int:
        return int(self.mse.shape[0])

    @property
    def mean_mse(self) -> float:
        return float(np.mean(self.mse))

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))

    @property
    def mean_affine_aligned_mse(self) -> float | None:
        return None if self.affine_aligned_mse is None else float(np.mean(self.affine_aligned_mse))

    @property
    def mean_affine_aligned_ssim(self) -> float | None:
        return None if self.affine_aligned_ssim is None else float(np.mean(self.affine_aligned_ssim))

    @property
    def mean_shift_aligned_mse(self) -> float | None:
        return None if self.shift_aligned_mse is None else float(np.mean(self.shift_aligned_mse))

    @property
    def mean_shift_aligned_ssim(self) -> float | None:
        return None if self.shift_aligned_ssim is None else float(np.mean(self.shift_aligned_ssim))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: the count, the means and the per-image lists (aligned ones when present)."""
        record: dict[str, Any] = {
            "n": self.n,
            "mean_mse": self.mean_mse,
            "mean_psnr": self.mean_psnr,
            "mean_ssim": self.mean_ssim,
            "mse": self.mse.tolist(),
            "psnr": self.psnr.tolist(),
            "ssim": self.ssim.tolist(),
        }
        for name in ALIGNED_FIELDS:
            values = getattr(self, name)
            if values is not None:
                record[f"mean_{name}"], record[name] = float(np.mean(values)), values.tolist()
        if self.shift is not None:
            record["shift"] = list(self.shift)
        return record


def reconstruction_scores(true: Any, recon: Any, *, minmax: bool = False) -> ReconstructionScores:
    """Score reconstructions against the true images (max_val 1).

    With minmax=True each reconstruction (not the true image) is first min-max
    normalised, the convention the paper uses for CIFAR-10; MNIST-like
    results are scored as they are.
    """
    true_array, recon_array = _as_pair(true, recon)
    if minmax:
        recon_array = minmax_normalize(recon_array)
    shifted, shift = shift_aligned(true_array, recon_array)
    return ReconstructionScores(
        mse=mse_per_image(true_array, recon_array),
        psnr=psnr_per_image(true_array, recon_array),
        ssim=ssim_per_image(true_array, recon_array),
        affine_aligned_mse=affine_aligned_mse_per_image(true_array, recon_array),
        affine_aligned_ssim=affine_aligned_ssim_per_image(true_array, recon_array),
        shift_aligned_mse=mse_per_image(true_array, shifted),
        shift_aligned_ssim=ssim_per_image(true_array, shifted),
        shift=shift,
    )


def baseline_scores(
    true: Any, *, seed: int = 0, mean_image: Any | None = None
) -> dict[str, ReconstructionScores]:
    """Scores of guesses that use no leaked information, to give attack scores a scale.

    "constant_0.5" is a flat grey image (the attack's starting point),
    "uniform_random" is seeded uniform noise in [0, 1), and "dataset_mean"
    (only when mean_image, shaped (H, W, C), is given) is the training set's
    mean image. An attack that does not beat these has not reconstructed anything.
    """
    true_array = _as_batch(true, "true")
    guesses = {
        "constant_0.5": np.full(true_array.shape, 0.5),
        "uniform_random": np.random.default_rng(seed).random(true_array.shape),
    }
    if mean_image is not None:
        mean_array = np.asarray(mean_image, dtype=np.float64)
        if mean_array.shape != true_array.shape[1:]:
            raise ValueError(
                f"mean_image has shape {mean_array.shape} but the true images are "
                f"{true_array.shape[1:]} each; pass one (H, W, C) image, e.g. x_train.mean(axis=0)."
            )
        guesses["dataset_mean"] = np.broadcast_to(mean_array, true_array.shape)
    return {name: reconstruction_scores(true_array, guess) for name, guess in guesses.items()}


@dataclass(frozen=True)
class CloneQuality:
    """How good a stolen client clone is, measured through the real server.

    original_accuracy: accuracy of server(client(x)), the deployed model.
    clone_accuracy: accuracy of server(clone(x)), the attacker's stolen model.
    agreement: fraction of inputs where both predict the same class.
    n: number of inputs scored.
    """

    original_accuracy: float
    clone_accuracy: float
    agreement: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the four fields."""
        return asdict(self)


def _call(model: ModelLike, inputs: Any) -> Any:
    """Run a Keras model in inference mode, or call any other callable as it is."""
    if isinstance(model, keras.layers.Layer):
        return model(inputs, training=False)
    return model(inputs)


def _as_labels(y: Any, n: int) -> np.ndarray:
    """Return integer labels of shape (n,), accepting the (n, 1) shape Keras datasets use."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"y must hold one integer class label per input, shape ({n},), got shape "
            f"{labels.shape} and dtype {labels.dtype}; for one-hot labels pass y.argmax(axis=-1)."
        )
    return labels


def clone_quality(
    client: ModelLike, clone: ModelLike, server: ModelLike, x: Any, y: Any, *, batch_size: int = 512
) -> CloneQuality:
    """Compare server(clone(x)) with server(client(x)) on labelled data, in batches.

    Batching keeps a full test set (e.g. 10k CIFAR-10 images) within memory;
    the result does not depend on batch_size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    inputs = np.asarray(x, dtype=np.float32)
    n = int(inputs.shape[0])
    if n == 0:
        raise ValueError(f"x is empty (shape {inputs.shape}); pass at least one input.")
    labels = _as_labels(y, n)
    original_correct = clone_correct = agreeing = 0
    for start in range(0, n, batch_size):
        batch = inputs[start : start + batch_size]
        batch_labels = labels[start : start + batch_size]
        original = np.argmax(np.asarray(_call(server, _call(client, batch))), axis=-1)
        cloned = np.argmax(np.asarray(_call(server, _call(clone, batch))), axis=-1)
        original_correct += int(np.sum(original == batch_labels))
        clone_correct += int(np.sum(cloned == batch_labels))
        agreeing += int(np.sum(cloned == original))
    return CloneQuality(
        original_accuracy=original_correct / n,
        clone_accuracy=clone_correct / n,
        agreement=agreeing / n,
        n=n,
    )


# ---------------------------------------------------------------- label inference: scores against the true labels
#
# The label attacks (`unsplit_tf.attacks.labels`) never call these.


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
    """One line per label-inference method, for people."""
    return "\n".join(score.summary() for score in scores)
