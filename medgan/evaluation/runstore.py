"""Runs that survive: every (arm, seed) result of ``medgan evaluate`` is written to ``OUT/runs/`` as it finishes.

Re-running the same command resumes: finished runs are read back, only the missing ones are trained, and the
report is the same as an uninterrupted run's (the runs store their validation and test probabilities, so every
metric is recomputed from them). ``OUT/runs/request.json`` records what the runs depend on (data fingerprint,
synthetic pool, classifier protocol, device type, medgan version); a request that differs in any of those is
refused with the keys that changed (``--restart`` starts over, removing only the run files medgan wrote there:
their hashes are in the folder's record, :mod:`medgan.outputs`). Adding arms or seeds to a request reuses the runs
it already has. Only files the record proves medgan wrote are read back, never through a link
(:func:`check_runs` refuses anything else before work starts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medgan.errors import EvaluationError
from medgan.io import json_safe, write_json
from medgan.outputs import OutputFolder

REQUEST = "request.json"
MARKER = "medgan evaluate runs"


def _is_run_file(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] == "runs" and (parts[1:] == [REQUEST] or (len(parts) == 3 and parts[2].startswith("seed_")
                                                             and parts[2].endswith(".json")))


def check_runs(files: OutputFolder) -> None:
    """Before work: every file a resumed evaluation would read back or replace in ``runs/`` is one medgan wrote,
    reached without a symbolic link (others are refused, naming them; files of the user's that medgan never reads
    stay as they are)."""
    files.check_one("runs")
    top = files.path / "runs"
    if not top.is_dir():
        return
    for root, dirs, names in os.walk(top):
        for n in sorted(dirs + names):
            rel = Path(os.path.relpath(os.path.join(root, n), files.path)).as_posix()
            if os.path.islink(os.path.join(root, n)) or _is_run_file(rel):
                files.check_one(rel)


def legacy_files(out: Path) -> list[str] | None:
    """The files an evaluation of a medgan that kept no ownership record left in ``out`` (its runs carry the
    marker), or ``None`` when ``out`` holds no such evaluation."""
    try:
        if json.loads((out / "runs" / REQUEST).read_text()).get("marker") != MARKER:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    found = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
    return [r for r in found if _is_run_file(r) or r in REPORT_FILES]


_RUN_KEYS = ("arm", "seed", "epochs_run", "best_epoch", "seconds", "val_prob", "test_prob")

#: The report files an evaluation writes at the top of its folder.
REPORT_FILES = ("report.json", "report.md", "arms.png", "per_class_sensitivity.png", "real_vs_synthetic.png",
                "nearest_neighbours.png")


def _read(p: Path, what: str) -> Any:
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise EvaluationError(f"{p} is not a readable {what} (damaged?); run with --restart to discard the stored "
                              "runs, or choose another --out") from None


class RunStore:
    """The finished runs of one evaluation request in ``files.path / "runs"`` (no-op when ``files`` is ``None``)."""

    def __init__(self, files: OutputFolder | None, request: dict[str, Any], restart: bool = False) -> None:
        self.files = files
        self.dir = files.path / "runs" if files is not None else None
        self.request = json_safe(request)
        if files is None:
            return
        if restart:
            stayed = files.remove_matching(keep=lambda r: not _is_run_file(r), under="runs")
            if stayed:
                raise EvaluationError(f"--restart: {files.path / stayed[0]} was changed since medgan wrote it; move "
                                      "it away or choose another --out")
        req_path = self.dir / REQUEST
        old = _read(req_path, "record of the stored runs") if req_path.is_file() else None
        if old is not None and (not isinstance(old, dict) or old.get("marker") != MARKER
                                or not isinstance(old.get("request"), dict)):
            raise EvaluationError(f"{req_path} is not the record medgan evaluate writes; run with --restart to discard "
                                  "the stored runs, or choose another --out")
        if old is not None:
            changed = sorted(k for k in set(old["request"]) | set(self.request)
                             if old["request"].get(k) != self.request.get(k))
            if changed:
                raise EvaluationError(
                    f"{files.path} holds runs of a different evaluation request (changed: {', '.join(changed)}); use "
                    "another --out, or --restart to discard those runs")
        else:
            write_json(req_path, {"marker": MARKER, "request": self.request})

    def _path(self, arm: str, seed: int) -> Path:
        assert self.dir is not None
        safe = arm.replace("/", "_")
        return self.dir / safe / f"seed_{seed}.json"

    def load(self, arm: str, seed: int) -> dict[str, Any] | None:
        """A finished run, or ``None``."""
        if self.files is None:
            return None
        p = self._path(arm, seed)
        rel = p.relative_to(self.files.path).as_posix()
        self.files.check_one(rel)  # medgan's own file, reached without a link (checked at the start too)
        if not p.is_file():
            return None
        rec = _read(p, "stored run")
        if not isinstance(rec, dict) or any(k not in rec for k in _RUN_KEYS) or not all(
                isinstance(rec[k], list) for k in ("val_prob", "test_prob")):
            raise EvaluationError(f"{p} is not a run medgan evaluate stored; run with --restart, or choose another "
                                  "--out")
        return rec

    def save(self, arm: str, seed: int, record: dict[str, Any]) -> None:
        if self.dir is not None:
            write_json(self._path(arm, seed), record, indent=None)
