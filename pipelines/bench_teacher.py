#!/usr/bin/env python3
"""The teacher's quality and cost: recipe variants measured on validation, and its cost against a default evaluate.

Part 1, ``trajectories`` then ``schedules``: the teacher's members (seeds ``0..G-1``, one stacked group, the
teacher's recipe: classical augmentation + class-balanced batches) are trained for the longest schedule without
stopping, in one process per setting and precision, and every member's class probabilities on the real
**validation** images are kept after every epoch (the test split is never loaded). A member's training does not
depend on when it stops (members of a stack are independent; a stopped member is only no longer scored), so any
schedule (``epochs``, ``min_epochs``, ``patience``: weights kept at the best validation AUROC, as
:mod:`medgan.classify.fit`) and any number of members ``m <= G`` (the first ``m`` seeds) can be replayed from these
probabilities exactly, without refitting. For each, the ensemble's validation numbers: AUROC, balanced accuracy,
and per class the sensitivity at its operating point (the threshold on ``p(c)`` at ``teacher.target_specificity``
chosen on validation) and the one-vs-rest AUROC. These select weights and thresholds on the same images, so they
favour a schedule with more chances to fit validation; the **held-out** columns are the fair check: the
validation split halved (stratified, fixed seed), weights, stopping and thresholds chosen on one half and scored
on the other, both ways, averaged. The cost of a schedule: the epochs its group runs (until every member stopped)
times the measured CPU seconds per epoch of ``m`` members.

Part 2, ``fit``: the teacher actually fitted with named settings (:data:`VARIANTS`), each in its own process,
interleaved over ``--rounds``: wall and CPU seconds and its validation numbers (``teacher.json``).

Part 3, ``ratio``: one default ``medgan evaluate`` of BreastMNIST malignant 20% (10 seeds, the default arms,
quality and memorisation checks) from a GAN checkpoint copied away from its run folder, so that the evaluation
fits its own teacher: the teacher's fit time (``OUT/teacher/teacher.json``) against the whole evaluation's, in
the same process under the same load. The issue's target: the teacher at most 20% of a default evaluate.

    .venv/bin/python pipelines/bench_teacher.py trajectories --setting breast20 --setting breast50 --amp bf16,off
    .venv/bin/python pipelines/bench_teacher.py trajectories --setting pneumonia10 --amp bf16 \\
        --out runs/bench_teacher/trajectories_pneumonia10.json
    .venv/bin/python pipelines/bench_teacher.py schedules runs/bench_teacher/trajectories.json \\
        runs/bench_teacher/trajectories_pneumonia10.json          # -> docs/results/bench_teacher_schedules.json
    .venv/bin/python pipelines/bench_teacher.py fit --setting breast20 --variants before,default --rounds 2 --threads 1 \\
        --out docs/results/bench_teacher_fit.json
    .venv/bin/python pipelines/bench_teacher.py ratio --checkpoint RUN/checkpoints/last.pt \\
        --out docs/results/bench_teacher_ratio.json
    .venv/bin/python pipelines/bench_teacher.py report docs/results/bench_teacher_fit.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

#: name -> (dataset, scarcity spec)
SETTINGS = {
    "breast20": ("breastmnist", "0=0.2"),
    "breast50": ("breastmnist", "0=0.5"),
    "pneumonia10": ("pneumoniamnist", "0=0.1"),
    "phantom2d": ("phantom2d", None),  # the smoke test's
}
#: name -> teacher settings (explicit, so that a later change of the defaults does not change what a name means;
#: ``default`` is whatever this medgan's defaults are)
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"members": 5, "epochs": 80, "min_epochs": 40, "patience": 20, "amp": "off"},
    "before-bf16": {"members": 5, "epochs": 80, "min_epochs": 40, "patience": 20, "amp": "bf16"},
    "default": {},
    "tiny": {"members": 2, "epochs": 3, "min_epochs": 0},
}
#: the schedules replayed by ``schedules`` (epochs, min_epochs, patience) and the member counts
SCHEDULES = [(80, 40, 20), (60, 30, 15), (60, 20, 10), (50, 25, 10), (40, 20, 10), (40, 15, 8), (30, 15, 8),
             (30, 10, 5), (20, 10, 5)]
MEMBERS = (1, 2, 3, 4, 5)
HOLDOUT_SEED = 20240613
TARGET_SPECIFICITY = 0.8


def _load(setting: str):
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    dataset, scarce = SETTINGS[setting]
    data = load_dataset(dataset, scarce=[scarce] if scarce else [], download=False)
    return prepare(data, 28)


# ------------------------------------------------------------------------------------------- part 1: trajectories

def trajectory_child(args: argparse.Namespace) -> int:
    """Train ``--members`` teacher members for ``--epochs`` epochs without stopping; write every epoch's validation
    probabilities of every member (``--json``)."""
    import numpy as np
    import torch

    from medgan.classify import fit
    from medgan.classify.augment import classical_augment
    from medgan.config import TeacherConfig

    torch.set_num_threads(args.threads)
    td = _load(args.setting)
    tx, ty, vx, vy = td.x["train"], td.y["train"], td.x["val"], td.y["val"]
    s = TeacherConfig()
    steps = -(-len(ty) // s.batch_size)
    protocol = fit.Protocol("smallcnn", args.epochs, args.epochs + 1, s.batch_size, s.lr, steps, s.select,
                            args.epochs, args.amp, True)
    members = [fit.Member(k, tx, ty, balanced=True,
                          batch_transform=classical_augment(s.classical, tx.ndim - 2,
                                                            torch.Generator().manual_seed(k + 7919)))
               for k in range(args.members)]  # exactly the teacher's members (medgan.classify.teacher.fit_teacher)
    probs, cpu = [], []
    real = fit._predict_group
    c0 = [time.process_time()]

    def record(net, x, g, device, batch_size=512):
        cpu.append(time.process_time() - c0[0])  # the epoch's training, before its validation pass
        p = real(net, x, g, device, batch_size)
        probs.append(p.numpy().astype(np.float32))
        c0[0] = time.process_time()
        return p

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # torch's one-off optimiser import, untimed
    t0, c_all = time.perf_counter(), time.process_time()
    fit._predict_group = record  # the benchmark's recorder: every epoch's validation probabilities
    try:
        fit.fit_group(members, protocol, vx, vy, int(td.data.num_classes))
    finally:
        fit._predict_group = real
    out = {"setting": args.setting, "amp": args.amp, "members": args.members, "epochs": args.epochs,
           "threads": args.threads, "steps_per_epoch": steps, "n_train": int(len(ty)),
           "class_names": list(td.data.class_names), "val_y": vy.tolist(),
           "wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c_all, 2),
           "cpu_per_epoch_s": [round(c, 3) for c in cpu],
           "val_prob": np.stack(probs).round(6).tolist()}  # (epochs, N, G, K)
    Path(args.json).write_text(json.dumps(out))
    return 0


def trajectories(args: argparse.Namespace) -> int:
    env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR)}
    runs = []
    for setting in args.setting:
        for amp in args.amp.split(","):
            cmd = [bc.python(), __file__, "trajectory-child", "--setting", setting, "--amp", amp, "--members",
                   str(args.members), "--epochs", str(args.epochs), "--threads", str(args.threads), "--json", "{json}"]
            load = bc.loadavg()
            r = bc.run_json_subprocess(cmd, env=env, cwd=bc.ROOT)
            r.update(load_before=load, load_after=bc.loadavg())
            runs.append(r)
            print(f"{setting} {amp}: {args.members} members x {args.epochs} epochs, cpu {r['cpu_s']:.0f} s, wall "
                  f"{r['wall_s']:.0f} s (load {load:.1f} -> {r['load_after']:.1f})", flush=True)
    result = {"kind": "trajectories", "command": " ".join(sys.argv), "machine": bc.machine_info(), "runs": runs}
    write_json(args.out, result)
    print(f"-> {args.out}")
    return 0


def _halves(y, seed: int = HOLDOUT_SEED):
    """Two stratified halves of the indices of ``y`` (fixed seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2 :])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def _auroc(prob, y) -> float:
    from sklearn.metrics import roc_auc_score

    k = prob.shape[1]
    if k == 2:
        return float(roc_auc_score(y, prob[:, 1]))
    return float(roc_auc_score(y, prob / prob.sum(1, keepdims=True), multi_class="ovr", average="macro",
                               labels=list(range(k))))


