import numpy as np
import pytest
from matplotlib.figure import Figure

from matplotlib.ticker import PercentFormatter

from unsplit_tf.plots import CELL_INCHES, REFERENCE_COLOURS, Reference, curves, reconstruction_grid, rows_grid, save_figure


def _images(count, channels, seed=0):
    # Values outside [0, 1] on purpose: the grids must clip them for display.
    return np.random.default_rng(seed).uniform(-0.5, 1.5, (count, 8, 8, channels)).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstruction_grid_layout_and_captions(channels):
    originals, reconstructions = _images(4, channels), _images(4, channels, seed=1)
    figure = reconstruction_grid(
        originals,
        reconstructions,
        labels=["a", "b", "c", "d"],
        scores=np.array([0.0421, 0.1, 0.2, 0.3]),
        title="depth 2",
    )
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 8
    top, bottom = figure.axes[:4], figure.axes[4:]
    assert [axes.get_title() for axes in top] == ["a", "b", "c", "d"]
    assert bottom[0].get_xlabel() == "MSE 0.042"
    assert top[0].get_ylabel() == "original" and bottom[0].get_ylabel() == "reconstruction"
    shown = top[0].images[0]
    data = np.asarray(shown.get_array())
    assert data.min() >= 0.0 and data.max() <= 1.0
    if channels == 1:
        assert data.ndim == 2 and shown.get_cmap().name == "gray"
    else:
        assert data.shape == (8, 8, 3)


def test_rows_grid_for_a_depth_sweep():
    rows = [_images(3, 1, seed) for seed in range(4)]
    figure = rows_grid(
        rows,
        ["original", "depth 1", "depth 2", "depth 3"],
        col_labels=["x", "y", "z"],
        captions=[None, ["1", "2", "3"], None, ["4", "5", "6"]],
    )
    assert len(figure.axes) == 12
    assert figure.axes[11].get_xlabel() == "6" and figure.axes[6].get_xlabel() == ""


def test_rows_grid_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="rows\\[1\\] has 2 images"):
        rows_grid([_images(3, 1), _images(2, 1)], ["a", "b"])
    with pytest.raises(ValueError, match="row_titles"):
        rows_grid([_images(3, 1)], ["a", "b"])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        rows_grid([_images(3, 2)], ["a"])


def test_curves_draws_one_line_per_series():
    figure = curves({"train": [1.0, 0.5, 0.25], "test": [1.2, 0.7, 0.4]}, xlabel="epoch", ylabel="loss", logy=True)
    (axes,) = figure.axes
    assert len(axes.get_lines()) == 2
    assert axes.get_yscale() == "log"
    np.testing.assert_array_equal(axes.get_lines()[0].get_xdata(), [1, 2, 3])
    with pytest.raises(ValueError, match="x has 2"):
        curves({"train": [1.0, 0.5, 0.25]}, xlabel="step", ylabel="loss", x=[0, 10])


def test_save_figure_writes_png_and_creates_folders(tmp_path):
    figure = reconstruction_grid(_images(2, 3), _images(2, 3, seed=1))
    path = save_figure(figure, tmp_path / "nested" / "grid")
    assert path == tmp_path / "nested" / "grid.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grids_wrap_into_rows_of_at_most_ten_targets():
    figure = reconstruction_grid(_images(25, 1), _images(25, 1, seed=1), labels=[str(i) for i in range(25)])
    assert len(figure.axes) == 50  # no empty cells left in the last block
    width, height = figure.get_size_inches()
    assert width == pytest.approx(10 * CELL_INCHES) and height == pytest.approx(6 * CELL_INCHES)
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles == [str(i) for i in range(25)]
    assert [axes.get_ylabel() for axes in figure.axes if axes.get_ylabel()] == ["original", "reconstruction"] * 3


def test_curves_on_top_of_each_other_stay_apart_by_style_with_percent_ticks_and_references():
    same = {f"method {i}": [1.0, 1.0, 1.0, 1.0] for i in range(4)}
    figure = curves(same, xlabel="step", ylabel="accuracy", percent=True, integer_x=True,
                    references=[Reference("chance", 0.1), Reference("split model", [0.9, 0.8, 0.9, 0.8])])
    (axes,) = figure.axes
    lines = axes.get_lines()
    data = lines[:4]
    assert len({(line.get_linestyle(), line.get_marker(), line.get_color()) for line in data}) == 4
    assert all(np.array_equal(line.get_ydata(), [1, 1, 1, 1]) for line in data), "styles only: values are not moved"
    assert {line.get_label(): line.get_color() for line in lines[4:]} == {
        "chance": REFERENCE_COLOURS["chance"], "split model": REFERENCE_COLOURS["split model"]}
    assert not set(REFERENCE_COLOURS.values()) & {line.get_color() for line in data}
    assert isinstance(axes.yaxis.get_major_formatter(), PercentFormatter)
    assert axes.yaxis.get_major_formatter()(0.25, 0) == "25%"
    figure.canvas.draw()
    assert all(float(tick).is_integer() for tick in axes.get_xticks())
    legend = axes.get_legend()
    assert legend.get_window_extent().x0 >= axes.get_window_extent().x1, "the legend sits beside the plot"
    with pytest.raises(ValueError, match="unknown reference kind 'mean'"):
        Reference("mean", 0.1)
