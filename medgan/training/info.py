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
    ck = load_checkpoint(p)
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
        "train_fingerprint": meta.get("train_fingerprint"), "ema": ck.get("ema_generator") is not None,
        "model": cfg.get("model"),
        "train": {k: train.get(k) for k in ("steps", "batch_size", "loss", "lr_g", "lr_d", "ema_decay", "amp",
                                            "seed") if k in train},
        "quality": quality,
    }


def checkpoint_report(path: str | Path) -> str:
    """A readable summary of :func:`checkpoint_info`."""
    i = checkpoint_info(path)
    counts = i["train_counts"] or [None] * len(i["class_names"])
    classes = ", ".join(f"{k}={n!r} ({c} train)" if c is not None else f"{k}={n!r}"
                        for k, (n, c) in enumerate(zip(i["class_names"], counts, strict=True)))
    g = i["grid"] or {}
    inten = i["intensity"] or {}
    lines = [
        f"checkpoint  {i['checkpoint']}" + (f" ({i['chosen']})" if i.get("chosen") else ""),
        f"sha256      {i['sha256']}",
        f"step        {i['step']} (medgan {i['medgan_version']}; EMA generator: {'yes' if i['ema'] else 'no'})",
        f"dataset     {i['dataset']} ({i['source']}, read from {g.get('source_kind', '?')} data)",
        f"classes     {classes}",
        f"shape       {' x '.join(map(str, i['shape']))} (channels x spatial); spacing "
        f"{g.get('spacing') or 'unknown'}; intensity {inten.get('min')}..{inten.get('max')} {inten.get('dtype')}",
        f"fingerprint {i['train_fingerprint']} (training images)",
        f"model       {json.dumps(i['model'], sort_keys=True)}",
        f"training    {json.dumps(i['train'], sort_keys=True)}",
    ]
    if i["scarcity"]:
        lines.append(f"scarcity    {json.dumps(i['scarcity'], sort_keys=True)}")
    lines.append(f"quality     {json.dumps(i['quality'], sort_keys=True) if i['quality'] else 'not recorded'}")
    return "\n".join(lines)
