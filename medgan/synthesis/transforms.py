"""MONAI transforms that swap a training sample for a synthetic one of the same class.

Following MONAI's array/dictionary pattern:

* :class:`RandSyntheticReplace` (array, a :class:`monai.transforms.RandomizableTransform`):
  ``t(img, label)`` returns, with probability ``prob`` (or a per-class probability), a synthetic image of the
  same class drawn from a :class:`~medgan.synthesis.bank.SyntheticBank`, else ``img`` unchanged.
* :class:`RandSyntheticReplaced` (dictionary; aliases ``RandSyntheticReplaceD``, ``RandSyntheticReplaceDict``):
  reads the class from ``label_key``, makes one decision for all ``keys``, and sets ``d["is_synthetic"]``.

Randomness comes only from the transform's own ``R`` (``set_random_state`` makes it deterministic; MONAI's
DataLoader seeds each worker through it). The replacement keeps the input's type (``MetaTensor``, tensor or
numpy), dtype, device and shape; MetaTensor metadata is kept (so later spatial transforms still work) with
``filename_or_obj`` set to ``synthetic:<bank position>``.

Values: the bank holds model-space images in [-1, 1]. ``value_range="model"`` returns them as they are (use it
after an intensity transform to [-1, 1]); ``"source"`` maps them to the training data's source range (e.g.
0..255, to place the transform right after ``LoadImaged``/``EnsureChannelFirstd`` so the synthetic image goes
through the same intensity transforms as the real one); a ``(low, high)`` pair maps [-1, 1] linearly onto it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type

from medgan.errors import DatasetError, MedganError
from medgan.synthesis.bank import SyntheticBank

__all__ = ["RandSyntheticReplace", "RandSyntheticReplaced", "RandSyntheticReplaceD", "RandSyntheticReplaceDict"]


def label_index(label: Any, num_classes: int | None = None) -> int:
    """A class index from an int, a one-element array/tensor, or a one-hot vector."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return int(label)
    a = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label).reshape(-1)
    if a.size == 1:
        return int(a[0])
    if num_classes is not None and a.size == num_classes and np.isclose(a.sum(), 1) and ((a == 0) | (a == 1)).all():
        return int(a.argmax())
    raise MedganError(f"cannot read a class index from a label of shape {np.shape(a)}; pass one integer class per "
                      "sample (or a one-hot vector)")


