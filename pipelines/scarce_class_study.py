#!/usr/bin/env python3
"""The scarce-class study: does medgan's synthetic data help a classifier on a class it has few images of?

One command per setting. Each setting keeps a chosen class at a fraction of its training images, trains the GAN
on EXACTLY that training subset (``medgan train --scarce ...``), then runs ``medgan evaluate`` on the same
subset (the leakage guard checks the checkpoint's training-set fingerprint) with the conventional arms (baseline,
oversample, weighted, classical+oversample) and the GAN arms combined with the conventional measures
(gan+oversample, gan+weighted, gan+classical+oversample at ratios 0.5 and 1.0), 10 seeds, the evaluation's
default protocol (operating points chosen on validation, the best conventional arm chosen on validation, Holm):

============  ==================  ============================================  ==============
setting       dataset             scarcity (training split only)                scarce class
============  ==================  ============================================  ==============
breast100     breastmnist         none (malignant at 100%: 147 of 546)          0 malignant
breast50      breastmnist         malignant at 50%  (``--scarce 0=0.5``)        0 malignant
breast20      breastmnist         malignant at 20%  (``--scarce 0=0.2``)        0 malignant
pneumonia10   pneumoniamnist      normal at 10%     (``--scarce 0=0.1``)        0 normal
adrenal20     adrenalmnist3d      hyperplasia at 20% (``--scarce 1=0.2``)       1 hyperplasia
============  ==================  ============================================  ==============

Work goes to ``--work/<setting>/`` (``gan/`` the training run, ``report/`` the evaluation); every stage is
skipped when its output is complete, and an interrupted training run is continued with ``--resume``, so the
command can simply be run again. Results are copied to ``docs/results/study_<setting>.json`` (the evaluation's
``report.json`` plus a ``study`` block: the exact commands, stage timings, machine), ``study_<setting>.md``
(the report) and ``study_<setting>_arms.png`` (the per-arm plot).

Usage::

    .venv/bin/python pipelines/scarce_class_study.py --setting breast20          # one setting
    .venv/bin/python pipelines/scarce_class_study.py --all                       # everything (hours on 2 cores)
    .venv/bin/python pipelines/scarce_class_study.py --setting breast20 --quick --work /tmp/s --results-dir /tmp/r
    .venv/bin/python pipelines/scarce_class_study.py --summary                    # tables of what is finished
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.evaluation.report import format_ci  # noqa: E402
from medgan.io import markdown_table, write_json  # noqa: E402

#: The study's settings: dataset, scarcity spec (empty: none), and the default GAN training steps.
SETTINGS: dict[str, dict[str, Any]] = {
    "breast100": {"dataset": "breastmnist", "scarce": "", "steps": None, "seeds": 10},
    "breast50": {"dataset": "breastmnist", "scarce": "0=0.5", "steps": None, "seeds": 10},
    "breast20": {"dataset": "breastmnist", "scarce": "0=0.2", "steps": None, "seeds": 10},
    "pneumonia10": {"dataset": "pneumoniamnist", "scarce": "0=0.1", "steps": None, "seeds": 10},
    "adrenal20": {"dataset": "adrenalmnist3d", "scarce": "1=0.2", "steps": None, "seeds": 10},
}
ARMS = "baseline,oversample,weighted,classical+oversample,gan+oversample,gan+weighted,gan+classical+oversample"
RATIOS = "0.5,1.0"
#: the study's target for a GAN arm against the best conventional arm (chosen on validation)
TARGET_GAIN = 0.05


def dataset_config(dataset: str) -> Path | None:
    """The project's YAML config for ``dataset`` (``configs/<dataset>.yaml``) when there is one."""
    p = bc.ROOT / "configs" / f"{dataset}.yaml"
    return p if p.is_file() else None


def train_command(setting: dict[str, Any], run_dir: Path, steps: int, resume: bool, gan_config: Path | None,
                  seed: int) -> list[str]:
    cmd = [*bc.medgan_cli(), "train", "--dataset", setting["dataset"], "--out", str(run_dir), "--seed", str(seed)]
    if steps:
        cmd += ["--steps", str(steps)]
    cfg = gan_config or dataset_config(setting["dataset"])
    if cfg is not None:
        cmd += ["--config", str(cfg)]
    if setting["scarce"]:
        cmd += ["--scarce", setting["scarce"]]
    if resume:
        cmd += ["--resume"]
    return cmd


