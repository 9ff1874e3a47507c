"""Helpers of the reliability tests (``from reliability.util import ...``; fixtures are in conftest.py)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def phantom_meta(dims: int = 2, **overrides) -> dict:
    """What a checkpoint trained on phantom2d/3d records as its data (no training needed)."""
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset

    td = prepare(load_dataset(f"phantom{dims}d"))
    return {**td.data.meta(), "size": td.size, **overrides}


def medgan_proc(*args, **kw) -> subprocess.Popen:
    """``python -m medgan ARGS`` as a child process (stdout/stderr captured as text)."""
    return subprocess.Popen([sys.executable, "-m", "medgan", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=kw.pop("cwd", ROOT), **kw)


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> tuple[str, str]:
    """Signal a child process (if still running), reap it; returns its (stdout, stderr)."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    return proc.communicate(timeout=60)


def one_line(stderr: str) -> str:
    """The single ``medgan: error: ...`` line of a failed command (asserts there is exactly one, no traceback)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("medgan: error:"), stderr
    return lines[0]


def png16(a: np.ndarray) -> bytes:
    """A 16-bit PNG of ``(H, W, C)`` uint16 (C = 3: RGB, 4: RGBA, 2: gray+alpha), each row with the next of the
    five PNG filters in turn (what Pillow cannot write, and reads back as 8 bits)."""
    h, w, c = a.shape
    color = {3: 2, 4: 6, 2: 4}[c]
    bpp = 2 * c
    raw = a.astype(">u2").reshape(h, -1).view(np.uint8).astype(np.int32)
    prev = np.zeros(raw.shape[1], np.int32)
    body = b""
    for y in range(h):
        ft, line, f = y % 5, raw[y], np.zeros(raw.shape[1], np.int32)
        for x in range(len(line)):
            left = line[x - bpp] if x >= bpp else 0
            up, upleft = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if ft == 4:
                p = left + up - upleft
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else upleft)
            else:
                pred = (0, left, up, (left + up) >> 1)[ft]
            f[x] = (line[x] - pred) & 0xFF
        body += bytes([ft]) + f.astype(np.uint8).tobytes()
        prev = line

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))
