#!/usr/bin/env python3
"""Generator tuning on validation data only: which way of making synthetic images is worth taking to the study?

Issue 22 asks every generator option to be measured where it cannot fool us: on two *tuning settings* that are not
the study's headline setting, and on their validation splits only. For each setting and each variant this pipeline

1. trains the variant's generator on the setting's scarce training split (``medgan train``; resumable), and
2. runs ``medgan evaluate --tuning`` with ``classical+oversample`` (the strongest conventional option) and
   ``gan+classical+oversample`` at ratio 0.5, 5 seeds: the test split is never used; validation is halved, one half
   selects (epochs, operating points, the teacher), the other scores (:func:`medgan.data.splits.tuning_view`).
   The same report gives the teacher's sample quality (fidelity, diversity, Fréchet distance over the real floor,
   train-on-synthetic vs train-on-real) and the near-copy counts of the memorisation check;
3. for the translation variants, the inversion's reconstruction error and the translation curve (anatomy kept vs
   class change, :mod:`medgan.synthesis.inversion`), measured on training and validation images only.

=============  ===============  ==========================  ==============
setting        dataset          scarcity (training split)   scarce class
=============  ===============  ==========================  ==============
breast50       breastmnist      malignant at 50%            0 malignant
pneumonia10    pneumoniamnist   normal at 10%               0 normal
=============  ===============  ==========================  ==============

Every row of ``docs/results/generator_tuning.json`` carries the exact commands that produced it; every variant
tried stays in the table. Work goes to ``--work/<setting>/`` (``gan_<kind>/`` training runs, ``<variant>/``
reports, ``tuning.log``); a finished stage is skipped, an interrupted training run is resumed, so the command can
simply be run again.

Usage::

    .venv/bin/python pipelines/generator_tuning.py                                # every setting and variant
    .venv/bin/python pipelines/generator_tuning.py --setting breast50 --variant default
    .venv/bin/python pipelines/generator_tuning.py --summary                       # the table of what is finished
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_common as bc  # noqa: E402

from medgan.io import markdown_table, write_json  # noqa: E402

SETTINGS: dict[str, dict[str, Any]] = {
    "breast50": {"dataset": "breastmnist", "scarce": "0=0.5", "scarce_class": "malignant"},
    "pneumonia10": {"dataset": "pneumoniamnist", "scarce": "0=0.1", "scarce_class": "normal"},
}

#: Generators: the options of ``medgan train`` each variant's pool comes from (``train`` overrides the dataset's
#: packaged config).
GANS: dict[str, dict[str, Any]] = {
    "default": {"description": "today's default conditional DCGAN", "train": {}},
    "augreal": {"description": "the DCGAN trained on classically augmented real images",
                "train": {"train": {"augment_real": "classical"}}},
}

#: Variants: a generator and how ``medgan evaluate`` draws its pool (``evaluate`` overrides).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"gan": "default", "evaluate": {}, "description": "random samples of today's default generator"},
    "pairs": {"gan": "default", "evaluate": {"evaluate": {"pairs": True}},
              "description": "counterfactual pairs: the same z for every class"},
    "augreal": {"gan": "augreal", "evaluate": {},
                "description": "random samples of the generator trained on classically augmented real images"},
}

#: ``--quick`` (a smoke run: the pipeline's mechanics, not its numbers): a few GAN steps, one classifier epoch, a
#: tiny teacher.
QUICK = {"steps": 20, "epochs": 1, "seeds": 2,
         "teacher": {"teacher": {"members": 2, "epochs": 2, "min_epochs": 0}}}

ARMS = "classical+oversample,gan+classical+oversample"
RATIO = "0.5"
SEEDS = 5


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _config_file(work: Path, name: str, dataset: str, over: dict[str, Any]) -> Path:
    """The dataset's packaged config with ``over`` on top, written to ``work/name.yaml`` (what the command used)."""
    from medgan.config import load_config

    cfg = load_config(dataset).model_dump(mode="json", exclude_none=True)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(_merge(cfg, over), sort_keys=False))
    return path


def run_logged(cmd: list[str], log: Path, env: dict[str, str]) -> float:
    print("$ " + " ".join(cmd), flush=True)
    try:
        _, wall, _ = bc.run_child(cmd, env=env, cwd=bc.ROOT, log=log)
    except RuntimeError as e:
        raise SystemExit(str(e)) from None
    return wall


