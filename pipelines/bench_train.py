#!/usr/bin/env python3
"""Training throughput: medgan's engine against the textbook DCGAN loop, on this machine.

For each case (2D 28x28 gray BreastMNIST, 2D 64x64 RGB synthetic tensors, 3D 28^3 AdrenalMNIST3D) it runs, in
ONE invocation and alternating the order (A B C ... then ... C B A) over ``--repeats`` rounds:

* ``reference``      ``../shared/bench/reference_dcgan.py`` (DataLoader, BCE, Adam, ``.item()`` every step), fp32;
* ``matched/fp32``   medgan's :class:`~medgan.training.trainer.Trainer` with the model width chosen so that FLOPs
                     per image are within 10% of the reference's (no spectral norm, no minibatch-std, d_steps=1,
                     DiffAugment off; EMA stays on, as in every medgan run);
* ``matched/bf16``   the same with bf16 autocast;
* ``default/fp32``   medgan's default model and training config (spectral norm, minibatch-std, DiffAugment);
* with ``--nchw``: ``matched/fp32-nchw`` and ``matched/bf16-nchw``, the matched arms in the NCHW layout (medgan's
  CPU default is channels-last), to show what the layout gains.

Every arm is a separate subprocess (so its peak RSS is its own) on the same data, image size, batch size and
thread count. FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one training step, as the
reference does. The same run measures the machine's fp32 and bf16 peak (best of a large matmul and a large
convolution forward+backward, counted the same way). Then a scaling table: seconds/step and peak RSS of medgan
(default config) against image size (28, 64, 128 in 2D; 28, 64 in 3D) and batch size.

Usage::

    .venv/bin/python pipelines/bench_train.py                 # full run -> docs/results/bench_train.json
    .venv/bin/python pipelines/bench_train.py --quick --out /tmp/bench.json   # a smoke run (minutes)
    .venv/bin/python pipelines/bench_train.py --report docs/results/bench_train.json   # tables of a result

Results are recorded only when the machine is quiet (1-min load < --max-load; waits up to --wait-s); the load
seen before every measurement is stored in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

#: Benchmark cases: data source, geometry and the per-case defaults (batch, timed steps, warm-up steps).
CASES: dict[str, dict[str, Any]] = {
    "2d28": {"label": "2D 28x28 gray (BreastMNIST)", "dataset": "breastmnist", "dims": 2, "size": 28,
             "channels": 1, "batch": 128, "steps": 30, "warmup": 5},
    "2d64": {"label": "2D 64x64 RGB (synthetic)", "dataset": "synthetic", "dims": 2, "size": 64, "channels": 3,
             "n": 512, "batch": 32, "steps": 6, "warmup": 2},
    "3d28": {"label": "3D 28^3 (AdrenalMNIST3D)", "dataset": "adrenalmnist3d", "dims": 3, "size": 28,
             "channels": 1, "batch": 16, "steps": 3, "warmup": 1},
}
QUICK = {"2d28": {"batch": 32, "steps": 3, "warmup": 1}, "2d64": {"batch": 8, "steps": 2, "warmup": 1, "n": 32},
         "3d28": {"batch": 4, "steps": 1, "warmup": 1}}

#: Scaling table: (dims, size) x batch sizes, medgan default config on synthetic tensors.
SCALING = {(2, 28): [32, 128], (2, 64): [32, 128], (2, 128): [16, 64], (3, 28): [4, 16], (3, 64): [2, 4]}
SCALING_QUICK = {(2, 28): [8], (3, 28): [2]}

#: The matched arms: medgan with the reference's design (label embedding concatenated to z, no extra
#: regularisers), so that only the engine differs.
MATCHED = {"model.spectral_norm": False, "model.minibatch_std": False, "train.d_steps": 1,
           "train.diffaugment.enabled": False, "train.r1_gamma": 0.0, "train.feature_matching": 0.0,
           "model.conditioning": "concat", "train.lecam": 0.0}


# ------------------------------------------------------------------------------------ data and trainer


def synthetic_data(dims: int, size: int, channels: int, n: int, classes: int = 2, seed: int = 0):
    """A :class:`~medgan.data.sources.RealData` of uniform-noise uint8 images (like the reference's
    ``--synthetic``: uniform values in [-1, 1] after scaling) with random labels."""
    import numpy as np

    from medgan.data.dataset import Intensity, RealData, Split

    rng = np.random.default_rng(seed)

    def split(m: int) -> Split:
        imgs = rng.integers(0, 256, size=(m, channels) + (size,) * dims, dtype=np.uint8)
        return Split(imgs, rng.integers(0, classes, size=m).astype(np.int64))

    return RealData(name="synthetic", source="bench", class_names=[f"class{i}" for i in range(classes)],
                    spatial_dims=dims, channels=channels,
                    splits={"train": split(n), "val": split(4), "test": split(4)},
                    intensity=Intensity(0.0, 255.0, "uint8"))


def case_tensors(case: dict[str, Any]):
    """The prepared :class:`~medgan.data.preprocess.TensorData` of a case."""
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    if case["dataset"] == "synthetic":
        data = synthetic_data(case["dims"], case["size"], case["channels"], case.get("n", 512))
    else:
        data = load_dataset(case["dataset"], data_dir=str(bc.DATA_DIR), download=False)
    return prepare(data, case["size"])


def make_config(variant: str, base_channels: int | None, batch: int, amp: str, threads: int,
                channels_last: bool | str = "auto"):
    """The medgan config of an arm: ``matched`` (FLOP-matched to the reference) or ``default``."""
    from medgan.config import load_config

    over: dict[str, Any] = {"train.batch_size": batch, "train.amp": amp, "train.threads": threads,
                            "train.progress": False, "train.device": "cpu", "train.channels_last": channels_last}
    if variant == "matched":
        over.update(MATCHED)
        over["model.base_channels"] = base_channels
    elif base_channels is not None:
        over["model.base_channels"] = base_channels
    return load_config(None, over)


def step_flops_per_image(trainer) -> float:
    """FLOPs of one training step per image (FlopCounterMode, forward + backward, as the reference counts)."""
    b = trainer.cfg.train.batch_size
    return bc.counted_flops(trainer.train_step) / b


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One medgan arm in this process: build the Trainer, count FLOPs on one step, warm up, time ``steps``."""
    import torch

    from medgan.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    case = json.loads(args.case_json)
    tdata = case_tensors(case)
    cfg = make_config(args.variant, args.base_channels, case["batch"], args.amp, args.threads,
                      False if args.nchw else "auto")
    trainer = Trainer(cfg, tdata)
    flops = step_flops_per_image(trainer)
    if case["warmup"]:
        trainer.run(case["warmup"])
    stats = trainer.run(case["steps"])
    ips = stats["images_per_s"]
    return {
        "impl": "medgan", "variant": args.variant, "amp": args.amp,
        "channels_last": trainer.memory_format != torch.contiguous_format,
        "images_per_s": ips, "gflops_per_s": flops * ips / 1e9, "flops_per_image": flops,
        "seconds_per_step": stats["seconds"] / case["steps"], "peak_rss_mb": bc.self_peak_rss_mb(),
        "base_channels": cfg.model.base_channels, "batch": case["batch"], "steps": case["steps"],
        "threads": torch.get_num_threads(), "loss_d": stats.get("loss_d"), "loss_g": stats.get("loss_g"),
    }


