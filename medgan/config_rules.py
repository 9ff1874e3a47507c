"""The rules the typed configuration (:mod:`medgan.config`) enforces beyond the types of its fields.

* every section refuses unknown keys, non-finite floats (``.inf``, ``.nan``, ``1e400``) and booleans given for
  numbers (pydantic alone reads ``steps: true`` as 1 step);
* the bounds of seeds, synthetic:real ratios and the number of evaluation seeds, each with its reason;
* the form of a ``--scarce`` rule (:func:`scarce_rule`), shared with :mod:`medgan.data.scarcity`.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from medgan.errors import ConfigError

#: Seeds go to torch (``torch.manual_seed``, up to 64 bits) and NumPy; a run seed is kept below 2**63 (a signed
#: 64-bit integer: checkpoints, manifests and torch tensors hold it), the split seed below 2**32 (it seeds
#: ``numpy.random.RandomState``).
MAX_SEED = 2**63 - 1
MAX_SPLIT_SEED = 2**32 - 1
#: Largest synthetic:real ratio of a GAN arm: 100 synthetic images per real one (published GAN-augmentation
#: studies use ratios up to a few); beyond it the pool alone would outgrow memory on any real dataset.
MAX_RATIO = 100.0
#: Most classifier seeds per arm: 1000 already train 1000 classifiers per arm (10 give p-values down to 0.002).
MAX_EVAL_SEEDS = 1000


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type accepts ``True``/``False`` (anywhere in a union, list or literal)."""
    if annotation is bool:
        return True
    return any(_admits_bool(a) or a is True or a is False for a in typing.get_args(annotation))


def seed_bound(v: int, top: int, why: str) -> int:
    if not 0 <= v <= top:
        raise ValueError(f"a seed must be a whole number from 0 to {top} ({why})")
    return v


class Section(BaseModel):
    """Every section: unknown keys are refused; floats must be finite (``.inf`` and ``.nan`` are refused), and a
    boolean is not taken for a number (pydantic would read ``steps: true`` as 1 step)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: ValidationInfo) -> Any:
        items = v if isinstance(v, list) else [v]
        if any(isinstance(x, bool) for x in items) and info.field_name in cls.model_fields \
                and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("true/false is not a value of this setting; give a number or a name")
        return v


def scarce_rule(spec: str) -> tuple[str, str, float]:
    """One ``--scarce`` rule -> ``(class token, "fraction" | "count", value)``; :class:`ConfigError` unless it is
    ``CLASS=FRACTION`` with a fraction in (0, 1] or ``CLASS=N`` with a whole number N >= 1."""
    if "=" not in spec:
        raise ConfigError(f"bad --scarce '{spec}'; use CLASS=FRACTION (e.g. 0=0.2) or CLASS=N (e.g. malignant=30)")
    cls_tok, val_tok = spec.split("=", 1)
    try:
        val = float(val_tok)
    except ValueError:
        val = math.nan
    if not math.isfinite(val):
        raise ConfigError(f"bad --scarce value '{val_tok}' for class '{cls_tok}'; use a fraction in (0, 1] or a "
                          "whole number of images")
    if "." in val_tok or val < 1 or val_tok.strip() == "1.0":
        if not 0 < val <= 1:
            raise ConfigError(f"--scarce fraction for class '{cls_tok}' must be in (0, 1], got {val_tok}")
        return cls_tok, "fraction", val
    if val != int(val):
        raise ConfigError(f"--scarce count for class '{cls_tok}' must be a whole number of images, got {val_tok}")
    return cls_tok, "count", val


def check_ratio(r: Any) -> float:
    """A synthetic:real ratio -> float; :class:`ValueError` unless a finite number in (0, :data:`MAX_RATIO`]."""
    try:
        x = float(r)
    except (TypeError, ValueError):
        raise ValueError(f"bad synthetic ratio '{r}'; use numbers > 0 (synthetic:real, e.g. 0.5,1.0) or 'balance' "
                         "(--ratio)") from None
    if not 0 < x <= MAX_RATIO:  # also NaN
        raise ValueError(f"bad synthetic ratio '{r}'; use a number in (0, {MAX_RATIO:g}] (synthetic:real, e.g. "
                         f"0.5,1.0; more than {MAX_RATIO:g} synthetic images per real one would not fit in memory) "
                         "or 'balance' (--ratio)")
    return x


def csv_list(v: Any) -> Any:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; anything else as given."""
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return v
