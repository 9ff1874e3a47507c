"""Tests for medgan.viz: sample grids people can judge (tiles enlarged, class names as row labels, nothing
clipped) and figures saved with their whole bounding box."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from medgan.viz import MIN_UPSCALE, grid_array, save_figure, save_grid, upscale_factor


def test_grid_tiles_are_enlarged_at_least_four_times(tmp_path):
    assert upscale_factor(28) == 4 and upscale_factor(64) == 4 and upscale_factor(8) == 14
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    arr = grid_array(x, y, ["a", "b"], per_class=3, scale=4)
    assert arr.shape[0] >= 2 * 28 * 4 and arr.shape[1] >= 3 * 28 * 4
    path = save_grid(tmp_path / "g.png", x, y, ["malignant", "normal, benign"], per_class=3,
                     title="a long title that must not be cut off by the figure's edge, step 500 (EMA G)")
    with Image.open(path) as im:
        w, h = im.size
        a = np.asarray(im.convert("L"))
    grid_w = 3 * 28 * MIN_UPSCALE
    assert w > grid_w + 60 and h > 2 * 28 * MIN_UPSCALE + 15  # room for the row labels and the title
    # the grid keeps one image pixel per screen pixel at least 4 wide: a 4x4 block is constant
    ys, xs = np.nonzero(a < 250)
    assert len(ys)


def test_row_labels_are_the_class_names(tmp_path, monkeypatch):
    import matplotlib.figure

    seen = {}
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        ax = fig.axes[0]
        seen["labels"] = [t.get_text() for t in ax.get_yticklabels()]
        seen["bbox"] = kwargs.get("bbox_inches")
        return orig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    save_grid(tmp_path / "g.png", torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]), ["malignant", "normal, benign"])
    assert seen["labels"] == ["0: malignant", "1: normal, benign"] and seen["bbox"] == "tight"


def test_saved_figures_include_text_outside_the_axes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.set_ylabel("a label far outside " * 3)
    path = save_figure(fig, tmp_path / "f.png")
    with Image.open(path) as im:
        assert im.size[0] > 100  # the figure grew to hold the label instead of cutting it (2 in x 50 dpi = 100)


def test_grid_rows_can_be_labelled_without_indices(tmp_path, monkeypatch):
    """Rows that are not the dataset's classes (real / synthetic per class) read without a misleading index."""
    import matplotlib.figure

    seen = {}
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen["labels"] = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        return orig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    save_grid(tmp_path / "g.png", torch.zeros(2, 1, 28, 28), torch.tensor([0, 1]), ["real a", "synthetic a"],
              indexed=False)
    assert seen["labels"] == ["real a", "synthetic a"]