def matched_width(case: dict[str, Any], target: float, threads: int, fixed: int | None = None) -> tuple[int, float]:
    """The medgan ``base_channels`` (a multiple of 4) whose FLOPs per image are closest to ``target``, or ``fixed``
    (``--width``, e.g. the reference's own 64) with its FLOPs per image.

    FLOPs grow monotonically with the width, so a bisection over widths finds the bracket; the closer of the two
    neighbours wins. Counted on a small batch (FLOPs per image do not depend on the batch here).
    """
    import torch

    from medgan.training.trainer import Trainer

    torch.set_num_threads(threads)
    small = {**case, "batch": 4, "n": 16}
    tdata = case_tensors(small)
    cache: dict[int, float] = {}

    def flops(w: int) -> float:
        if w not in cache:
            cfg = make_config("matched", w, 4, "off", threads)
            cache[w] = step_flops_per_image(Trainer(cfg, tdata))
        return cache[w]

    if fixed:
        return fixed, flops(fixed)
    lo, hi = 1, 64  # in units of 4 channels: widths 4 .. 256
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if flops(4 * mid) < target:
            lo = mid
        else:
            hi = mid
    best = min((4 * lo, 4 * hi), key=lambda w: abs(flops(w) - target))
    return best, flops(best)


# ------------------------------------------------------------------------------------ orchestration


