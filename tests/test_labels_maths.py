"""The closed-form maths of label inference (unsplit_tf.attacks.labels.gradients), against tapes and numpy."""

import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.attacks.labels import (
    ActivationGradientConfig,
    candidate_activation_gradients,
    candidate_kernel_gradients,
    fit_kernel,
    project_to_simplex,
    recover_logit_gradients,
    solve_positive_definite,
)
from unsplit_tf.protocol import cross_entropy

HIDDEN, CLASSES = 24, 10


def test_closed_form_candidate_gradients_match_gradient_tape(rng):
    batch = 4
    a = tf.constant(rng.normal(size=(batch, 6)), tf.float32)
    kernel = tf.Variable(rng.normal(size=(6, CLASSES)), dtype=tf.float32)
    bias = tf.Variable(rng.normal(size=(CLASSES,)), dtype=tf.float32)
    logits = a @ kernel + bias
    kernel_grads = candidate_kernel_gradients(a, logits).numpy()  # (B, C, D, C)
    activation_grads = candidate_activation_gradients(logits, kernel).numpy()  # (B, C, D)
    for labels in [rng.integers(0, CLASSES, batch)] + [np.full(batch, c) for c in range(CLASSES)]:
        with tf.GradientTape() as tape:
            tape.watch(a)
            loss = cross_entropy(labels, a @ kernel + bias)
        d_kernel, d_a = tape.gradient(loss, [kernel, a])
        rows = np.arange(batch)
        np.testing.assert_allclose(kernel_grads[rows, labels].sum(0), d_kernel.numpy(), atol=1e-6)
        np.testing.assert_allclose(activation_grads[rows, labels], d_a.numpy(), atol=1e-6)


def test_projection_onto_the_simplex(rng):
    vectors = rng.normal(size=(5, 3, 7)).astype(np.float32)
    projected = project_to_simplex(vectors).numpy()
    np.testing.assert_allclose(projected.sum(-1), 1.0, atol=1e-5)
    assert projected.min() >= 0
    # Optimality: no random point of the simplex is closer.
    for v, p in zip(vectors.reshape(-1, 7), projected.reshape(-1, 7)):
        others = rng.dirichlet(np.ones(7), 200)
        assert np.sum((v - p) ** 2) <= np.min(np.sum((v - others) ** 2, axis=1)) + 1e-6
    point = np.array([[0.2, 0.3, 0.5]], np.float32)
    np.testing.assert_allclose(project_to_simplex(point).numpy(), point, atol=1e-6)
    ties = np.array([[2.0, 2.0, -1.0, 2.0]], np.float32)  # equal entries share the mass
    np.testing.assert_allclose(project_to_simplex(ties).numpy(), [[1 / 3, 1 / 3, 0.0, 1 / 3]], atol=1e-6)


@pytest.mark.parametrize("batch", [1, 5, 30])
def test_recovered_logit_gradients_are_the_minimum_norm_least_squares_solution(rng, batch):
    """B = 1 (the fast path), B <= rank (exact), and B = 30 > D = 12 (underdetermined), against numpy's pinv."""
    steps, features = 3, 12
    a = np.abs(rng.normal(size=(steps, batch, features)))
    logit_grads = rng.normal(size=(steps, batch, CLASSES))
    kernel_grads = np.einsum("tbd,tbc->tdc", a, logit_grads) / batch  # the mean loss's dL/dW
    recovered = recover_logit_gradients(tf.constant(a, tf.float32), tf.constant(kernel_grads, tf.float32)).numpy()
    expected = np.stack([np.linalg.pinv(a[t].T) @ (kernel_grads[t] * batch) for t in range(steps)])
    np.testing.assert_allclose(recovered, expected, rtol=1e-3, atol=1e-4)
    if batch <= features:
        np.testing.assert_allclose(recovered, logit_grads, rtol=1e-3, atol=1e-4)
    assert np.all(recover_logit_gradients(tf.zeros((1, batch, features)), tf.zeros((1, features, CLASSES))).numpy() == 0)


def test_the_gradient_fit_stays_accurate_after_many_examples(rng):
    """After 20,000 examples the ridge system's condition number (examples / ridge) is past float32's;
    the fitted kernel must still match a float64 solve, in the compiled loop's XLA arithmetic.
    (Measured: 4e-6 relative; before the fix, 1e-2, and the live attack fell to chance after ~2,000 steps.)"""
    n = 20_000
    logits = rng.normal(size=(n, CLASSES)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    grads = probs - np.eye(CLASSES)[rng.integers(0, CLASSES, n)] + 1e-7  # float32 softmaxes do not sum to exactly 1
    observed = grads @ rng.normal(size=(HIDDEN, CLASSES)).T
    gg, go = grads.T @ grads, grads.T @ observed
    ridge = ActivationGradientConfig().ridge
    fitted = tf.function(lambda gg, go: fit_kernel(gg, go, ridge), jit_compile=True)(
        tf.constant(gg, tf.float32), tf.constant(go, tf.float32)
    )
    exact = np.linalg.solve(gg + ridge * np.eye(CLASSES), go).T
    np.testing.assert_allclose(fitted.numpy(), exact, rtol=0, atol=1e-3 * np.abs(exact).max())


@pytest.mark.parametrize("size", [10, 20])
def test_small_positive_definite_solve(rng, size):
    """The unrolled elimination (size 10) and the tf.linalg.solve fallback (size 20) agree with numpy."""
    root = rng.normal(size=(size, size))
    matrix = (root @ root.T + 1e-2 * np.eye(size)).astype(np.float32)
    rhs = rng.normal(size=(size, 7)).astype(np.float32)
    solved = solve_positive_definite(tf.constant(matrix), tf.constant(rhs)).numpy()
    np.testing.assert_allclose(matrix @ solved, rhs, rtol=1e-3, atol=1e-3)


def test_activation_gradients_cannot_name_the_classes(rng):
    """Permuting the head's columns and the labels alike leaves every d loss / d a unchanged."""
    a = tf.constant(rng.normal(size=(6, 5)), tf.float32)
    kernel = tf.constant(rng.normal(size=(5, CLASSES)), tf.float32)
    bias = tf.constant(rng.normal(size=(CLASSES,)), tf.float32)
    labels = rng.integers(0, CLASSES, 6)
    permutation = rng.permutation(CLASSES)  # class c is renamed permutation[c]
    inverse = np.argsort(permutation)

    def activation_gradients(kernel, bias, labels):
        with tf.GradientTape() as tape:
            tape.watch(a)
            loss = cross_entropy(labels, a @ kernel + bias)
        return tape.gradient(loss, a).numpy()

    original = activation_gradients(kernel, bias, labels)
    renamed = activation_gradients(tf.gather(kernel, inverse, axis=1), tf.gather(bias, inverse), permutation[labels])
    np.testing.assert_allclose(original, renamed, atol=1e-6)
