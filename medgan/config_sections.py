"""The configuration sections of medgan's two judges and translators: the teacher (the one real-data yardstick,
:mod:`medgan.classify.teacher`) and the image-conditioned translator (:mod:`medgan.models.translator`). Part of the
typed configuration of :mod:`medgan.config`, which re-exports them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medgan.config_rules import Section


class TeacherConfig(Section):
    """The teacher (:mod:`medgan.classify.teacher`): the one yardstick and judge of synthetic images, fitted once on
    the real training split with the strongest conventional recipe (classical augmentation + class-balanced
    batches, as the ``classical+oversample`` arm) and selected on real validation; quality tracking, ``evaluate``'s
    quality section and sample filtering all use it."""

    members: int = Field(5, ge=1, le=32)
    """Small CNNs in the ensemble (seeds 0..members-1, trained together as one stacked network)."""
    epochs: int = Field(60, ge=1)
    """At most this many epochs of ceil(N_real_train / batch_size) steps (60/30/15 kept the held-out validation
    AUROC of 80/40/20 at 0.6-0.8x its epochs: pipelines/bench_teacher.py, docs/results.md "The teacher")."""
    patience: int = Field(15, ge=1)
    """Stop a member after this many epochs without a better validation score (not before ``min_epochs``)."""
    min_epochs: int = Field(30, ge=0)
    select: Literal["auroc", "loss", "balanced_accuracy"] = "auroc"
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    classical: Literal["mild", "moderate"] = "mild"
    amp: Literal["off", "bf16"] = "bf16"
    """The stacked members train under bfloat16 autocast (weights, optimiser and every prediction stay float32; a
    lone member stays float32), as ``evaluate.amp``."""
    target_specificity: float = Field(0.8, gt=0.0, lt=1.0)
    """Per class, the teacher's operating point: the threshold chosen on validation for this specificity."""
    min_sensitivity: float = Field(0.6, ge=0.0, le=1.0)
    """A class whose validation sensitivity at that operating point is lower: its fidelity is not measurable."""


class TranslatorConfig(Section):
    """The image translator (``model.kind: translator``); ``train`` gives its steps, batch, rates, seed, DiffAugment."""
    base_channels: int = Field(16, ge=1)
    """Width of the first block of the translator (doubled at its two down-sampling levels) and of its D."""
    res_blocks: int = Field(2, ge=0)
    """Residual blocks with class-conditional instance norm at the coarsest level."""
    class_weight: float = Field(1.0, ge=0.0)
    """Weight of the class losses (D classifies real images; the translator makes D see the target class)."""
    cycle_weight: float = Field(10.0, ge=0.0)
    """Weight of the cycle loss: L1 between an image and its translation translated back to its own class."""
    identity_weight: float = Field(5.0, ge=0.0)
    """Weight of the identity loss: L1 between an image and its translation into its own class (strength 0)."""
    keep_weight: float = Field(0.0, ge=0.0)
    """Weight of a direct L1 between a translation and its source (0: off): keeps more of the source."""