def reference_cmd(case: dict[str, Any], threads: int) -> list[str]:
    """The reference loop's command line for a case (fp32; it has no autocast option)."""
    cmd = [bc.python(), str(bc.REFERENCE_DCGAN), "--batch", case["batch"], "--steps", case["steps"],
           "--warmup", case["warmup"], "--threads", threads, "--device", "cpu", "--json", "{json}"]
    if case["dataset"] == "synthetic":
        cmd += ["--synthetic", case.get("n", 512), "--size", case["size"], "--channels", case["channels"],
                "--dims", case["dims"], "--classes", 2]
    else:
        cmd += ["--npz", str(bc.DATA_DIR / f"{case['dataset']}.npz")]
    return cmd


def medgan_cmd(case: dict[str, Any], variant: str, amp: str, base_channels: int | None, threads: int,
               nchw: bool = False) -> list[str]:
    cmd = [bc.python(), str(Path(__file__).resolve()), "--worker", "--case-json", json.dumps(case),
           "--variant", variant, "--amp", amp, "--threads", threads, "--json", "{json}"]
    if base_channels is not None:
        cmd += ["--base-channels", base_channels]
    if nchw:
        cmd += ["--nchw"]
    return cmd


def run_arm(cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    load = bc.loadavg()
    res = bc.run_json_subprocess(cmd, env=env, timeout=timeout, cwd=bc.ROOT)
    res["load_before"] = load
    return res


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """Median and min–max of the per-round ratios ``num[i] / den[i]`` (rounds were interleaved)."""
    return bc.summarise([a / b for a, b in zip(num, den, strict=False) if b > 0])


def bench_case(name: str, case: dict[str, Any], args, env, peaks, log) -> dict[str, Any]:
    """Run one case: width matching, then ``repeats`` interleaved rounds of every arm."""
    log(f"\n== {name}: {case['label']}  batch {case['batch']}, {case['steps']} timed steps, threads {args.threads}")
    ref_probe = run_arm(reference_cmd({**case, "steps": 1, "warmup": 0}, args.threads), env, args.timeout)
    width, mflops = matched_width(case, ref_probe["flops_per_image"], args.threads, args.width)
    log(f"   reference FLOPs/image {ref_probe['flops_per_image'] / 1e6:.1f} M; medgan matched base_channels={width}: "
        f"{mflops / 1e6:.1f} M ({mflops / ref_probe['flops_per_image'] - 1:+.1%})")
    arms = {
        "reference": reference_cmd(case, args.threads),
        "matched/fp32": medgan_cmd(case, "matched", "off", width, args.threads),
        "matched/bf16": medgan_cmd(case, "matched", "bf16", width, args.threads),
        "default/fp32": medgan_cmd(case, "default", "off", None, args.threads),
    }
    if args.nchw:  # medgan's default on CPU is channels-last; these arms show what it gains
        arms["matched/fp32-nchw"] = medgan_cmd(case, "matched", "off", width, args.threads, nchw=True)
        arms["matched/bf16-nchw"] = medgan_cmd(case, "matched", "bf16", width, args.threads, nchw=True)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in arms}
    order = list(arms)
    for r in range(args.repeats):
        seq = order if r % 2 == 0 else order[::-1]
        for arm in seq:
            res = run_arm(arms[arm], env, args.timeout)
            runs[arm].append(res)
            log(f"   round {r + 1} {arm:16s} {res['images_per_s']:8.1f} img/s  {res['gflops_per_s']:7.1f} GFLOP/s  "
                f"rss {res['child_peak_rss_mb']:.0f} MB  (load {res['load_before']:.2f})")
    ref = runs["reference"]
    summary: dict[str, Any] = {}
    for arm, rs in runs.items():
        dtype = "bf16" if "bf16" in arm else "fp32"
        peak = peaks[dtype]["peak_gflops"]
        s = {
            "images_per_s": bc.summarise([x["images_per_s"] for x in rs]),
            "gflops_per_s": bc.summarise([x["gflops_per_s"] for x in rs]),
            "flops_per_image": rs[0]["flops_per_image"],
            "peak_rss_mb": bc.summarise([x["child_peak_rss_mb"] for x in rs]),
            "fraction_of_peak": bc.summarise([x["gflops_per_s"] / peak for x in rs]),
            "peak_used": dtype,
        }
        if arm != "reference":
            s["base_channels"] = rs[0]["base_channels"]
            s["ratio_images_per_s"] = ratio_stats([x["images_per_s"] for x in rs], [x["images_per_s"] for x in ref])
            s["ratio_gflops_per_s"] = ratio_stats([x["gflops_per_s"] for x in rs], [x["gflops_per_s"] for x in ref])
            s["flops_ratio"] = rs[0]["flops_per_image"] / ref[0]["flops_per_image"]
        summary[arm] = s
    return {"case": case, "matched_base_channels": width, "summary": summary, "runs": runs}


