"""Inversion speed: image-steps per second of the alternating optimisation, compilation excluded.

The MNIST net cut at depth 2, untrained (speed does not depend on the
weights). One image-step is one optimiser step for one target image; the
first round, which pays for compilation, is not timed.
"""

from __future__ import annotations

import time

import numpy as np

from unsplit_tf.attacks.inversion import InversionConfig, invert
from unsplit_tf.models import mnist_net
from unsplit_tf.split import split_model


def inversion_speed(batch: int, rounds: int, jit_compile: bool | None = None, **changes) -> float:
    """Image-steps per second of the inversion attack at `batch` targets over `rounds` timed rounds.

    `changes` alter the config (e.g. stream mode, where a round is one pass over all targets).
    """
    client = split_model(mnist_net(), depth=2).client
    targets = np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)
    config = InversionConfig(main_iters=rounds + 1, jit_compile=jit_compile, **changes)
    stamps: list[float] = []
    invert(client, client(targets), config, on_round=lambda report: stamps.append(time.perf_counter()))
    seconds_per_round = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return batch * (config.input_iters + config.model_iters) / seconds_per_round
