"""``medgan augment --from-real``: real images of the other classes translated into each requested class.

The sources are the generator's own training images, read from the data the USER names (``--dataset`` with
``--scarce``, ``--split-seed``, ``--data-dir``), whose training split must reproduce the checkpoint's fingerprint
(:func:`medgan.synthesis.near_copies.checkpoint_training_data`); the dataset a checkpoint names is never opened.
For a target class ``t`` the candidates are the training images of every other class, in a seeded order
(``derive_seed(seed, t)``); the first ``n`` are translated (:class:`~medgan.synthesis.inversion.LatentTranslator`
at ``strength``). With near-copy rejection a translation that sits as close to a real training image *of class
t* (the scarce images) as the rule allows (:mod:`medgan.synthesis.near_copies`) is dropped and the next candidate
taken; when the candidates run out, dropped ones are kept (in order), as sampling keeps a sample after its last
redraw. Each manifest row names its source: ``source_index`` (the image's row in the training split),
``source_label``, ``source_class`` and ``strength``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from medgan.errors import ConfigError, MedganError
from medgan.synthesis.inversion import InversionSettings

if TYPE_CHECKING:
    from medgan.synthesis.inversion import LatentTranslator
    from medgan.synthesis.sampler import Sampler

#: The translation ``medgan augment --from-real`` and ``evaluate.pool: from_real`` use: the point of the curve
#: closest to both targets with validation sources (BreastMNIST malignant 50%: ``pipelines/translation_curve.py``,
#: docs/results.md "Translation of real images into the scarce class").
DEFAULT_STRENGTH = 0.85
DEFAULT_SCHEDULE = "uniform"
DEFAULT_RESIDUAL = 0.25
"""The share of the source's unreconstructed detail added back (:class:`~medgan.synthesis.inversion.LatentTranslator`)."""
#: The inversion settings of that translation (optimisation steps, warm-start encoder).
INVERSION = InversionSettings()


class TranslatedBatch(NamedTuple):
    """One batch of translations: what a :class:`~medgan.synthesis.sampler.SampleBatch` holds, and the sources."""

    x: Any
    y: torch.Tensor
    seeds: np.ndarray
    index: np.ndarray
    redraws: np.ndarray
    source_index: np.ndarray
    """``(B,)`` row of each source image in the training split."""
    source_label: np.ndarray


def build_translator(sampler: Sampler, log: Callable[[str], None] | None = None) -> LatentTranslator:
    """The default latent translator of a checkpoint's generator (its encoder cached, trained on first use)."""
    from medgan.synthesis.inversion import Inverter, LatentTranslator

    return LatentTranslator(Inverter.from_sampler(sampler, INVERSION, log=log), DEFAULT_SCHEDULE, DEFAULT_RESIDUAL)


def candidates(labels: np.ndarray, target: int, seed: int) -> np.ndarray:
    """The training rows of every class but ``target``, in the seeded order of ``target``."""
    from medgan.runtime import derive_seed

    rows = np.flatnonzero(np.asarray(labels) != target)
    return rows[np.random.RandomState(derive_seed(int(seed), int(target)) % 2**32).permutation(len(rows))]


@dataclass
class FromReal:
    """The sources and settings of one ``--from-real`` request (:func:`prepare_from_real`)."""

    sampler: Sampler
    train_x: torch.Tensor
    train_y: torch.Tensor
    strength: float
    reject_near_copies: bool = False
    rejected: int = 0
    """Translations dropped as near-copies of the target class's real training images."""
    log: Callable[[str], None] | None = None
    """Told when the inversion encoder is trained (first use for a checkpoint)."""
    _translator: LatentTranslator | None = None

    @property
    def translator(self) -> LatentTranslator:
        """The latent translator, built on first use (it may train the inversion encoder)."""
        if self._translator is None:
            self._translator = build_translator(self.sampler, self.log)
        return self._translator

    @property
    def class_names(self) -> list[str]:
        return self.sampler.class_names

    def check_counts(self, counts: dict[int, int]) -> None:
        """Each target class needs as many candidate sources as translations asked of it."""
        names = self.class_names
        for t, k in counts.items():
            have = int((self.train_y != t).sum())
            if k > have:
                raise ConfigError(f"--from-real: {k} translated '{names[t]}' images asked but the training split "
                                  f"has only {have} images of other classes to translate; lower --n to {have}")

    def _filter(self, t: int):
        from medgan.synthesis.near_copies import NearCopyFilter

        own = self.train_x[self.train_y == t]
        if not self.reject_near_copies or len(own) < 2:
            return None
        return NearCopyFilter(own)

    def _translate(self, rows: np.ndarray, t: int) -> torch.Tensor:
        idx = torch.as_tensor(rows, dtype=torch.long)
        ys = self.train_y[idx]
        return self.translator.translate(self.train_x[idx], ys, torch.full_like(ys, t), self.strength)

    def stream(self, counts: dict[int, int], seed: int, batch_size: int,
               to_source: Callable[[torch.Tensor], Any]) -> Iterator[TranslatedBatch]:
        """The translations, target class by target class, in batches of at most ``batch_size``."""
        from medgan.synthesis.seeds import derive_seeds

        for t, k in counts.items():
            if k <= 0:
                continue
            order = candidates(self.train_y.numpy(), t, seed)
            filt = self._filter(t)
            kept: list[tuple[int, int, torch.Tensor]] = []  # (row, redraws, image)
            dropped: list[int] = []
            skipped = 0
            done = 0
            pos = 0
            while done < k:
                if pos < len(order):
                    rows = order[pos:pos + int(batch_size)]
                    pos += len(rows)
                    out = self._translate(rows, t)
                    flag = filt(out).numpy() if filt is not None else np.zeros(len(rows), bool)
                    for r, f, img in zip(rows.tolist(), flag.tolist(), out, strict=True):
                        if done + len(kept) >= k:
                            break
                        if f:
                            dropped.append(r)
                            skipped += 1
                            self.rejected += 1
                        else:
                            kept.append((r, skipped, img))
                            skipped = 0
                else:  # out of candidates: the dropped translations are kept after all, in order
                    need = k - done - len(kept)
                    rows = np.asarray(dropped[:need], dtype=np.int64)
                    dropped = dropped[need:]
                    kept += [(r, 0, img) for r, img in zip(rows.tolist(), self._translate(rows, t), strict=True)]
                while len(kept) >= int(batch_size) or (kept and done + len(kept) >= k):
                    chunk, kept = kept[:int(batch_size)], kept[int(batch_size):]
                    index = np.arange(done, done + len(chunk), dtype=np.int64)
                    rows = np.asarray([c[0] for c in chunk], dtype=np.int64)
                    x = torch.stack([c[2] for c in chunk])
                    yield TranslatedBatch(to_source(x), torch.full((len(chunk),), t, dtype=torch.long),
                                          derive_seeds(seed, np.full(len(chunk), t), index), index,
                                          np.asarray([c[1] for c in chunk], dtype=np.int64), rows,
                                          self.train_y[torch.as_tensor(rows)].numpy())
                    done += len(chunk)

    def info(self) -> dict[str, Any]:
        """What ``augment.json`` records of the translation."""
        from dataclasses import asdict

        tr = self._translator
        if tr is None:  # the default, not built yet
            how = {"kind": "latent", "schedule": DEFAULT_SCHEDULE, "residual": DEFAULT_RESIDUAL,
                   "inversion": {**asdict(INVERSION), "encoder_used": INVERSION.encoder}}
        else:
            how = tr.info() if callable(getattr(tr, "info", None)) else {"kind": type(tr).__name__}
            if getattr(tr, "checkpoint_sha256", None):
                how.setdefault("checkpoint_sha256", tr.checkpoint_sha256)
        return {"strength": self.strength, "translator": how, "n_train_images": int(len(self.train_y)),
                "near_copy_check": "against the target class's real training images" if self.reject_near_copies
                else "off", "near_copies_rejected": int(self.rejected)}


