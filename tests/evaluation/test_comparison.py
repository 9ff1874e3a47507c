"""Tests for medgan.evaluation.comparison: the best conventional arm is chosen on validation, Holm over the
primary comparisons, the headline says the verdict first."""

from __future__ import annotations

import pytest

from medgan.evaluation.arms import expand_arms
from medgan.evaluation.comparison import best_by_validation, verdict

NAMES = ["malignant", "benign"]


def _run(seed: int, test_sens: float, val_sens: float, auroc: float = 0.8) -> dict:
    per_class = {c: {"sensitivity": test_sens, "specificity": 0.8, "precision": 0.5} for c in NAMES}
    test = {"scarce_sens_at_spec": test_sens, "scarce_spec_at_spec": 0.8, "scarce_ppv_at_spec": 0.5,
            "scarce_sens_youden": test_sens, "auroc": auroc, "scarce_pauroc": 0.6, "scarce_sensitivity": test_sens,
            "balanced_accuracy": 0.7, "per_class": per_class}
    return {"seed": seed, "test": test, "val_scarce_sens_at_spec": val_sens, "val_auroc": 0.8}


def _runs(spec: dict[str, tuple[list[float], float]]) -> dict:
    return {a: [_run(s, t, v) for s, t in enumerate(tests)] for a, (tests, v) in spec.items()}


def test_best_conventional_is_chosen_on_validation_not_test():
    # oversample is best on TEST, weighted on VALIDATION: the verdict must compare with weighted
    runs = _runs({"baseline": ([0.5] * 10, 0.50), "oversample": ([0.9] * 10, 0.55), "weighted": ([0.6] * 10, 0.70),
                  "gan@1.0": ([0.8] * 10, 0.60)})
    arms = expand_arms(["baseline", "oversample", "weighted", "gan"], [1.0])
    v = verdict(runs, arms, NAMES, "sens_at_spec")
    assert v["best_conventional"] == "weighted" and v["best_gan"] == "gan@1.0"
    assert set(v["comparisons"]["gan@1.0"]) == {"weighted", "baseline"}
    c = v["comparisons"]["gan@1.0"]["weighted"]["scarce_sens_at_spec"]
    assert c["diff"] == pytest.approx(0.2) and c["p"] == pytest.approx(2 / 1024)
    assert c["p_holm"] == pytest.approx(2 * 2 / 1024) and c["beats"]  # 2 comparisons in the family
    assert v["headline"][0].startswith("**Synthetic data beat the best conventional option** (`weighted`")


def test_headline_says_not_beaten_first_and_names_the_auroc_cost():
    runs = _runs({"baseline": ([0.5] * 10, 0.5), "classical+oversample": ([0.73] * 10, 0.7),
                  "gan+oversample@0.5": ([0.71, 0.72] * 5, 0.6)})
    arms = expand_arms(["baseline", "classical+oversample", "gan+oversample"], [0.5])
    v = verdict(runs, arms, NAMES, "sens_at_spec")
    assert v["headline"][0].startswith("**Synthetic data did NOT beat the best conventional option** "
                                       "(`classical+oversample`")
    assert "AUROC" in v["headline"][1] and "Holm-adjusted p" in v["headline"][1]
    assert "gan+oversample@0.5" in v["headline"][2]  # significantly worse than the reference: said


def test_ties_on_validation_go_to_the_higher_validation_auroc():
    s = {"a": {"validation_primary": {"mean": 0.9}, "validation_auroc": {"mean": 0.7}},
         "b": {"validation_primary": {"mean": 0.9}, "validation_auroc": {"mean": 0.8}}}
    assert best_by_validation(s, ["a", "b"]) == "b"