def train_gan(setting: str, kind: str, work: Path, env: dict[str, str], steps: int | None,
              extra: dict[str, Any] | None = None) -> tuple[Path, dict]:
    """Train (or resume, or skip) the generator ``kind`` of ``setting``; returns its run folder and state."""
    s, g = SETTINGS[setting], GANS[kind]
    run = work / f"gan_{kind}"
    state_path = work / f"gan_{kind}.json"
    state = _load(state_path)
    if state.get("done"):
        return run, state
    over = _merge(_merge(g["train"], {"train": {"steps": steps}} if steps else {}), extra or {})
    # the packaged config by name when nothing changes (the command a user would type), else a written copy
    cfg = _config_file(work, f"gan_{kind}", s["dataset"], over) if over else s["dataset"]
    cmd = [*bc.medgan_cli(), "train", "--config", str(cfg), "--dataset", s["dataset"], "--scarce", s["scarce"],
           "--seed", "0", "--out", str(run), "--quiet"]
    if (run / "checkpoints" / "last.pt").is_file():
        cmd.append("--resume")
    state["seconds"] = state.get("seconds", 0.0) + run_logged(cmd, work / "tuning.log", env)
    state.update(done=True, command="medgan " + " ".join(cmd[2:]).replace(" --resume", ""),
                 config=g["train"], description=g["description"])
    write_json(state_path, state)
    return run, state


