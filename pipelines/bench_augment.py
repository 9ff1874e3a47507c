#!/usr/bin/env python3
"""Generation throughput of ``medgan augment``, end to end, and its peak memory as ``--n`` grows.

Every measurement is one subprocess of the CLI (``python -m medgan augment ...``): start the interpreter, load
the checkpoint, generate, write the files and the manifest. Reported per setting:

* ``samples_per_s_end_to_end`` — samples / wall time of the whole process (what a user waits for);
* ``samples_per_s_library`` — the rate ``augment`` itself reports (generation + writing + manifest, after the
  checkpoint is loaded), so start-up cost and steady-state throughput can be told apart;
* ``startup_s`` — wall time outside ``augment`` (interpreter, imports, config, checkpoint load, exit);
* ``peak_rss_mb`` — the child's own peak RSS (``os.wait4``), at two sizes of ``--n`` (it must stay flat).

Settings: 2D 28x28 (BreastMNIST checkpoint) to png and npz at 1,000 and 10,000 samples, each with the fp32
generator (the default) and with ``--amp bf16``; 3D 28^3 (AdrenalMNIST3D checkpoint) to nifti and dicom at 1,000
and 4,000 samples (fp32; the larger n shows that peak memory stays flat once batches are full). Targets on the 2-core CPU: >= 2,000 png/s and >= 20,000 npz samples/s for 2D 28x28;
the verdicts judge both the end-to-end and the in-``augment()`` rate at n=10,000.

Checkpoints come from a short ``medgan train`` run with the default model widths (generation speed does not
depend on how well the GAN is trained); they are cached in ``--work`` and reused.

Usage::

    .venv/bin/python pipelines/bench_augment.py                       # -> docs/results/bench_augment.json
    .venv/bin/python pipelines/bench_augment.py --model default --max-load 99 --note "nice-19 study running"
    .venv/bin/python pipelines/bench_augment.py --quick --out /tmp/ba.json --work /tmp/ba
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

#: (name, dataset, format, amp, totals): totals are numbers of samples over all classes.
SETTINGS = [
    ("2d28-png", "breastmnist", "png", "off", [1000, 10000]),
    ("2d28-png-bf16", "breastmnist", "png", "bf16", [1000, 10000]),
    ("2d28-npz", "breastmnist", "npz", "off", [1000, 10000]),
    ("2d28-npz-bf16", "breastmnist", "npz", "bf16", [1000, 10000]),
    ("3d28-nifti", "adrenalmnist3d", "nifti", "off", [1000, 4000]),
    ("3d28-dicom", "adrenalmnist3d", "dicom", "off", [1000, 4000]),
]
QUICK_TOTALS = {"png": [20, 40], "npz": [20, 40], "nifti": [4, 8], "dicom": [4, 8]}
TARGETS = {"2d28-png": 2000.0, "2d28-png-bf16": 2000.0, "2d28-npz": 20000.0, "2d28-npz-bf16": 20000.0}

_RATE = re.compile(r"wrote (\d+) \w+ samples .* in ([\d.]+) s \(([\d.]+) samples/s\)")


def make_checkpoint(dataset: str, work: Path, steps: int, env: dict[str, str], model: str = "project") -> Path:
    """A checkpoint of ``dataset`` from a short ``medgan train``, cached under ``work``. ``model``: ``project``
    uses the model of ``configs/<dataset>.yaml`` (what the README's main job trains: base_channels 32 for
    BreastMNIST, 16 for AdrenalMNIST3D), ``default`` medgan's built-in default widths (base_channels 64)."""
    run = work / f"ckpt_{dataset}_{steps}_{model}"
    ckpt = run / "checkpoints" / "last.pt"
    if ckpt.is_file():
        return ckpt
    if run.exists():
        shutil.rmtree(run)
    cmd = [*bc.medgan_cli(), "train", "--dataset", dataset, "--out", run, "--steps", steps, "--batch-size", 32,
           "--seed", 0]
    cfg = bc.ROOT / "configs" / f"{dataset}.yaml"
    if model == "project" and cfg.is_file():
        cmd += ["--config", cfg]
    print(f"[bench] training a {steps}-step checkpoint on {dataset} ...", flush=True)
    bc.run_child(cmd, env=env, cwd=bc.ROOT)
    if not ckpt.is_file():
        raise SystemExit(f"medgan train did not write {ckpt}")
    return ckpt


