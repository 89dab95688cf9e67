"""Figures for audit reports: image grids of reconstructions and training curves.

Every function builds a `matplotlib.figure.Figure` directly, without pyplot's
global state, so it works headless and in loops without leaking memory.
Functions return the figure: a notebook displays it, a script passes it to
`save_figure`. Images are float NHWC batches in [0, 1] with 1 or 3 channels.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import pyplot
from matplotlib.axes import Axes
from matplotlib.figure import Figure

CELL_INCHES = 1.4
"""Width and height of one image in a grid, in inches."""

SAVE_DPI = 150


def _as_display_batch(images: Any, name: str) -> np.ndarray:
    """Return an NHWC batch with 1 or 3 channels, clipped to [0, 1] for display."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name} must be NHWC images with 1 or 3 channels, got shape {array.shape}; "
            "add a batch axis (images[None]) or a channel axis (images[..., None]) as needed."
        )
    return np.clip(array, 0.0, 1.0)


def _show_image(axes: Axes, image: np.ndarray) -> None:
    """Draw one HWC image without ticks or frame, keeping the axis labels usable."""
    if image.shape[-1] == 1:
        axes.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        axes.imshow(image)
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)


def _check_length(values: Sequence[Any] | None, expected: int, name: str, unit: str) -> None:
    """Raise ValueError unless `values` is None or has one entry per unit."""
    if values is not None and len(values) != expected:
        raise ValueError(f"{name} has {len(values)} entries for {expected} {unit}s; give exactly one per {unit}.")


def rows_grid(
    rows: Sequence[Any],
    row_titles: Sequence[str],
    *,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str] | None] | None = None,
    title: str | None = None,
) -> Figure:
    """Grid with one row per image batch, e.g. originals then reconstructions at each split depth.

    rows: NHWC batches, all with the same number of images (the columns).
    row_titles: one label per row, shown at its left.
    col_labels: optional titles above the columns (e.g. class names).
    captions: optional per-row lists of texts shown under each image
        (e.g. "MSE 0.042"); None for a row without captions.
    """
    batches = [_as_display_batch(row, f"rows[{index}]") for index, row in enumerate(rows)]
    if not batches:
        raise ValueError("rows is empty; pass at least one batch of images.")
    columns = batches[0].shape[0]
    for index, batch in enumerate(batches):
        if batch.shape[0] != columns:
            raise ValueError(
                f"rows[{index}] has {batch.shape[0]} images but rows[0] has {columns}; "
                "every row needs one image per column."
            )
    _check_length(row_titles, len(batches), "row_titles", "row")
    _check_length(col_labels, columns, "col_labels", "column")
    _check_length(captions, len(batches), "captions", "row")
    row_captions = list(captions) if captions is not None else [None] * len(batches)
    for index, texts in enumerate(row_captions):
        _check_length(texts, columns, f"captions[{index}]", "column")

    figure = Figure(figsize=(CELL_INCHES * columns, CELL_INCHES * len(batches)), layout="constrained")
    grid = figure.subplots(len(batches), columns, squeeze=False)
    for row_index, batch in enumerate(batches):
        for column_index, image in enumerate(batch):
            axes = grid[row_index, column_index]
            _show_image(axes, image)
            if row_captions[row_index] is not None:
                axes.set_xlabel(row_captions[row_index][column_index], fontsize="small")
        grid[row_index, 0].set_ylabel(row_titles[row_index])
    if col_labels is not None:
        for column_index, label in enumerate(col_labels):
            grid[0, column_index].set_title(label, fontsize="medium")
    if title is not None:
        figure.suptitle(title)
    return figure


def reconstruction_grid(
    originals: Any,
    reconstructions: Any,
    *,
    labels: Sequence[str] | None = None,
    scores: Any | None = None,
    title: str | None = None,
) -> Figure:
    """Originals in the top row, their reconstructions below.

    labels titles each column; scores (per-image MSE, shape (N,)) captions
    each reconstruction as "MSE 0.042".
    """
    captions = None
    if scores is not None:
        captions = [None, [f"MSE {score:.3f}" for score in np.asarray(scores, dtype=np.float64).reshape(-1)]]
    return rows_grid(
        [originals, reconstructions],
        ["original", "reconstruction"],
        col_labels=labels,
        captions=captions,
        title=title,
    )


def curves(
    series: dict[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logy: bool = False,
    x: Sequence[float] | None = None,
) -> Figure:
    """One line per named series (loss or accuracy against step or epoch).

    x is shared by all series; without it each series is drawn against 1, 2, ..., len(series).
    logy uses a log scale for the y axis (useful for losses).
    """
    if not series:
        raise ValueError("series is empty; pass a dict such as {'train loss': [...]}.")
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.subplots()
    for name, values in series.items():
        steps = np.arange(1, len(values) + 1) if x is None else np.asarray(x)
        if len(steps) != len(values):
            raise ValueError(
                f"series {name!r} has {len(values)} values but x has {len(steps)}; "
                "give x one entry per value, or leave it out."
            )
        axes.plot(steps, np.asarray(values, dtype=np.float64), label=name)
    if logy:
        axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend()
    if title is not None:
        axes.set_title(title)
    return figure


def save_figure(figure: Figure, path: str | pathlib.Path) -> pathlib.Path:
    """Save a figure (PNG unless the path names another format), then close it to free memory.

    Creates missing parent folders; a path without a suffix gets ".png".
    Returns the path written.
    """
    target = pathlib.Path(path)
    if not target.suffix:
        target = target.with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=SAVE_DPI, bbox_inches="tight")
    pyplot.close(figure)
    return target
