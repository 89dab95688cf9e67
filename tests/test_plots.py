import numpy as np
import pytest
from matplotlib.figure import Figure

from unsplit_tf.plots import curves, reconstruction_grid, rows_grid, save_figure


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