def _select(aurocs: list[float], epochs: int, min_epochs: int, patience: int) -> tuple[int, int]:
    """The epoch (1-based) whose weights a member keeps under a schedule (best validation AUROC, ties: the earlier;
    as medgan.classify.fit) and the epoch it stops at; ``aurocs``: the member's validation AUROC after each epoch."""
    best, best_epoch, since = None, 0, 0
    for e in range(1, epochs + 1):
        a = aurocs[e - 1]
        if best is None or a > best + 1e-12:
            best, best_epoch, since = a, e, 0
        else:
            since += 1
            if since >= patience and e >= min(min_epochs, epochs):
                return best_epoch, e
    return best_epoch, epochs


def _measure(prob, y, fit_idx, score_idx) -> dict[str, Any]:
    """Operating points chosen on ``fit_idx``; AUROC, balanced accuracy and per-class sensitivity/specificity on
    ``score_idx`` (the same indices: the teacher's own validation numbers)."""
    import numpy as np

    from medgan.classify.thresholds import threshold_at_specificity

    k = prob.shape[1]
    ps, ys = prob[score_idx], y[score_idx]
    sens, spec = [], []
    for c in range(k):
        t = threshold_at_specificity(y[fit_idx] == c, prob[fit_idx, c], TARGET_SPECIFICITY)
        called = ps[:, c] >= t
        pos = ys == c
        sens.append(float(called[pos].mean()))
        spec.append(float((~called[~pos]).mean()))
    bal = float(np.mean([(ps.argmax(1)[ys == c] == c).mean() for c in range(k)]))
    return {"auroc": _auroc(ps, ys), "balanced_accuracy": bal, "sensitivity": sens, "specificity": spec}


