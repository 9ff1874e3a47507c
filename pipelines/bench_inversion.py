#!/usr/bin/env python3
"""Latent inversion speed and reconstruction error: 1,000 real 28x28 images (target: at most 60 s on 2 cores).

Each arm runs in its own child process (``child`` sub-command: load the checkpoint, optionally train the
warm-start encoder, invert, report), so its wall time, CPU time and peak memory are its own:

* ``cold``: the default :class:`~medgan.synthesis.inversion.InversionSettings` on first use of a checkpoint: the
  encoder is trained (and cached in the benchmark's own, initially empty, cache folder), then the images are
  inverted; what ``medgan augment --from-real`` costs the first time;
* ``warm`` (run after ``cold``): the same with the encoder cached (every later use);
* ``no-encoder``: the same number of Adam steps from seeded noise (what the encoder buys);
* ``no-encoder-500``: 500 steps from noise at the calibration's settings (the issue's reference: 26.4 dB in 95 s).

Images: the real training and validation images of the checkpoint's data (never test), cycled up to ``--n``;
2D (``--run``, e.g. BreastMNIST) and 3D (``--run3d``, e.g. AdrenalMNIST3D, ``--n3d`` volumes). Reported per arm:
wall seconds (``seconds``: encoder training + inversion; ``invert_seconds``: the inversion alone), process CPU
seconds, the 1-minute load average before and after, the mean squared error and PSNR of the reconstructions
(model range [-1, 1], peak-to-peak 2). A shared machine makes wall times longer: CPU seconds over the threads
used bound what an idle machine needs.

Usage::

    .venv/bin/python pipelines/bench_inversion.py --run /work/runs/breast50_default --dataset breastmnist \\
        --scarce 0=0.5 --run3d /work/runs/adrenal --dataset3d adrenalmnist3d     # -> docs/results/bench_inversion.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

ARMS = {
    "cold": {"encoder": True},
    "warm": {"encoder": True},
    "no-encoder": {"encoder": False},
    "no-encoder-500": {"encoder": False, "steps": 500, "lr": 0.05},
}


def child(args: argparse.Namespace) -> None:
    """One arm, in this process: prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from dataclasses import asdict, replace

    from medgan.config import DataConfig
    from medgan.synthesis.inversion import InversionSettings, Inverter
    from medgan.synthesis.near_copies import checkpoint_training_data
    from medgan.synthesis.sampler import Sampler

    arm = ARMS[args.arm]
    sampler = Sampler.from_checkpoint(args.run)
    data = DataConfig(dataset=args.dataset, scarce=args.scarce, split_seed=args.split_seed, download=False)
    td = checkpoint_training_data({"config": sampler.config, "data": sampler.meta}, data, "bench")
    x = torch.cat([td.x["train"], td.x["val"]])
    y = torch.cat([td.y["train"], td.y["val"]])
    reps = -(-args.n // len(x))
    x, y = x.repeat(reps, *([1] * (x.dim() - 1)))[: args.n], y.repeat(reps)[: args.n]
    settings = InversionSettings()
    settings = replace(settings, encoder=arm["encoder"], **{k: arm[k] for k in ("steps", "lr") if k in arm})
    cache = args.cache
    load0 = bc.loadavg()
    c0, t0 = time.process_time(), time.perf_counter()
    inv = Inverter.from_sampler(sampler, settings, cache_dir=cache)
    t_enc = time.perf_counter() - t0
    r = inv.invert(x, y)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"arm": args.arm, "n": int(len(x)), "unique_images": int(len(td.x["train"]) + len(td.x["val"])),
                      "shape": list(x.shape[1:]), "threads": args.threads, "seconds": round(wall, 2),
                      "encoder_seconds": round(t_enc, 2), "invert_seconds": round(r.seconds, 2),
                      "cpu_seconds": round(cpu, 2), "load_before": load0, "load_after": bc.loadavg(),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "reconstruction": r.summary(), "settings": asdict(settings)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("child", allow_abbrev=False)
    for p in (ap, c):
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--split-seed", type=int, default=0)
    c.add_argument("--arm", choices=list(ARMS), required=True)
    c.add_argument("--run", required=True)
    c.add_argument("--dataset", required=True)
    c.add_argument("--scarce", action="append", default=[])
    c.add_argument("--n", type=int, default=1000)
    c.add_argument("--cache", default=None)
    ap.add_argument("--run", help="2D run folder or checkpoint")
    ap.add_argument("--dataset", default="breastmnist")
    ap.add_argument("--scarce", action="append", default=[])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--run3d", help="3D run folder or checkpoint")
    ap.add_argument("--dataset3d", default="adrenalmnist3d")
    ap.add_argument("--scarce3d", action="append", default=[])
    ap.add_argument("--n3d", type=int, default=100)
    ap.add_argument("--arms", default="cold,warm,no-encoder,no-encoder-500")
    ap.add_argument("--arms3d", default="cold,warm,no-encoder")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait (at most 10 min) for a quieter machine")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "bench_inversion.json")
    args = ap.parse_args()
    if args.cmd == "child":
        child(args)
        return
    wait = bc.wait_for_quiet(args.max_load)
    results = []
    cache = tempfile.mkdtemp(prefix="medgan-bench-cache-")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for dims, run, ds, scarce, n, arms in ((2, args.run, args.dataset, args.scarce, args.n, args.arms),
                                           (3, args.run3d, args.dataset3d, args.scarce3d, args.n3d, args.arms3d)):
        if not run:
            continue
        for arm in arms.split(","):
            cmd = [sys.executable, __file__, "child", "--arm", arm, "--run", run, "--dataset", ds, "--n", n,
                   "--threads", args.threads, "--split-seed", args.split_seed, "--cache", cache,
                   *[a for s in scarce for a in ("--scarce", s)]]
            r = bc.run_json_subprocess(cmd, env=env)
            r["dims"] = dims
            results.append(r)
            print(f"{dims}D {arm}: {r['n']} images in {r['seconds']} s (encoder {r['encoder_seconds']} s, "
                  f"CPU {r['cpu_seconds']} s, load {r['load_before']:.1f}), PSNR {r['reconstruction']['psnr_db']:.2f} dB",
                  flush=True)
    rows = [[f"{r['dims']}D", r["arm"], r["n"], r["settings"]["steps"], r["seconds"], r["encoder_seconds"],
             r["invert_seconds"], r["cpu_seconds"], f"{r['load_before']:.1f}", f"{r['reconstruction']['mse']:.4f}",
             f"{r['reconstruction']['psnr_db']:.2f}"] for r in results]
    table = markdown_table(["dims", "arm", "images", "Adam steps", "wall s", "encoder s", "invert s", "CPU s",
                            "load", "MSE", "PSNR dB"], rows)
    print(table)
    write_json(args.out, {"command": " ".join(["pipelines/bench_inversion.py", *sys.argv[1:]]), "note": args.note,
                          "wait": wait, "machine": bc.machine_info(), "results": results, "table": table,
                          "target": "1,000 real 28x28 images in at most 60 s on 2 cores"})


if __name__ == "__main__":
    main()
