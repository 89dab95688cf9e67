"""TensorBoard scalars and images written with TensorFlow alone.

`tf.summary.scalar` and `tf.summary.image` live in the `tensorboard` package,
which TensorFlow no longer installs. These write the same events (TensorBoard's
"scalars" and "images" plugin formats) through the core `tf.summary.write`, so
auditing works without it and TensorBoard, once installed, reads the folder.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str, data_class: int) -> summary_pb2.SummaryMetadata:
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin), data_class=data_class
    )


def scalar(name: str, value: float, step: int) -> None:
    """One scalar point of `name` at `step`, to the default writer."""
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=_metadata("scalars", summary_pb2.DATA_CLASS_SCALAR))


def image(name: str, picture: np.ndarray, step: int) -> None:
    """One HWC float picture in [0, 1] (1 or 3 channels) of `name` at `step`, as PNG, to the default writer."""
    png = tf.image.encode_png(tf.image.convert_image_dtype(np.clip(picture, 0.0, 1.0), tf.uint8, saturate=True))
    height, width = picture.shape[:2]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height)), png])  # the images plugin's layout
    tf.summary.write(name, tensor, step=step, metadata=_metadata("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE))
