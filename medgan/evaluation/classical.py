"""Classical augmentation for the evaluation's conventional arms: :mod:`medgan.classify.augment` (it lives in the
classify layer because the teacher, :mod:`medgan.classify.teacher`, is fitted with it too)."""

from __future__ import annotations

from medgan.classify.augment import STRENGTHS, ClassicalAugment, augment_group, classical_augment

__all__ = ["STRENGTHS", "ClassicalAugment", "augment_group", "classical_augment"]
