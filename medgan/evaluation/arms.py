"""The experimental conditions of ``medgan evaluate`` ("arms"), and which classes a study is about.

An arm is a training set (real only, or real + synthetic) and up to three conventional measures against class
imbalance, combined by name with ``+``:

========================  ==============================================================================
``baseline``              the real (scarce) training split, shuffled batches, plain cross-entropy
``oversample``            class-balanced batches (each class drawn with equal probability, with replacement)
``weighted``              class-weighted cross-entropy (weights N / (K n_c))
``classical``             classical augmentation of every batch (:mod:`medgan.classify.augment`)
``classical+oversample``  both: the strongest conventional option in the recorded study
``gan@R``                 real + synthetic images (allocation:
                          :func:`medgan.synthesis.allocation.fill_smallest_first`), shuffled batches
``gan+oversample@R``,     the ``gan@R`` training set with the named conventional measures
``gan+weighted@R``,
``gan+classical@R``,
``gan+classical+oversample@R``
========================  ==============================================================================

Conventional arms (no ``gan``) are the candidates for "the best conventional option", chosen on validation
(:mod:`medgan.evaluation.comparison`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medgan.config_rules import check_ratio
from medgan.errors import ConfigError

if TYPE_CHECKING:
    from medgan.data.dataset import RealData

CONVENTIONAL_ARMS = ("baseline", "oversample", "weighted", "classical", "classical+oversample")
GAN_ARMS = ("gan", "gan+oversample", "gan+weighted", "gan+classical", "gan+classical+oversample")
BASE_ARMS = CONVENTIONAL_ARMS + GAN_ARMS
BUDGET_POLICY = (
    "Every arm: same classifier, Adam, batch size and ceil(N_real_train / batch_size) optimisation steps per epoch, "
    "whatever the size of its training set; the weights with the best real-validation score are kept"
)


@dataclass(frozen=True)
class Arm:
    """One experimental condition."""

    name: str
    kind: str
    ratio: float | str | None = None

    @property
    def synthetic(self) -> bool:
        return self.kind in GAN_ARMS

    @property
    def classical(self) -> bool:
        return "classical" in self.kind.split("+")

    @property
    def balanced(self) -> bool:
        return "oversample" in self.kind.split("+")

    @property
    def weighted(self) -> bool:
        return "weighted" in self.kind.split("+")


def _ratio_label(r: float | str) -> str:
    return r if isinstance(r, str) else str(float(r))  # 0.5 -> "0.5", 1 -> "1.0"


def expand_arms(arms: list[str], ratios: list[float | str]) -> list[Arm]:
    """Arm names -> :class:`Arm` objects; GAN arms expand to one arm per ratio (``gan@0.5``, ``gan@balance``)."""
    if not arms:
        raise ConfigError("no arm to run; name at least one, e.g. --arms baseline,gan+oversample")
    out: list[Arm] = []
    for a in arms:
        a = a.strip().lower()
        if a not in BASE_ARMS:
            raise ConfigError(f"unknown arm '{a}'; choose from: {', '.join(BASE_ARMS)} (--arms, comma-separated)")
        if a in GAN_ARMS:
            if not ratios:
                raise ConfigError(f"arm '{a}' needs at least one ratio; pass --ratio 0.5,1.0 or --ratio balance")
            for r in ratios:
                if r != "balance":
                    try:
                        check_ratio(r)
                    except ValueError as e:
                        raise ConfigError(str(e)) from None
                out.append(Arm(f"{a}@{_ratio_label(r)}", a, r))
        else:
            out.append(Arm(a, a))
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"arms repeat: {', '.join(names)}; list each arm and ratio once")
    return out


def check_choices(arms: str | None = None, classifier: str | None = None, ratios: str | None = None) -> None:
    """Friendly errors (:class:`ConfigError`, exit code 2) for command-line values before the config validates them:
    unknown or no arms, an unknown classifier, a ratio that is not a number in (0, MAX_RATIO] or 'balance'."""
    from medgan.classify.nets import CLASSIFIERS

    if arms is not None and not any(a.strip() for a in arms.split(",")):
        raise ConfigError(f"--arms '{arms}' names no arm; choose from: {', '.join(BASE_ARMS)} (comma-separated)")
    for a in (arms or "").split(","):
        if a.strip() and a.strip().lower() not in BASE_ARMS:
            raise ConfigError(f"unknown arm '{a.strip()}'; choose from: {', '.join(BASE_ARMS)} "
                              "(--arms, comma-separated)")
    if classifier is not None and classifier not in CLASSIFIERS:
        raise ConfigError(f"unknown classifier '{classifier}'; choose one of: {', '.join(CLASSIFIERS)} "
                          "(--classifier)")
    for r in (ratios or "").split(","):
        r = r.strip()
        if not r or r == "balance":
            continue
        try:
            check_ratio(r)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def scarce_classes(data: RealData) -> list[int]:
    """The classes a study cares about: those named by ``--scarce`` that end up with fewer training images than
    the largest class; otherwise the smallest training class(es)."""
    counts = np.asarray(data.counts("train"))
    if data.scarcity and data.scarcity.get("rules"):
        named = [data.class_names.index(n) for n in data.scarcity["rules"] if n in data.class_names]
        picked = sorted(c for c in named if counts[c] < counts.max())
        if picked:
            return picked
    return np.flatnonzero(counts == counts.min()).tolist()
