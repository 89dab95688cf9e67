"""Adam with resettable state, for optimisation loops compiled once and reused.

The attacks need "a fresh optimiser per target" (as the authors' code makes)
without retracing their compiled loops, and they need Adam's update fused into
an XLA-compiled `tf.while_loop`. Keras optimisers offer neither a reset nor a
guarantee about their internal variables, so this is PyTorch's Adam (the
authors' framework; `amsgrad` as in `torch.optim.Adam`) over `tf.Variable`s.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


class ResettableAdam:
    """Adam over fixed variables whose moments and step count `reset()` to zero."""

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        learning_rate: float,
        *,
        amsgrad: bool = True,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
    ) -> None:
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        self.variables = list(variables)
        self.learning_rate, self.amsgrad = learning_rate, amsgrad
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.step = tf.Variable(0.0, trainable=False)
        zeros = lambda v: tf.Variable(tf.zeros_like(v), trainable=False)  # noqa: E731
        self.first_moments = [zeros(v) for v in self.variables]
        self.second_moments = [zeros(v) for v in self.variables]
        self.max_second_moments = [zeros(v) for v in self.variables] if amsgrad else self.second_moments

    def reset(self) -> None:
        """Forget all moments and the step count, as a newly created optimiser would."""
        self.step.assign(0.0)
        for slot in {id(s): s for s in self.first_moments + self.second_moments + self.max_second_moments}.values():
            slot.assign(tf.zeros_like(slot))

    def apply(self, gradients: Sequence[tf.Tensor]) -> None:
        """One Adam step of every variable along its gradient."""
        step = self.step.assign_add(1.0)
        correction_1 = 1.0 - tf.pow(self.beta_1, step)
        correction_2 = 1.0 - tf.pow(self.beta_2, step)
        slots = zip(gradients, self.variables, self.first_moments, self.second_moments, self.max_second_moments)
        for gradient, variable, first, second, max_second in slots:
            first.assign(self.beta_1 * first + (1.0 - self.beta_1) * gradient)
            second.assign(self.beta_2 * second + (1.0 - self.beta_2) * tf.square(gradient))
            if self.amsgrad:
                max_second.assign(tf.maximum(max_second, second))
            denominator = tf.sqrt(max_second) / tf.sqrt(correction_2) + self.epsilon
            variable.assign_sub(self.learning_rate / correction_1 * first / denominator)
