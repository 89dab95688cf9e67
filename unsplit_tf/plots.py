"""Figures for audit reports: image grids of reconstructions and training curves.

Every function builds a `matplotlib.figure.Figure` directly, without pyplot's
global state, so it works headless and in loops without leaking memory.
Functions return the figure: a notebook displays it, a script passes it to
`save_figure`. Images are float NHWC batches in [0, 1] with 1 or 3 channels.
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import pyplot
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

CELL_INCHES = 1.4
"""Width and height of one image in a grid, in inches."""

MAX_GRID_COLUMNS = 10
"""Images per row of a grid; more wrap into further blocks of rows below, so a page holds the figure."""

SAVE_DPI = 150

REFERENCE_COLOURS = {
    "grey image": "#8c8c8c",
    "dataset mean": "#b8860b",
    "chance": "#c0392b",
    "split model": "#000000",
}
"""One colour per kind of reference line, the same in every figure; no data series uses them."""

SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#17becf", "#e377c2", "#bcbd22", "#7f3c8d")
"""Colours of the data series, in order (matplotlib's, without the reference colours' greys, browns and reds)."""

SERIES_STYLES = (("-", "o", 2.6), ("--", "s", 2.0), (":", "^", 2.4), ("-.", "D", 1.6), ((0, (5, 1, 1, 1)), "v", 1.4))
"""(line style, marker, line width) per series, in order: curves that lie on top of each other stay visible."""

MARKERS_PER_CURVE = 10


@dataclass(frozen=True)
class Reference:
    """A reference for the curves: a kind of REFERENCE_COLOURS, a level (or one per x), and a legend text.

    label defaults to the kind, e.g. Reference("chance", 0.1) or
    Reference("split model", accuracies, "split model: server(client(x))").
    """

    kind: str
    value: float | Sequence[float]
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in REFERENCE_COLOURS:
            raise ValueError(f"unknown reference kind {self.kind!r}; choose one of {', '.join(REFERENCE_COLOURS)}")


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

    More than MAX_GRID_COLUMNS images per row wrap: the rows repeat below for the
    next ten columns, each block with its row titles.
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

    width = min(columns, MAX_GRID_COLUMNS)
    blocks = -(-columns // width)
    figure = Figure(figsize=(CELL_INCHES * width, CELL_INCHES * len(batches) * blocks), layout="constrained")
    grid = figure.subplots(len(batches) * blocks, width, squeeze=False)
    for block in range(blocks):
        shown = range(block * width, min(columns, (block + 1) * width))
        for row_index, batch in enumerate(batches):
            axes_row = grid[block * len(batches) + row_index]
            for position, column_index in enumerate(shown):
                _show_image(axes_row[position], batch[column_index])
                if row_captions[row_index] is not None:
                    axes_row[position].set_xlabel(row_captions[row_index][column_index], fontsize="small")
                if row_index == 0 and col_labels is not None:
                    axes_row[position].set_title(col_labels[column_index], fontsize="medium")
            axes_row[0].set_ylabel(row_titles[row_index])
            for unused in axes_row[len(shown) :]:
                unused.remove()
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


PLOT_INCHES = 5.0
"""The width a line plot keeps for its axes when its legend beside it is wide."""
LEGEND_INCHES_PER_CHARACTER = 0.065
"""About one character of a legend label at the legend's font size ("small")."""


def curves(
    series: dict[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logy: bool = False,
    x: Sequence[float] | None = None,
    integer_x: bool = False,
    percent: bool = False,
    references: Sequence[Reference] = (),
    bands: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Figure:
    """One line per named series (loss or accuracy against step or epoch), legend beside the plot.

    x is shared by all series; without it each series is drawn against 1, 2, ..., len(series).
    Each series has its own line style, width and marker shape (hollow, placed at staggered
    points), so curves on top of each other stay visible. logy uses a log scale for the y axis
    (useful for losses); integer_x puts ticks on whole numbers only (rounds, epochs, depths);
    percent shows values given as fractions (0.25) as percentages (25 %). references adds
    dashed lines (a level, or one value per x) in their kind's fixed colour. bands shades, for a
    named series, the span from its low to its high values (the range over repeated runs) in its colour.
    """
    if not series:
        raise ValueError("series is empty; pass a dict such as {'train loss': [...]}.")
    names = [*series, *(reference.label or reference.kind for reference in references)]
    legend_inches = LEGEND_INCHES_PER_CHARACTER * max(map(len, names))  # the legend sits beside the plot, which keeps its width
    figure = Figure(figsize=(max(7.5, PLOT_INCHES + legend_inches), 4.0), layout="constrained")
    axes = figure.subplots()
    styles = zip(itertools.cycle(SERIES_COLOURS), itertools.cycle(SERIES_STYLES))
    for index, ((name, values), (colour, (linestyle, marker, linewidth))) in enumerate(zip(series.items(), styles)):
        steps = _x_for(name, values, x)
        every = max(1, len(steps) // MARKERS_PER_CURVE)
        axes.plot(
            steps, np.asarray(values, dtype=np.float64), label=name, color=colour, linestyle=linestyle,
            linewidth=linewidth, marker=marker, markersize=9 - 1.2 * (index % len(SERIES_STYLES)),
            markerfacecolor="none", markeredgewidth=1.4, markevery=(index * every // len(SERIES_STYLES) % every, every),
        )
        if bands and name in bands:
            low, high = (np.asarray(edge, dtype=np.float64) for edge in bands[name])
            axes.fill_between(steps, low, high, color=colour, alpha=0.15, linewidth=0)
            axes.vlines(steps, low, high, color=colour, alpha=0.5, linewidth=2.5)  # seen at an x measured alone too
    for reference in references:
        draw_reference(axes, reference, x=x)
    if logy:
        axes.set_yscale("log")
    if integer_x:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    if percent:
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the curves
    if title is not None:
        axes.set_title(title)
    return figure


def draw_reference(axes: Axes, reference: Reference, *, x: Sequence[float] | None = None) -> None:
    """Draw `reference` on `axes`, dashed in its kind's colour: a horizontal line, or a curve over x (default 1, 2, ...)."""
    label = reference.label or reference.kind
    style = {"color": REFERENCE_COLOURS[reference.kind], "linestyle": "--", "linewidth": 1.2, "label": label}
    if np.ndim(reference.value) == 0:
        axes.axhline(float(reference.value), **style)
    else:
        values = np.asarray(reference.value, dtype=np.float64)
        axes.plot(_x_for(label, values, x), values, **style)


def _x_for(name: str, values: Sequence[float], x: Sequence[float] | None) -> np.ndarray:
    steps = np.arange(1, len(values) + 1) if x is None else np.asarray(x)
    if len(steps) != len(values):
        raise ValueError(
            f"series {name!r} has {len(values)} values but x has {len(steps)}; give x one entry per value, or leave it out."
        )
    return steps


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
