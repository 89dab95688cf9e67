import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.optim import ResettableAdam


def torch_adam_amsgrad(gradients, lr, beta_1=0.9, beta_2=0.999, eps=1e-8):
    """PyTorch's Adam(amsgrad=True) written out in numpy, for reference."""
    value, m, v, v_max, path = 0.0, 0.0, 0.0, 0.0, []
    for t, g in enumerate(gradients, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        v_max = max(v_max, v)
        value -= lr / (1 - beta_1**t) * m / (np.sqrt(v_max) / np.sqrt(1 - beta_2**t) + eps)
        path.append(value)
    return path


def test_matches_pytorchs_amsgrad_step_by_step():
    variable = tf.Variable([0.0])
    adam = ResettableAdam([variable], 0.1)
    gradients = [1.0, -3.0, 0.5, 2.0, 0.0]
    path = []
    for g in gradients:
        adam.apply([tf.constant([g])])
        path.append(float(variable[0]))
    np.testing.assert_allclose(path, torch_adam_amsgrad(gradients, 0.1), rtol=1e-5)


def test_reset_behaves_like_a_new_optimiser():
    variable = tf.Variable([0.0])
    adam = ResettableAdam([variable], 0.1)
    for g in (5.0, 5.0, 5.0):
        adam.apply([tf.constant([g])])
    adam.reset()
    variable.assign([0.0])
    adam.apply([tf.constant([1.0])])
    assert float(variable[0]) == pytest.approx(torch_adam_amsgrad([1.0], 0.1)[0], rel=1e-5)


def test_rejects_a_non_positive_learning_rate():
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        ResettableAdam([tf.Variable(0.0)], 0.0)
