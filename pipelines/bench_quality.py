#!/usr/bin/env python3
"""Generator quality ablation: the default generator against each conditioning/regularisation option, alone and
combined, on the same data for the same number of steps, over several GAN seeds.

Settings (the scarce splits of the study): ``breast20`` (BreastMNIST, malignant kept at 20%), ``pneumonia10``
(PneumoniaMNIST, normal at 10%), ``adrenal20`` (AdrenalMNIST3D, mass at 20%); each trains ``configs/<dataset>.yaml``
plus the variant's overrides. Variants (``+`` combines them):

* ``default``: the configuration as shipped before this benchmark (label embedding concatenated to z);
* ``cbn`` / ``both``: class-conditional batch norm instead of / as well as the concatenated embedding;
* ``trans``: transitional conditioning, unconditional for the first 20% of the steps, phased in over the next 40%;
* ``lecam``: LeCam regularisation of D (weight 0.1);
* ``inoise``: instance noise (sd 0.1, decaying to 0 over the first half of the run).

For each run (``runs/bench_quality/<setting>/<variant>_s<seed>``), measured from the run itself:

* per class, from quality tracking (:mod:`medgan.training.tracking`): Fréchet distance and KID against the real
  validation images in the teacher's features (medgan.classify.teacher), class fidelity (with the teacher's
  validation sensitivity; not measurable below ``teacher.min_sensitivity``), diversity ratio; both at the **last step** (``final``) and at the checkpoint
  quality tracking chose (``best``, ``checkpoints/best.pt``);
* train-on-synthetic / test-on-real (``tstr``): a small CNN trained on synthetic images of the chosen checkpoint
  only (as many per class as the largest real class), early-stopped on the real validation split, balanced
  accuracy on the real **test** split, mean over 2 classifier seeds; against the same protocol on the real scarce
  training split with class-balanced batches (``trtr``);
* wall time of training, and the share of it spent in quality tracking.

The summary gives each variant's mean over seeds and its per-class Fréchet distance as a ratio to ``default``'s
(same seed, same steps: machine noise cancels).

    OMP_NUM_THREADS=1 .venv/bin/python pipelines/bench_quality.py run --setting breast20 \\
        --variants default,cbn,lecam,trans,cbn+lecam,cbn+trans+lecam --seeds 0,1 --jobs 2
    .venv/bin/python pipelines/bench_quality.py summary --out docs/results/bench_quality.json

``--steps N`` overrides the configured steps (recorded in the run name as ``variant@N``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

RUNS = bc.ROOT / "runs" / "bench_quality"
SETTINGS: dict[str, tuple[str, str, list[str]]] = {
    "breast20": ("breastmnist", "configs/breastmnist.yaml", ["0=0.2"]),
    "pneumonia10": ("pneumoniamnist", "configs/pneumoniamnist.yaml", ["0=0.1"]),
    "adrenal20": ("adrenalmnist3d", "configs/adrenalmnist3d.yaml", ["1=0.2"]),
    "phantom2d": ("phantom2d", "configs/phantom2d.yaml", []),  # the smoke test's
}
#: The generator of the configs before this benchmark (the reference of the ratios).
DEFAULT = {"model.conditioning": "concat", "train.lecam": 0.0, "train.cond_start": 0, "train.cond_ramp": 0,
           "train.instance_noise": 0.0, "train.instance_noise_decay": 0}
VARIANTS: dict[str, Any] = {
    "default": {},
    "cbn": {"model.conditioning": "cbn"},
    "both": {"model.conditioning": "both"},
    "trans": lambda steps: {"train.cond_start": round(0.2 * steps), "train.cond_ramp": round(0.4 * steps)},
    "lecam": {"train.lecam": 0.1},
    "inoise": lambda steps: {"train.instance_noise": 0.1, "train.instance_noise_decay": round(0.5 * steps)},
}
TSTR_SEEDS, TSTR_EPOCHS, TSTR_PATIENCE, TSTR_BATCH, TSTR_LR = 2, 30, 8, 32, 1e-3


def overrides(variant: str, steps: int) -> dict[str, Any]:
    """The config overrides of a variant (``a+b``: both) on top of :data:`DEFAULT`."""
    out = dict(DEFAULT)
    for part in variant.split("+"):
        v = VARIANTS[part]
        out.update(v(steps) if callable(v) else v)
    return out


def run_dir(setting: str, variant: str, seed: int, steps: int | None) -> Path:
    runs = Path(os.environ.get("MEDGAN_BENCH_QUALITY_RUNS", RUNS))
    return runs / setting / (f"{variant}@{steps}" if steps else variant) / f"s{seed}"


# --------------------------------------------------------------------------------------- one run (child)


def child(setting: str, variant: str, seed: int, steps: int | None, threads: int,
          tiny_teacher: bool = False) -> dict[str, Any]:
    """Train (unless already trained) and measure one run; returns and writes ``bench.json``. ``tiny_teacher``:
    quality tracking with the smoke runs' teacher (``_bench_common.TINY_TEACHER``)."""
    import torch

    from medgan.config import load_config
    from medgan.training.run import train

    torch.set_num_threads(threads)
    dataset, config, scarce = SETTINGS[setting]
    base = load_config(bc.ROOT / config)
    n_steps = steps or base.train.steps
    cfg = load_config(bc.ROOT / config, {"data.dataset": dataset, "data.scarce": scarce, "train.seed": seed,
                                         "train.threads": threads, "train.progress": False, "train.steps": n_steps,
                                         "data.data_dir": str(bc.DATA_DIR), "data.download": False,
                                         **overrides(variant, n_steps),
                                         **({f"teacher.{k}": v for k, v in bc.TINY_TEACHER.items()}
                                            if tiny_teacher else {})})
    out = run_dir(setting, variant, seed, steps)
    if (out / "bench.json").is_file():
        return json.loads((out / "bench.json").read_text())
    t0 = time.perf_counter()
    res = train(cfg, out, resume=(out / "checkpoints" / "last.pt").is_file())
    wall = time.perf_counter() - t0
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    tracked = [ln for ln in lines if "q_fd" in ln]
    final = tracked[-1] if tracked else None
    best_pt = out / "checkpoints" / "best.pt"
    best = torch.load(best_pt, map_location="cpu", weights_only=True)["quality"] if best_pt.is_file() else None
    result = {"setting": setting, "variant": variant, "seed": seed, "steps": n_steps,
              "overrides": overrides(variant, n_steps), "train_wall_s": wall, "train_s": res.seconds,
              "tracking_s": final.get("q_seconds") if final else None,
              "tracking_share": (final["q_seconds"] / res.seconds) if final and res.seconds else None,
              "final": _quality(final), "best": _quality(best), "tstr": tstr(out, threads)}
    write_json(out / "bench.json", result)
    return result


