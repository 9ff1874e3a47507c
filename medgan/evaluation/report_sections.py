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


_PRDC_NOTE = (
    "Precision, recall, density and coverage (k = {k} nearest neighbours, per class, in the teacher's features) "
    "compare the synthetic images of a class with the real training images of that class: precision is "
    "the share of synthetic images inside the k-NN ball of some real image (realism), recall the share of real "
    "images inside the k-NN ball of some synthetic image (variety), density the mean number of real balls holding "
    "a synthetic image over k (can exceed 1), coverage the share of real images whose ball holds a synthetic "
    "image. Each is between 0 and 1 (density: 0 and up); higher is better. The floor in brackets is the real test "
    "images' score: a floor of 0.000 means that not even new real images of the class land inside the training "
    "images' k-NN balls (few training images of a class make small, tight balls), so the measure cannot tell "
    "good synthetic images from bad ones for that class; n/a: fewer than k + 1 images.")


def _prdc_k(q: dict[str, Any]) -> Any:
    for pc in q.get("per_class", {}).values():
        if pc.get("prdc"):
            return pc["prdc"].get("k", 5)
    return 5


def fidelity_cell(pc: dict[str, Any]) -> str:
    """A class's fidelity for a table: the number, or "not measurable" (the reason is listed under the table)."""
    return "not measurable" if pc.get("fidelity") is None else num(pc["fidelity"], 2)


def quality_markdown(q: dict[str, Any]) -> list[str]:
    """The sample-quality section of report.md."""
    parts: list[str] = []
    t = q["teacher"]
    parts += ["", "## Sample quality", "", f"Judged by the teacher: {t['recipe']} ({t['source']}; validation balanced "
              f"accuracy {num(t['val_balanced_accuracy'])}). Feature space: {q['feature_space']}; every distance "
              "below is Euclidean on its raw (not standardised) features. A *floor* is the same measure for real "
              "images against the real training images: what new real images of the data score, so a synthetic "
              "number is read against its floor, not against 0 or 1.", ""]
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
    parts += ["", _PRDC_NOTE.format(k=_prdc_k(q))]
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
    if q.get("oracle"):
        parts += oracle_markdown(q["oracle"])
    return parts


def oracle_markdown(o: dict[str, Any]) -> list[str]:
    """The oracle teacher's subsection of the sample-quality section (measuring only)."""
    parts = ["", f"### Sample quality, {o['label']}", ""]
    if not o.get("measured"):
        parts.append(f"Not measured: {o['why']}.")
        return parts
    t = o["teacher"]
    parts.append(f"**For measuring only**: this teacher was {o['note']}. It is the teacher's recipe ({t['recipe']}) "
                 f"on {o['n_train']} real training images ({o['n_held_back']} of them held back from the scarce split "
                 f"every arm and the teacher above see; {t['source']}; validation balanced accuracy "
                 f"{num(t['val_balanced_accuracy'])}), so it shows how the synthetic images look to a judge that knows "
                 f"the class better than the data at hand allow. Why it was fitted: {o['why']}.")
    parts.append("")
    sens = {pc["class"]: pc.get("sensitivity") for pc in t["per_class"]}
    rows = [[c, str(pc["n_synthetic"]), num(sens.get(c)), f"{num(pc['fd'])} ({num(pc['fd_floor'])})",
             num(pc["fd_norm"], 2), fidelity_cell(pc), num(pc["diversity_ratio"], 2), num(pc["synthetic_accuracy"])]
            for c, pc in o["per_class"].items()]
    parts.append(markdown_table(["class", "n synthetic", "oracle's val. sensitivity", "FD vs real val (floor)",
                                 "FD / floor", "fidelity", "diversity ratio", "classified as its class"], rows))
    for c, pc in o["per_class"].items():
        if pc.get("fidelity") is None and pc.get("fidelity_not_measurable"):
            parts.append(f"- Oracle fidelity of {c} is not measurable: {pc['fidelity_not_measurable']}.")
    return parts


def privacy_markdown(pv: dict[str, Any], n_values: int | None = None) -> list[str]:
    """The memorisation section of report.md; ``n_values``: the number of values (channels x pixels) of an image,
    to put pixel distances on a per-pixel scale."""
    parts: list[str] = []
    px = pv["pixel"]
    n = n_values or 0
    scale = (f" An image here has {n} values, so the largest possible distance is {2 * math.sqrt(n):.1f}; divide "
             f"a pixel distance by {math.sqrt(n):.1f} (the square root of the number of values) for the "
             "root-mean-square difference per pixel, on the same [-1, 1] scale.") if n else ""
    parts += ["", "## Memorisation", "",
              "Distances are Euclidean, from each synthetic image to its nearest real training image: in *pixel* "
              "space between whole images with intensities mapped to [-1, 1] (all channels and pixels; a sum, "
              f"not a mean, so it grows with the image size).{scale} In *feature* space between the teacher's "
              "raw (not standardised) features, whose scale is the network's own. "
              f"The threshold's rule: a synthetic sample is {pv['rule']}, i.e. it sits closer to a training image "
              f"than {100 - pv.get('percentile', 1):g}% of the real training images sit to their closest other "
              "one. Real-real NN median: the median of those real leave-one-out distances, the "
              "typical gap between two different real images.", ""]
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
