"""Usage and configuration errors that used to crash with a traceback, exit 1, or be accepted and fail later
(issue 21, defects 13, 15-18, 25 and the configuration parts of 26): each is now one line, exit code 2, before any
work and before --out exists."""

from __future__ import annotations

import pytest
import yaml
from reliability.util import one_line

from medgan.config import load_config
from medgan.errors import ConfigError

pytestmark = pytest.mark.usefixtures("fast_phantoms")


@pytest.fixture
def refused(medgan_cli, tmp_path):
    """``refused(*args)``: run ``medgan ARGS`` in-process, assert exit code 2, one error line and no ``tmp/out``;
    returns the line."""

    def run(*args) -> str:
        r = medgan_cli(*args)
        assert r.returncode == 2, r.stderr
        line = one_line(r.stderr)
        assert not (tmp_path / "out").exists()
        return line

    return run


def _yaml(tmp_path, data: dict):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _evaluate(tmp_path, ckpt, *args):
    """An evaluation that would be quick if it started (``args`` come last: a repeated flag's last value wins)."""
    return ("evaluate", "--dataset", "phantom2d", "--checkpoint", ckpt, "--out", tmp_path / "out", "--seeds", "2",
            "--epochs", "1", "--no-quality", "--no-privacy", "--device", "cpu", *args)


@pytest.mark.parametrize("arms", ["", ",,"])
def test_no_arms_is_refused_before_sampling(tmp_path, refused, ckpt2d, arms):
    """Defect 13: `--arms ""` sampled and ran the quality checks, then `KeyError: None`, leaving runs/request.json."""
    assert "names no arm" in refused(*_evaluate(tmp_path, ckpt2d, "--arms", arms))
    line = refused(*_evaluate(tmp_path, ckpt2d, "--config", _yaml(tmp_path, {"evaluate": {"arms": []}})))
    assert "'evaluate.arms'" in line and "no arm to run" in line


@pytest.mark.parametrize("args, needle", [
    (["--ratio", "inf"], "bad synthetic ratio 'inf'; use a number in (0, 100]"),
    (["--ratio", "1e9"], "bad synthetic ratio '1e9'; use a number in (0, 100]"),
    (["--ratio", "0.5,nan"], "bad synthetic ratio 'nan'"),
    (["--seeds", "99999999999"], "at most 1000 seeds per arm"),
])
def test_ratio_and_seed_counts_are_bounded_up_front(tmp_path, refused, ckpt2d, args, needle):
    """Defect 15: `--ratio inf` (OverflowError), `--ratio 1e9` (a 1.56 TiB allocation after the baseline arm had
    trained) and `--seeds 99999999999` (MemoryError)."""
    assert needle in refused(*_evaluate(tmp_path, ckpt2d, "--arms", "baseline,gan", *args))
    line = refused(*_evaluate(tmp_path, ckpt2d, "--config", _yaml(tmp_path, {"evaluate": {"ratios": [1e9]}})))
    assert "'evaluate.ratios'" in line and "(0, 100]" in line
    with pytest.raises(ConfigError, match=r"bad synthetic ratio '1e9'; use a number in \(0, 100\]"):
        load_config(None, {"evaluate.ratios": "0.5,1e9"})  # the library's comma-separated form too


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-inf"])
def test_non_finite_scarcity_is_refused(tmp_path, refused, ckpt2d, value):
    """Defect 16: `--scarce malignant=nan` (ValueError), `=inf` and `=1e400` (OverflowError)."""
    needle = f"bad --scarce value '{value}' for class '0'"
    assert needle in refused("train", "--dataset", "phantom2d", "--scarce", f"0={value}", "--out", tmp_path / "out")
    assert needle in refused(*_evaluate(tmp_path, ckpt2d, "--arms", "baseline", "--scarce", f"0={value}"))


@pytest.mark.parametrize("args, key", [
    (["train", "--dataset", "phantom2d", "--seed", str(2**63)], "train.seed"),
    (["train", "--dataset", "phantom2d", "--seed", "-1"], "train.seed"),
    (["augment", "--checkpoint", "nowhere.pt", "--n", "1", "--seed", str(2**64)], "augment.seed"),
])
def test_seed_flags_are_bounded(tmp_path, refused, args, key):
    """Defect 17: a seed beyond 2**63 ended in `ValueError: Overflow when unpacking long long`."""
    line = refused(*args, "--out", tmp_path / "out", *(["--dry-run"] if args[0] == "train" else []))
    assert f"'{key}'" in line and "from 0 to 9223372036854775807" in line


