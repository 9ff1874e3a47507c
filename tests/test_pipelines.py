"""The benchmark and study pipelines: helpers (fast) and a smoke run of each script at tiny settings (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
sys.path.insert(0, str(PIPELINES))

import _bench_common as bc  # noqa: E402


def _run(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(PIPELINES / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


# ------------------------------------------------------------------------------------------------ helpers


def test_summarise_and_format():
    s = bc.summarise([3.0, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert bc.fmt_range(s, 1) == "2.5 (1.0–10.0)"
    assert bc.summarise([])["n"] == 0


def test_markdown_table_shape():
    from medgan.io import markdown_table

    t = markdown_table(["a", "b"], [[1, 2], [3, 4]]).splitlines()
    assert t[0] == "| a | b |" and t[1] == "|---|---|" and t[3] == "| 3 | 4 |"


def test_write_json_is_atomic_and_readable(tmp_path):
    from medgan.io import write_json

    p = write_json(tmp_path / "sub" / "r.json", {"x": 1.5, "y": [1, 2]})
    assert json.loads(p.read_text()) == {"x": 1.5, "y": [1, 2]}
    assert json.loads(write_json(p, {"nan": float("nan")}).read_text()) == {"nan": None}  # one NaN policy
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]  # no temp file left behind


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


def test_study_commands_name_the_exact_subset(tmp_path):
    import scarce_class_study as st

    s = st.SETTINGS["breast20"]
    train = st.train_command(s, tmp_path / "gan", 100, resume=True, gan_config=None, seed=0)
    ev = st.evaluate_command(s, tmp_path / "ck.pt", tmp_path / "r", 10, None, st.ARMS, st.RATIOS, "smallcnn")
    for cmd in (train, ev):
        assert cmd[cmd.index("--scarce") + 1] == "0=0.2" and cmd[cmd.index("--dataset") + 1] == "breastmnist"
    assert "--resume" in train and ev[ev.index("--ratio") + 1] == "0.5,1.0,balance"
    assert "--scarce" not in st.evaluate_command(st.SETTINGS["breast100"], tmp_path / "c", tmp_path, 5, 1, "baseline",
                                                 "0.5", "smallcnn")


def test_bench_train_markdown_from_a_result():
    import bench_train as bt

    peak = {"matmul": {"gflops_per_s": 300.0}, "conv_fwd_bwd": {"gflops_per_s": 200.0}, "peak_gflops": 300.0}
    s1 = bc.summarise([1.0, 2.0])
    arm = {"images_per_s": s1, "gflops_per_s": s1, "flops_per_image": 1e8, "peak_rss_mb": s1,
           "fraction_of_peak": bc.summarise([0.5]), "peak_used": "fp32"}
    res = {"peak": {"fp32": peak}, "cases": {"2d28": {"summary": {
        "reference": arm, "matched/fp32": {**arm, "base_channels": 60, "ratio_images_per_s": s1,
                                           "ratio_gflops_per_s": s1}}}},
           "scaling": [{"dims": 2, "size": 28, "batch": 8, "seconds_per_step": 0.1, "images_per_s": 80.0,
                        "gflops_per_s": 1.0, "peak_rss_mb": 300.0}]}
    md = bt.markdown(res)
    assert "| 2d28 | matched/fp32 | 60 | 100 |" in md and "| 2 | 28 | 8 | 0.100 |" in md


# ------------------------------------------------------------------------------------------ smoke runs


@pytest.mark.slow
def test_bench_train_quick_writes_wellformed_json(tmp_path, medmnist_dir):
    out = tmp_path / "bt.json"
    _run("bench_train.py", "--quick", "--cases", "2d28", "--repeats", "1", "--no-scaling", "--out", str(out))
    r = json.loads(out.read_text())
    assert r["quick"] is True and set(r["peak"]) == {"fp32", "bf16"}
    assert r["peak"]["fp32"]["peak_gflops"] > 0
    summ = r["cases"]["2d28"]["summary"]
    assert set(summ) == {"reference", "matched/fp32", "matched/bf16", "default/fp32"}
    for arm, s in summ.items():
        assert s["images_per_s"]["median"] > 0 and s["flops_per_image"] > 0 and s["peak_rss_mb"]["median"] > 50, arm
    # the matched width really matches the reference's FLOPs per image
    assert abs(summ["matched/fp32"]["flops_ratio"] - 1) < 0.1
    assert summ["matched/fp32"]["ratio_images_per_s"]["n"] == 1


@pytest.mark.slow
def test_bench_augment_quick_writes_wellformed_json(tmp_path, medmnist_dir):
    out = tmp_path / "ba.json"
    _run("bench_augment.py", "--quick", "--settings", "2d28-npz", "--repeats", "1", "--work", str(tmp_path / "w"),
         "--out", str(out))
    r = json.loads(out.read_text())
    s = r["settings"]["2d28-npz"]
    assert set(s["by_n"]) == {"20", "40"}
    assert s["by_n"]["40"]["n"] == 40 and s["by_n"]["40"]["samples_per_s_end_to_end"]["median"] > 0
    assert s["rss_growth_small_to_large"] > 0 and "2d28-npz memory" in r["verdicts"]


@pytest.mark.slow
def test_scarce_class_study_quick_is_resumable(tmp_path, medmnist_dir):
    work, res = tmp_path / "w", tmp_path / "r"
    args = ["--setting", "breast20", "--quick", "--arms", "baseline,gan", "--ratios", "1.0", "--work", str(work),
            "--results-dir", str(res)]
    _run("scarce_class_study.py", *args)
    r = json.loads((res / "study_breast20.json").read_text())
    assert r["study"]["setting"] == "breast20" and r["study"]["scarce"] == "0=0.2"
    assert "--scarce 0=0.2" in r["study"]["train_command"] and "--scarce 0=0.2" in r["study"]["evaluate_command"]
    assert {"baseline", "gan@1.0"} <= set(r["summary"])
    assert (res / "study_breast20.md").is_file()
    again = _run("scarce_class_study.py", *args)  # finished stages are skipped
    assert "already trained" in again.stdout and "evaluation already done" in again.stdout
    # a tuning variant that only changes the evaluation reuses that GAN and lands in its own result files
    _run("scarce_class_study.py", *args, "--tag", "filt", "--gan-from", str(work / "breast20"),
         "--filter-confidence", "0.01")
    v = json.loads((res / "study_breast20_filt.json").read_text())
    assert v["study"]["tag"] == "filt" and v["study"]["train_command"] == r["study"]["train_command"]
    assert "--filter-confidence 0.01" in v["study"]["evaluate_command"]
    assert v["synthetic"]["filter"]["threshold"] == 0.01 and not (work / "breast20_filt" / "gan").exists()
    summary = _run("scarce_class_study.py", "--summary", "--results-dir", str(res)).stdout
    assert "### breast20:" in summary and "### breast20_filt:" in summary


def test_amp_quality_summary_pairs_runs_by_seed():
    import bench_amp_quality as aq

    runs = [{"amp": "off", "seed": 0, "frechet": 2.0, "train_seconds": 100.0},
            {"amp": "bf16", "seed": 0, "frechet": 2.4, "train_seconds": 50.0},
            {"amp": "off", "seed": 1, "frechet": 4.0, "train_seconds": 100.0},
            {"amp": "bf16", "seed": 1, "frechet": 3.6, "train_seconds": 60.0}]
    s = aq.summarise(runs)
    assert s["frechet_ratio_bf16_over_fp32"]["per_seed"] == pytest.approx([1.2, 0.9])
    assert s["frechet_ratio_bf16_over_fp32"]["mean"] == pytest.approx(1.05)
    assert s["fp32_seed_spread"] == pytest.approx(1.0) and "within the 10% target" in s["verdict"]
    assert "outside" in aq.summarise(runs[:2])["verdict"]


@pytest.mark.slow
def test_bench_amp_quality_smoke(tmp_path, medmnist_dir):
    out = tmp_path / "aq.json"
    _run("bench_amp_quality.py", "--steps", "2", "--seeds", "0", "--work", str(tmp_path / "w"), "--out", str(out),
         "--max-load", "99", "--eval-epochs", "1")
    r = json.loads(out.read_text())
    assert [(x["amp"], x["seed"]) for x in r["runs"]] == [("off", 0), ("bf16", 0)]
    assert all(x["frechet"] > 0 and x["frechet_floor"] > 0 for x in r["runs"])
    assert len(r["summary"]["frechet_ratio_bf16_over_fp32"]["per_seed"]) == 1
