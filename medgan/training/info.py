"""``medgan info checkpoint CKPT|RUN``: what a checkpoint holds, without running it.

Classes (with the training counts), image shape and model grid, the step, the training configuration that
matters (model, loss, batch size, steps), the training-set fingerprint, the file's SHA-256, and the sample quality
when the run recorded it (the last diversity ratios in ``metrics.jsonl``, and any ``quality`` record).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medgan.training.checkpoint import load_checkpoint, resolve_checkpoint


def _last_quality(run: Path) -> dict[str, Any] | None:
    """The last quality measures a run logged (``metrics.jsonl``), if any."""
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return None
    found: dict[str, Any] = {}
    for line in metrics.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        for k, v in rec.items():
            if k.startswith(("diversity", "quality", "fd", "kid", "fidelity", "q_")) or k == "collapse":
                found[k] = v
                found["step"] = rec.get("step")
    return found or None


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """The facts ``medgan info checkpoint`` prints, as a JSON-safe dict."""
    from medgan.data.grid import model_grid
    from medgan.io import file_sha256

    choice = resolve_checkpoint(path)
    p = choice.path
    ck = load_checkpoint(p, kind=None)  # a GAN's or an image translator's
    meta, cfg = ck.get("data") or {}, ck.get("config") or {}
    grid = model_grid(meta) if "size" in meta and "spatial_dims" in meta else None
    train = cfg.get("train") or {}
    run = p.parent.parent if p.parent.name == "checkpoints" else p.parent
    quality = ck.get("quality") or _last_quality(run)
    return {
        "checkpoint": str(p), "chosen": choice.why or None, "sha256": file_sha256(p), "step": int(ck.get("step", 0)),
        "medgan_version": ck.get("medgan_version"), "dataset": meta.get("name"), "source": meta.get("source"),
        "class_names": list(meta.get("class_names") or []), "train_counts": meta.get("train_counts"),
        "shape": [int(meta.get("channels", 0))] + [int(meta.get("size", 0))] * int(meta.get("spatial_dims", 0)),
        "intensity": meta.get("intensity"), "modality": meta.get("modality"),
        "grid": grid.to_dict() if grid else None, "scarcity": meta.get("scarcity"),
        "train_fingerprint": meta.get("train_fingerprint"), "ema": (ck.get("ema_generator") or ck.get("ema_translator")) is not None,
        "model": cfg.get("model"),
        "train": {k: train.get(k) for k in ("steps", "batch_size", "loss", "lr_g", "lr_d", "ema_decay", "amp",
                                            "seed") if k in train},
        "quality": quality,
    }


#: Per-class measures a run records: (name, one-line meaning), in the order ``info checkpoint`` shows them.
MEASURES = {
    "q_fd_norm": ("Fréchet distance / floor", "distance of the class's samples to real validation images in the "
                  "domain feature network's features, over the same distance for the real training images (1 = as "
                  "close as real images; lower is better)"),
    "q_fd": ("Fréchet distance", "the same distance before dividing by the floor"),
    "q_kid": ("kernel distance (KID)", "the kernel (MMD) distance on the same features (0 = same distribution)"),
    "q_fidelity": ("class fidelity", "share of samples the real-data classifier assigns to their class, over its "
                   "sensitivity on real validation images (1 = as recognisable as real images)"),
    "q_share": ("classified as their class", "share of samples the real-data classifier assigns to their class"),
    "q_sensitivity": ("classifier sensitivity", "the real-data classifier's sensitivity on real validation images "
                      "(fidelity's denominator)"),
    "q_diversity_ratio": ("diversity ratio", "within-class diversity of the samples over the real training "
                          "images' (1 = as varied as real images)"),
    "diversity_ratio": ("diversity ratio (collapse check)", "the collapse check's within-class diversity ratio; "
                        "below its threshold the class is flagged as collapsed"),
    "diversity": ("within-class diversity", "mean pairwise RMS pixel distance between samples of a class "
                  "(images in [-1, 1])"),
}

#: Single values a run records: (name, one-line meaning).
SCALARS = {
    "q_score": ("quality score", "lower is better; best.pt is the checkpoint with the lowest"),
    "q_best_step": ("best step", "the step with the lowest quality score so far"),
    "q_drifted_classes": ("drifted classes", "classes whose fidelity fell below the drift threshold"),
    "collapse": ("collapse", "whether the collapse check flagged a class"),
    "collapsed_classes": ("collapsed classes", "classes the collapse check flagged"),
}


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return ", ".join(map(_value, v)) or "none"
    return str(v)


def quality_lines(q: dict[str, Any], class_names: list[str]) -> list[str]:
    """The recorded quality as a table (one row per named measure, one column per class) and what each means;
    keys without a name here are counted, and shown by ``--json``."""
    from medgan.tables import WIDTH, render_table

    k = len(class_names)
    rows, meanings = [], []
    for key, (name, meaning) in MEASURES.items():
        v = q.get(key)
        if isinstance(v, list) and len(v) == k:
            rows.append([name, *map(_value, v)])
            meanings.append(f"{name}: {meaning}")
    scalars = [f"{SCALARS[key][0]} {_value(q[key])}" for key in SCALARS if key in q]
    meanings += [f"{name}: {meaning}" for key, (name, meaning) in SCALARS.items() if key in q]
    other = sorted(set(q) - set(MEASURES) - set(SCALARS) - {"step", "q_seconds"})
    lines = [f"recorded at step {q.get('step', '?')}" + (f"; {'; '.join(scalars)}" if scalars else "")]
    if rows:
        head = ["measure", *class_names]
        need = sum(max(len(str(r[i])) for r in [head, *rows]) + 2 for i in range(k + 1))  # never folded
        lines += render_table(head, rows, width=max(WIDTH, need), no_wrap=range(k + 1)).splitlines()
    lines += meanings
    if other:
        lines.append(f"{len(other)} more recorded value(s): see --json")
    return lines


def checkpoint_report(path: str | Path) -> str:
    """A readable summary of :func:`checkpoint_info`: counts rather than index lists, named measures with their
    meaning (``--json`` prints every recorded value)."""
    i = checkpoint_info(path)
    names = i["class_names"]
    counts = i["train_counts"] or [None] * len(names)
    classes = ", ".join(f"{k}={n!r} ({c} train)" if c is not None else f"{k}={n!r}"
                        for k, (n, c) in enumerate(zip(names, counts, strict=True)))
    g = i["grid"] or {}
    inten = i["intensity"] or {}

    def pairs(d: dict[str, Any] | None) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted((d or {}).items())) or "not recorded"

    lines = [
        f"checkpoint  {i['checkpoint']}" + (f" ({i['chosen']})" if i.get("chosen") else ""),
        f"sha256      {i['sha256']}",
        f"step        {i['step']} (medgan {i['medgan_version']}; EMA weights: {'yes' if i['ema'] else 'no'})",
        f"dataset     {i['dataset']} ({i['source']}, read from {g.get('source_kind', '?')} data)",
        f"classes     {classes}",
        f"shape       {' x '.join(map(str, i['shape']))} (channels x spatial); spacing "
        f"{g.get('spacing') or 'unknown'}; intensity {inten.get('min')}..{inten.get('max')} {inten.get('dtype')}",
        f"fingerprint {i['train_fingerprint']} (training images)",
        f"model       {pairs(i['model'])}",
        f"training    {pairs(i['train'])}",
    ]
    sc = i["scarcity"]
    if sc:
        before, after = sc.get("original_counts") or [], sc.get("counts") or []
        kept = ", ".join(f"{n!r} {a} of {b}" for n, b, a in zip(names, before, after, strict=False) if a != b)
        lines.append(f"scarcity    {' '.join(sc.get('spec') or [])} (seed {sc.get('seed')}): kept {kept or 'all'}; "
                     f"{len(sc.get('kept_indices') or [])} training images in all (their indices: --json)")
    if i["quality"]:
        q = quality_lines(i["quality"], names)
        lines += [f"quality     {q[0]}"] + [f"            {line}" for line in q[1:]]
    else:
        lines.append("quality     not recorded")
    return "\n".join(lines)