def _base_channels(ckpt: Path) -> int:
    from medgan.training.checkpoint import load_checkpoint

    return int(load_checkpoint(ckpt)["config"]["model"]["base_channels"])


def count_rows(manifest: Path) -> int:
    with open(manifest, newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def run_augment(ckpt: Path, fmt: str, total: int, num_classes: int, out: Path, env: dict[str, str],
                timeout: float, amp: str = "off") -> dict[str, Any]:
    """One end-to-end ``medgan augment`` subprocess; returns rates, wall time and the child's peak RSS."""
    if out.exists():
        shutil.rmtree(out)
    per_class = max(1, total // num_classes)
    cmd = [*bc.medgan_cli(), "augment", "--checkpoint", ckpt, "--n", per_class, "--format", fmt, "--out", out,
           "--seed", 0, "--amp", amp, "--quiet"]
    load = bc.loadavg()
    rss, wall, stdout = bc.run_child(cmd, env=env, cwd=bc.ROOT, timeout=timeout)
    n = count_rows(out / "manifest.csv")
    m = _RATE.search(stdout)
    lib_s = float(m.group(2)) if m else float("nan")
    disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return {"n": n, "wall_s": wall, "samples_per_s_end_to_end": n / wall, "library_s": lib_s,
            "startup_s": wall - lib_s if lib_s == lib_s else float("nan"),
            "samples_per_s_library": n / lib_s if lib_s == lib_s and lib_s > 0 else float("nan"),
            "peak_rss_mb": rss, "bytes_written": disk, "load_before": load}


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for name, s in result["settings"].items():
        for total, r in s["by_n"].items():
            rows.append([name, total, bc.fmt_range(r["samples_per_s_end_to_end"], 0),
                         bc.fmt_range(r["samples_per_s_library"], 0), f"{r['startup_s']['median']:.2f}",
                         f"{r['peak_rss_mb']['median']:.0f}",
                         f"{r['bytes_written'] / r['n'] / 1024:.1f}"])
    table = markdown_table(["setting", "n", "samples/s end to end", "samples/s in augment()", "start-up s",
                               "peak RSS MB", "KiB/sample"], rows)
    verdicts = [f"- {k}: {v}" for k, v in result.get("verdicts", {}).items()]
    return table + ("\n\n" + "\n".join(verdicts) if verdicts else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test; not for recording)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=20, help="steps of the checkpoint-making train runs")
    p.add_argument("--model", choices=["project", "default"], default="project",
                   help="generator widths: configs/<dataset>.yaml (project) or medgan's built-in default")
    p.add_argument("--settings", default=",".join(s[0] for s in SETTINGS))
    p.add_argument("--work", default=str(bc.ROOT / "runs" / "bench_augment"), help="checkpoints and scratch output")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-load", type=float, default=1.0)
    p.add_argument("--wait-s", type=float, default=600.0)
    p.add_argument("--timeout", type=float, default=1800.0)
    p.add_argument("--out", default=str(bc.RESULTS_DIR / "bench_augment.json"))
    p.add_argument("--note", action="append", default=[],
                   help="free text recorded under 'notes' (e.g. what else ran on the machine); repeatable")
    args = p.parse_args(argv)

    wanted = [s.strip() for s in args.settings.split(",") if s.strip()]
    known = {s[0] for s in SETTINGS}
    if set(wanted) - known:
        raise SystemExit(f"unknown setting(s) {', '.join(sorted(set(wanted) - known))}; choose from {', '.join(known)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR), "OMP_NUM_THREADS": str(args.threads)}
    steps = 2 if args.quick else args.train_steps
    ckpts: dict[str, Path] = {}
    for _, ds, _, _, _ in SETTINGS:
        if any(s[1] == ds and s[0] in wanted for s in SETTINGS) and ds not in ckpts:
            ckpts[ds] = make_checkpoint(ds, work, steps, env, args.model)
    quiet = bc.wait_for_quiet(args.max_load, 0 if args.quick else args.wait_s)
    t0 = time.time()
    result: dict[str, Any] = {"benchmark": "bench_augment", "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "machine": bc.machine_info(), "threads": args.threads, "quick": args.quick,
                              "quiet": quiet, "notes": args.note, "train_steps": steps, "model": args.model,
                              "base_channels": {ds: _base_channels(ck) for ds, ck in ckpts.items()}, "settings": {}, "verdicts": {}}
    for name, ds, fmt, amp, totals in SETTINGS:
        if name not in wanted:
            continue
        totals = QUICK_TOTALS[fmt] if args.quick else totals
        runs: dict[int, list[dict[str, Any]]] = {t: [] for t in totals}
        for r in range(args.repeats):  # interleave the sizes so drift in machine load hits both alike
            for total in (totals if r % 2 == 0 else totals[::-1]):
                res = run_augment(ckpts[ds], fmt, total, 2, work / f"out_{name}_{total}", env, args.timeout, amp)
                runs[total].append(res)
                print(f"{name:11s} n={res['n']:6d}: {res['samples_per_s_end_to_end']:8.0f}/s end to end, "
                      f"{res['samples_per_s_library']:8.0f}/s in augment(), rss {res['peak_rss_mb']:.0f} MB "
                      f"(load {res['load_before']:.2f})", flush=True)
        by_n = {}
        for total, rs in runs.items():
            by_n[str(total)] = {
                "n": rs[0]["n"],
                "samples_per_s_end_to_end": bc.summarise([x["samples_per_s_end_to_end"] for x in rs]),
                "samples_per_s_library": bc.summarise([x["samples_per_s_library"] for x in rs]),
                "wall_s": bc.summarise([x["wall_s"] for x in rs]),
                "startup_s": bc.summarise([x["startup_s"] for x in rs]),
                "peak_rss_mb": bc.summarise([x["peak_rss_mb"] for x in rs]),
                "bytes_written": rs[0]["bytes_written"],
                "runs": rs,
            }
        small, large = by_n[str(totals[0])], by_n[str(totals[-1])]
        growth = large["peak_rss_mb"]["median"] / small["peak_rss_mb"]["median"]
        result["settings"][name] = {"dataset": ds, "format": fmt, "amp": amp, "by_n": by_n,
                                    "rss_growth_small_to_large": growth}
        if name in TARGETS and not args.quick:
            t = TARGETS[name]
            e2e = large["samples_per_s_end_to_end"]["median"]
            lib = large["samples_per_s_library"]["median"]
            result["verdicts"][name] = (
                f"n={large['n']} (target >= {t:.0f}/s): {e2e:.0f}/s end to end ({'met' if e2e >= t else 'MISSED'}), "
                f"{lib:.0f}/s in augment() ({'met' if lib >= t else 'MISSED'}); start-up "
                f"{large['startup_s']['median']:.2f} s")
        result["verdicts"][f"{name} memory"] = (
            f"peak RSS {small['peak_rss_mb']['median']:.0f} MB at n={small['n']} vs "
            f"{large['peak_rss_mb']['median']:.0f} MB at n={large['n']} (x{growth:.2f}): "
            f"{'flat' if growth < 1.15 else 'GROWS'}")
    result["load_after"] = bc.loadavg()
    result["elapsed_s"] = round(time.time() - t0, 1)
    write_json(args.out, result)
    print("\n" + markdown(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