def evaluate_command(setting: dict[str, Any], ckpt: Path, out: Path, seeds: int, epochs: int | None,
                     arms: str, ratios: str, classifier: str, filter_confidence: float | None = None,
                     config: Path | None = None) -> list[str]:
    cmd = [*bc.medgan_cli(), "evaluate", "--dataset", setting["dataset"], "--checkpoint", str(ckpt),
           "--arms", arms, "--ratio", ratios, "--seeds", str(seeds), "--classifier", classifier, "--out", str(out)]
    if config is not None:
        cmd += ["--config", str(config)]
    if setting["scarce"]:
        cmd += ["--scarce", setting["scarce"]]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    if filter_confidence:
        cmd += ["--filter-confidence", str(filter_confidence)]
    return cmd


def run_logged(cmd: list[str], log_path: Path, env: dict[str, str]) -> float:
    """Run ``cmd`` with its output appended to ``log_path``; returns the wall seconds."""
    print("$ " + " ".join(cmd), flush=True)
    try:
        _, wall, _ = bc.run_child(cmd, env=env, cwd=bc.ROOT, log=log_path)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    return wall


def _state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_setting(name: str, args: argparse.Namespace, env: dict[str, str]) -> Path:
    """Train (or resume) the GAN, evaluate, and copy the results of one setting; returns the results JSON."""
    setting = SETTINGS[name]
    steps = args.steps or setting["steps"]
    seeds = args.seeds or setting["seeds"]
    label = f"{name}_{args.tag}" if args.tag else name
    work = Path(args.work) / label
    work.mkdir(parents=True, exist_ok=True)
    run_dir, report_dir, log_path = work / "gan", work / "report", work / "study.log"
    state_path = work / "study_state.json"
    state = _state(state_path)
    gan_keys = ("steps", "gan_config", "seed", "gan_from", "quick")
    wanted = {"steps": steps, "seeds": seeds, "epochs": args.epochs, "arms": args.arms, "ratios": args.ratios,
              "classifier": args.classifier, "gan_config": str(args.gan_config) if args.gan_config else None,
              "seed": args.seed, "filter_confidence": args.filter_confidence,
              "gan_from": str(args.gan_from) if args.gan_from else None,
              **({"quick": True} if args.quick else {})}  # a smoke run's GAN has the tiny teacher
    old = state.get("params")
    if old is not None and any(old.get(k) != wanted.get(k) for k in gan_keys):
        # another generator than the one this folder holds: start the setting over rather than mix results
        print(f"[{label}] GAN settings changed since the last run ({old} -> {wanted}); starting over")
        shutil.rmtree(work)
        work.mkdir(parents=True)
        state = {}
    elif old is not None and old != wanted and state.get("evaluate_done"):
        # same generator, another evaluation request: keep the GAN, evaluate again
        print(f"[{label}] evaluation settings changed ({old} -> {wanted}); evaluating again")
        state["evaluate_done"] = False
    state["params"] = wanted
    write_json(state_path, state)
    ckpt = run_dir / "checkpoints" / "last.pt"
    gan_dir = run_dir  # evaluate takes the run folder: its best.pt by tracked quality, else last.pt
    if args.gan_from:
        # evaluate another setting folder's generator (e.g. a tuning variant that only changes the evaluation)
        src_state = _state(Path(args.gan_from) / "study_state.json")
        gan_dir = Path(args.gan_from) / "gan"
        ckpt = gan_dir / "checkpoints" / "last.pt"
        if not (src_state.get("train_done") and ckpt.is_file()):
            raise SystemExit(f"--gan-from {args.gan_from}: no finished GAN training there (run that setting first)")
        for k in ("train_seconds", "train_command", "train_done"):
            state[k] = src_state[k]

    gan_config, eval_config = args.gan_config, None
    if args.quick:  # a smoke run: the tiny teacher in training (tracking) and in the evaluation (which reuses it)
        gan_config = bc.config_with(work / "quick_gan.yaml", {"teacher": bc.TINY_TEACHER},
                                    args.gan_config or dataset_config(setting["dataset"]))
        eval_config = bc.config_with(work / "quick_evaluate.yaml", {"teacher": bc.TINY_TEACHER})
    if not state.get("train_done"):
        resume = ckpt.is_file()
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # interrupted before its first checkpoint: nothing to resume
        cmd = train_command(setting, run_dir, steps, resume, gan_config, args.seed)
        state["train_seconds"] = state.get("train_seconds", 0.0) + run_logged(cmd, log_path, env)
        state["train_command"] = " ".join(cmd[2:]).replace(" --resume", "")
        state["train_done"] = True
        state["train_load_after"] = bc.loadavg()
        write_json(state_path, state)
    else:
        print(f"[{label}] GAN already trained ({ckpt}); skipping")

    if not state.get("evaluate_done"):
        if report_dir.exists():
            shutil.rmtree(report_dir)  # a partial report from an interrupted run
        cmd = evaluate_command(setting, gan_dir, report_dir, seeds, args.epochs, args.arms, args.ratios, args.classifier,
                               args.filter_confidence, eval_config)
        state["evaluate_load_before"] = bc.loadavg()
        state["evaluate_seconds"] = run_logged(cmd, log_path, env)
        state["evaluate_command"] = " ".join(cmd[2:])
        state["evaluate_done"] = True
        write_json(state_path, state)
    else:
        print(f"[{label}] evaluation already done ({report_dir}); skipping")

    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    report = json.loads((report_dir / "report.json").read_text())
    report["study"] = {
        "setting": name, "tag": args.tag, **{k: v for k, v in setting.items() if k != "steps"},
        "gan_steps": steps or "config default", "seeds": seeds,
        "train_command": "medgan " + state["train_command"], "evaluate_command": "medgan " + state["evaluate_command"],
        "train_seconds": round(state["train_seconds"], 1), "evaluate_seconds": round(state["evaluate_seconds"], 1),
        "load_before_evaluate": state.get("evaluate_load_before"), "machine": bc.machine_info(),
        "quick": bool(args.quick),
    }
    out_json = write_json(results / f"study_{label}.json", report)
    md = report_dir / "report.md"
    if md.is_file():
        shutil.copyfile(md, results / f"study_{label}.md")
    for png in ("arms.png", "per_class_sensitivity.png"):
        if (report_dir / png).is_file():
            shutil.copyfile(report_dir / png, results / f"study_{label}_{png}")
    print(f"[{label}] done: train {state['train_seconds']:.0f} s, evaluate {state['evaluate_seconds']:.0f} s -> {out_json}")
    return out_json




