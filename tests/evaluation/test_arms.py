"""Tests for medgan.evaluation.arms: arm names and option checks."""

from __future__ import annotations

import pytest

from medgan.errors import ConfigError
from medgan.evaluation.arms import check_choices, expand_arms


def test_arms_and_choices():
    arms = expand_arms(["baseline", "oversample", "classical", "gan", "gan+classical"], [0.5, "balance"])
    assert [a.name for a in arms] == ["baseline", "oversample", "classical", "gan@0.5", "gan@balance",
                                      "gan+classical@0.5", "gan+classical@balance"]
    assert arms[1].balanced and arms[2].classical and arms[3].synthetic and arms[5].classical and arms[5].synthetic
    gos = expand_arms(["gan+oversample"], [1.0])[0]
    assert gos.name == "gan+oversample@1.0" and gos.synthetic and gos.balanced and not gos.classical
    with pytest.raises(ConfigError, match="unknown arm 'smote'"):
        expand_arms(["smote"], [1.0])
    with pytest.raises(ConfigError, match="unknown arm 'gans'.*baseline, oversample"):
        check_choices(arms="baseline,gans")
    with pytest.raises(ConfigError, match="unknown classifier 'vgg'.*smallcnn, resnet18"):
        check_choices(classifier="vgg")
    with pytest.raises(ConfigError, match="bad synthetic ratio 'x'"):
        check_choices(ratios="0.5,x")