def evaluate_variant(setting: str, variant: str, work: Path, env: dict[str, str], seeds: int,
                     epochs: int | None, steps: int | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the variant's generator if needed, then its tuning evaluation; returns the result row."""
    s, v = SETTINGS[setting], VARIANTS[variant]
    gan, gan_state = train_gan(setting, v["gan"], work, env, steps, extra)
    out = work / variant
    state_path = work / f"{variant}.json"
    state = _load(state_path)
    if not state.get("done"):
        cfg = _config_file(work, f"evaluate_{variant}", s["dataset"], _merge(v["evaluate"], extra or {}))
        cmd = [*bc.medgan_cli(), "evaluate", "--tuning", "--config", str(cfg), "--dataset", s["dataset"],
               "--scarce", s["scarce"], "--checkpoint", str(gan), "--arms", ARMS, "--ratio", RATIO,
               "--seeds", str(seeds), "--out", str(out), "--quiet"]
        if epochs:
            cmd += ["--epochs", str(epochs)]
        state["seconds"] = run_logged(cmd, work / "tuning.log", env)
        state.update(done=True, command="medgan " + " ".join(cmd[2:]))
        write_json(state_path, state)
    report = json.loads((out / "report.json").read_text())
    return row(setting, variant, report, gan_state, state)


def _r(x: Any) -> Any:
    return None if x is None else round(float(x), 4)


def _q(pc: dict[str, Any], key: str) -> Any:
    v = pc.get(key)
    return None if v is None else round(float(v), 4)


def row(setting: str, variant: str, report: dict[str, Any], gan_state: dict, ev_state: dict) -> dict[str, Any]:
    """What the tuning table keeps of one variant's tuning report."""
    v = VARIANTS[variant]
    scarce = SETTINGS[setting]["scarce_class"]
    gan_arm = f"gan+classical+oversample@{RATIO}"
    summ = report["summary"]
    q = report.get("quality") or {}
    pq = (q.get("per_class") or {}).get(scarce, {})
    pv = report.get("privacy") or {}
    comp = (report.get("comparisons", {}).get(gan_arm) or {}).get("classical+oversample") or {}
    key = report["primary"]["key"]

    def score(arm: str, k: str) -> dict[str, float] | None:
        s = summ.get(arm, {}).get(k)
        return {m: round(s[m], 4) for m in ("mean", "lo", "hi")} if s else None

    return {
        "setting": setting, "variant": variant, "description": v["description"], "generator": v["gan"],
        "train_command": gan_state.get("command"), "evaluate_command": ev_state.get("command"),
        "train_seconds": round(gan_state.get("seconds", 0.0), 1), "evaluate_seconds": round(ev_state["seconds"], 1),
        "tuning_view": report["dataset"].get("tuning"),
        "validation_score": {"primary": report["primary"]["label"],
                             "gan": score(gan_arm, key), "classical+oversample": score("classical+oversample", key),
                             "gan_auroc": score(gan_arm, "auroc"),
                             "classical+oversample_auroc": score("classical+oversample", "auroc"),
                             "paired_diff": {m: comp.get(key, {}).get(m) for m in ("diff", "lo", "hi", "p")},
                             "paired_diff_auroc": {m: comp.get("auroc", {}).get(m) for m in ("diff", "lo", "hi")}},
        "quality": {
            "teacher_sensitivity": _q(pq, "sensitivity"),
            "fidelity": _q(pq, "fidelity"), "fidelity_not_measurable": pq.get("fidelity_not_measurable"),
            "diversity_ratio": _q(pq, "diversity_ratio"), "fd_norm": _q(pq, "fd_norm"),
            "tstr": q.get("tstr"),
        },
        "near_copies": {"rule": pv.get("rule"), "n_synthetic": pv.get("n_synthetic"), "flagged_pixel": pv.get("flagged"),
                        "fraction_pixel": _r(pv.get("fraction_flagged")),
                        "fraction_feature": _r((pv.get("feature") or {}).get("fraction_below_threshold")),
                        "real_flag_rate_pixel": _r((pv.get("pixel") or {}).get("real_flag_rate"))} if pv else None,
        "extra": ev_state.get("extra"),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the tuning rows."""
    def f(s: dict | None) -> str:
        return "-" if not s or s.get("mean") is None else f"{s['mean']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]"

    def d(s: dict | None) -> str:
        return "-" if not s or s.get("diff") is None else f"{s['diff']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}]"

    def n(x: Any) -> str:
        return "-" if x is None else f"{x:.2f}"

    head = ["setting", "variant", "gan+classical+oversample@0.5", "classical+oversample", "paired diff",
            "AUROC gan / conv", "fidelity", "diversity", "FD / floor", "TSTR / TRTR bal. acc."]
    body = []
    for r in rows:
        vs, q = r["validation_score"], r["quality"]
        t = q.get("tstr") or {}
        fid = q["fidelity"] if q["fidelity"] is not None else ("not measurable" if q["fidelity_not_measurable"]
                                                               else None)
        body.append([r["setting"], r["variant"], f(vs["gan"]), f(vs["classical+oversample"]), d(vs["paired_diff"]),
                     f"{n((vs['gan_auroc'] or {}).get('mean'))} / {n((vs['classical+oversample_auroc'] or {}).get('mean'))}",
                     fid if isinstance(fid, str) else n(fid), n(q["diversity_ratio"]), n(q["fd_norm"]),
                     f"{n(t.get('balanced_accuracy'))} / {n(t.get('trtr_balanced_accuracy'))}"])
    return markdown_table(head, body)


def collect(work_root: Path) -> list[dict[str, Any]]:
    rows = []
    for setting in SETTINGS:
        for variant in VARIANTS:
            w = work_root / setting
            ev, gan = _load(w / f"{variant}.json"), _load(w / f"gan_{VARIANTS[variant]['gan']}.json")
            if ev.get("done") and (w / variant / "report.json").is_file():
                rows.append(row(setting, variant, json.loads((w / variant / "report.json").read_text()), gan, ev))
    return rows


def write_results(rows: list[dict[str, Any]], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "generator_tuning.json", {
        "what": "generator options measured on tuning settings, validation splits only (medgan evaluate --tuning)",
        "arms": ARMS, "ratio": RATIO, "machine": bc.machine_info(), "rows": rows})
    (results / "generator_tuning.md").write_text(
        "# Generator tuning (validation only)\n\nWritten by `pipelines/generator_tuning.py`; every number is on the "
        "scoring half of the validation split (`medgan evaluate --tuning`); the test split was not used.\n\n"
        + table(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", action="append", choices=sorted(SETTINGS), help="repeatable; default: all")
    p.add_argument("--variant", action="append", help="repeatable; default: all (" + ", ".join(VARIANTS) + ")")
    p.add_argument("--work", default=str(bc.ROOT / "runs" / "tuning"))
    p.add_argument("--results-dir", default=str(bc.RESULTS_DIR))
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--epochs", type=int, help="classifier epoch budget (default: evaluate's)")
    p.add_argument("--steps", type=int, help="GAN training steps (default: the dataset config's)")
    p.add_argument("--quick", action="store_true", help="a smoke run: the mechanics, not the numbers")
    p.add_argument("--summary", action="store_true", help="only print the table of what is finished")
    args = p.parse_args(argv)
    extra = None
    if args.quick:
        args.steps, args.epochs, args.seeds, extra = QUICK["steps"], QUICK["epochs"], QUICK["seeds"], QUICK["teacher"]
    work_root = Path(args.work)
    if not args.summary:
        env = {**os.environ, "MEDGAN_DATA_DIR": str(bc.DATA_DIR)}
        for variant in args.variant or []:
            if variant not in VARIANTS:
                p.error(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
        for setting in args.setting or list(SETTINGS):
            (work_root / setting).mkdir(parents=True, exist_ok=True)
            for variant in args.variant or list(VARIANTS):
                r = evaluate_variant(setting, variant, work_root / setting, env, args.seeds, args.epochs,
                                     args.steps, extra)
                print(f"[{setting}/{variant}] done: validation {r['validation_score']['gan']} vs "
                      f"{r['validation_score']['classical+oversample']}", flush=True)
                write_results(collect(work_root), Path(args.results_dir))
    rows = collect(work_root)
    print(table(rows))
    if rows and not args.summary:
        write_results(rows, Path(args.results_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