def target(r: dict[str, Any], arm: str) -> str:
    """The study's target for one GAN arm: it beats the best conventional arm (chosen on validation by
    ``medgan evaluate``) on the primary metric by at least :data:`TARGET_GAIN`, Holm-adjusted p < 0.05, at equal or
    better mean AUROC. ``yes``, or what is missing; empty for conventional arms."""
    conv, key = r.get("best_conventional"), r["primary"]["key"]
    c = r["comparisons"].get(arm, {}).get(conv)
    if not c:
        return ""
    p, auc = c[key], c["auroc"]
    missing = []
    if not p["beats"]:
        missing.append(f"Holm p={p['p_holm']:.2g}" if p["diff"] > 0 else "not better")
    elif p["diff"] < TARGET_GAIN:
        missing.append(f"gain {p['diff']:+.3f} < {TARGET_GAIN}")
    if auc["diff"] < 0:
        missing.append(f"AUROC {auc['diff']:+.3f}")
    return "yes" if not missing else "no (" + ", ".join(missing) + ")"


def result_files(results_dir: Path) -> list[tuple[str, Path]]:
    """``(label, json)`` of every finished setting and tuning variant (``study_<setting>[_<tag>].json``)."""
    out = []
    for name in SETTINGS:
        base = results_dir / f"study_{name}.json"
        if base.is_file():
            out.append((name, base))
        out += [(f.stem[len("study_"):], f) for f in sorted(results_dir.glob(f"study_{name}_*.json"))]
    return out


