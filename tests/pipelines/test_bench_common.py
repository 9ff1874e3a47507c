"""Tests for pipelines/_bench_common.py: summaries, child processes, load waiting."""

from __future__ import annotations

import sys

import _bench_common as bc
import pytest


def test_summarise_and_format():
    s = bc.summarise([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert bc.fmt_range(s, 1) == "2.5 (1.0–10.0)"
    assert bc.summarise([])["n"] == 0


def test_child_peak_rss_is_the_childs_own():
    """A child's peak is its own: not inflated by a large parent (ru_maxrss would be), and it sees the child's
    allocation."""
    ballast = bytearray(300 * 2**20)  # the parent holds 300 MB (touched)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    small, _, _ = bc.run_child([sys.executable, "-c", "pass"])
    big, _, out = bc.run_child([sys.executable, "-c", "import time; a = bytearray(200 * 2**20); time.sleep(0.3); "
                                "print('ok')"])
    assert out.strip() == "ok"
    assert small < 100, small
    assert big > small + 150, (small, big)
    del ballast


def test_run_child_reports_failures():
    with pytest.raises(RuntimeError, match="boom"):
        bc.run_child([sys.executable, "-c", "import sys; sys.exit('boom')"])


def test_run_child_logs_the_command_and_its_output(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("earlier\n")
    _, _, out = bc.run_child([sys.executable, "-c", "import sys; print('to out'); print('to err', file=sys.stderr)"],
                             log=log)
    text = log.read_text()
    assert text.startswith("earlier\n$ ") and "to out" in text and "to err" in text  # appended, both streams
    assert "to out" in out and "earlier" not in out
    with pytest.raises(RuntimeError, match=f"boom.*|log: {log}"):
        bc.run_child([sys.executable, "-c", "import sys; sys.exit('boom')"], log=log)
    assert "boom" in log.read_text()


def test_run_json_subprocess_reads_the_json_file():
    res = bc.run_json_subprocess([sys.executable, "-c", "import json, sys; json.dump({'v': 7}, open(sys.argv[1], 'w'))",
                                  "{json}"])
    assert res["v"] == 7 and res["wall_s"] > 0 and res["child_peak_rss_mb"] > 0


def test_wait_for_quiet_reports_the_load():
    q = bc.wait_for_quiet(max_load=1e9, timeout_s=0)
    assert q["quiet"] is True and q["waited_s"] == 0 and q["load_before"] >= 0
