"""The report's figures: per-arm bars with intervals, per-class sensitivity, real vs synthetic images, and the
closest synthetic / real-training pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: (summary key, title) of the bars in ``arms.png``
FIGURE_METRICS = (("scarce_sens_at_spec", "scarce sens @ val-chosen spec"), ("auroc", "AUROC"),
                  ("scarce_pauroc", "scarce pAUROC"), ("scarce_ppv_at_spec", "scarce PPV @ val-chosen spec"),
                  ("balanced_accuracy", "balanced accuracy (argmax)"))


def write_figures(d: dict[str, Any], images: dict[str, Any], out: Path) -> list[Path]:
    """Every figure of the report (the ``report.json`` dict ``d``; ``images`` for the image grids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgan.viz import save_figure

    arms = list(d["summary"])
    paths = []

    def save(fig, name):
        paths.append(save_figure(fig, out / name, dpi=110))

    fig, axes = plt.subplots(1, len(FIGURE_METRICS), figsize=(len(FIGURE_METRICS) * 3.2, 3.8), sharey=False)
    for ax, (k, lab) in zip(axes, FIGURE_METRICS, strict=True):
        m = [d["summary"][a][k]["mean"] for a in arms]
        err = np.array([[m_ - d["summary"][a][k]["lo"], d["summary"][a][k]["hi"] - m_] for a, m_ in zip(arms, m, strict=True)]).T
        ax.bar(range(len(arms)), m, yerr=err, capsize=3, color="#4c78a8")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=45, ha="right", fontsize=7)
        ax.set_title(lab, fontsize=9)
        ax.set_ylim(0, 1.05)
        if k == d["primary"]["key"]:
            ax.set_title(f"{lab} (primary)", fontsize=9, fontweight="bold")
    fig.suptitle(f"{d['dataset']['name']}: mean and 95% CI over {len(d['protocol']['seeds'])} seeds", fontsize=9)
    fig.tight_layout()
    save(fig, "arms.png")

    classes = d["dataset"]["class_names"]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(arms) * max(1, len(classes)) / 2), 3.6))
    w = 0.8 / len(classes)
    for j, c in enumerate(classes):
        m = [d["summary"][a]["per_class"][c]["sensitivity"]["mean"] for a in arms]
        lo = [d["summary"][a]["per_class"][c]["sensitivity"]["lo"] for a in arms]
        hi = [d["summary"][a]["per_class"][c]["sensitivity"]["hi"] for a in arms]
        err = np.array([np.subtract(m, lo), np.subtract(hi, m)])
        ax.bar(np.arange(len(arms)) + j * w - 0.4 + w / 2, m, w, yerr=err, capsize=2, label=c)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(arms, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("sensitivity (test)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, "per_class_sensitivity.png")

    from medgan.viz import save_grid

    if "real_vs_synthetic" in images:
        import torch

        rx, ry, sx, sy = images["real_vs_synthetic"]
        k = len(classes)
        names = [f"real {c}" for c in classes] + [f"synthetic {c}" for c in classes]
        x = torch.cat([rx, sx])
        y = torch.cat([ry, sy + k])
        paths.append(save_grid(out / "real_vs_synthetic.png", x, y, names, per_class=8,
                               title="real training images (top) vs synthetic (bottom)"))
    if "nearest_pairs" in images:
        import torch

        p = images["nearest_pairs"]
        n = len(p["distance"])
        if n:
            per_row = 4  # pairs per row: synthetic, its nearest real training image, next pair, ...
            x = torch.stack([t for pair in zip(p["synthetic"], p["real"], strict=True) for t in pair])
            y = torch.arange(2 * n) // (2 * per_row)
            names = [" ".join(f"{dist:.2f}{'*' if dist <= p['threshold'] else ''}"
                              for dist in p["distance"][r * per_row : (r + 1) * per_row])
                     for r in range(int(y.max()) + 1)]
            paths.append(save_grid(out / "nearest_neighbours.png", x, y, names, per_class=2 * per_row,
                                   title=f"closest pairs (synthetic, nearest real training image), left to "
                                         f"right; row label: pixel distances (* = flagged, threshold "
                                         f"{p['threshold']:.2f})"))
    return paths