def _quality(rec: dict[str, Any] | None) -> dict[str, Any] | None:
    keys = ("q_fd", "q_fd_norm", "q_kid", "q_fidelity", "q_p_synthetic", "q_sensitivity", "q_diversity_ratio", "q_score")
    return None if rec is None else {"step": rec.get("step"), **{k[2:]: rec.get(k) for k in keys}}


def tstr(run: Path, threads: int) -> dict[str, Any]:
    """Train-on-synthetic (the run's chosen checkpoint) and train-on-real, both tested on the real test split."""
    import torch
    from sklearn.metrics import balanced_accuracy_score

    from medgan.classify.fit import Member, Protocol, fit_group, predict_proba
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.synthesis.sampler import Sampler
    from medgan.training.checkpoint import resolve_checkpoint

    choice = resolve_checkpoint(run)
    s = Sampler.from_checkpoint(choice.path)
    d = s.config["data"]
    data = load_dataset(d["dataset"], data_dir=bc.DATA_DIR, scarce=list(d["scarce"] or []), download=False)
    td = prepare(data, int(s.meta["size"]))
    k = data.num_classes
    n_syn = int(max(td.y["train"].bincount(minlength=k)))
    xs, ys = s.sample(n_syn, seed=20240601)
    steps = max(1, math.ceil(len(td.y["train"]) / TSTR_BATCH))
    protocol = Protocol("smallcnn", TSTR_EPOCHS, TSTR_PATIENCE, TSTR_BATCH, TSTR_LR, steps, "balanced_accuracy")
    out: dict[str, Any] = {"checkpoint": choice.path.name, "n_per_class": n_syn}
    dev = torch.device("cpu")
    for name, (x, y) in {"tstr": (xs, ys), "trtr": (td.x["train"], td.y["train"])}.items():
        members = [Member(seed, x, y, balanced=True) for seed in range(TSTR_SEEDS)]
        models = fit_group(members, protocol, td.x["val"], td.y["val"], k, dev)
        accs = [float(balanced_accuracy_score(td.y["test"].numpy(),
                                              predict_proba(r.model, td.x["test"], dev).argmax(1).numpy()))
                for r in models]
        out[name] = accs
        out[f"{name}_mean"] = sum(accs) / len(accs)
    return out