def test_seeds_in_yaml_and_the_split_seed_are_bounded(tmp_path, refused, medgan_cli):
    """Defect 17 (YAML), and the split seed, which seeds numpy.random.RandomState (below 2**32)."""
    cfg = _yaml(tmp_path, {"train": {"seed": 2**64}})
    assert "'train.seed'" in refused("train", "--dataset", "phantom2d", "--config", cfg, "--out", tmp_path / "out",
                                     "--dry-run")
    line = refused("info", "dataset", "phantom2d", "--split-seed", str(2**32))
    assert "'data.split_seed'" in line and "from 0 to 4294967295" in line
    assert medgan_cli("info", "dataset", "phantom2d", "--split-seed", str(2**32 - 1)).returncode == 0


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, refused):
    """Defect 18: a Latin-1 config file ended in `UnicodeDecodeError`."""
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("train:\n  steps: 5  # réglage\n".encode("latin-1"))
    line = refused("train", "--dataset", "phantom2d", "--config", cfg, "--out", tmp_path / "out", "--dry-run")
    assert str(cfg) in line and "is not UTF-8 text" in line and "UTF-8 YAML" in line


@pytest.mark.parametrize("section, key, value", [
    ("train", "lr_g", float("inf")),
    ("train", "beta1", float("nan")),
    ("train", "r1_gamma", float("inf")),
    ("model", "dropout", float("nan")),
    ("evaluate", "lr", float("inf")),
    ("evaluate", "group_memory_gb", float("inf")),
])
def test_non_finite_floats_are_refused(tmp_path, refused, section, key, value):
    """Defect 25: `lr_g: .inf` passed validation and failed at step 2; every float setting must be finite."""
    cfg = _yaml(tmp_path, {section: {key: value}})
    line = refused("train", "--dataset", "phantom2d", "--config", cfg, "--out", tmp_path / "out", "--dry-run")
    assert f"'{section}.{key}'" in line and "finite number" in line


@pytest.mark.parametrize("args, key", [
    (["--epochs", "-5"], "evaluate.epochs"),
    (["--seeds", "0"], "evaluate.seeds"),
    (["--batch-size", "0"], "evaluate.batch_size"),
    (["--config", {"evaluate": {"patience": 0}}], "evaluate.patience"),
    (["--config", {"evaluate": {"min_epochs": -1}}], "evaluate.min_epochs"),
    (["--config", {"evaluate": {"lr": 0}}], "evaluate.lr"),
])
def test_evaluate_protocol_settings_are_config_errors(tmp_path, refused, ckpt2d, args, key):
    """Defect 25: `--epochs -5` and `--seeds 0` exited 1 where other configuration errors exit 2."""
    args = [_yaml(tmp_path, a) if isinstance(a, dict) else a for a in args]
    assert f"'{key}'" in refused(*_evaluate(tmp_path, ckpt2d, "--arms", "baseline", *args))


@pytest.mark.parametrize("section, key, value", [
    ("train", "steps", True),
    ("train", "lr_d", True),
    ("data", "size", False),
    ("evaluate", "ratios", [True]),
    ("augment", "n", True),
])
def test_booleans_are_not_numbers(tmp_path, refused, section, key, value):
    """Defect 26: `steps: true` became 1 step."""
    cfg = _yaml(tmp_path, {section: {key: value}})
    line = refused("train", "--dataset", "phantom2d", "--config", cfg, "--out", tmp_path / "out", "--dry-run")
    assert f"'{section}.{key}'" in line and "true/false" in line


def test_boolean_settings_still_take_booleans(tmp_path, medgan_cli):
    cfg = _yaml(tmp_path, {"model": {"spectral_norm": False}, "train": {"channels_last": True},
                           "evaluate": {"channels_last": False, "quality": False}})
    r = medgan_cli("train", "--dataset", "phantom2d", "--config", cfg, "--out", tmp_path / "out", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["train"]["channels_last"] is True


def test_two_scarcity_rules_for_one_class_are_refused(tmp_path, refused, tiny_yaml):
    """Defect 26: with two --scarce rules for one class the last won silently; also when one names the class by
    index and the other by name (caught once the class names are known, still before --out is created)."""
    line = refused("train", "--dataset", "phantom2d", "--scarce", "0=10", "--scarce", "0=0.5", "--out",
                   tmp_path / "out", "--dry-run")
    assert "two --scarce rules for class '0'" in line
    line = refused("train", "--dataset", "phantom2d", "--config", tiny_yaml, "--steps", "1", "--scarce", "0=10",
                   "--scarce", "few_large=5", "--out", tmp_path / "out")
    assert "two --scarce rules for class 'few_large'" in line
    line = refused("evaluate", "--dataset", "phantom2d", "--arms", "baseline,oversample", "--scarce", "0=10",
                   "--scarce", "few_large=5", "--out", tmp_path / "out")  # found after --out was made: removed
    assert "two --scarce rules for class 'few_large'" in line


def test_the_grid_must_be_a_png_file(tmp_path, refused):
    """Defect 26: `info dataset X --grid g.jpg` wrote PNG bytes under a .jpg name."""
    line = refused("info", "dataset", "phantom2d", "--grid", tmp_path / "g.jpg")
    assert "--grid" in line and "ending in .png" in line
    assert not (tmp_path / "g.jpg").exists()
