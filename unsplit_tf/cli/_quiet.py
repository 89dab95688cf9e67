"""Import TensorFlow with its C++ start-up lines silenced; import this before anything that imports TensorFlow.

TensorFlow writes those lines to file descriptor 2 before its logging can be
configured, so no environment variable reaches all of them: fd 2 points at
/dev/null for the length of the import and of the device initialisation.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def _stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
with _stderr_silenced():
    import tensorflow as tf

    tf.config.list_logical_devices()  # initialises the devices (and prints "no CUDA" on CPU machines) now

# TensorFlow's Python warnings are not the user's to act on (e.g. "triggered tf.function retracing": each restart
# and each refit fits a new clone, whose steps are traced anew by design); its errors still show.
tf.get_logger().setLevel("ERROR")