# --------------------------------------------------------------------------------------- the queue


def run_all(args: argparse.Namespace) -> int:
    os.environ["MEDGAN_BENCH_QUALITY_RUNS"] = str(args.runs)
    jobs = [(args.setting, v, s) for v in args.variants.split(",") for s in (int(x) for x in args.seeds.split(","))]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MEDGAN_DATA_DIR": str(bc.DATA_DIR),
           "MEDGAN_BENCH_QUALITY_RUNS": str(args.runs)}
    running: list[tuple[subprocess.Popen, tuple]] = []
    failed = 0
    while jobs or running:
        while jobs and len(running) < args.jobs:
            job = jobs.pop(0)
            if (run_dir(job[0], job[1], job[2], args.steps) / "bench.json").is_file():
                continue
            cmd = [bc.python(), __file__, "child", "--setting", job[0], "--variant", job[1], "--seed", str(job[2]),
                   "--threads", str(args.threads)] + (["--steps", str(args.steps)] if args.steps else []) \
                + (["--tiny-teacher"] if args.tiny_teacher else [])
            print(f"[bench_quality] {time.strftime('%H:%M:%S')} start {job}", flush=True)
            log = args.runs / f"{job[0]}_{job[1]}_s{job[2]}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            running.append((subprocess.Popen(cmd, env=env, cwd=bc.ROOT, stdout=log.open("w"),
                                             stderr=subprocess.STDOUT), job))
        time.sleep(2)
        for p, job in list(running):
            if p.poll() is not None:
                running.remove((p, job))
                failed += p.returncode != 0
                print(f"[bench_quality] {time.strftime('%H:%M:%S')} {'done' if p.returncode == 0 else 'FAILED'} "
                      f"{job}", flush=True)
    return 1 if failed else 0


# --------------------------------------------------------------------------------------- the summary


