#!/usr/bin/env python3
"""Evaluation speed: the seeds of an arm trained one by one against trained together (one stacked network).

Part 1, classifier throughput. For each case, the same ``N`` seeds of one arm (real data, class-balanced batches)
train for the same fixed number of epochs (no early stopping, so every mode does the same work) in each mode:

* ``one-by-one``: ``evaluate.group_size: 1``, float32 (what ``medgan evaluate`` did before);
* ``grouped``: all seeds as one stacked network (:mod:`medgan.classify.group`), float32;
* ``grouped-bf16``: the same under bfloat16 autocast (channels-last where ``--channels-last`` says so);
* ``one-by-one-bf16``: bf16 without grouping (is it the grouping or the precision?).

Each (case, mode) runs in its own subprocess, so its peak RSS is its own; the modes are interleaved over
``--rounds`` rounds (A B C D, then D C B A) and ratios to ``one-by-one`` are taken per round, reported as median
and min-max. Cases: BreastMNIST malignant 20% with the small CNN and with MONAI's ResNet-18 (2D, 28 px), and
AdrenalMNIST3D mass 20% with ResNet-18 (3D, 28^3).

Part 2, the whole default ``medgan evaluate`` on BreastMNIST malignant 20% (10 seeds, the default arms, the run's
GAN checkpoint given by ``--checkpoint``), one-by-one against the default (grouped), wall time and peak RSS.

    .venv/bin/python pipelines/bench_evaluate.py --out docs/results/bench_evaluate.json
    .venv/bin/python pipelines/bench_evaluate.py --quick --out /tmp/be.json        # a smoke run
    .venv/bin/python pipelines/bench_evaluate.py --report docs/results/bench_evaluate.json
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

#: name -> (dataset, scarce spec, classifier, epochs, steps per epoch (None: one pass over the real data), seeds
#: (None: --seeds)). 3D ResNet-18 is measured on 4 seeds x 4 steps: one step of 32 volumes of 28^3 is ~2 TFLOP,
#: a full epoch of one seed takes ~10 minutes on this CPU.
CASES = {
    "smallcnn-2d": ("breastmnist", "0=0.2", "smallcnn", 4, None, None),
    "resnet18-2d": ("breastmnist", "0=0.2", "resnet18", 1, None, None),
    "resnet18-3d": ("adrenalmnist3d", "1=0.2", "resnet18", 1, 4, 4),
}
#: name -> (group size: 0 = all seeds, amp)
MODES = {"one-by-one": (1, "off"), "grouped": (0, "off"), "grouped-bf16": (0, "bf16"), "one-by-one-bf16": (1, "bf16")}


def child(args: argparse.Namespace) -> int:
    """One measurement (run in a subprocess): train the seeds of one arm in one mode; print JSON."""
    import torch

    from medgan.classify.fit import Member, Protocol, fit_group
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    dataset, scarce, classifier, epochs, case_steps, case_seeds = CASES[args.case]
    group, amp = MODES[args.mode]
    if args.quick:
        epochs = 1
    torch.set_num_threads(args.threads)
    data = load_dataset(dataset, scarce=[scarce], download=False)
    td = prepare(data, 28)
    steps = 2 if args.quick else case_steps or -(-len(td.y["train"]) // 32)
    dims = td.data.spatial_dims
    cl = args.channels_last and (classifier == "smallcnn" or dims == 3) and amp == "bf16"
    protocol = Protocol(classifier, epochs, epochs + 1, 32, 1e-3, steps, "auroc", 0, amp, cl)
    seeds = list(range(case_seeds or args.seeds))
    members = [Member(s, td.x["train"], td.y["train"], balanced=True) for s in seeds]
    size = len(seeds) if group == 0 else group
    # the first optimiser built in a process imports torch._dynamo (~2 s here): a one-off that a whole evaluation
    # pays once, kept out of the timed part for every mode alike
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    t0 = time.perf_counter()
    results = []
    for i in range(0, len(members), size):
        results += fit_group(members[i : i + size], protocol, td.x["val"], td.y["val"], data.num_classes)
    wall = time.perf_counter() - t0
    print(json.dumps({"case": args.case, "mode": args.mode, "seeds": len(seeds), "group": size, "epochs": epochs,
                      "steps_per_epoch": steps, "channels_last": cl, "wall_s": wall, "runs_per_s": len(seeds) / wall,
                      "val_auroc": [r.val_auroc for r in results]}))
    return 0


def whole_evaluate(args: argparse.Namespace, env: dict[str, str]) -> list[dict[str, Any]]:
    """The default ``medgan evaluate`` on BreastMNIST 20%, one-by-one and grouped, each in a fresh folder."""
    import tempfile

    out = []
    for mode, extra in (("grouped (default)", []), ("one-by-one", ["--group-size", "1"])):
        with tempfile.TemporaryDirectory(prefix="medgan-bench-eval-") as tmp:
            cmd = [*bc.medgan_cli(), "evaluate", "--dataset", "breastmnist", "--scarce", "0=0.2", "--checkpoint",
                   str(args.checkpoint), "--out", str(Path(tmp) / "rep"), "--quiet", "--no-quality", "--no-privacy",
                   *extra]
            if args.quick:
                cmd += ["--seeds", "2", "--epochs", "1"]
            rss, wall, _ = bc.run_child(cmd, env=env, cwd=bc.ROOT)
            out.append({"mode": mode, "wall_s": wall, "peak_rss_mb": rss, "command": " ".join(cmd[2:])})
            print(f"[bench] whole evaluate, {mode}: {wall:.0f} s, peak {rss:.0f} MB", flush=True)
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        base = {r["round"]: r["runs_per_s"] for r in rs if r["mode"] == "one-by-one"}
        out[case] = {}
        for mode in dict.fromkeys(r["mode"] for r in rs):
            m = [r for r in rs if r["mode"] == mode]
            out[case][mode] = {
                "runs_per_s": bc.summarise([r["runs_per_s"] for r in m]),
                "ratio_to_one_by_one": bc.summarise([r["runs_per_s"] / base[r["round"]] for r in m
                                                     if r["round"] in base]),
                "peak_rss_mb": bc.summarise([r["child_peak_rss_mb"] for r in m]),
                "group": m[0]["group"], "channels_last": m[0]["channels_last"],
                "mean_val_auroc": sum(sum(r["val_auroc"]) / len(r["val_auroc"]) for r in m) / len(m),
            }
    return out


def report(result: dict[str, Any]) -> str:
    rows = [[case, mode, s["group"], bc.fmt_range(s["runs_per_s"], 3), bc.fmt_range(s["ratio_to_one_by_one"]),
             f"{s['peak_rss_mb']['median']:.0f}", f"{s['mean_val_auroc']:.3f}"]
            for case, modes in result["summary"].items() for mode, s in modes.items()]
    text = markdown_table(["case", "mode", "group", "runs/s", "÷ one-by-one", "peak RSS MB", "mean val AUROC"], rows)
    if result.get("whole"):
        text += "\n\n" + markdown_table(["whole default evaluate (BreastMNIST 20%, 10 seeds)", "wall s", "peak RSS MB"],
                                        [[w["mode"], f"{w['wall_s']:.0f}", f"{w['peak_rss_mb']:.0f}"]
                                         for w in result["whole"]])
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", default=None)
    ap.add_argument("--mode", default=None)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channels-last", action="store_true", help="bf16 modes of the small CNN and 3D: channels-last")
    ap.add_argument("--checkpoint", type=Path, default=None, help="GAN checkpoint for the whole-evaluate timing "
                    "(BreastMNIST malignant 20%%); omitted: part 2 is skipped")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "bench_evaluate.json")
    ap.add_argument("--report", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return 0
    quiet = bc.wait_for_quiet(args.max_load)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MEDGAN_DATA_DIR": str(bc.DATA_DIR)}
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    rows = []
    for rnd in range(args.rounds):
        for case in cases:
            for mode in (modes if rnd % 2 == 0 else modes[::-1]):
                cmd = [bc.python(), __file__, "--child", "--case", case, "--mode", mode, "--seeds", str(args.seeds),
                       "--threads", str(args.threads)] + (["--quick"] if args.quick else []) \
                    + (["--channels-last"] if args.channels_last else [])
                r = bc.run_json_subprocess(cmd, env=env, cwd=bc.ROOT)
                r["round"] = rnd
                rows.append(r)
                print(f"[bench] round {rnd} {case} {mode}: {r['runs_per_s']:.3f} runs/s, group {r['group']}, "
                      f"peak {r['child_peak_rss_mb']:.0f} MB", flush=True)
    result = {"command": " ".join(sys.argv), "machine": bc.machine_info(), "load": quiet, "rows": rows,
              "summary": summarise(rows)}
    if args.checkpoint:
        result["whole"] = whole_evaluate(args, env)
    write_json(args.out, result)
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