def _member_aurocs(run: dict[str, Any]) -> dict[str, Any]:
    """Per member and epoch, the validation AUROC on all validation images and on each half (cached in ``run``)."""
    import numpy as np

    if "_aurocs" not in run:
        prob = np.asarray(run["val_prob"], dtype=np.float64)  # (E, N, G, K)
        y = np.asarray(run["val_y"])
        sets = {"all": np.arange(len(y)), **dict(zip(("a", "b"), _halves(y), strict=True))}
        run["_prob"], run["_y"], run["_sets"] = prob, y, sets
        run["_aurocs"] = {name: [[_auroc(prob[e, idx, g], y[idx]) for e in range(prob.shape[0])]
                                 for g in range(prob.shape[2])] for name, idx in sets.items()}
    return run


def replay(run: dict[str, Any], schedule: tuple[int, int, int], m: int) -> dict[str, Any]:
    """One schedule with the first ``m`` members, replayed from a trajectory run: the teacher's own validation
    numbers, the held-out ones, and the group's epochs."""
    import numpy as np

    epochs, min_epochs, patience = schedule
    _member_aurocs(run)
    prob, y, sets, aurocs = run["_prob"], run["_y"], run["_sets"], run["_aurocs"]

    def ensemble(name):
        chosen = [_select(aurocs[name][g], epochs, min_epochs, patience) for g in range(m)]
        p = np.mean([prob[b - 1, :, g] for g, (b, _) in enumerate(chosen)], 0)  # the members' mean softmax
        return p, chosen

    p, chosen = ensemble("all")
    own = _measure(p, y, sets["all"], sets["all"])
    folds = []
    for fit_on, score_on in (("a", "b"), ("b", "a")):
        ph, _ = ensemble(fit_on)
        folds.append(_measure(ph, y, sets[fit_on], sets[score_on]))
    held = {key: (statistics.fmean(f[key] for f in folds) if key in ("auroc", "balanced_accuracy")
                  else [statistics.fmean(f[key][c] for f in folds) for c in range(len(folds[0][key]))])
            for key in folds[0]}
    group_epochs = max(stop for _, stop in chosen)
    per_epoch = statistics.median(run["cpu_per_epoch_s"])  # G members
    return {"schedule": list(schedule), "members": m, "group_epochs": group_epochs,
            "best_epochs": [b for b, _ in chosen], "own": own, "held_out": held,
            "cpu_estimate_s": round(group_epochs * per_epoch * m / run["members"], 1)}


