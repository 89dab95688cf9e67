"""Scoring label inference (unsplit_tf.scoring's label section): the assignment, relabelled accuracy and AUC."""

import itertools

import numpy as np
import pytest

from unsplit_tf.scoring import best_assignment, one_vs_rest_auc, relabelled_accuracy


def test_best_assignment_matches_brute_force(rng):
    for _ in range(5):
        cost = rng.normal(size=(5, 5))
        brute = min(itertools.permutations(range(5)), key=lambda p: cost[np.arange(5), list(p)].sum())
        assignment = best_assignment(cost)
        assert cost[np.arange(5), assignment].sum() == pytest.approx(cost[np.arange(5), list(brute)].sum())
        assert sorted(assignment) == list(range(5))


def test_relabelled_accuracy_and_auc():
    true = np.array([0, 0, 1, 1, 2, 2])
    assert relabelled_accuracy(np.array([2, 2, 0, 0, 1, 1]), true, 3) == 1.0
    assert relabelled_accuracy(np.array([0, 0, 0, 0, 0, 0]), true, 3) == pytest.approx(1 / 3)
    perfect = np.eye(3)[true]
    assert one_vs_rest_auc(perfect, true, 3) == 1.0
    assert one_vs_rest_auc(-perfect, true, 3) == 0.0
    assert one_vs_rest_auc(np.ones(6), true, 3) == 0.5  # ties count one half
