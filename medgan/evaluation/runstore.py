"""Runs that survive: every (arm, seed) result of ``medgan evaluate`` is written to ``OUT/runs/`` as it finishes.

Re-running the same command resumes: finished runs are read back, only the missing ones are trained, and the
report is the same as an uninterrupted run's (the runs store their validation and test probabilities, so every
metric is recomputed from them). ``OUT/runs/request.json`` records what the runs depend on (data fingerprint,
synthetic pool, classifier protocol, device type, medgan version); a request that differs in any of those is
refused with the keys that changed (``--restart`` starts over, removing only ``OUT/runs``, which medgan wrote).
Adding arms or seeds to a request reuses the runs it already has.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from medgan.errors import EvaluationError
from medgan.io import json_safe, write_json

REQUEST = "request.json"
MARKER = "medgan evaluate runs"


class RunStore:
    """The finished runs of one evaluation request in ``out/runs`` (no-op when ``out`` is ``None``)."""

    def __init__(self, out: str | Path | None, request: dict[str, Any], restart: bool = False) -> None:
        self.dir = Path(out) / "runs" if out is not None else None
        self.request = json_safe(request)
        if self.dir is None:
            return
        req_path = self.dir / REQUEST
        old = json.loads(req_path.read_text()) if req_path.is_file() else None
        if self.dir.exists() and (old or {}).get("marker") != MARKER and any(self.dir.iterdir()):
            raise EvaluationError(f"{self.dir} exists and was not written by medgan evaluate; choose another --out")
        if old is not None and restart:
            shutil.rmtree(self.dir)
            old = None
        if old is not None:
            changed = sorted(k for k in set(old["request"]) | set(self.request)
                             if old["request"].get(k) != self.request.get(k))
            if changed:
                raise EvaluationError(
                    f"{out} holds runs of a different evaluation request (changed: {', '.join(changed)}); use "
                    "another --out, or --restart to discard those runs")
        else:
            write_json(req_path, {"marker": MARKER, "request": self.request})

    def _path(self, arm: str, seed: int) -> Path:
        assert self.dir is not None
        safe = arm.replace("/", "_")
        return self.dir / safe / f"seed_{seed}.json"

    def load(self, arm: str, seed: int) -> dict[str, Any] | None:
        """A finished run, or ``None``."""
        if self.dir is None:
            return None
        p = self._path(arm, seed)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:  # cannot happen with atomic writes, unless edited by hand
            return None

    def save(self, arm: str, seed: int, record: dict[str, Any]) -> None:
        if self.dir is not None:
            write_json(self._path(arm, seed), record, indent=None)