def prepare_from_real(sampler: Sampler, train_data: Any, strength: float | None, reject_near_copies: bool,
                      log: Callable[[str], None] | None = None, translator: Any = None) -> FromReal:
    """Check the request and load the sources: the user's dataset must match the generator's image shape and
    channels and reproduce its training-set fingerprint. ``translator``: a
    :class:`~medgan.synthesis.translation_curve.Translator` of the same classes (default: the checkpoint's latent
    translator, built on first use)."""
    from medgan.synthesis.near_copies import checkpoint_training_data
    from medgan.synthesis.translation_curve import check_strength

    s = DEFAULT_STRENGTH if strength is None else check_strength(strength)
    if sampler.num_classes < 2:
        raise MedganError("--from-real translates images between classes, but this generator has only one class")
    td = checkpoint_training_data({"config": sampler.config, "data": sampler.meta}, train_data, "--from-real")
    if translator is not None and list(translator.class_names) != list(sampler.class_names):
        raise MedganError(f"the translator's classes {list(translator.class_names)} are not the checkpoint's "
                          f"{list(sampler.class_names)}; use a translator trained on the same data")
    return FromReal(sampler, td.x["train"], td.y["train"], s, bool(reject_near_copies), log=log,
                    _translator=translator)


def translated_bank(sampler: Sampler, train_x: torch.Tensor, train_y: torch.Tensor, n_per_class: int, seed: int = 0,
                    strength: float | None = None, provenance: dict[str, Any] | None = None,
                    log: Callable[[str], None] | None = None) -> Any:
    """A :class:`~medgan.synthesis.bank.SyntheticBank` of translations: per class, ``n_per_class`` (at most as many
    as there are training images of the other classes) of ``train_x`` (model range, the generator's training
    images; the caller checked that they are) translated into it; ``columns`` hold each image's source
    (``source_index``, ``source_label``) and ``strength``."""
    from medgan.data.grid import model_grid
    from medgan.synthesis.bank import SyntheticBank
    from medgan.synthesis.translation_curve import check_strength

    s = DEFAULT_STRENGTH if strength is None else check_strength(strength, "strength")
    fr = FromReal(sampler, train_x, train_y, s, log=log)
    counts = {t: min(int(n_per_class), int((train_y != t).sum())) for t in range(sampler.num_classes)}
    xs, ys, src, lab = [], [], [], []
    for b in fr.stream(counts, seed, 256, lambda x: x):
        xs.append(b.x)
        ys.append(b.y)
        src.append(b.source_index)
        lab.append(b.source_label)
    prov = {"source": "checkpoint (translated real images)", "checkpoint": str(sampler.checkpoint_path),
            "checkpoint_sha256": sampler.checkpoint_sha256, "seed": int(seed), **fr.info(), **(provenance or {})}
    cols = {"source_index": np.concatenate(src), "source_label": np.concatenate(lab),
            "strength": np.full(sum(len(v) for v in src), s)} if xs else {}
    x = torch.cat(xs) if xs else torch.zeros((0, *sampler.shape))
    y = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long)
    return SyntheticBank.from_tensors(x, y, sampler.class_names, "uint8", sampler.meta.get("intensity"), prov,
                                      model_grid(sampler.meta), columns=cols)
