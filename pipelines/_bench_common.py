"""Helpers shared by the benchmark and study pipelines (not part of the medgan package).

* :func:`wait_for_quiet` — benchmarks are only recorded when the machine is idle; it polls the 1-minute load
  average and reports what it saw (the load is stored in every result file).
* :func:`machine_info` — CPU model, cores, torch version and threads, for the result files.
* :func:`measure_peak` — this machine's practical peak GFLOP/s in fp32 and bf16: the best of a large matmul and
  a large convolution forward+backward, FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode`` (the
  same counter the training benchmarks use).
* :func:`summarise` — median and min–max of repeated measurements.
* :func:`run_child` / :func:`run_child_stats` (the one child-process runner) / :func:`run_json_subprocess` — run a
  command in a child process and return its own peak RSS (so every measured arm has a separable memory peak), wall
  time (and CPU time), and its output (optionally logged to a file as it runs) or the JSON object it wrote.
* :data:`TINY_TEACHER` / :func:`config_with` — the tiny teacher of smoke runs, written into a YAML config.
* Outputs go through :mod:`medgan.io` (``write_json``, ``markdown_table``), as the package's own do.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
SHARED = ROOT.parent / "shared"
"""``../shared`` beside the repository: the reference loop and the real data."""
REFERENCE_DCGAN = SHARED / "bench" / "reference_dcgan.py"
DATA_DIR = Path(os.environ.get("MEDGAN_DATA_DIR", SHARED / "data" / "medmnist"))
RESULTS_DIR = ROOT / "docs" / "results"


def loadavg() -> float:
    """The 1-minute load average (``nan`` where ``/proc/loadavg`` does not exist)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def wait_for_quiet(max_load: float = 1.0, timeout_s: float = 600.0, poll_s: float = 15.0,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Wait until the 1-minute load average is below ``max_load`` (at most ``timeout_s`` seconds).

    Returns ``{"load_before": ..., "waited_s": ..., "quiet": bool}``; ``quiet`` is False when the timeout passed
    with the machine still busy (the caller records that rather than pretending it was quiet).
    """
    t0 = time.monotonic()
    load = loadavg()
    while not load < max_load and time.monotonic() - t0 < timeout_s:
        log(f"[bench] 1-min load {load:.2f} >= {max_load}: waiting for a quiet machine ...")
        time.sleep(poll_s)
        load = loadavg()
    return {"load_before": load, "waited_s": round(time.monotonic() - t0, 1), "quiet": bool(load < max_load)}


def machine_info() -> dict[str, Any]:
    """Facts about the machine and the software that produced a result."""
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(),
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:  # pragma: no cover - monai is a dependency
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def counted_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn`` as counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def _best_rate(fn: Callable[[], Any], flops: float, repeats: int, min_time: float, sync: Callable[[], None]) -> float:
    """Best GFLOP/s of ``fn`` over ``repeats`` timed bursts of at least ``min_time`` seconds each."""
    fn()
    sync()  # warm-up (kernel selection, allocation)
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            sync()
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = max(best, flops * n / dt / 1e9)
    return best


def measure_peak(dtype: str = "fp32", device: str = "cpu", quick: bool = False) -> dict[str, Any]:
    """Practical peak GFLOP/s of this machine in ``dtype`` (``fp32`` or ``bf16``).

    Two probes, FLOPs counted with ``FlopCounterMode`` exactly as in the training benchmarks: a square matmul
    and a 2D convolution forward+backward (a DCGAN-like 3x3 layer, wide enough to be compute-bound). bf16 runs
    under ``torch.autocast`` as training does. Returns both probes and their maximum (``peak_gflops``).
    """
    import torch

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    n = 1024 if quick else 2048
    reps, min_time = (2, 0.1) if quick else (5, 0.5)
    amp = dtype == "bf16"
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if amp else (lambda: torch.autocast(dev.type, enabled=False))

    a = torch.randn(n, n, device=dev)
    b = torch.randn(n, n, device=dev)

    def mm() -> None:
        with ctx():
            a @ b

    batch, ch, hw = (16, 64, 28) if quick else (64, 128, 28)
    x = torch.randn(batch, ch, hw, hw, device=dev, requires_grad=True)
    conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).to(dev)

    def conv_fb() -> None:
        with ctx():
            out = conv(x)
        out.float().sum().backward()

    with torch.no_grad():
        mm_flops = counted_flops(mm)
    conv_flops = counted_flops(conv_fb)
    mm_rate = _best_rate(mm, mm_flops, reps, min_time, sync)
    conv_rate = _best_rate(conv_fb, conv_flops, reps, min_time, sync)
    return {
        "dtype": dtype,
        "matmul": {"shape": [n, n, n], "gflops_per_s": round(mm_rate, 1)},
        "conv_fwd_bwd": {"input": [batch, ch, hw, hw], "kernel": [ch, ch, 3, 3], "gflops_per_s": round(conv_rate, 1)},
        "peak_gflops": round(max(mm_rate, conv_rate), 1),
        "threads": torch.get_num_threads(),
    }


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (and the count) of repeated measurements."""
    v = [float(x) for x in values]
    if not v:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt_range(s: dict[str, float], digits: int = 2) -> str:
    """``median (min–max)`` of a :func:`summarise` result."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: str | Path | None = None,
              timeout: float | None = None, log: str | Path | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return ``(peak RSS in MB of that child alone, wall seconds, stdout)``
    (:func:`run_child_stats`)."""
    s = run_child_stats(cmd, env, cwd, timeout, log)
    return s["peak_rss_mb"], s["wall_s"], s["stdout"]


def run_child_stats(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: str | Path | None = None,
                    timeout: float | None = None, log: str | Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; return its ``peak_rss_mb`` (that child alone), ``wall_s``, ``cpu_s`` (user + system CPU time of
    the child and the children it waited for, from ``wait4``: on a shared machine a steadier measure of work than
    wall time) and ``stdout``.

    The peak is the child's ``VmHWM`` (high-water resident set of its own address space), polled from
    ``/proc/<pid>/status`` every 10 ms while it runs. ``ru_maxrss`` from ``wait4``/``getrusage`` is NOT used:
    on Linux it carries over the parent's resident set at fork/exec time, so a child of a large benchmark
    process would inherit the parent's peak. Where ``/proc`` is missing it falls back to ``ru_maxrss``. Raises
    ``RuntimeError`` with the tail of the output when the command fails or runs past ``timeout``.

    ``log``: append the command line and its output (stdout and stderr together) to this file as it runs; the
    returned text is then that output.
    """
    argv = [str(c) for c in cmd]
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if log is not None:
            out = err = stack.enter_context(open(log, "a+"))
            out.write("$ " + " ".join(argv) + "\n")
            out.flush()
            start = out.tell()
        else:
            out = stack.enter_context(tempfile.TemporaryFile("w+"))
            err = stack.enter_context(tempfile.TemporaryFile("w+"))
            start = 0
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        hwm_kb = 0
        status_file = Path(f"/proc/{proc.pid}/status")
        while True:
            hwm_kb = max(hwm_kb, _vm_hwm_kb(status_file))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise RuntimeError(f"timed out after {timeout}s: {' '.join(argv)}")
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
        out.seek(start)
        stdout = out.read()
        err.seek(0 if err is not out else start)
        stderr = err.read() if err is not out else ""
    if proc.returncode != 0:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-15:])
        where = f" (log: {log})" if log is not None else ""
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(argv)}{where}\n{tail}")
    return {"peak_rss_mb": (hwm_kb or usage.ru_maxrss) / 1024, "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "stdout": stdout}


def run_json_subprocess(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float | None = None,
                        cwd: str | Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` (``{json}`` in its arguments is replaced by a temporary file path) and return the JSON object
    it wrote there (or printed as its last stdout line), plus ``child_peak_rss_mb`` and ``wall_s``."""
    with tempfile.TemporaryDirectory(prefix="medgan-bench-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [str(c).replace("{json}", str(out)) for c in cmd]
        rss, wall, stdout = run_child(argv, env=env, cwd=cwd, timeout=timeout)
        result = json.loads(out.read_text()) if out.exists() else json.loads(stdout.strip().splitlines()[-1])
    result["child_peak_rss_mb"] = rss
    result["wall_s"] = wall
    return result


def _vm_hwm_kb(status_file: Path) -> int:
    """``VmHWM`` (peak resident set, KiB) from a ``/proc/<pid>/status`` file; 0 when unreadable."""
    try:
        for line in status_file.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def self_peak_rss_mb() -> float:
    """Peak RSS of the current process in MB: ``VmHWM`` of its own address space (see :func:`run_child` for why
    not ``ru_maxrss``), else ``ru_maxrss``."""
    kb = _vm_hwm_kb(Path("/proc/self/status"))
    return (kb or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


#: The teacher of smoke runs (``--quick``): two members, three epochs. The teacher's default recipe (5 members, up
#: to 60 epochs) is what the recorded benchmarks use; a smoke test only needs the code path.
TINY_TEACHER = {"members": 2, "epochs": 3, "min_epochs": 0}


def config_with(out: str | Path, sections: dict[str, dict[str, Any]], base: str | Path | None = None) -> Path:
    """Write ``out``: the YAML config ``base`` (if any) with ``sections`` merged over it (one level deep, e.g.
    ``{"teacher": TINY_TEACHER}``); returns its path."""
    import yaml

    cfg = yaml.safe_load(Path(base).read_text()) if base is not None else {}
    cfg = cfg or {}
    for sec, values in sections.items():
        cfg[sec] = {**(cfg.get(sec) or {}), **values}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def python() -> str:
    """The interpreter running this script (the project's venv when invoked as ``.venv/bin/python``)."""
    return sys.executable


def medgan_cli() -> list[str]:
    """The ``medgan`` command as an argv prefix, run by this interpreter (no reliance on PATH)."""
    return [python(), "-m", "medgan"]