def bench_scaling(args, env, log) -> list[dict[str, Any]]:
    """Seconds/step and peak RSS of medgan (default config, fp32) against image size and batch size."""
    grid = SCALING_QUICK if args.quick else SCALING
    rows = []
    log("\n== scaling (medgan default config, fp32, synthetic tensors)")
    for (dims, size), batches in grid.items():
        for b in batches:
            steps = 1 if args.quick else (2 if dims == 3 else 5)
            case = {"label": f"{dims}D {size}", "dataset": "synthetic", "dims": dims, "size": size, "channels": 1,
                    "n": max(2 * b, 16), "batch": b, "steps": steps, "warmup": 1}
            try:
                res = run_arm(medgan_cmd(case, "default", "off", None, args.threads), env, args.timeout)
            except RuntimeError as e:  # e.g. out of memory at the largest settings: record, keep going
                rows.append({"dims": dims, "size": size, "batch": b, "error": str(e).splitlines()[0]})
                log(f"   {dims}D {size:4d} batch {b:4d}: FAILED {str(e).splitlines()[0]}")
                continue
            row = {"dims": dims, "size": size, "batch": b, "seconds_per_step": res["seconds_per_step"],
                   "images_per_s": res["images_per_s"], "gflops_per_s": res["gflops_per_s"],
                   "flops_per_image": res["flops_per_image"], "peak_rss_mb": res["child_peak_rss_mb"],
                   "load_before": res["load_before"]}
            rows.append(row)
            log(f"   {dims}D {size:4d} batch {b:4d}: {row['seconds_per_step']:.3f} s/step  "
                f"{row['images_per_s']:.1f} img/s  rss {row['peak_rss_mb']:.0f} MB")
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The result tables in Markdown (also pasted into docs/results.md)."""
    out = []
    p = result["peak"]
    out.append(markdown_table(
        ["dtype", "matmul GFLOP/s", "conv fwd+bwd GFLOP/s", "peak GFLOP/s"],
        [[k, v["matmul"]["gflops_per_s"], v["conv_fwd_bwd"]["gflops_per_s"], v["peak_gflops"]] for k, v in p.items()]))
    rows = []
    for name, c in result["cases"].items():
        for arm, s in c["summary"].items():
            rows.append([
                name, arm, s.get("base_channels", "ngf=ndf=64"), f"{s['flops_per_image'] / 1e6:.0f}",
                bc.fmt_range(s["images_per_s"], 1), bc.fmt_range(s["gflops_per_s"], 1),
                f"{100 * s['fraction_of_peak']['median']:.0f}% ({s['peak_used']})",
                f"{s['peak_rss_mb']['median']:.0f}",
                bc.fmt_range(s["ratio_images_per_s"]) if "ratio_images_per_s" in s else "1",
                bc.fmt_range(s["ratio_gflops_per_s"]) if "ratio_gflops_per_s" in s else "1",
            ])
    out.append(markdown_table(
        ["case", "arm", "width", "MFLOP/img", "images/s", "GFLOP/s", "of peak", "peak RSS MB",
         "images/s ÷ ref", "GFLOP/s ÷ ref"], rows))
    if result.get("scaling"):
        out.append(markdown_table(
            ["dims", "size", "batch", "s/step", "images/s", "GFLOP/s", "peak RSS MB"],
            [[r["dims"], r["size"], r["batch"], f"{r['seconds_per_step']:.3f}", f"{r['images_per_s']:.1f}",
              f"{r['gflops_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}"] if "error" not in r else
             [r["dims"], r["size"], r["batch"], "failed", r["error"], "", ""] for r in result["scaling"]]))
    return "\n\n".join(out)


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """A small PNG: images/s ratio to the reference per case and arm (bars = median, whiskers = min–max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgan.viz import save_figure

    cases = list(result["cases"])
    arms = [a for a in next(iter(result["cases"].values()))["summary"] if a != "reference"] if cases else []
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        med, lo, hi = [], [], []
        for c in cases:
            r = result["cases"][c]["summary"].get(arm, {}).get("ratio_images_per_s")
            med.append(r["median"] if r else 0.0)
            lo.append(r["median"] - r["min"] if r else 0.0)
            hi.append(r["max"] - r["median"] if r else 0.0)
        xs = [k + (i - (len(arms) - 1) / 2) * width for k in range(len(cases))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=arm)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(cases)), cases)
    ax.set_ylabel("images/s ÷ reference")
    ax.set_title("medgan training throughput vs the textbook loop (CPU)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds per case")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: per case)")
    p.add_argument("--batch", type=int, default=None, help="batch size for every case (default: per case)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--quick", action="store_true", help="tiny settings (smoke test; not for recording)")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling table")
    p.add_argument("--width", type=int, help="medgan width of the matched arms (default: the FLOP-matched width)")
    p.add_argument("--nchw", action="store_true",
                   help="add matched arms in the NCHW layout (medgan's CPU default is channels-last)")
    p.add_argument("--max-load", type=float, default=1.0, help="record only when the 1-min load is below this")
    p.add_argument("--wait-s", type=float, default=600.0, help="how long to wait for a quiet machine")
    p.add_argument("--timeout", type=float, default=1800.0, help="per-subprocess timeout (s)")
    p.add_argument("--out", default=str(bc.RESULTS_DIR / "bench_train.json"))
    p.add_argument("--report", metavar="JSON", help="print the tables (and redraw the PNG) of an earlier result")
    # internal: one medgan arm
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case-json", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="matched", help=argparse.SUPPRESS)
    p.add_argument("--amp", default="off", help=argparse.SUPPRESS)
    p.add_argument("--base-channels", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        res = worker(args)
        Path(args.json).write_text(json.dumps(res))
        return 0
    if args.report:
        result = json.loads(Path(args.report).read_text())
        print(markdown(result))
        print(f"plot: {plot(result, Path(args.report).with_suffix('.png'))}")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if not bc.REFERENCE_DCGAN.is_file():
        raise SystemExit(f"reference loop not found at {bc.REFERENCE_DCGAN}")
    env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR), "OMP_NUM_THREADS": str(args.threads)}
    quiet = bc.wait_for_quiet(args.max_load, 0 if args.quick else args.wait_s)
    t0 = time.time()
    peaks = {d: bc.measure_peak(d, quick=args.quick) for d in ("fp32", "bf16")}
    print(f"peak: fp32 {peaks['fp32']['peak_gflops']} GFLOP/s, bf16 {peaks['bf16']['peak_gflops']} GFLOP/s")
    result: dict[str, Any] = {
        "benchmark": "bench_train", "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": bc.machine_info(), "threads": args.threads, "quick": args.quick, "quiet": quiet,
        "peak": peaks, "cases": {}, "scaling": [],
    }
    for name in names:
        case = {**CASES[name], **(QUICK[name] if args.quick else {})}
        if args.steps:
            case["steps"] = args.steps
        if args.batch:
            case["batch"] = args.batch
        result["cases"][name] = bench_case(name, case, args, env, peaks, print)
    if not args.no_scaling:
        result["scaling"] = bench_scaling(args, env, print)
    result["load_after"] = bc.loadavg()
    result["elapsed_s"] = round(time.time() - t0, 1)
    write_json(args.out, result)
    print("\n" + markdown(result))
    print(f"\nwrote {args.out} and {plot(result, Path(args.out).with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