def _mean(vals: list[float | None]) -> float:
    v = [x for x in vals if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else float("nan")


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting and variant: means over seeds; per-class FD ratio to ``default`` (same seed, same steps)."""
    out: dict[str, Any] = {}
    for r in results:
        out.setdefault(r["setting"], {}).setdefault((r["variant"], r["steps"]), []).append(r)
    summary: dict[str, Any] = {}
    for setting, groups in out.items():
        summary[setting] = {}
        for (variant, steps), rs in groups.items():
            ref = {x["seed"]: x for x in groups.get(("default", steps), [])}
            k = len(rs[0]["best"]["fd"]) if rs[0].get("best") else len(rs[0]["final"]["fd"])
            row: dict[str, Any] = {"steps": steps, "seeds": sorted(x["seed"] for x in rs),
                                   "train_s": _mean([x["train_s"] for x in rs]),
                                   "tracking_share": _mean([x["tracking_share"] for x in rs]),
                                   "tstr": _mean([x["tstr"]["tstr_mean"] for x in rs]),
                                   "trtr": _mean([x["tstr"]["trtr_mean"] for x in rs])}
            for which in ("final", "best"):
                recs = [x[which] for x in rs if x.get(which)]
                if not recs:
                    continue
                row[which] = {m: [_mean([q[m][c] for q in recs]) for c in range(k)]
                              for m in ("fd", "kid", "fidelity", "sensitivity", "diversity_ratio")}
                row[which]["step"] = [q["step"] for q in recs]
                row[which]["fd_ratio_to_default"] = [
                    _mean([x[which]["fd"][c] / ref[x["seed"]][which]["fd"][c] for x in rs
                           if x["seed"] in ref and ref[x["seed"]].get(which) and x.get(which)]) for c in range(k)]
            summary[setting][f"{variant}@{steps}"] = row
    return summary


def report(summary: dict[str, Any], class_names: dict[str, list[str]], which: str = "best") -> str:
    parts = []
    for setting, rows in summary.items():
        names = class_names.get(setting) or []
        head = ["variant", "seeds", "train s", "tracking"]
        for n in names:
            head += [f"FD {n} (÷ default)", f"KID {n}", f"fidelity {n} (its sens.)", f"diversity {n}"]
        head += ["TSTR bal. acc.", "TRTR"]
        table = []
        for key, r in sorted(rows.items(), key=lambda kv: (not kv[0].startswith("default@"), kv[0])):
            q = r.get(which)
            cells = [key, len(r["seeds"]), f"{r['train_s']:.0f}", f"{100 * r['tracking_share']:.1f}%"]
            for c in range(len(names)):
                cells += [f"{q['fd'][c]:.2f} ({q['fd_ratio_to_default'][c]:.2f})", f"{q['kid'][c]:.3f}",
                          f"{q['fidelity'][c]:.2f} ({q['sensitivity'][c]:.2f})", f"{q['diversity_ratio'][c]:.2f}"] if q else ["", "", "", ""]
            cells += [f"{r['tstr']:.3f}", f"{r['trtr']:.3f}"]
            table.append(cells)
        parts.append(f"### {setting} ({which} checkpoint)\n\n" + markdown_table(head, table))
    return "\n\n".join(parts)


def collect(runs: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob("*/*/s*/bench.json"))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--setting", choices=SETTINGS, required=True)
    r.add_argument("--variants", default="default,cbn,lecam,trans,cbn+lecam,cbn+trans+lecam")
    r.add_argument("--seeds", default="0,1")
    r.add_argument("--steps", type=int, default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--runs", type=Path, default=RUNS, help="where the run folders go")
    r.add_argument("--tiny-teacher", action="store_true", help="a smoke run: quality tracking with a tiny teacher "
                   "(2 members, 3 epochs)")
    c = sub.add_parser("child")
    c.add_argument("--setting", choices=SETTINGS, required=True)
    c.add_argument("--variant", required=True)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("--steps", type=int, default=None)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--tiny-teacher", action="store_true")
    s = sub.add_parser("summary")
    s.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "bench_quality.json")
    s.add_argument("--which", choices=("best", "final"), default="best")
    s.add_argument("--runs", type=Path, default=RUNS)
    args = ap.parse_args(argv)
    if args.cmd == "child":
        child(args.setting, args.variant, args.seed, args.steps, args.threads, args.tiny_teacher)
        return 0
    if args.cmd == "run":
        return run_all(args)
    results = collect(args.runs)
    names = {}
    for p in args.runs.glob("*/*/s*/teacher/teacher.json"):
        names[p.parents[3].name] = [pc["class"] for pc in json.loads(p.read_text()).get("per_class", [])]
    summary = summarise(results)
    write_json(args.out, {"command": " ".join(sys.argv), "machine": bc.machine_info(), "runs": results,
                          "summary": summary, "class_names": names})
    print(report(summary, names, args.which))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
