"""Counted graph loops written as explicit `tf.while_loop`s, so that functions traced without autograph (whose
conversion failed now and then, or mixed up the bindings of methods traced from two places) can still loop."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def repeat(count: int | tf.Tensor, body: Callable[[tf.Tensor], object]) -> None:
    """Run `body(i)` for i = 0 .. count - 1 inside the graph being traced; `body` works by its side effects."""

    def step(i: tf.Tensor) -> tuple[tf.Tensor]:
        body(i)
        return (i + 1,)

    tf.while_loop(lambda i: i < count, step, (tf.constant(0),))
