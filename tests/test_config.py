"""Tests for medgan.config: unknown keys, the shipped configs, and the documented train keys."""

from __future__ import annotations

import pytest

from medgan.config import load_config
from medgan.errors import ConfigError


def test_unknown_config_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  stpes: 5\n")
    with pytest.raises(ConfigError, match=r"did you mean 'train.steps'"):
        load_config(p)


def test_shipped_configs_resolve_and_docs_list_every_train_key():
    from pathlib import Path

    from pydantic import BaseModel

    from medgan.config import Config, load_config

    root = Path(__file__).resolve().parents[1]
    for name in ("breastmnist", "pneumoniamnist", "adrenalmnist3d", "phantom2d", "phantom3d"):
        cfg = load_config(root / "configs" / f"{name}.yaml")
        assert cfg.data.dataset == name
    doc = (root / "docs" / "configuration.md").read_text()

    def keys(model, prefix):
        for k, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                yield from keys(ann, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    missing = [k for sec in ("data", "model", "train")
               for k in keys(Config.model_fields[sec].annotation, f"{sec}.") if f"`{k}`" not in doc]
    assert not missing, f"docs/configuration.md lacks {missing}"