def schedules(args: argparse.Namespace) -> int:
    runs = [run for f in args.file for run in json.loads(Path(f).read_text())["runs"]]
    rows, out = [], []
    scheds = ([tuple(int(x) for x in sc.split("/")) for sc in args.schedules.split(",")] if args.schedules
              else SCHEDULES)
    for run in runs:
        for sched, m in itertools.product(scheds, MEMBERS):
            if m > run["members"] or sched[0] > run["epochs"]:
                continue
            r = replay(run, sched, m)
            r.update(setting=run["setting"], amp=run["amp"])
            out.append(r)
            rows.append(_schedule_row(r, run["class_names"]))
    print(markdown_table(SCHEDULE_HEADERS, rows))
    if args.out:
        write_json(args.out, {"kind": "schedules", "command": " ".join(sys.argv),
                              "source": [str(f) for f in args.file], "replays": out})
        print(f"-> {args.out}")
    return 0


SCHEDULE_HEADERS = ["setting", "amp", "members", "epochs/min/patience", "group epochs", "CPU s (est.)", "val AUROC",
                    "val sens. at op. point", "held-out AUROC", "held-out sens.", "held-out spec."]


def _schedule_row(r: dict[str, Any], names: list[str]) -> list[str]:
    f = " / ".join
    return [r["setting"], r["amp"], str(r["members"]), "/".join(map(str, r["schedule"])), str(r["group_epochs"]),
            f"{r['cpu_estimate_s']:.0f}", f"{r['own']['auroc']:.3f}", f(f"{x:.2f}" for x in r["own"]["sensitivity"]),
            f"{r['held_out']['auroc']:.3f}", f(f"{x:.2f}" for x in r["held_out"]["sensitivity"]),
            f(f"{x:.2f}" for x in r["held_out"]["specificity"])]


# ------------------------------------------------------------------------------------------------ part 2: fit

def fit_child(args: argparse.Namespace) -> int:
    """One named variant on one setting (in its own process): fit the teacher, print one JSON line."""
    import torch

    from medgan.classify.teacher import fit_teacher
    from medgan.config import TeacherConfig

    torch.set_num_threads(args.threads)
    td = _load(args.setting)
    names = list(td.data.class_names)
    settings = TeacherConfig(**VARIANTS[args.variant])
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # torch's one-off optimiser import, untimed
    t = fit_teacher(td.x["train"], td.y["train"], td.x["val"], td.y["val"], len(names), settings, "cpu", names)
    out = {"setting": args.setting, "variant": args.variant, "settings": settings.model_dump(mode="json"),
           "n_train": int(len(td.y["train"])), "n_val": int(len(td.y["val"])), "val_auroc": t.info["val_auroc"],
           "val_balanced_accuracy": t.info["val_balanced_accuracy"],
           "per_class": [{k: pc[k] for k in ("class", "n_val", "sensitivity", "specificity", "auroc", "p_real",
                                            "measurable")} for pc in t.info["per_class"]],
           "members": t.info["members"], "fit": t.info["fit"]}
    print(json.dumps(out))
    return 0