def summary_markdown(results_dir: Path) -> str:
    """One table per finished setting (and tuning variant): per arm, the primary metric (scarce-class sensitivity at
    the validation-chosen specificity) and AUROC (mean [95% CI]), the difference from the best conventional arm
    with its Holm-adjusted p, and whether the arm meets the study's target (:func:`target`)."""
    parts = []
    for label, f in result_files(results_dir):
        r = json.loads(f.read_text())
        st, comps, key = r["study"], r["comparisons"], r["primary"]["key"]
        ds, conv = r["dataset"], r["best_conventional"]
        flt = (r.get("synthetic") or {}).get("filter")
        extra = f", sample filtering p >= {flt['threshold']} (kept {flt['kept']} of {flt['drawn']})" if flt else ""
        parts.append(f"### {label}: {ds['name']}, training counts {ds['train_counts']} "
                     f"(scarce: {', '.join(ds['scarce_classes'])}), {r['protocol']['classifier']}, {st['seeds']} "
                     f"seeds{extra}\n\n" + "\n".join(f"> {h}" for h in r["headline"]))
        rows = []
        for arm, s in r["summary"].items():
            c = comps.get(arm, {}).get(conv, {}).get(key)
            rows.append([f"`{arm}`" + (" (best conventional)" if arm == conv else ""), format_ci(s[key]),
                         format_ci(s["auroc"]), f"{s['validation_primary']['mean']:.3f}",
                         f"{c['diff']:+.3f} (Holm p={c['p_holm']:.2g})" if c else "", target(r, arm)])
        parts.append(markdown_table(
            ["arm", "scarce sens @ val-chosen spec", "AUROC", "validation value", "Δ vs best conventional",
             "target met"], rows))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", action="append", choices=list(SETTINGS), help="a setting to run (repeatable)")
    p.add_argument("--all", action="store_true", help="run every setting in order")
    p.add_argument("--steps", type=int, help="GAN training steps (default: the dataset config's)")
    p.add_argument("--seeds", type=int, help="classifier seeds per arm (default: 10)")
    p.add_argument("--epochs", type=int, help="classifier epochs (default: the evaluate config's)")
    p.add_argument("--arms", default=ARMS)
    p.add_argument("--ratios", default=RATIOS)
    p.add_argument("--classifier", default="smallcnn", choices=["smallcnn", "resnet18"])
    p.add_argument("--gan-config", type=Path, help="YAML for the GAN (default: configs/<dataset>.yaml when present)")
    p.add_argument("--seed", type=int, default=0, help="GAN training seed")
    p.add_argument("--filter-confidence", type=float, default=None,
                   help="sample filtering in the evaluation (medgan evaluate --filter-confidence)")
    p.add_argument("--tag", help="a tuning variant: work in <work>/<setting>_<tag>, results study_<setting>_<tag>.*")
    p.add_argument("--gan-from", type=Path,
                   help="use the GAN of a finished setting folder (e.g. runs/study/breast20) instead of training")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test: 2 steps, 2 seeds, 1 epoch, "
                   "a tiny teacher (2 members, 3 epochs)")
    p.add_argument("--work", default=str(bc.ROOT / "runs" / "study"))
    p.add_argument("--results-dir", default=str(bc.RESULTS_DIR))
    p.add_argument("--summary", action="store_true", help="print the cross-setting table of finished results and exit")
    args = p.parse_args(argv)
    if args.summary:
        print(summary_markdown(Path(args.results_dir)))
        return 0
    if args.quick:
        args.steps = args.steps or 2
        args.seeds = args.seeds or 2
        args.epochs = args.epochs or 1
    names = list(SETTINGS) if args.all else (args.setting or [])
    if not names:
        p.error("name a --setting (breast100, breast50, breast20, pneumonia10, adrenal20) or pass --all")
    env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR)}
    for name in names:
        run_setting(name, args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
