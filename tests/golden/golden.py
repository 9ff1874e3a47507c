"""Golden outputs: the bytes ``medgan augment`` writes and the numbers ``medgan evaluate`` reports, for fixed
seeds, so a behaviour-preserving change (a restructure) can prove it changed nothing.

Everything runs through the command line (``python -m medgan ...``), so any two versions of the code can be
compared, whatever their internal layout::

    python tests/golden/golden.py produce OUT.json [--tree DIR]     # fingerprint the outputs of one code tree
    python tests/golden/golden.py compare A.json B.json              # differences, exit 1 if any
    python tests/golden/golden.py check [--ref REF]                  # REF (default: tests/golden/REF) vs this tree

``check`` checks out ``REF`` into a temporary git worktree, produces both fingerprints on this machine with
this interpreter, and compares them: floating-point results depend on the CPU, so fingerprints are only ever
compared between two runs on the same machine. When a change is *meant* to alter outputs, commit it and write
its commit id into ``tests/golden/REF``.

What is fingerprinted (one thread, ``OMP_NUM_THREADS=1``):

* ``train`` on the 2D and 3D phantoms with a tiny model: every tensor of the last checkpoint and the metrics
  log (timings dropped);
* ``augment`` of both checkpoints in every format (png, npz, nifti, dicom; 3D: no png): the SHA-256 of every
  file written, the manifest included;
* ``evaluate`` on the 2D phantom with the checkpoint (every arm, 2 seeds, 2 epochs, quality and memorisation
  on): every number of ``report.json`` except timings and paths.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TINY = {
    "model": {"latent_dim": 8, "base_channels": 4, "embed_dim": 4},
    "train": {"steps": 6, "batch_size": 8, "log_every": 2, "sample_every": 3, "checkpoint_every": 3,
              "collapse_every": 3, "ema_decay": 0.9, "progress": False, "device": "cpu", "threads": 1},
}
#: report.json keys whose values depend on time or on where files are (the teacher's "source" names its folder)
VOLATILE = {"seconds", "source", "q_seconds", "total_s", "per_arm_s", "timing", "path", "checkpoint", "files", "data_dir", "elapsed_s",
            "images_per_s"}


def _run(tree: Path, args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "medgan", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"medgan {' '.join(args)} failed in {tree}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tensor_digest(obj) -> object:
    """Nested checkpoint content -> JSON-safe digests (tensors by their bytes, dtype and shape)."""
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        return f"{t.dtype}{tuple(obj.shape)}:{hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest()[:16]}" \
            if t.numel() else f"{t.dtype}{tuple(obj.shape)}"
    if isinstance(obj, dict):
        return {str(k): _tensor_digest(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_tensor_digest(v) for v in obj]
    return obj


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def produce(tree: Path, out_json: Path) -> dict:
    import torch
    import yaml

    result: dict = {"tree_commit": _commit(tree)}
    with tempfile.TemporaryDirectory(prefix="medgan-golden-") as tmp:
        work = Path(tmp)
        cfg = work / "tiny.yaml"
        tiny = dict(TINY)
        if (tree / "medgan" / "classify" / "teacher.py").is_file():  # trees with the teacher: a tiny one
            tiny["teacher"] = {"members": 2, "epochs": 3, "min_epochs": 0}
        cfg.write_text(yaml.safe_dump(tiny))
        for ds in ("phantom2d", "phantom3d"):
            run = work / f"run_{ds}"
            _run(tree, ["train", "--dataset", ds, "--config", str(cfg), "--out", str(run), "--seed", "3"], work)
            ck = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
            ck.pop("medgan_version", None)
            result[f"train/{ds}/checkpoint"] = _tensor_digest(ck)
            metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
            result[f"train/{ds}/metrics"] = _strip(metrics)
            formats = ("png", "npz", "nifti", "dicom") if ds == "phantom2d" else ("npz", "nifti", "dicom")
            for fmt in formats:
                out = work / f"aug_{ds}_{fmt}"
                _run(tree, ["augment", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--out", str(out),
                            "--n", "5", "--format", fmt, "--seed", "11", "--quiet", "--workers", "1"], work)
                files = {str(p.relative_to(out)): _sha(p) for p in sorted(out.rglob("*"))
                         if p.is_file() and p.name != "augment.json"}
                info = json.loads((out / "augment.json").read_text())
                result[f"augment/{ds}/{fmt}"] = {"files": files, "augment.json": _strip(info)}
        rep = work / "report"
        _run(tree, ["evaluate", "--dataset", "phantom2d", "--checkpoint", str(work / "run_phantom2d" / "checkpoints"
                                                                              / "last.pt"),
                    "--seeds", "2", "--epochs", "2", "--threads", "1", "--device", "cpu", "--out", str(rep),
                    "--quiet", *(["--config", str(cfg)] if "teacher" in tiny else [])], work)  # the run's teacher
        report = json.loads((rep / "report.json").read_text())
        for k in ("medgan_version", "config"):
            report.pop(k, None)
        result["evaluate/phantom2d"] = _strip(report)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def _commit(tree: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def differences(a, b, where: str = "") -> list[str]:
    """Paths at which two fingerprints differ (the commit ids are not compared)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k == "tree_commit":
                continue
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'B' if k not in a else 'A'}")
            else:
                out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"[:400]]


def check(ref: str, keep: Path | None = None) -> list[str]:
    """Fingerprint ``ref`` (a git worktree) and this tree on this machine; return the differences."""
    with tempfile.TemporaryDirectory(prefix="medgan-golden-ref-") as tmp:
        wt = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), ref], check=True,
                       capture_output=True, text=True)
        try:
            a = produce(wt, (keep or Path(tmp)) / "golden_ref.json")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], capture_output=True)
        b = produce(ROOT, (keep or Path(tmp)) / "golden_tree.json")
    return differences(a, b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("produce")
    p.add_argument("out", type=Path)
    p.add_argument("--tree", type=Path, default=ROOT)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    k = sub.add_parser("check")
    k.add_argument("--ref", default=None)
    k.add_argument("--keep", type=Path, default=None, help="Keep both fingerprints in this folder.")
    args = ap.parse_args()
    if args.cmd == "produce":
        produce(args.tree.resolve(), args.out)
        print(f"wrote {args.out}")
        return
    if args.cmd == "compare":
        diffs = differences(json.loads(args.a.read_text()), json.loads(args.b.read_text()))
    else:
        ref = args.ref or (HERE / "REF").read_text().split()[0]
        diffs = check(ref, args.keep)
    for d in diffs[:50]:
        print(d)
    print(f"{len(diffs)} difference(s)")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
