"""The closed-form maths of label inference: candidate gradients of a one-layer head, and the solvers.

The head is one dense layer, `logits = a @ W + b`, trained with the mean softmax
cross-entropy over a batch of B examples, so for example i with label y_i:

    g_i   = (softmax(logits_i) - onehot(y_i)) / B      d loss / d logits_i
    dL/dW = sum_i outer(a_i, g_i) = a^T G               (D x C, one matrix per batch)
    dL/da_i = g_i @ W^T                                 (one row per example)

Only the true label's entry of g_i is negative. For every candidate label c the
server can write down the gradient it would see, in closed form and for all
candidates at once (`candidate_*_gradients`; the tests check them against
`tf.GradientTape`), using its *clone* of the head in place of the client's.
"""

from __future__ import annotations

import tensorflow as tf

UNROLLED_SOLVE_MAX = 16
"""Largest system `solve_positive_definite` writes out step by step; larger ones go to tf.linalg.solve."""


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


def fit_kernel(gg: tf.Tensor, go: tf.Tensor, ridge: float) -> tf.Tensor:
    """Ridge least squares: the kernel W minimising sum_i ||o_i - g_i W^T||^2 + ridge ||W||^2, (D, C).

    gg = sum_i g_i^T g_i (C, C) and go = sum_i g_i^T o_i (C, D) over the fitted examples.
    Every g_i sums to 0 (softmax - onehot), so the all-ones vector is an eigenvector of
    gg + ridge I with eigenvalue `ridge` and go has no component along it: the solution
    has none either (adding a vector to every column of W changes no prediction). Adding
    ones ones^T to the matrix therefore changes nothing in exact arithmetic, and keeps the
    float32 solve well conditioned after many examples (else its condition number grows
    as examples / ridge, and rounding error along that direction swamps the logits).
    """
    num_classes = gg.shape[-1]
    ones = tf.ones((num_classes, num_classes))
    return tf.transpose(solve_positive_definite(gg + ridge * tf.eye(num_classes) + ones, go))


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
