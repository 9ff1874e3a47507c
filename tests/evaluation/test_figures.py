"""Tests for medgan.evaluation.figures: every figure names its classes, its rows and its operating point."""

from __future__ import annotations

import torch

from medgan.evaluation.figures import write_figures


def _ci(m):
    return {"mean": m, "lo": m - 0.05, "hi": m + 0.05}


def test_figures_name_rows_classes_and_operating_point(tmp_path, monkeypatch):
    import matplotlib.figure

    texts = {}
    orig = matplotlib.figure.Figure.savefig

    def spy(fig, f, *args, **kwargs):
        found = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        found += [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
        texts[len(texts)] = found
        return orig(fig, f, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    classes = ["malignant", "normal, benign"]
    arms = ["baseline", "gan"]
    d = {"summary": {a: {"scarce_sens_at_spec": _ci(.4), "auroc": _ci(.8), "scarce_pauroc": _ci(.6),
                         "scarce_ppv_at_spec": _ci(.5), "balanced_accuracy": _ci(.7),
                         "per_class": {c: {"sensitivity": _ci(.6)} for c in classes}} for a in arms},
         "primary": {"key": "scarce_sens_at_spec"}, "dataset": {"name": "b", "class_names": classes},
         "protocol": {"seeds": [0, 1, 2]}}
    x = torch.rand(12, 1, 28, 28) * 2 - 1
    y = torch.tensor([0, 1] * 6)
    pairs = {"synthetic": x[:5], "real": x[5:10], "distance": [0.1, 0.2, 0.3, 0.4, 0.5],
             "synthetic_label": [0, 0, 1, 0, 1], "real_label": [1, 0, 1, 0, 1], "threshold": 0.25}
    paths = write_figures(d, {"real_vs_synthetic": (x[:6], y[:6], x[6:], y[6:]), "nearest_pairs": pairs}, tmp_path)
    by_name = {p.name: texts[i] for i, p in enumerate(paths)}
    assert any("argmax operating point" in t for t in by_name["per_class_sensitivity.png"])
    rows = by_name["real_vs_synthetic.png"]
    assert "synthetic malignant" in rows and not [t for t in rows if t[:3] in ("0: ", "1: ", "2: ", "3: ")]
    nn = by_name["nearest_neighbours.png"]
    assert "synthetic" in nn and "nearest real\n(training)" in nn  # rows say which images are real
    assert "malignant\nd 0.10 *" in nn and "normal, benign\nd 0.30" in nn  # class and distance per tile
    assert not [t for t in nn if t[:3] in ("0: ", "1: ", "2: ", "3: ")]
