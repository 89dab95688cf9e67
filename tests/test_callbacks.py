"""The audit callbacks on a real `model.fit`: figures in History, CSVLogger and TensorBoard, errors before training.

The data are 8x8 images of one vertical bar whose position is the class (plus
noise). Training a small conv net to tell the bars apart shapes its cut
features around the bars, and the inversion audit must see it: its SSIM rises
and its MSE falls from the first audited epoch to the last, to below the
probe's mean image (a guess without leaked information).
"""

from __future__ import annotations

import csv
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from unsplit_tf.callbacks import DEFAULT_INVERSION_CONFIG, InversionAudit, LabelLeakageAudit

CLASSES = 4
CONFIG = DEFAULT_INVERSION_CONFIG.replace(main_iters=10, input_iters=10, model_iters=10, jit_compile=False)


def bars(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = np.zeros((n, 8, 8, 1), np.float32)
    for i, label in enumerate(y):
        x[i, :, 2 * label : 2 * label + 2, 0] = 1.0
    return np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32), y


def bar_model(learning_rate: float = 3e-3) -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="relu", name="features")(h)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="probabilities")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def events(folder) -> list[tf.compat.v1.Event]:
    files = tf.io.gfile.glob(str(folder / "events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    return [tf.compat.v1.Event.FromString(record.numpy()) for record in tf.data.TFRecordDataset(files)]


def test_fit_on_a_dataset_logs_both_audits_to_history_csv_and_tensorboard(tmp_path):
    x, y = bars(128)
    model = bar_model()
    inversion = InversionAudit("conv", x[:12], config=CONFIG, tensorboard_dir=tmp_path / "tb")
    labels = LabelLeakageAudit("features", tf.data.Dataset.from_tensor_slices((x[:64], y[:64])).batch(16), every=2,
                               tensorboard_dir=tmp_path / "tb")
    csv_path = tmp_path / "log.csv"
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    history = model.fit(dataset, epochs=2, verbose=0, shuffle=False, callbacks=[inversion, labels, keras.callbacks.CSVLogger(csv_path)])

    for name in ("mse", "psnr", "ssim"):
        values = history.history[f"audit_inversion_{name}"]
        assert len(values) == 2 and all(math.isfinite(v) for v in values)
    assert all(0 <= v <= 1 for v in history.history["audit_clone_agreement"])
    label_figures = {
        "audit_gradient_matching_accuracy", "audit_gradient_matching_auc", "audit_direction_scoring_accuracy",
        "audit_direction_scoring_auc", "audit_norm_scoring_auc", "audit_label_chance",
    }
    assert label_figures <= set(history.history)
    for name in label_figures:  # audited at epoch 2 only; NaN at epoch 1 keeps the columns aligned
        first, second = history.history[name]
        assert math.isnan(first) and 0 <= second <= 1
    # Each class is a bar: the gradients at the cut name the labels once one example per class is known.
    assert history.history["audit_direction_scoring_accuracy"][1] > 0.9
    assert history.history["audit_gradient_matching_accuracy"][1] > 0.9
    assert [entry["epoch"] for entry in labels.history] == [2]

    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2 and float(rows[1]["audit_direction_scoring_accuracy"]) > 0.9

    scalars: dict[str, list[int]] = {}
    images = []
    for event in events(tmp_path / "tb"):
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            if plugin == "scalars":
                scalars.setdefault(value.tag, []).append(event.step)
            elif plugin == "images":
                images.append((event.step, tf.make_ndarray(value.tensor)))
    assert scalars["audit_inversion_mse"] == [0, 1] and scalars["audit_direction_scoring_accuracy"] == [1]
    assert [step for step, _ in images] == [0, 1]
    width, height, png = images[0][1]
    picture = tf.io.decode_png(png).numpy()
    # 12 targets wrap into rows of 10: two rows of originals, each above its reconstructions.
    assert picture.shape == (int(height), int(width), 1) == (4 * 9 - 1, 10 * 9 - 1, 1)


def test_inversion_audit_sees_leakage_grow_as_the_model_learns():
    x, y = bars(256)
    audit = InversionAudit("conv", x[:8], config=CONFIG)
    history = bar_model().fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[audit])
    mse, ssim = history.history["audit_inversion_mse"], history.history["audit_inversion_ssim"]
    assert history.history["accuracy"][-1] > 0.95
    assert mse[-1] < 0.8 * mse[0] and ssim[-1] > ssim[0] + 0.1
    assert mse[-1] < audit.baselines["dataset_mean"].mean_mse < mse[0] + 0.05
    for aligned in ("affine_aligned_mse", "shift_aligned_mse"):  # an alignment can only bring a picture closer
        assert all(a <= m + 1e-9 for a, m in zip(history.history[f"audit_inversion_{aligned}"], mse))
    assert audit.last_result.reconstructions.shape == x[:8].shape


def test_errors_name_the_fix_before_any_training():
    x, y = bars(16)
    with pytest.raises(ValueError, match="every must be"):
        InversionAudit("conv", x, every=0)
    with pytest.raises(ValueError, match="methods must name"):
        LabelLeakageAudit("features", (x, y), methods=["norm"])
    model = bar_model()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="no layer named 'conv1'; did you mean 'conv'"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[InversionAudit("conv1", x)])
    with pytest.raises(ValueError, match=r"probe inputs have shape \(16, 8, 8, 3\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[InversionAudit("conv", np.repeat(x, 3, axis=-1))])
    with pytest.raises(ValueError, match="needs the labels"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LabelLeakageAudit("conv", x)])
    with pytest.raises(ValueError, match="gradient_matching needs the layers after 'conv' to be one Dense"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[LabelLeakageAudit("conv", (x, y), methods=["gradient_matching"])])
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights())), "trained before the error"
