"""The evaluation report: JSON (every number), Markdown (tables and verdicts), PNG plots, terminal summary.

Files written to ``--out`` (each atomically, via a temporary file and a rename):

``report.json``              everything :func:`medgan.evaluation.evaluate.evaluate` measured, machine-readable
``report.md``                arms x metrics with 95% CIs, per-class sensitivity, paired tests, verdicts, quality,
                             memorisation
``arms.png``                 per-arm bars with 95% CIs (balanced accuracy, scarce-class sensitivity, macro-F1, AUROC)
``per_class_sensitivity.png`` per-class sensitivity per arm, with 95% CIs
``real_vs_synthetic.png``    real and synthetic images per class (when synthetic images were evaluated)
``nearest_neighbours.png``   the closest synthetic/real-training pairs (when the memorisation check ran)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medgan.io import atomic_write, json_safe, markdown_table

HEADLINE = (("balanced_accuracy", "balanced acc"), ("scarce_sensitivity", "scarce-class sens"),
            ("macro_f1", "macro-F1"), ("auroc", "AUROC"), ("accuracy", "accuracy"))


def format_ci(s: dict[str, float] | None, digits: int = 3) -> str:
    if not s:
        return "n/a"
    return f"{s['mean']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]"


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


class Report:
    """An evaluation's results (``data``: the JSON-safe dict) plus images for the figures (``images``)."""

    def __init__(self, data: dict[str, Any], images: dict[str, Any] | None = None):
        self.data = data
        self.images = images or {}
        self.files: list[str] = []

    # ------------------------------------------------------------------------------------------- writing
    def write(self, out_dir: str | Path) -> list[Path]:
        """Write JSON, Markdown and PNGs to ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = self._plots(out)
        self.data["files"] = [p.name for p in paths] + ["report.md", "report.json"]
        md = out / "report.md"
        text = self.markdown()
        atomic_write(md, text)
        paths += [md, self.write_json(out)]
        return paths

    def write_json(self, out_dir: str | Path) -> Path:
        p = Path(out_dir) / "report.json"
        atomic_write(p, json.dumps(json_safe(self.data), indent=2, allow_nan=False))
        return p

    # -------------------------------------------------------------------------------------------- tables
    def summary_table(self) -> str:
        """A short fixed-width table for the terminal: one row per arm."""
        d = self.data
        n = len(d["protocol"]["seeds"])
        head = f"{'arm':<22} {'balanced acc':>22} {'scarce-class sens':>22} {'d scarce vs base':>17} {'p (t)':>7}"
        lines = [f"{d['dataset']['name']}: {d['protocol']['classifier']}, {n} seeds, mean [95% CI] on the real test "
                 "split", head, "-" * len(head)]
        for a in d["summary"]:
            s = d["summary"][a]
            comp = d["comparisons"].get(a, {}).get("vs_baseline", {}).get("scarce_sensitivity")
            delta = f"{comp['diff']:+.3f}" if comp else ""
            p = f"{comp['p_ttest']:.3g}" if comp else ""
            lines.append(f"{a:<22} {format_ci(s['balanced_accuracy']):>22} {format_ci(s['scarce_sensitivity']):>22} "
                         f"{delta:>17} {p:>7}")
        return "\n".join(lines)

    def summary(self, out_dir: str | Path | None = None) -> str:
        """What the CLI prints: the table, the scarce-class verdicts and where the report is."""
        lines = [self.summary_table()]
        lines += [v for v in self.data["verdicts"] if "scarce sensitivity" in v]
        if out_dir is not None:
            out = Path(out_dir)
            lines.append(f"report: {out / 'report.md'} (every number: {out / 'report.json'}); "
                         f"{self.data['timing']['total_s']:.0f} s")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The Markdown report: set-up, results, paired differences, verdicts, quality, memorisation, figures."""
        d = self.data
        parts = self._md_setup() + self._md_results()
        q, pv = d.get("quality"), d.get("privacy")
        if q:
            parts += self._md_quality(q)
        if pv:
            parts += self._md_privacy(pv)
        figs = [f for f in d.get("files", []) if f.endswith(".png")]
        if figs:
            parts += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
        if d.get("notes"):
            parts += ["", "## Notes", ""] + [f"- {x}" for x in d["notes"]]
        t = d.get("timing", {})
        parts += ["", f"_medgan {d.get('medgan_version')}; total time {t.get('total_s', 0):.0f} s._", ""]
        return "\n".join(parts)

    def _md_setup(self) -> list[str]:
        d = self.data
        ds, pr = d["dataset"], d["protocol"]
        n = len(pr["seeds"])
        parts = [f"# medgan evaluation: {ds['name']}", ""]
        parts.append(
            f"- Dataset `{ds['name']}` ({ds['spatial_dims']}D, {ds['size']} px, classes "
            f"{', '.join(f'{i}={c}' for i, c in enumerate(ds['class_names']))}); training counts {ds['train_counts']}"
            f" (scarcity {ds['scarcity_spec'] or 'none'}, split seed {ds['split_seed']}), validation "
            f"{ds['val_counts']}, test {ds['test_counts']} (always real). Scarce classes: "
            f"{', '.join(ds['scarce_classes'])}. Training-split fingerprint `{ds['train_fingerprint'][:12]}`.")
        syn = d.get("synthetic")
        if syn:
            parts.append(f"- Synthetic images: {syn['kind']} `{syn['path']}`, pool per class {syn['pool_counts']}; "
                         f"leakage guard: {syn['leakage_guard']}.")
            flt = syn.get("filter")
            if flt:
                parts.append(f"  - sample filtering: kept images whose p(conditioned class) >= {flt['threshold']} "
                             f"under a {flt['classifier']}: {flt['kept']} of {flt['drawn']} per class")
            for arm, alloc in syn.get("allocation", {}).items():
                parts.append(f"  - `{arm}` adds {alloc} synthetic images per class")
        parts.append(f"- Protocol: {pr['classifier']}, Adam lr {pr['lr']}, batch {pr['batch_size']}, up to "
                     f"{pr['epochs']} epochs of {pr['steps_per_epoch']} steps (patience {pr['patience']}), "
                     f"{n} seeds {pr['seeds']}. {pr['budget']}.")
        parts.append(f"- Synthetic allocation: {pr['allocation_policy']}.")
        parts.append(f"- Statistics: mean and {pr['ci']}; paired differences tested with the {pr['test']}. "
                     f"{pr['test_note']}")
        return parts

    def _md_results(self) -> list[str]:
        d = self.data
        ds = d["dataset"]
        n = len(d["protocol"]["seeds"])
        parts: list[str] = []
        parts += ["", f"## Results (mean [95% CI] over {n} seeds, real test split)", ""]
        rows = [[f"`{a}`"] + [format_ci(s[k]) for k, _ in HEADLINE] for a, s in d["summary"].items()]
        parts.append(markdown_table(["arm"] + [lab for _, lab in HEADLINE], rows))
        parts += ["", "## Per-class sensitivity (mean [95% CI])", ""]
        rows = [[f"`{a}`"] + [format_ci(s["per_class"][c]["sensitivity"]) for c in ds["class_names"]]
                for a, s in d["summary"].items()]
        parts.append(markdown_table(["arm"] + ds["class_names"], rows))
        parts += ["", "## Per-class specificity and precision (mean)", ""]
        rows = [[f"`{a}`"] + [f"{s['per_class'][c]['specificity']['mean']:.3f} / "
                              f"{s['per_class'][c]['precision']['mean']:.3f}" for c in ds["class_names"]]
                for a, s in d["summary"].items()]
        parts.append(markdown_table(["arm"] + [f"{c} (spec / prec)" for c in ds["class_names"]], rows))
        parts += ["", "## Paired differences (arm - reference; 95% CI; paired t-test p; exact permutation p)", ""]
        rows = []
        for a, comps in d["comparisons"].items():
            for ref, comp in comps.items():
                for k, lab in HEADLINE[:4]:
                    c = comp[k]
                    rows.append([f"`{a}`", ref.replace("vs_", ""), lab, f"{c['diff']:+.3f}",
                                 f"{c['lo']:+.3f} .. {c['hi']:+.3f}", f"{c['p_ttest']:.3g}", f"{c['p_permutation']:.3g}"])
        parts.append(markdown_table(["arm", "vs", "metric", "diff", "95% CI", "p (t-test)", "p (permutation)"], rows)
                     if rows else "_no comparisons (baseline and oversample not run)_")
        parts += ["", "## Verdicts", ""]
        parts += [f"- {v}" for v in d["verdicts"]] or ["- (no comparisons)"]
        return parts

    def _md_quality(self, q: dict[str, Any]) -> list[str]:
        parts: list[str] = []
        parts += ["", "## Sample quality", "", f"Feature space: {q['feature_space']}. Floors are the same "
                  "distance between the real training and real test images.", ""]
        parts.append(markdown_table(["measure", "synthetic vs real train", "floor: real test vs real train"], [
            ["Fréchet distance", _num(q["frechet"]["synthetic_vs_train"]), _num(q["frechet"]["floor_test_vs_train"])],
            [f"KID (subset {q['kid']['synthetic_vs_train']['subset_size']})",
             f"{_num(q['kid']['synthetic_vs_train']['mean'], 4)} ± {_num(q['kid']['synthetic_vs_train']['sd'], 4)}",
             f"{_num(q['kid']['floor_test_vs_train']['mean'], 4)} ± {_num(q['kid']['floor_test_vs_train']['sd'], 4)}"],
        ]))
        parts.append("")
        rows = []
        for c, pc in q["per_class"].items():
            pr_ = pc["prdc"] or {}
            fl = pc["prdc_floor_test_vs_train"] or {}
            rows.append([c, str(pc["n_synthetic"]),
                         *[f"{_num(pr_.get(m))} ({_num(fl.get(m))})" for m in ("precision", "recall", "density",
                                                                               "coverage")],
                         _num(pc["synthetic_accuracy"]),
                         f"{_num(pc['diversity']['feature']['synthetic'])} / {_num(pc['diversity']['feature']['real'])}"])
        parts.append(markdown_table(["class", "n synthetic", "precision (floor)", "recall (floor)", "density (floor)",
                             "coverage (floor)", "classified as its class", "diversity syn / real"], rows))
        parts.append("")
        parts.append(f"Synthetic samples classified as their class by the real-data classifier: "
                     f"{_num(q['synthetic_accuracy'])}.")
        if q.get("tstr"):
            t = q["tstr"]
            parts.append(f"Train on synthetic, test on real: accuracy {_num(t['accuracy'])}, balanced accuracy "
                         f"{_num(t['balanced_accuracy'])} (train on real: {_num(t['trtr_accuracy'])} / "
                         f"{_num(t['trtr_balanced_accuracy'])}).")
        return parts

    def _md_privacy(self, pv: dict[str, Any]) -> list[str]:
        parts: list[str] = []
        px = pv["pixel"]
        parts += ["", "## Memorisation", "", f"Rule: a synthetic sample is {pv['rule']}.", ""]
        rows = []
        for space in ("pixel", "feature"):
            if space in pv:
                s = pv[space]
                rows.append([space, _num(s["threshold"]), _num(s["real_loo_nn"]["median"]),
                             _num(s["synthetic_nn"]["min"]), _num(s["synthetic_nn"]["median"]),
                             _num(s["fraction_below_threshold"]), _num(s.get("real_flag_rate")),
                             _num(s["fraction_below_p5"]), _num(s["same_class_nn"])])
        parts.append(markdown_table(["space", "threshold", "real-real NN median", "synthetic NN min", "synthetic NN median",
                             "synthetic <= threshold", "real <= threshold (false-alarm ref.)", "synthetic <= p5",
                             "NN of same class"], rows))
        parts.append("")
        parts.append(f"**{pv['flagged']} of {pv['n_synthetic']} synthetic samples "
                     f"({100 * pv['fraction_flagged']:.1f}%) are flagged as near-copies** (pixel space, "
                     f"threshold {px['threshold']:.3f}).")
        return parts

    # -------------------------------------------------------------------------------------------- plots
    def _plots(self, out: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from medgan.viz import save_figure

        d = self.data
        arms = list(d["summary"])
        paths = []

        def save(fig, name):
            paths.append(save_figure(fig, out / name, dpi=110))

        fig, axes = plt.subplots(1, 4, figsize=(4 * 3.2, 3.6), sharey=False)
        for ax, (k, lab) in zip(axes, HEADLINE[:4], strict=True):
            m = [d["summary"][a][k]["mean"] for a in arms]
            err = np.array([[m_ - d["summary"][a][k]["lo"], d["summary"][a][k]["hi"] - m_] for a, m_ in zip(arms, m, strict=True)]).T
            ax.bar(range(len(arms)), m, yerr=err, capsize=3, color="#4c78a8")
            ax.set_xticks(range(len(arms)))
            ax.set_xticklabels(arms, rotation=45, ha="right", fontsize=7)
            ax.set_title(lab, fontsize=9)
            ax.set_ylim(0, 1.05)
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

        if "real_vs_synthetic" in self.images:
            import torch

            rx, ry, sx, sy = self.images["real_vs_synthetic"]
            k = len(classes)
            names = [f"real {c}" for c in classes] + [f"synthetic {c}" for c in classes]
            x = torch.cat([rx, sx])
            y = torch.cat([ry, sy + k])
            paths.append(save_grid(out / "real_vs_synthetic.png", x, y, names, per_class=8,
                                   title="real training images (top) vs synthetic (bottom)"))
        if "nearest_pairs" in self.images:
            import torch

            p = self.images["nearest_pairs"]
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