class RandSyntheticReplace(RandomizableTransform):
    """With probability ``prob``, replace an image by a synthetic image of the same class from ``bank``.

    Args:
        bank: the pool of synthetic images (model space, with class names).
        prob: replacement probability for every eligible class.
        class_prob: per-class probabilities ``{class name or index: p}``; classes not listed use ``prob``
            (only those in ``classes`` when it is given).
        classes: only these classes (names or indices) are ever replaced. Default: every class the bank holds.
        value_range: ``"model"`` ([-1, 1]), ``"source"`` (the training data's range) or ``(low, high)``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, bank: SyntheticBank, prob: float = 0.5, class_prob: Mapping[int | str, float] | None = None,
                 classes: Sequence[int | str] | None = None,
                 value_range: str | tuple[float, float] = "model") -> None:
        RandomizableTransform.__init__(self, prob)
        if not isinstance(bank, SyntheticBank):
            raise MedganError("bank must be a SyntheticBank (SyntheticBank.from_checkpoint / from_folder / "
                              "from_tensors)")
        self.bank = bank
        if isinstance(value_range, str) and value_range not in ("model", "source"):
            raise MedganError(f"value_range must be 'model', 'source' or (low, high), got {value_range!r}")
        if value_range == "source" and not bank.intensity:
            raise MedganError("value_range='source' needs a bank with a recorded intensity range")
        self.value_range = value_range if isinstance(value_range, str) else (float(value_range[0]),
                                                                           float(value_range[1]))
        eligible = [bank.class_index(c) for c in classes] if classes is not None else \
            [c for c in range(bank.num_classes) if bank.has(c)]
        p = np.zeros(bank.num_classes, dtype=np.float64)
        p[eligible] = self.prob
        for c, v in (class_prob or {}).items():
            i = bank.class_index(c)
            if classes is not None and i not in eligible:
                raise MedganError(f"class_prob names class {c!r}, which is not in classes={list(classes)}")
            p[i] = min(max(float(v), 0.0), 1.0)
        for i in np.flatnonzero(p > 0):
            if not bank.has(int(i)):
                raise MedganError(f"the synthetic bank holds no image of class {bank.class_names[i]!r}; add it to "
                                  "the bank or set its probability to 0")
        self.class_probs = p
        self._label = -1
        self._pick: int | None = None

    def probability(self, label: Any) -> float:
        """The replacement probability for a sample of class ``label``."""
        c = label_index(label, self.bank.num_classes)
        return float(self.class_probs[c]) if 0 <= c < len(self.class_probs) else 0.0

    def randomize(self, label: Any) -> None:
        """Decide (one draw from ``R``) whether to replace, and pick the synthetic image (a second draw)."""
        self._label = label_index(label, self.bank.num_classes)
        p = float(self.class_probs[self._label]) if 0 <= self._label < len(self.class_probs) else 0.0
        self._do_transform = bool(self.R.rand() < p)
        self._pick = self.bank.pick(self._label, self.R) if self._do_transform else None

    def _synthetic_like(self, img: Any) -> Any:
        syn = self.bank.get(self._pick)  # (C, *spatial) float32 in [-1, 1]
        spatial = self.bank.spatial_shape
        shape = tuple(img.shape)
        if shape[-len(spatial):] != spatial or len(shape) not in (len(spatial), len(spatial) + 1):
            raise DatasetError(f"image of shape {shape} does not match the synthetic bank's {self.bank.shape} "
                               "(channel-first); resize the images to the bank's size first, or build the bank at "
                               "the training size")
        if len(shape) == len(spatial) + 1 and shape[0] != syn.shape[0]:
            raise DatasetError(f"image has {shape[0]} channels but the synthetic bank {syn.shape[0]}; convert the "
                               "images (e.g. EnsureChannelFirstd, RepeatChannel) or use a bank with matching channels")
        if len(shape) == len(spatial):
            if syn.shape[0] != 1:
                raise DatasetError(f"image of shape {shape} has no channel axis but the bank has {syn.shape[0]} "
                                   "channels; add EnsureChannelFirstd before the transform")
            syn = syn[0]
        if self.value_range == "source":
            syn = self.bank.to_source_range(syn)
        elif self.value_range != "model":
            lo, hi = self.value_range
            syn = (syn + 1.0) * (0.5 * (hi - lo)) + lo
        dst_dtype = img.dtype
        is_int = (dst_dtype.is_floating_point is False and dst_dtype != torch.bool) if isinstance(dst_dtype, torch.dtype) \
            else np.issubdtype(np.dtype(dst_dtype), np.integer)
        if is_int:
            syn = torch.round(syn)
        out, *_ = convert_to_dst_type(syn, img)
        if isinstance(out, MetaTensor):
            out.meta["filename_or_obj"] = f"synthetic:{self._pick}"
        return out

    def __call__(self, img: Any, label: Any = None, randomize: bool = True) -> Any:
        """``img`` (channel-first) of class ``label`` -> a synthetic image of that class, or ``img``."""
        if randomize:
            if label is None:
                raise MedganError("RandSyntheticReplace needs the class label: call t(img, label)")
            self.randomize(label)
        if not self._do_transform:
            return img
        if self._pick is None:
            raise MedganError("call randomize(label) before applying RandSyntheticReplace with randomize=False")
        return self._synthetic_like(img)


class RandSyntheticReplaced(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandSyntheticReplace`.

    One decision per sample, read from ``d[label_key]``, applies to every key in ``keys`` (each converted to
    that key's type); ``d[synthetic_key]`` becomes ``True`` when the sample was replaced (and stays ``True`` if it
    already was synthetic), else ``False``. Other keys are left untouched.
    """

    backend = RandSyntheticReplace.backend

    def __init__(self, keys: KeysCollection, label_key: str, bank: SyntheticBank, prob: float = 0.5,
                 class_prob: Mapping[int | str, float] | None = None, classes: Sequence[int | str] | None = None,
                 value_range: str | tuple[float, float] = "model", synthetic_key: str | None = "is_synthetic",
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.synthetic_key = synthetic_key
        self.replacer = RandSyntheticReplace(bank, prob=prob, class_prob=class_prob, classes=classes,
                                             value_range=value_range)

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> RandSyntheticReplaced:
        super().set_random_state(seed, state)
        self.replacer.set_random_state(seed, state)
        return self

    def randomize(self, label: Any) -> None:
        self.replacer.randomize(label)
        self._do_transform = self.replacer._do_transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.label_key not in d:
            raise MedganError(f"RandSyntheticReplaced: the sample has no label key {self.label_key!r} "
                              f"(keys: {', '.join(map(str, d))}); set label_key")
        self.randomize(d[self.label_key])
        for key in self.key_iterator(d):
            d[key] = self.replacer(d[key], randomize=False)
        if self.synthetic_key is not None:
            d[self.synthetic_key] = bool(self._do_transform) or bool(d.get(self.synthetic_key, False))
        return d


RandSyntheticReplaceD = RandSyntheticReplaceDict = RandSyntheticReplaced
