"""The verdict of an evaluation: does any GAN arm beat the best conventional arm on the primary metric?

1. Every arm's metrics are summarised over seeds (:func:`summarise_arms`).
2. The **best conventional arm** (real data only: ``baseline``, ``oversample``, ``weighted``, ``classical``,
   ``classical+oversample``) is the one with the highest mean *validation* value of the primary metric — never
   chosen on test. The best GAN arm is chosen the same way.
3. Every GAN arm is compared, seed by seed, with the best conventional arm and with ``baseline``
   (:func:`~medgan.evaluation.statistics.paired_comparison`). The primary metric's p-values are Holm-adjusted
   across all those comparisons together (:func:`~medgan.evaluation.statistics.holm`); raw p-values stand beside
   them. A GAN arm **beats** a reference when its mean difference is positive and the Holm-adjusted p < ``alpha``.
4. :func:`headline` says it in words, first: whether synthetic data beat the best conventional option, by how
   much, and at what cost in AUROC.
"""

from __future__ import annotations

from typing import Any

from medgan.evaluation.statistics import holm, mean_ci, paired_comparison

#: primary-metric name -> (test key, validation key, label)
PRIMARY = {
    "sens_at_spec": ("scarce_sens_at_spec", "val_scarce_sens_at_spec",
                     "scarce-class sensitivity at the specificity chosen on validation"),
    "sens_youden": ("scarce_sens_youden", "val_scarce_sens_youden",
                    "scarce-class sensitivity at the Youden threshold chosen on validation"),
    "auroc": ("auroc", "val_auroc", "AUROC"),
    "pauroc": ("scarce_pauroc", "val_scarce_pauroc", "scarce-class partial AUROC (high specificity)"),
    "balanced_accuracy": ("balanced_accuracy", "val_balanced_accuracy", "balanced accuracy (argmax)"),
}
#: metrics every table shows: (key in a run's test record, label)
TABLE_METRICS = (("scarce_sens_at_spec", "sens @ val spec"), ("scarce_spec_at_spec", "spec @ val spec"),
                 ("scarce_ppv_at_spec", "PPV @ val spec"), ("scarce_sens_youden", "sens @ Youden"),
                 ("auroc", "AUROC"), ("scarce_pauroc", "pAUROC"), ("scarce_sensitivity", "sens @ argmax"),
                 ("balanced_accuracy", "balanced acc"))
COMPARED = ("scarce_sens_at_spec", "auroc", "scarce_pauroc", "scarce_sens_youden", "balanced_accuracy")


