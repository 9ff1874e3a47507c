"""The sample-quality and memorisation sections of ``report.md``."""

from __future__ import annotations

import math
from typing import Any

from medgan.io import markdown_table


def num(v: Any, digits: int = 3) -> str:
    """A number for a table (``n/a`` for missing or non-finite values)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def fidelity_cell(pc: dict[str, Any]) -> str:
    """A class's fidelity for a table: the number, or "not measurable" (the reason is listed under the table)."""
    return "not measurable" if pc.get("fidelity") is None else num(pc["fidelity"], 2)


def quality_markdown(q: dict[str, Any]) -> list[str]:
    """The sample-quality section of report.md."""
    parts: list[str] = []
    t = q["teacher"]
    parts += ["", "## Sample quality", "", f"Judged by the teacher: {t['recipe']} ({t['source']}; validation balanced "
              f"accuracy {num(t['val_balanced_accuracy'])}). Feature space: {q['feature_space']}. Floors are the "
              "same distance between real images.", ""]
    parts.append(markdown_table(["measure", "synthetic vs real train", "floor: real test vs real train"], [
        ["Fréchet distance", num(q["frechet"]["synthetic_vs_train"]), num(q["frechet"]["floor_test_vs_train"])],
        [f"KID (subset {q['kid']['synthetic_vs_train']['subset_size']})",
         f"{num(q['kid']['synthetic_vs_train']['mean'], 4)} ± {num(q['kid']['synthetic_vs_train']['sd'], 4)}",
         f"{num(q['kid']['floor_test_vs_train']['mean'], 4)} ± {num(q['kid']['floor_test_vs_train']['sd'], 4)}"],
    ]))
    parts.append("")
    rows = []
    for c, pc in q["per_class"].items():
        pr_ = pc["prdc"] or {}
        fl = pc["prdc_floor_test_vs_train"] or {}
        rows.append([c, str(pc["n_synthetic"]), f"{num(pc['fd'])} ({num(pc['fd_floor'])})", num(pc["fd_norm"], 2),
                     fidelity_cell(pc), num(pc["diversity_ratio"], 2),
                     *[f"{num(pr_.get(m))} ({num(fl.get(m))})" for m in ("precision", "recall", "density",
                                                                           "coverage")],
                     num(pc["synthetic_accuracy"])])
    parts.append(markdown_table(["class", "n synthetic", "FD vs real val (floor)", "FD / floor", "fidelity",
                                 "diversity ratio", "precision (floor)", "recall (floor)", "density (floor)",
                                 "coverage (floor)", "classified as its class"], rows))
    parts.append("")
    parts.append("Fidelity: the teacher's mean probability of the class on its synthetic images over the same on its "
                 "real validation images (about 1 is right; well below 1, the images do not look like the class; "
                 "well above 1, caricatures the teacher finds more typical than real images). Diversity ratio: "
                 "within-class pixel diversity, synthetic over real.")
    for c, pc in q["per_class"].items():
        if pc.get("fidelity") is None and pc.get("fidelity_not_measurable"):
            parts.append(f"- Fidelity of {c} is not measurable: {pc['fidelity_not_measurable']}.")
    parts.append("")
    parts.append(f"Synthetic samples classified as their class by the teacher: {num(q['synthetic_accuracy'])}.")
    if q.get("tstr"):
        t = q["tstr"]
        parts.append(f"Train on synthetic, test on real (the teacher's recipe on the synthetic images alone): "
                     f"accuracy {num(t['accuracy'])}, balanced accuracy {num(t['balanced_accuracy'])} (the teacher, "
                     f"trained on real: {num(t['trtr_accuracy'])} / {num(t['trtr_balanced_accuracy'])}).")
    return parts


def privacy_markdown(pv: dict[str, Any]) -> list[str]:
    """The memorisation section of report.md."""
    parts: list[str] = []
    px = pv["pixel"]
    parts += ["", "## Memorisation", "", f"Rule: a synthetic sample is {pv['rule']}.", ""]
    rows = []
    for space in ("pixel", "feature"):
        if space in pv:
            s = pv[space]
            rows.append([space, num(s["threshold"]), num(s["real_loo_nn"]["median"]),
                         num(s["synthetic_nn"]["min"]), num(s["synthetic_nn"]["median"]),
                         num(s["fraction_below_threshold"]), num(s.get("real_flag_rate")),
                         num(s["fraction_below_p5"]), num(s["same_class_nn"])])
    parts.append(markdown_table(["space", "threshold", "real-real NN median", "synthetic NN min", "synthetic NN median",
                         "synthetic <= threshold", "real <= threshold (false-alarm ref.)", "synthetic <= p5",
                         "NN of same class"], rows))
    parts.append("")
    parts.append(f"**{pv['flagged']} of {pv['n_synthetic']} synthetic samples "
                 f"({100 * pv['fraction_flagged']:.1f}%) are flagged as near-copies** (pixel space, "
                 f"threshold {px['threshold']:.3f}).")
    return parts
