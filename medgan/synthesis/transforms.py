"""MONAI transforms that swap a training sample for a synthetic one of the same class.

Following MONAI's array/dictionary pattern:

* :class:`RandSyntheticReplace` (array, a :class:`monai.transforms.RandomizableTransform`):
  ``t(img, label)`` returns, with probability ``prob`` (or a per-class probability), a synthetic image of the
  same class drawn from a :class:`~medgan.synthesis.bank.SyntheticBank`, else ``img`` unchanged.
* :class:`RandSyntheticReplaced` (dictionary; aliases ``RandSyntheticReplaceD``, ``RandSyntheticReplaceDict``):
  reads the class from ``label_key``, makes one decision for all ``keys``, and sets ``d["is_synthetic"]``;
  a sample flagged ``d["synthesize"]`` (see :func:`medgan.synthesis.mixing.add_synthetic_slots`) is always
  replaced: that is how synthetic samples are *added* to bring a scarce class to a target share.

Where it goes: right after ``LoadImaged`` and ``EnsureChannelFirstd``, before any intensity or random spatial
transform. There the defaults match a real sample: the image is laid out as MONAI's ``LoadImage`` lays out the
training data's files (the bank's ``layout="monai"``), in the training data's source value range
(``value_range="auto"``), and the synthetic image then goes through every later transform like a real one.

Classes: ``class_names`` (the pipeline's class names in label order, or a mapping) maps the pipeline's labels
to the bank's classes and refuses a class the bank lacks; labels may be indices or names. A sample whose dict
carries ``class_name`` (as MONAI's ``MedNISTDataset`` items do) is checked against its label.

A replaced ``MetaTensor`` carries fresh metadata (empty ``applied_operations``, ``filename_or_obj`` =
``synthetic:<class>/<bank position>``, the model grid's spacing in its affine, ``is_synthetic``). On its first
call the transform compares the real image with the synthetic ones and warns once when their orientation or
value range differ, naming the fix.

Randomness comes only from the transform's own ``R`` (``set_random_state`` makes it deterministic; MONAI's
DataLoader seeds each worker through it).
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

from medgan.data.classes import folder_name
from medgan.errors import DatasetError, MedganError
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.conventions import ClassMap, label_index, orientation_hint, range_hint, synthetic_meta, warn_once

__all__ = ["RandSyntheticReplace", "RandSyntheticReplaced", "RandSyntheticReplaceD", "RandSyntheticReplaceDict",
           "label_index"]


def _probability(value: Any, what: str) -> float:
    """A probability given by the user: a real number in [0, 1] (not a string, ``None`` or a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not 0.0 <= float(value) <= 1.0:
        raise MedganError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


class RandSyntheticReplace(RandomizableTransform):
    """With probability ``prob``, replace an image by a synthetic image of the same class from ``bank``.

    Args:
        bank: the pool of synthetic images (with class names, intensity mapping and model grid).
        prob: replacement probability for every eligible class.
        class_prob: per-class probabilities ``{class: p}``; classes not listed use ``prob`` (only those in
            ``classes`` when it is given).
        classes: only these classes (names or indices) are ever replaced. Default: every class the bank holds.
        value_range: ``"auto"`` (default: ``"source"`` when the bank records the training data's range, else
            ``"model"``), ``"source"`` (the training data's range, e.g. 0..255: what ``LoadImage`` gives),
            ``"model"`` ([-1, 1]) or ``(low, high)``.
        class_names: the pipeline's class names in label order, or a mapping ``{pipeline label: bank class}``;
            default: labels are the bank's class indices or names.
        layout: ``"monai"`` or ``"array"`` to override the bank's layout (default: the bank's, ``"monai"``).
        check: compare the first real image with the synthetic ones and warn once on a layout or range mismatch.

    Example::

        bank = SyntheticBank.from_checkpoint("runs/breast", n_per_class=500)
        t = RandSyntheticReplace(bank, prob=0.5, class_names=["malignant", "normal, benign"])
        img = t(LoadImage(ensure_channel_first=True)("0_malignant.png"), "malignant")
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, bank: SyntheticBank, prob: float = 0.5, class_prob: Mapping[int | str, float] | None = None,
                 classes: Sequence[int | str] | None = None, value_range: str | tuple[float, float] = "auto",
                 class_names: Sequence[str] | Mapping[Any, Any] | None = None, layout: str | None = None,
                 check: bool = True) -> None:
        RandomizableTransform.__init__(self, _probability(prob, "prob"))
        if class_prob is not None and not isinstance(class_prob, Mapping):
            raise MedganError(f"class_prob must be a mapping {{class: probability}}, got {type(class_prob).__name__}")
        if not isinstance(bank, SyntheticBank):
            raise MedganError("bank must be a SyntheticBank (SyntheticBank.from_checkpoint / from_folder / "
                              "from_tensors)")
        self.bank = bank if layout is None or layout == bank.layout else bank.with_layout(layout)
        self.value_range = self._value_range(value_range)
        self.classes = ClassMap(bank.class_names, class_names)
        self.class_probs = self._class_probs(classes, class_prob)
        self.check = bool(check)
        self._checked = False
        self._label = -1
        self._pick: int | None = None

    def _value_range(self, value_range: Any) -> str | tuple[float, float]:
        if isinstance(value_range, str):
            if value_range not in ("auto", "model", "source"):
                raise MedganError(f"value_range must be 'auto', 'model', 'source' or (low, high), got {value_range!r}")
            if value_range == "auto":
                return "source" if self.bank.intensity else "model"
            if value_range == "source" and not self.bank.intensity:
                raise MedganError("value_range='source' needs a bank with a recorded intensity range")
            return value_range
        lo, hi = (float(v) for v in value_range)
        return (lo, hi)

    def _class_probs(self, classes: Sequence[int | str] | None, class_prob: Mapping | None) -> np.ndarray:
        bank = self.bank
        eligible = [self.classes(c) for c in classes] if classes is not None else \
            [c for c in range(bank.num_classes) if bank.has(c)]
        p = np.zeros(bank.num_classes, dtype=np.float64)
        p[eligible] = self.prob
        for c, v in (class_prob or {}).items():
            i = self.classes(c)
            if classes is not None and i not in eligible:
                raise MedganError(f"class_prob names class {c!r}, which is not in classes={list(classes)}")
            p[i] = _probability(v, f"class_prob[{c!r}]")
        for i in np.flatnonzero(p > 0):
            if not bank.has(int(i)):
                raise MedganError(f"the synthetic bank holds no image of class {bank.class_names[i]!r}; add it to "
                                  "the bank or set its probability to 0")
        return p

    @property
    def output_range(self) -> tuple[float, float]:
        """The value range [-1, 1] is mapped onto."""
        if self.value_range == "model":
            return (-1.0, 1.0)
        if self.value_range == "source":
            return (float(self.bank.intensity["min"]), float(self.bank.intensity["max"]))
        return self.value_range  # type: ignore[return-value]

    @property
    def replacing(self) -> bool:
        """Whether the last :meth:`randomize` decided to replace the sample."""
        return bool(self._do_transform)

    @property
    def current_class(self) -> int:
        """The bank's class index of the label last given to :meth:`randomize` (-1 before the first call)."""
        return self._label

    def probability(self, label: Any) -> float:
        """The replacement probability for a sample of class ``label``."""
        return float(self.class_probs[self.classes(label)])

    def randomize(self, label: Any, force: bool = False) -> None:
        """Decide (one draw from ``R``) whether to replace, and pick the synthetic image (a second draw).
        ``force``: replace whatever the probability (a synthetic slot)."""
        self._label = self.classes(label)
        self._do_transform = bool(self.R.rand() < float(self.class_probs[self._label])) or bool(force)
        self._pick = self.bank.pick(self._label, self.R) if self._do_transform else None

    def _to_range(self, syn: torch.Tensor) -> torch.Tensor:
        lo, hi = self.output_range
        return syn if (lo, hi) == (-1.0, 1.0) else (syn + 1.0) * (0.5 * (hi - lo)) + lo

    def _check_shape(self, img: Any, channels: int) -> bool:
        """Whether ``img`` has a channel axis; raises when its shape cannot take a bank image."""
        spatial, shape = self.bank.spatial_shape, tuple(img.shape)
        if shape[-len(spatial):] != spatial or len(shape) not in (len(spatial), len(spatial) + 1):
            raise DatasetError(f"image of shape {shape} does not match the synthetic bank's {self.bank.shape} "
                               "(channel-first); resize the images to the bank's size first (e.g. Resized before "
                               "the transform), or build the bank at the training size")
        if len(shape) == len(spatial) + 1 and shape[0] != channels:
            raise DatasetError(f"image has {shape[0]} channels but the synthetic bank {channels}; convert the "
                               "images (e.g. EnsureChannelFirstd, RepeatChannel) or use a bank with matching channels")
        if len(shape) == len(spatial) and channels != 1:
            raise DatasetError(f"image of shape {shape} has no channel axis but the bank has {channels} channels; "
                               "add EnsureChannelFirstd before the transform")
        return len(shape) == len(spatial) + 1

    def check_real(self, img: Any, label: int) -> None:
        """Compare a real image with the bank's images of its class; warn once on a layout or range mismatch.
        (A sample of a class the bank lacks is skipped: the next one is compared.)"""
        if not self.bank.has(label):
            return
        self._checked = True
        a = img.detach().cpu().float().numpy() if isinstance(img, torch.Tensor) else np.asarray(img, np.float32)
        if a.ndim == len(self.bank.spatial_shape):
            a = a[None]
        if a.shape[1:] != tuple(self.bank.spatial_shape):
            return
        mean = self.bank.mean_image(label).numpy()
        warn_once(self, orientation_hint(a, mean, self.bank.layout))
        idx = self.bank.indices(label)[:64]
        syn = self._to_range(torch.stack([self.bank.get(int(i)) for i in idx])).flatten(1)
        lo, hi = self.output_range
        warn_once(self, range_hint(a, float(syn.min(1).values.median()), float(syn.max(1).values.median()), lo, hi,
                                   self.value_range))

    def _synthetic_like(self, img: Any) -> Any:
        syn = self.bank.get(self._pick)  # (C, *spatial) float32 in [-1, 1], in the bank's layout
        if not self._check_shape(img, syn.shape[0]):
            syn = syn[0]
        syn = self._to_range(syn)
        dst_dtype = img.dtype
        is_int = (dst_dtype.is_floating_point is False and dst_dtype != torch.bool) if isinstance(dst_dtype, torch.dtype) \
            else np.issubdtype(np.dtype(dst_dtype), np.integer)
        if is_int:
            syn = torch.round(syn)
        if isinstance(img, MetaTensor):
            name = f"synthetic:{folder_name(self.bank.class_names[self._label])}/{self._pick}"
            meta = synthetic_meta(img.meta, self.bank.affine(), self.bank.spatial_shape, name)
            out = MetaTensor(syn.to(device=img.device, dtype=img.dtype), meta=meta)
            out.applied_operations = []
            return out
        out, *_ = convert_to_dst_type(syn, img)
        return out

    def __call__(self, img: Any, label: Any = None, randomize: bool = True) -> Any:
        """``img`` (channel-first) of class ``label`` -> a synthetic image of that class, or ``img``."""
        if randomize:
            if label is None:
                raise MedganError("RandSyntheticReplace needs the class label: call t(img, label)")
            self.randomize(label)
        if self.check and not self._checked and self._label >= 0:
            self.check_real(img, self._label)
        if not self._do_transform:
            return img
        if self._pick is None:
            raise MedganError("call randomize(label) before applying RandSyntheticReplace with randomize=False")
        return self._synthetic_like(img)


class RandSyntheticReplaced(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandSyntheticReplace`.

    One decision per sample, read from ``d[label_key]``, applies to every key in ``keys`` (each converted to
    that key's type); ``d[synthetic_key]`` becomes ``True`` when the sample was replaced (and stays ``True`` if it
    already was synthetic), else ``False``. A sample with a true ``d[synthesize_key]`` is always replaced. When
    ``d[class_name_key]`` is a class name, it must name the class the label maps to. Other keys are untouched.

    Example (the placement that works; ``names`` are the pipeline's classes in label order)::

        Compose([LoadImaged("image"), EnsureChannelFirstd("image"),
                 RandSyntheticReplaced("image", bank=bank, class_names=names, prob=0.3),
                 ScaleIntensityd("image"), RandFlipd("image", prob=0.5), ...])
    """

    backend = RandSyntheticReplace.backend

    def __init__(self, keys: KeysCollection, label_key: str = "label", bank: SyntheticBank | None = None,
                 prob: float = 0.5, class_prob: Mapping[int | str, float] | None = None,
                 classes: Sequence[int | str] | None = None, value_range: str | tuple[float, float] = "auto",
                 synthetic_key: str | None = "is_synthetic", allow_missing_keys: bool = False,
                 class_names: Sequence[str] | Mapping[Any, Any] | None = None, layout: str | None = None,
                 synthesize_key: str | None = "synthesize", class_name_key: str | None = "class_name",
                 check: bool = True) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, _probability(prob, "prob"))
        if bank is None:
            raise MedganError("RandSyntheticReplaced needs bank=SyntheticBank(...)")
        self.label_key = label_key
        self.synthetic_key = synthetic_key
        self.synthesize_key = synthesize_key
        self.class_name_key = class_name_key
        self.replacer = RandSyntheticReplace(bank, prob=prob, class_prob=class_prob, classes=classes,
                                             value_range=value_range, class_names=class_names, layout=layout,
                                             check=check)

    def set_random_state(self, seed: int | None = None,
                         state: np.random.RandomState | None = None) -> RandSyntheticReplaced:
        super().set_random_state(seed, state)
        self.replacer.set_random_state(seed, state)
        return self

    def randomize(self, label: Any, force: bool = False) -> None:
        self.replacer.randomize(label, force)
        self._do_transform = self.replacer.replacing

    def _check_class_name(self, d: Mapping[Hashable, Any], label: Any) -> None:
        name = d.get(self.class_name_key) if self.class_name_key else None
        if not isinstance(name, str):
            return
        r = self.replacer
        try:
            named = r.classes(name)
        except MedganError:
            return  # a class_name the mapping does not know: nothing to compare
        if named != r.current_class:
            raise MedganError(f"label {label!r} maps to the bank's class {r.bank.class_names[r.current_class]!r} but the "
                              f"sample's {self.class_name_key} is {name!r}; pass class_names=[...] with the "
                              "pipeline's class names in label order")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.label_key not in d:
            raise MedganError(f"RandSyntheticReplaced: the sample has no label key {self.label_key!r} "
                              f"(keys: {', '.join(map(str, d))}); set label_key")
        force = bool(d.pop(self.synthesize_key, False)) if self.synthesize_key else False
        self.randomize(d[self.label_key], force)
        self._check_class_name(d, d[self.label_key])
        for key in self.key_iterator(d):
            d[key] = self.replacer(d[key], randomize=False)
        if self.synthetic_key is not None:
            d[self.synthetic_key] = bool(self._do_transform) or bool(d.get(self.synthetic_key, False))
        return d


RandSyntheticReplaceD = RandSyntheticReplaceDict = RandSyntheticReplaced