def _values(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [r["test"][key] if key in r["test"] else r[key] for r in runs]


def summarise_arms(runs: dict[str, list[dict[str, Any]]], class_names: list[str],
                   val_key: str) -> dict[str, Any]:
    """Per arm: mean and interval of every table metric, of the validation primary metric, and per class."""
    out: dict[str, Any] = {}
    for arm, rs in runs.items():
        s = {k: mean_ci(_values(rs, k)) for k, _ in TABLE_METRICS}
        s["validation_primary"] = mean_ci([r[val_key] for r in rs])
        s["validation_auroc"] = mean_ci([r["val_auroc"] for r in rs])
        s["per_class"] = {
            c: {q: mean_ci([r["test"]["per_class"][c][q] for r in rs]) for q in ("sensitivity", "specificity",
                                                                                 "precision")}
            for c in class_names
        }
        out[arm] = s
    return out


def best_by_validation(summary: dict[str, Any], arms: list[str]) -> str | None:
    """The arm with the highest mean validation primary metric (ties: the higher validation AUROC, then the first
    listed)."""
    def key(a: str) -> tuple[float, float]:
        return summary[a]["validation_primary"]["mean"], summary[a]["validation_auroc"]["mean"]

    best = None
    for a in arms:
        if best is None or key(a) > key(best):
            best = a
    return best


def compare(runs: dict[str, list[dict[str, Any]]], gan: list[str], refs: list[str], primary_key: str,
            alpha: float) -> dict[str, Any]:
    """Every GAN arm against every reference on :data:`COMPARED`; Holm over the primary metric's comparisons."""
    comps: dict[str, Any] = {}
    family: list[tuple[str, str]] = []
    for a in gan:
        comps[a] = {}
        for ref in dict.fromkeys(refs):
            if ref is None or ref == a:
                continue
            comps[a][ref] = {k: paired_comparison(_values(runs[a], k), _values(runs[ref], k)) for k in COMPARED}
            family.append((a, ref))
    adjusted = holm([comps[a][ref][primary_key]["p"] for a, ref in family])
    for (a, ref), p_adj in zip(family, adjusted, strict=True):
        c = comps[a][ref][primary_key]
        c["p_holm"] = p_adj
        c["beats"] = bool(c["diff"] > 0 and p_adj < alpha)
        c["worse"] = bool(c["diff"] < 0 and p_adj < alpha)
    return comps


def verdict(runs: dict[str, list[dict[str, Any]]], arms: list[Any], class_names: list[str], primary: str,
            alpha: float = 0.05) -> dict[str, Any]:
    """Summary, the best conventional and GAN arms (chosen on validation), comparisons and the headline."""
    test_key, val_key, label = PRIMARY[primary]
    summary = summarise_arms(runs, class_names, val_key)
    conventional = [a.name for a in arms if not a.synthetic]
    gan = [a.name for a in arms if a.synthetic]
    best_conv = best_by_validation(summary, conventional)
    best_gan = best_by_validation(summary, gan)
    refs = [r for r in (best_conv, "baseline" if "baseline" in runs else None) if r]
    comps = compare(runs, gan, refs, test_key, alpha) if gan and refs else {}
    out = {"primary": {"name": primary, "key": test_key, "validation_key": val_key, "label": label,
                       "alpha": alpha, "multiplicity": f"Holm over {sum(len(v) for v in comps.values())} "
                                                       "comparisons of the primary metric"},
           "best_conventional": best_conv, "best_gan": best_gan, "summary": summary, "comparisons": comps}
    out["headline"] = headline(out)
    return out


def _fmt(s: dict[str, float]) -> str:
    return f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"


def headline(v: dict[str, Any]) -> list[str]:
    """The first lines of the report, in words."""
    p, s, comps = v["primary"], v["summary"], v["comparisons"]
    conv, gan = v["best_conventional"], v["best_gan"]
    key = p["key"]
    if gan is None:
        return [f"No synthetic data was evaluated. Best conventional arm (chosen on validation): `{conv}`, "
                f"{p['label']} {_fmt(s[conv][key])}."]
    ref = conv if conv in comps.get(gan, {}) else next(iter(comps.get(gan, {})), None)
    winners = [a for a in comps if conv in comps[a] and comps[a][conv][key]["beats"]]
    lines = []
    if winners:
        lines.append(f"**Synthetic data beat the best conventional option** (`{conv}`, chosen on validation) on "
                     f"{p['label']}: {len(winners)} of {len(comps)} GAN arms are better after Holm adjustment "
                     f"(alpha {p['alpha']}): {', '.join(f'`{w}`' for w in winners)}.")
    else:
        lines.append(f"**Synthetic data did NOT beat the best conventional option** (`{conv}`, chosen on "
                     f"validation) on {p['label']}: no GAN arm is better after Holm adjustment (alpha "
                     f"{p['alpha']}).")
    if ref is not None:
        c, auc = comps[gan][ref][key], comps[gan][ref]["auroc"]
        lines.append(f"Best GAN arm (chosen on validation): `{gan}`, {_fmt(s[gan][key])} vs `{ref}` "
                     f"{_fmt(s[ref][key])}: difference {c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}], "
                     f"Holm-adjusted p = {c['p_holm']:.3g} (raw {c['p']:.3g}); AUROC {s[gan]['auroc']['mean']:.3f} "
                     f"vs {s[ref]['auroc']['mean']:.3f} ({auc['diff']:+.3f}, p = {auc['p']:.3g}).")
    worse = [a for a in comps if any(comps[a][r][key]["worse"] for r in comps[a])]
    if worse:
        lines.append(f"Significantly worse than a reference on the primary metric: "
                     f"{', '.join(f'`{w}`' for w in worse)}.")
    return lines
