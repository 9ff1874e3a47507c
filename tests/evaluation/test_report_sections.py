"""Tests for medgan.evaluation.report_sections: the quality and memorisation numbers carry their scale and meaning."""

from __future__ import annotations

from medgan.evaluation.report_sections import privacy_markdown, quality_markdown


def test_quality_section_explains_distances_fidelity_and_zero_floors():
    prdc = {"precision": 0.5, "recall": 0.4, "density": 0.9, "coverage": 0.3, "k": 5}
    zero = {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0, "k": 5}
    cls = {"n_synthetic": 20, "prdc": prdc, "prdc_floor_test_vs_train": zero, "synthetic_accuracy": 0.9, "fd": 3.0,
           "fd_floor": 1.0, "fd_norm": 3.0, "fidelity": 1.4, "diversity_ratio": 0.8}
    q = {"feature_space": "the teacher's penultimate features (5 x 64)",
         "teacher": {"recipe": "5 small CNNs, classical+oversample", "source": "fitted here",
                     "val_balanced_accuracy": 0.8},
         "frechet": {"synthetic_vs_train": 3.0, "floor_test_vs_train": 1.0},
         "kid": {"synthetic_vs_train": {"subset_size": 10, "mean": 0.1, "sd": 0.01},
                 "floor_test_vs_train": {"mean": 0.02, "sd": 0.01}},
         "per_class": {"malignant": cls,
                       "benign": {**cls, "fidelity": None, "fidelity_not_measurable": "validation sensitivity 0.40"}},
         "synthetic_accuracy": 0.9}
    md = "\n".join(quality_markdown(q))
    assert "Euclidean" in md and "not standardised" in md and "teacher" in md
    assert "a floor of 0.000 means" in md and "k = 5 nearest neighbours" in md
    assert "caricatures" in md and "| 1.40 |" in md
    assert "not measurable" in md and "validation sensitivity 0.40" in md


def test_memorisation_section_gives_units_and_the_threshold_rule():
    stats = {"min": 0.1, "median": 5.894}
    pv = {"rule": "flagged when the pixel-space distance to the nearest real training image is at or below "
                  "percentile 1 of the real training images' leave-one-out nearest-neighbour distances",
          "percentile": 1.0, "flagged": 0, "n_synthetic": 10, "fraction_flagged": 0.0,
          "pixel": {"threshold": 0.302, "real_loo_nn": stats, "synthetic_nn": stats, "fraction_below_threshold": 0.0,
                    "real_flag_rate": 0.01, "fraction_below_p5": 0.0, "same_class_nn": 1.0}}
    md = "\n".join(privacy_markdown(pv, n_values=784))
    assert "Euclidean" in md and "[-1, 1]" in md and "divide a pixel distance by 28.0" in md
    assert "percentile 1 of the real training images' leave-one-out" in md and "than 99% of the real" in md
    assert "typical gap between two different real images" in md
