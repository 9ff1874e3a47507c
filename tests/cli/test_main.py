"""Tests for medgan.cli as a whole: --help shows the defaults, shell completion, the public Python API."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("command, expected", [
    (["train"], [r"--steps\b.*\[default: \(?2000\)?\]", r"--batch-size\b.*\[default: \(?64\)?\]", r"--loss\b.*\[default: \(?bce\)?\]",
                 r"--quiet"]),
    (["augment"], [r"--format\b.*\[default: \(?png\)?\]", r"--batch-size\b.*\[default: \(?256\)?\]", r"normal_benign"]),
    (["evaluate"], [r"--seeds\b.*\[default: \(?10\)?\]", r"--classifier\b.*\[default: \(?smallcnn\)?\]"]),
    (["export"], [r"torchscript", r"bundle"]),
    (["info", "checkpoint"], [r"run folder"]),
])
def test_help_shows_defaults(medgan_cli, monkeypatch, command, expected):
    monkeypatch.setenv("COLUMNS", "400")  # one option per line
    monkeypatch.setenv("TERMINAL_WIDTH", "400")
    r = medgan_cli(*command, "--help")
    assert r.returncode == 0, r.stderr
    text = re.sub(r"[│╭╮╰╯─]", " ", r.stdout)
    for pattern in expected:
        assert re.search(pattern, text), (pattern, text)


def test_shell_completion_is_offered(medgan_cli):
    r = medgan_cli("--help")
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout


def test_help_and_dir_list_the_public_api():
    import medgan

    names = dir(medgan)
    for name in ("SyntheticBank", "RandSyntheticReplaced", "add_synthetic_slots", "Sampler", "export_generator",
                 "augment", "evaluate", "train", "load_config"):
        assert name in names and name in medgan.__all__ and name in medgan.__doc__
        assert getattr(medgan, name) is not None
    from importlib.resources import files

    assert (files("medgan") / "py.typed").is_file()
