"""The evaluation report: JSON (every number), Markdown (verdict first, then tables), PNG figures, terminal summary.

Files written to ``--out`` (each atomically, via a temporary file and a rename):

``report.json``              everything :func:`medgan.evaluation.evaluate.evaluate` measured, machine-readable
``report.md``                the verdict in words first; then the operating points, arms x metrics with 95%
                             intervals, the comparisons (raw and Holm-adjusted p), per-class numbers, quality,
                             memorisation
``arms.png``                 per-arm bars with 95% intervals (the primary metric, AUROC, pAUROC, PPV, balanced acc.)
``per_class_sensitivity.png`` per-class sensitivity at the argmax operating point per arm, with 95% intervals
``real_vs_synthetic.png``    real and synthetic images per class, rows named ``real <class>`` / ``synthetic <class>``
``nearest_neighbours.png``   the closest synthetic/real-training pairs: rows of synthetic images and of their nearest
                             real training images, each tile with its class (when the memorisation check ran)
``runs/``                    every finished run (resume; :mod:`medgan.evaluation.runstore`)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medgan.evaluation.comparison import TABLE_METRICS
from medgan.evaluation.report_sections import privacy_markdown, quality_markdown
from medgan.evaluation.runstore import REPORT_FILES
from medgan.io import atomic_write, json_safe, markdown_table, owner_of


def format_ci(s: dict[str, float] | None, digits: int = 3) -> str:
    """``mean [lo, hi]`` of a :func:`~medgan.evaluation.statistics.mean_ci` result."""
    if not s:
        return "n/a"
    return f"{s['mean']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]"


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


class Report:
    """An evaluation's results (``data``: the JSON-safe dict) plus images for the figures (``images``)."""

    def __init__(self, data: dict[str, Any], images: dict[str, Any] | None = None):
        self.data = data
        self.images = images or {}

    # ------------------------------------------------------------------------------------------- writing
    def write(self, out_dir: str | Path) -> list[Path]:
        """Write JSON, Markdown and PNGs to ``out_dir``; returns the paths."""
        from medgan.evaluation.figures import write_figures

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = write_figures(self.data, self.images, out)
        self.data["files"] = [p.name for p in paths] + ["report.md", "report.json"]
        md = out / "report.md"
        atomic_write(md, self.markdown())
        paths += [md, self.write_json(out)]
        owner = owner_of(out / "report.md")
        for name in set(REPORT_FILES) - set(self.data["files"]):  # a figure of an earlier report that has none now
            if owner is not None and (out / name).is_file():
                owner.remove(name)
        return paths

    def write_json(self, out_dir: str | Path) -> Path:
        p = Path(out_dir) / "report.json"
        atomic_write(p, json.dumps(json_safe(self.data), indent=2, allow_nan=False))
        return p

    # ----------------------------------------------------------------------------------------- terminal
    def summary_table(self, width: int | None = None) -> str:
        """A short table for the terminal (:func:`medgan.tables.render_table`: each column's header and values
        start at the same character column): one row per arm, at the validation-chosen operating point."""
        from medgan.tables import WIDTH, render_table

        d = self.data
        key = d["primary"]["key"]
        conv = d["best_conventional"]
        n = len(d["protocol"]["seeds"])
        rows = []
        for a, s in d["summary"].items():
            c = d["comparisons"].get(a, {}).get(conv, {}).get(key)
            rows.append([a + (" *" if a == conv else ""), format_ci(s[key]), format_ci(s["auroc"]),
                         f"{c['diff']:+.3f}" if c else "", _p(c["p_holm"]) if c else ""])
        table = render_table(["arm", "primary", "AUROC", "d vs best conv.", "p (Holm)"], rows, width or WIDTH)
        return "\n".join([f"{d['dataset']['name']}: {d['protocol']['classifier']}, {n} seeds; primary = "
                          f"{d['primary']['label']}; mean [95% CI] on the real test split", table,
                          "* best conventional arm, chosen on validation"])

    def summary(self, out_dir: str | Path | None = None) -> str:
        """What the CLI prints: the verdict, the table and where the report is."""
        lines = [*self.data["headline"], "", self.summary_table()]
        if out_dir is not None:
            out = Path(out_dir)
            lines.append(f"report: {out / 'report.md'} (every number: {out / 'report.json'}); "
                         f"{self.data['timing']['total_s']:.0f} s")
        return "\n".join(lines)

    # ----------------------------------------------------------------------------------------- markdown
    def markdown(self) -> str:
        """The Markdown report: verdict, set-up, results, comparisons, per class, quality, memorisation."""
        d = self.data
        parts = [f"# medgan evaluation: {d['dataset']['name']}", "", "## Verdict", ""]
        parts += [f"- {line}" for line in d["headline"]]
        parts += self._md_setup() + self._md_results() + self._md_comparisons()
        if d.get("quality"):
            parts += quality_markdown(d["quality"])
        if d.get("privacy"):
            ds = d["dataset"]
            n_values = int(ds.get("channels") or 1) * int(ds.get("size") or 0) ** int(ds.get("spatial_dims") or 0)
            parts += privacy_markdown(d["privacy"], n_values or None)
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
        ds, pr, prim = d["dataset"], d["protocol"], d["primary"]
        n = len(pr["seeds"])
        parts = ["", "## Set-up", ""]
        parts.append(
            f"- Dataset `{ds['name']}` ({ds['spatial_dims']}D, {ds['size']} px, classes "
            f"{', '.join(f'{i}={c}' for i, c in enumerate(ds['class_names']))}); training counts {ds['train_counts']}"
            f" (scarcity {ds['scarcity_spec'] or 'none'}, split seed {ds['split_seed']}), validation "
            f"{ds['val_counts']}, test {ds['test_counts']} (always real). Scarce classes: "
            f"{', '.join(ds['scarce_classes'])}. Training-split fingerprint `{ds['train_fingerprint'][:12]}`.")
        syn = d.get("synthetic")
        if syn:
            pairs = f", drawn as {syn['pairs']} counterfactual pairs" if syn.get("pairs") else ""
            parts.append(f"- Synthetic images: {syn['kind']} `{syn['path']}`, pool per class {syn['pool_counts']}"
                         f"{pairs}; leakage guard: {syn['leakage_guard']}.")
            flt = syn.get("filter")
            if flt:
                parts.append(f"  - sample filtering: kept images whose p(conditioned class) >= {flt['threshold']} "
                             f"under a {flt['classifier']}: {flt['kept']} of {flt['drawn']} per class")
            for arm, alloc in syn.get("allocation", {}).items():
                parts.append(f"  - `{arm}` adds {alloc} synthetic images per class")
            parts.append(f"- Synthetic allocation: {pr['allocation_policy']}.")
        parts.append(f"- Operating points: per scarce class (one vs rest), the threshold giving validation "
                     f"specificity >= {pr['target_specificity']} and Youden's J, both chosen on the real validation "
                     "split and applied unchanged to test; pAUROC over false-positive rates up to "
                     f"{1 - pr['target_specificity']:.2f} (McClish-standardised).")
        parts.append(f"- Primary metric: {prim['label']}. Best conventional arm: `{d['best_conventional']}`, chosen "
                     f"on its mean validation value; GAN arms are compared with it and with `baseline`, "
                     f"{prim['multiplicity']} (alpha {prim['alpha']}).")
        parts.append(f"- Protocol: {pr['classifier']}, Adam lr {pr['lr']}, batch {pr['batch_size']}, up to "
                     f"{pr['epochs']} epochs of {pr['steps_per_epoch']} steps (patience {pr['patience']}, at least "
                     f"{min(pr['min_epochs'], pr['epochs'])} epochs), weights kept by {pr['selection']}; classical augmentation "
                     f"`{pr['classical']}`; {n} seeds {pr['seeds']}. {pr['budget']}. Training: "
                     f"{pr.get('grouping', 'one by one')}.")
        parts.append(f"- Statistics: {pr['ci']}; paired differences tested with the {pr['test']}. {pr['test_note']}")
        return parts

    def _md_results(self) -> list[str]:
        d = self.data
        ds = d["dataset"]
        n = len(d["protocol"]["seeds"])
        parts = ["", f"## Results (mean [95% CI] over {n} seeds, real test split)", ""]
        rows = [[f"`{a}`" + (" (best conventional)" if a == d["best_conventional"] else "")]
                + [format_ci(s[k]) for k, _ in TABLE_METRICS] for a, s in d["summary"].items()]
        parts.append(markdown_table(["arm"] + [lab for _, lab in TABLE_METRICS], rows))
        parts += ["", "Validation value of the primary metric (what the best arms are chosen by): "
                  + ", ".join(f"`{a}` {s['validation_primary']['mean']:.3f}" for a, s in d["summary"].items()) + "."]
        parts += ["", "## Per-class sensitivity at argmax (mean [95% CI])", "",
                  "Each real test image is assigned its most probable class (no threshold); sensitivity: the share "
                  "of a class's test images assigned to it.", ""]
        rows = [[f"`{a}`"] + [format_ci(s["per_class"][c]["sensitivity"]) for c in ds["class_names"]]
                for a, s in d["summary"].items()]
        parts.append(markdown_table(["arm"] + ds["class_names"], rows))
        return parts

    def _md_comparisons(self) -> list[str]:
        d = self.data
        key = d["primary"]["key"]
        parts = ["", "## Paired comparisons (GAN arm - reference; 95% CI; exact permutation p; Holm-adjusted p for "
                 "the primary metric)", ""]
        rows = []
        for a, comps in d["comparisons"].items():
            for ref, comp in comps.items():
                for k, lab in TABLE_METRICS:
                    if k not in comp:
                        continue
                    c = comp[k]
                    verdict = ("better" if c.get("beats") else "worse" if c.get("worse") else "") if k == key else ""
                    rows.append([f"`{a}`", f"`{ref}`", lab + (" (primary)" if k == key else ""), f"{c['diff']:+.3f}",
                                 f"{c['lo']:+.3f} .. {c['hi']:+.3f}", _p(c["p"]),
                                 _p(c.get("p_holm")) if k == key else "", verdict])
        parts.append(markdown_table(["arm", "vs", "metric", "diff", "95% CI", "p", "p (Holm)", "verdict"], rows)
                     if rows else "_no comparisons (no GAN arm, or no reference arm)_")
        return parts
