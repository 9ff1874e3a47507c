#!/usr/bin/env python3
"""Does bf16 autocast cost sample quality? The same BreastMNIST GAN trained in float32 and in bf16, compared.

For each GAN seed, ``medgan train`` runs twice with ``configs/breastmnist.yaml`` (the project's default
BreastMNIST config), once with ``--amp off`` and once with ``--amp bf16``; everything else (data, seed, steps) is
equal. Each generator is then scored with ``medgan evaluate``'s sample-quality measures: the Fréchet distance
(and KID) between its samples and the real training split in the feature space of the teacher
(medgan.classify.teacher) — the same teacher for every run, because it is fitted deterministically on the same
split. The issue's target: bf16's Fréchet distance within 10% of float32's. Differences between GAN seeds in
float32 are reported too, since a 10% band is only meaningful next to the seed-to-seed spread.

Also recorded: the wall time and images/s of each training run (the real default config, not the FLOP-matched
benchmark model).

Usage::

    .venv/bin/python pipelines/bench_amp_quality.py                      # -> docs/results/bench_amp_quality.json
    .venv/bin/python pipelines/bench_amp_quality.py --steps 20 --seeds 0 --tiny-teacher --work /tmp/aq \
        --out /tmp/aq.json                                                # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import write_json  # noqa: E402

CONFIG = bc.ROOT / "configs" / "breastmnist.yaml"
_RATE = re.compile(r"([\d.]+) images/s")


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, str]:
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=bc.ROOT)
    seconds = time.perf_counter() - t0
    log.write_text("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout + proc.stderr


def train_and_score(amp: str, seed: int, steps: int | None, work: Path, env: dict[str, str],
                    seeds_eval: int, epochs: int | None = None, tiny_teacher: bool = False) -> dict[str, Any]:
    """Train one GAN (``amp``, ``seed``), then score its samples; returns times and quality numbers.
    ``tiny_teacher``: a smoke run's teacher (``_bench_common.TINY_TEACHER``) in training and evaluation."""
    run = work / f"{amp}_seed{seed}"
    if run.exists():
        shutil.rmtree(run)
    config = bc.config_with(work / "tiny_teacher.yaml", {"teacher": bc.TINY_TEACHER}, CONFIG) if tiny_teacher \
        else CONFIG
    train = [*bc.medgan_cli(), "train", "--config", str(config), "--dataset", "breastmnist", "--amp", amp,
             "--seed", str(seed), "--out", str(run / "gan")]
    if steps:
        train += ["--steps", str(steps)]
    load = bc.loadavg()
    train_s, _ = _run(train, env, work / f"{amp}_seed{seed}_train.log")
    metrics = [json.loads(line) for line in (run / "gan" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    ips = [m["images_per_s"] for m in metrics if m.get("images_per_s")]
    ev = [*bc.medgan_cli(), "evaluate", "--dataset", "breastmnist", "--checkpoint",
          str(run / "gan" / "checkpoints" / "last.pt"), "--arms", "baseline", "--seeds", str(seeds_eval),
          "--no-privacy", "--quiet", "--out", str(run / "report")]
    if epochs:
        ev += ["--epochs", str(epochs)]
    if tiny_teacher:  # the run's (tiny) teacher is reused
        ev += ["--config", str(bc.config_with(work / "tiny_teacher_evaluate.yaml", {"teacher": bc.TINY_TEACHER}))]
    eval_s, _ = _run(ev, env, work / f"{amp}_seed{seed}_evaluate.log")
    q = json.loads((run / "report" / "report.json").read_text())["quality"]
    return {
        "amp": amp, "seed": seed, "train_command": " ".join(train[2:]), "load_before": load,
        "train_seconds": round(train_s, 1), "train_images_per_s_median": statistics.median(ips) if ips else None,
        "evaluate_seconds": round(eval_s, 1),
        "frechet": q["frechet"]["synthetic_vs_train"], "frechet_floor": q["frechet"]["floor_test_vs_train"],
        "kid": q["kid"]["synthetic_vs_train"]["mean"], "synthetic_accuracy": q["synthetic_accuracy"],
        "tstr_balanced_accuracy": (q.get("tstr") or {}).get("balanced_accuracy"),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["amp"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    ratios = [by["bf16", s]["frechet"] / by["off", s]["frechet"] for s in seeds if ("bf16", s) in by and ("off", s) in by]
    fp32 = [by["off", s]["frechet"] for s in seeds if ("off", s) in by]
    speed = [by["bf16", s]["train_seconds"] / by["off", s]["train_seconds"] for s in seeds
             if ("bf16", s) in by and ("off", s) in by]
    out: dict[str, Any] = {
        "frechet_ratio_bf16_over_fp32": {"per_seed": ratios, "mean": statistics.fmean(ratios) if ratios else None},
        "fp32_seed_spread": (max(fp32) / min(fp32) - 1) if len(fp32) > 1 else None,
        "train_time_ratio_bf16_over_fp32": {"per_seed": speed, "mean": statistics.fmean(speed) if speed else None},
    }
    mean = out["frechet_ratio_bf16_over_fp32"]["mean"]
    out["verdict"] = (None if mean is None else
                      f"bf16 Frechet distance is {mean - 1:+.1%} of float32's on average "
                      f"({'within' if abs(mean - 1) <= 0.10 else 'outside'} the 10% target)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1", help="GAN training seeds (comma-separated)")
    p.add_argument("--steps", type=int, help="GAN steps (default: the config's)")
    p.add_argument("--eval-seeds", type=int, default=2, help="classifier seeds of the (baseline-only) evaluation")
    p.add_argument("--eval-epochs", type=int, help="classifier epochs of the evaluation (default: evaluate's)")
    p.add_argument("--work", default=str(bc.ROOT / "runs" / "bench_amp_quality"))
    p.add_argument("--out", default=str(bc.RESULTS_DIR / "bench_amp_quality.json"))
    p.add_argument("--max-load", type=float, default=1.2, help="wait for the 1-min load to drop below this")
    p.add_argument("--wait-s", type=float, default=600.0)
    p.add_argument("--tiny-teacher", action="store_true", help="a smoke run: a tiny teacher (2 members, 3 epochs)")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR)}
    bc.wait_for_quiet(args.max_load, args.wait_s)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for amp in ("off", "bf16"):
            r = train_and_score(amp, seed, args.steps, work, env, args.eval_seeds, args.eval_epochs,
                                args.tiny_teacher)
            print(f"seed {seed} amp {amp:<4}: train {r['train_seconds']:.0f} s "
                  f"({r['train_images_per_s_median'] or 0:.0f} images/s), Frechet {r['frechet']:.3f} "
                  f"(floor {r['frechet_floor']:.3f}), KID {r['kid']:.4f}", flush=True)
            runs.append(r)
    result = {"config": str(CONFIG.relative_to(bc.ROOT)), "machine": bc.machine_info(), "runs": runs,
              "summary": summarise(runs)}
    write_json(args.out, result)
    print(result["summary"]["verdict"])
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