def fit_variants(args: argparse.Namespace) -> int:
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR)}
    runs = []
    for r in range(args.rounds):
        for setting in args.setting:
            for v in names if r % 2 == 0 else names[::-1]:
                cmd = [bc.python(), __file__, "fit-child", "--setting", setting, "--variant", v, "--threads",
                       str(args.threads)]
                load = bc.loadavg()
                res = bc.run_child_stats(cmd, env=env, cwd=bc.ROOT)
                rec = json.loads(res["stdout"].strip().splitlines()[-1])
                rec.update(round=r, load_before=load, load_after=bc.loadavg(),
                           child_peak_rss_mb=round(res["peak_rss_mb"], 1))
                runs.append(rec)
                sens = ", ".join(f"{pc['class']} {pc['sensitivity']:.2f}" for pc in rec["per_class"]
                                 if pc["sensitivity"] is not None)
                print(f"{setting} {v}: fit {rec['fit']['wall_s']:.1f} s (cpu {rec['fit']['cpu_s']:.1f} s, load "
                      f"{load:.1f}), val AUROC {rec['val_auroc']:.3f}, sensitivity at the operating point {sens}",
                      flush=True)
    result = {"kind": "fit", "command": " ".join(sys.argv), "machine": bc.machine_info(), "threads": args.threads,
              "variants": {v: VARIANTS[v] for v in names}, "runs": runs}
    write_json(args.out, result)
    print(report(result))
    print(f"-> {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------- part 3: ratio

def ratio(args: argparse.Namespace) -> int:
    """A default evaluate that fits its own teacher: the teacher's share of its time."""
    env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR)}
    runs = []
    with tempfile.TemporaryDirectory(prefix="medgan-bench-teacher-") as tmp:
        ck = Path(tmp) / "alone" / Path(args.checkpoint).name
        ck.parent.mkdir()
        shutil.copy2(args.checkpoint, ck)  # away from its run folder: the evaluation fits its own teacher
        for r in range(args.rounds):
            out = (Path(args.keep) if args.keep else Path(tmp)) / f"report{r}"
            if out.exists():  # an evaluation resumes its stored runs: that would not time a default evaluate
                raise SystemExit(f"{out} exists; --keep needs a folder without report* folders")
            cmd = [*bc.medgan_cli(), "evaluate", "--dataset", "breastmnist", "--scarce", "0=0.2", "--checkpoint",
                   str(ck), "--out", str(out), "--quiet"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if args.quick:
                cmd += ["--seeds", "2", "--epochs", "1", "--arms", "baseline,gan+oversample", "--ratio", "1.0"]
            if args.config:
                cmd += ["--config", str(args.config)]
            load = bc.loadavg()
            res = bc.run_child_stats(cmd, env=env, cwd=bc.ROOT)
            rep = json.loads((out / "report.json").read_text())
            teacher = json.loads((out / "teacher" / "teacher.json").read_text())
            fit = teacher.get("fit", {})
            rec = {"round": r, "command": "medgan " + " ".join(cmd[3:]), "load_before": load,
                   "load_after": bc.loadavg(), "evaluate_wall_s": round(res["wall_s"], 1),
                   "evaluate_cpu_s": round(res["cpu_s"], 1), "evaluate_total_s": round(rep["timing"]["total_s"], 1),
                   "arms_s": round(sum(rep["timing"]["per_arm_s"].values()), 1),
                   "teacher_wall_s": fit.get("wall_s", teacher.get("seconds")), "teacher_cpu_s": fit.get("cpu_s"),
                   "teacher_settings": rep["config"]["teacher"], "teacher_source": rep["quality"]["teacher"]["source"],
                   "teacher_members": teacher["members"], "teacher_val_auroc": teacher.get("val_auroc"),
                   "teacher_per_class": [{k: pc.get(k) for k in ("class", "sensitivity", "auroc", "measurable")}
                                         for pc in teacher["per_class"]]}
            rec["teacher_share"] = rec["teacher_wall_s"] / rec["evaluate_total_s"]
            rec["teacher_share_cpu"] = (rec["teacher_cpu_s"] / rec["evaluate_cpu_s"]
                                        if rec["teacher_cpu_s"] is not None else None)
            runs.append(rec)
            print(f"evaluate {rec['evaluate_total_s']:.0f} s (arms {rec['arms_s']:.0f} s), its teacher "
                  f"{rec['teacher_wall_s']:.0f} s = {rec['teacher_share']:.1%} of it (CPU time "
                  f"{rec['teacher_share_cpu'] or float('nan'):.1%}); load {load:.1f} -> {rec['load_after']:.1f}",
                  flush=True)
    result = {"kind": "ratio", "command": " ".join(sys.argv), "machine": bc.machine_info(),
              "checkpoint": str(args.checkpoint), "runs": runs}
    write_json(args.out, result)
    print(report(result))
    print(f"-> {args.out}")
    return 0


def report(result: dict[str, Any]) -> str:
    """Markdown tables of a result file."""
    if result["kind"] == "ratio":
        rows = [[str(r["round"]), f"{r['evaluate_total_s']:.0f}", f"{r['arms_s']:.0f}", f"{r['teacher_wall_s']:.1f}",
                 f"{r['teacher_share']:.1%}", f"{r['teacher_share_cpu']:.1%}" if r["teacher_share_cpu"] else "n/a",
                 f"{r['load_before']:.1f}–{r['load_after']:.1f}"] for r in result["runs"]]
        return markdown_table(["round", "evaluate s", "of which arms s", "teacher fit s", "teacher ÷ evaluate",
                               "(CPU time)", "load"], rows)
    if result["kind"] == "schedules":
        return markdown_table(SCHEDULE_HEADERS, [_schedule_row(r, []) for r in result["replays"]])
    rows = []
    for r in result["runs"]:
        s = r["settings"]
        ep = sorted(m["epochs_run"] for m in r["members"])
        rows.append([r["setting"], r["variant"], f"{s['members']} x {s['epochs']}/{s['min_epochs']}/{s['patience']}",
                     s["amp"], f"{ep[0]}–{ep[-1]}", f"{r['fit']['wall_s']:.1f}", f"{r['fit']['cpu_s']:.1f}",
                     f"{r['load_before']:.1f}", f"{r['val_auroc']:.3f}",
                     " / ".join(f"{pc['sensitivity']:.2f}" if pc["sensitivity"] is not None else "n/a"
                                for pc in r["per_class"])])
    return markdown_table(["setting", "variant", "members x epochs/min/patience", "amp", "epochs run", "fit wall s",
                           "fit CPU s", "load", "val AUROC", "val sens. at op. point"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trajectories", help="train the members without stopping; keep every epoch's validation "
                                            "probabilities")
    t.add_argument("--setting", action="append", choices=list(SETTINGS), help="repeatable (default: breast20)")
    t.add_argument("--amp", default="bf16", help="comma-separated: bf16, off")
    t.add_argument("--members", type=int, default=5)
    t.add_argument("--epochs", type=int, default=80)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--out", default=str(bc.ROOT / "runs" / "bench_teacher" / "trajectories.json"),
                   help="every epoch's probabilities (megabytes: kept out of docs/results; deterministic on a CPU)")
    s = sub.add_parser("schedules", help="replay schedules and member counts from a trajectories file")
    s.add_argument("file", type=Path, nargs="+")
    s.add_argument("--out", type=Path, default=bc.RESULTS_DIR / "bench_teacher_schedules.json")
    s.add_argument("--schedules", help="EPOCHS/MIN/PATIENCE,... (default: SCHEDULES)")
    f = sub.add_parser("fit", help="fit named teacher variants; their cost and validation numbers")
    f.add_argument("--setting", action="append", choices=list(SETTINGS), help="repeatable (default: breast20)")
    f.add_argument("--variants", default="before,default")
    f.add_argument("--rounds", type=int, default=1)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--out", default=str(bc.RESULTS_DIR / "bench_teacher_fit.json"))
    r = sub.add_parser("ratio", help="the teacher's share of a default evaluate (BreastMNIST malignant 20%%)")
    r.add_argument("--checkpoint", required=True, type=Path, help="a BreastMNIST 20%% generator checkpoint file")
    r.add_argument("--rounds", type=int, default=1)
    r.add_argument("--threads", type=int, default=0, help="evaluate --threads (0: torch's default)")
    r.add_argument("--config", type=Path, help="a YAML for evaluate (e.g. teacher settings)")
    r.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, 1 epoch, 2 arms")
    r.add_argument("--keep", type=Path, help="write the evaluation reports into this folder (kept)")
    r.add_argument("--out", default=str(bc.RESULTS_DIR / "bench_teacher_ratio.json"))
    tc = sub.add_parser("trajectory-child")
    tc.add_argument("--setting", required=True, choices=list(SETTINGS))
    tc.add_argument("--amp", default="bf16")
    tc.add_argument("--members", type=int, default=5)
    tc.add_argument("--epochs", type=int, default=80)
    tc.add_argument("--threads", type=int, default=1)
    tc.add_argument("--json", required=True)
    fc = sub.add_parser("fit-child")
    fc.add_argument("--setting", required=True, choices=list(SETTINGS))
    fc.add_argument("--variant", required=True, choices=list(VARIANTS))
    fc.add_argument("--threads", type=int, default=2)
    rep = sub.add_parser("report", help="print the tables of a result file")
    rep.add_argument("file", type=Path)
    args = p.parse_args(argv)
    if getattr(args, "setting", None) is None and args.cmd in ("trajectories", "fit"):
        args.setting = ["breast20"]
    return {"trajectory-child": trajectory_child, "fit-child": fit_child, "trajectories": trajectories,
            "schedules": schedules, "fit": fit_variants, "ratio": ratio,
            "report": lambda a: print(report(json.loads(a.file.read_text()))) or 0}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
