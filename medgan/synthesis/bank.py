"""``SyntheticBank``: a compact in-memory pool of labelled synthetic images, per class.

Images are kept in model space ([-1, 1]) but stored compactly: as ``uint8`` (256 levels; lossless for 8-bit
training data) or ``float16``, in plain numpy arrays, so a bank pickles small and cheaply into DataLoader workers.
It backs the MONAI transforms (:mod:`medgan.synthesis.transforms`) and dataset mixing
(:mod:`medgan.synthesis.mixing`).

Layout: the bank stores images in medgan's array order (the model grid, :mod:`medgan.data.grid`) and hands them
out in ``layout="monai"`` by default: the axis order MONAI's ``LoadImage`` (default arguments) gives a file of the
training data's kind, so a synthetic image lines up with a real one loaded in any MONAI pipeline. ``layout="array"``
gives medgan's own order (what ``medgan train``/``evaluate`` and MedMNIST ``.npz`` arrays use).

Counterfactual pairs: a bank drawn with ``pairs=True`` (:meth:`SyntheticBank.from_checkpoint`,
:meth:`~SyntheticBank.from_sampler`) or read from a ``medgan augment --pairs`` folder keeps each image's pair id
(:attr:`SyntheticBank.pair_ids`; the images of one pair share their latent vector and differ only in class), so a
recipe can use images that differ only in class (:meth:`SyntheticBank.pair_positions`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgan.data.classes import class_index
from medgan.data.grid import Grid, model_grid
from medgan.errors import DatasetError, MedganError
from medgan.runtime import available_memory

if TYPE_CHECKING:
    from medgan.synthesis.sampler import Sampler

STORAGES = ("uint8", "float16")
LAYOUTS = ("monai", "array")


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise MedganError(f"layout must be 'monai' (as MONAI's LoadImage gives the training files) or 'array' "
                          f"(medgan's / the .npz arrays' order), got {layout!r}")
    return layout


def _encode(x: np.ndarray, storage: str) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    if storage == "uint8":
        return np.rint((x + 1.0) * 127.5).astype(np.uint8)
    return x.astype(np.float16)


def _decode(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0)
    return a.astype(np.float32)


class SyntheticBank:
    """A pool of synthetic images with labels, class names, the source intensity mapping and provenance.

    Build it with :meth:`from_checkpoint`, :meth:`from_folder` (an ``augment`` output folder or a MedMNIST-layout
    ``.npz``) or :meth:`from_tensors`. :meth:`draw` returns one image of a class as a float tensor in [-1, 1], in
    the bank's ``layout`` (``"monai"`` by default: as MONAI's ``LoadImage`` lays out the training data's files).
    ``grid`` (:class:`~medgan.data.grid.Grid`) is the model grid: size, spacing, axis order. ``columns``: per-image
    values beyond the label, by name (an augment folder's extra manifest columns, e.g. the ``source_index``,
    ``source_class`` and ``strength`` of ``--from-real``; kept by :meth:`subset`).
    """

    def __init__(self, data: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                 intensity: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
                 grid: Grid | None = None, layout: str = "monai", pair_ids: np.ndarray | None = None,
                 columns: dict[str, Any] | None = None) -> None:
        data = np.ascontiguousarray(data)
        if data.dtype not in (np.uint8, np.float16):
            raise MedganError(f"bank storage must be uint8 or float16, got {data.dtype}")
        if data.ndim not in (4, 5):
            raise MedganError(f"bank images must be (N, C, H, W) or (N, C, D, H, W), got shape {data.shape}")
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(data):
            raise MedganError(f"bank has {len(data)} images but {len(labels)} labels")
        self.class_names = [str(c) for c in class_names]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise MedganError(f"bank labels must lie in 0..{len(self.class_names) - 1}")
        self._data = data
        self._labels = labels
        self.intensity = dict(intensity) if intensity else None
        self.provenance = dict(provenance or {})
        self._by_class = [np.flatnonzero(labels == c) for c in range(len(self.class_names))]
        self.columns = {str(k): np.asarray(v) for k, v in (columns or {}).items()}
        if any(len(v) != len(labels) for v in self.columns.values()):
            raise MedganError(f"bank columns must hold one value per image ({len(labels)})")
        dims = data.ndim - 2
        self.grid = grid if grid is not None else Grid(dims, int(data.shape[-1]), None, "array", False)
        self.layout = _check_layout(layout)
        self._pairs: np.ndarray | None = None
        if pair_ids is not None:
            pairs = np.asarray(pair_ids, dtype=np.int64).reshape(-1)
            if len(pairs) != len(labels):
                raise MedganError(f"bank has {len(labels)} images but {len(pairs)} pair ids")
            self._pairs = pairs

    def with_layout(self, layout: str) -> SyntheticBank:
        """The same images (shared, not copied) handed out in another ``layout``."""
        return SyntheticBank(self._data, self._labels, self.class_names, self.intensity, self.provenance, self.grid,
                             layout, self._pairs, self.columns)

    def affine(self) -> np.ndarray:
        """The model grid's affine (diagonal, its spacing in mm; 1 where unknown) in the bank's layout."""
        if self.layout == "monai":
            return self.grid.monai_affine()
        aff = np.eye(4)
        for k, v in enumerate(self.grid.spacing or ()):
            aff[k, k] = float(v)
        return aff

    def _out(self, x: np.ndarray) -> torch.Tensor:
        """Decoded images (array layout) -> a float tensor in the bank's layout."""
        t = torch.from_numpy(_decode(x))
        return self.grid.to_monai(t).contiguous() if self.layout == "monai" else t

    # -------------------------------------------------------------------------------------- builders

    @classmethod
    def from_tensors(cls, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray | Sequence[int],
                     class_names: Sequence[str], storage: str = "uint8", intensity: dict[str, Any] | None = None,
                     provenance: dict[str, Any] | None = None, grid: Grid | None = None,
                     layout: str = "monai", pair_ids: np.ndarray | Sequence[int] | None = None,
                     columns: dict[str, Any] | None = None) -> SyntheticBank:
        """From model-space images ``x`` ``(N, C, *spatial)`` in [-1, 1] and labels ``y`` (and, for counterfactual
        pairs, each image's ``pair_ids``; ``columns``: other per-image values by name).

        ``x`` is in medgan's array layout of ``grid``; without a ``grid`` the images are handed out as given."""
        if storage not in STORAGES:
            raise MedganError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        a = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
        finite = np.isfinite(a.reshape(len(a), -1)).all(axis=1) if a.ndim and len(a) else np.ones(0, bool)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise MedganError(f"{len(bad)} image(s) hold NaN or infinite values (first x[{int(bad[0])}]); a bank "
                              "takes model-space images in [-1, 1]: drop or fix them")
        yy = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        return cls(_encode(a, storage), yy, class_names, intensity, provenance, grid, layout,
                   None if pair_ids is None else np.asarray(pair_ids), columns)

    @classmethod
    def from_checkpoint(cls, path: str | Path, n_per_class: int, seed: int = 0,
                        classes: Sequence[int | str] | None = None, use_ema: bool = True, storage: str = "uint8",
                        batch_size: int = 256, filter_fn=None, device: str = "cpu",
                        layout: str = "monai", pairs: bool = False) -> SyntheticBank:
        """Sample ``n_per_class`` images per class (default every class) from a checkpoint's generator, or from a run
        folder: its ``best.pt`` when quality tracking wrote one, else ``last.pt``
        (:func:`medgan.training.checkpoint.resolve_checkpoint`). ``provenance["checkpoint_choice"]`` says which file
        it took and why (also logged on the ``medgan`` logger). ``pairs``: as counterfactual pairs
        (:meth:`from_sampler`)."""
        from medgan.synthesis.sampler import Sampler

        if storage not in STORAGES:
            raise MedganError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        s = Sampler.from_checkpoint(path, use_ema=use_ema, device=device)
        return cls.from_sampler(s, n_per_class, seed, classes, storage, batch_size, filter_fn, layout=layout,
                                pairs=pairs)

    @classmethod
    def from_sampler(cls, s: Sampler, n_per_class: int, seed: int = 0, classes: Sequence[int | str] | None = None,
                     storage: str = "uint8", batch_size: int = 256, filter_fn=None,
                     provenance: dict[str, Any] | None = None, layout: str = "monai",
                     pairs: bool = False) -> SyntheticBank:
        """Sample ``n_per_class`` images per class from an already loaded :class:`Sampler`; ``provenance``
        replaces the default record (checkpoint, hash, step, seed). ``pairs``: ``n_per_class`` counterfactual
        pairs over ``classes`` instead (one shared latent per pair, :meth:`Sampler.stream`), images in pair order,
        with their :attr:`pair_ids`; a ``filter_fn`` redraws whole pairs."""
        if storage not in STORAGES:
            raise MedganError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if isinstance(n_per_class, bool) or not isinstance(n_per_class, int | np.integer) or n_per_class < 1:
            raise MedganError(f"n_per_class must be a positive number of images per class, got {n_per_class!r}")
        idx = s.resolve_classes(classes)
        total = int(n_per_class) * len(idx)
        need = total * int(np.prod(s.shape)) * (1 if storage == "uint8" else 2)
        free = available_memory()
        if free is not None and need > free:
            raise MedganError(f"n_per_class={int(n_per_class)} x {len(idx)} class(es) x {'x'.join(map(str, s.shape))} "
                              f"{storage} images need {need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB "
                              "of memory available; ask for fewer images per class (or write them to disk with "
                              "'medgan augment' and use SyntheticBank.from_folder)")
        data = np.empty((total, *s.shape), dtype=np.uint8 if storage == "uint8" else np.float16)
        labels = np.empty(total, dtype=np.int64)
        pair_ids = np.empty(total, dtype=np.int64) if pairs else None
        pos = 0
        for b in s.stream(n_per_class, idx, seed=seed, batch_size=batch_size, filter_fn=filter_fn, pairs=pairs):
            k = len(b.y)
            data[pos : pos + k] = _encode(b.x.numpy(), storage)
            labels[pos : pos + k] = b.y.numpy()
            if pair_ids is not None:
                pair_ids[pos : pos + k] = b.pair
            pos += k
        prov = provenance if provenance is not None else {
            "source": "checkpoint", "checkpoint": str(s.checkpoint_path), "checkpoint_sha256": s.checkpoint_sha256,
            "generator_step": s.step, "seed": int(seed), "used_ema": s.used_ema, "dataset": s.meta.get("name"),
            "checkpoint_choice": s.checkpoint_note}
        if pairs:
            prov = {**prov, "pairs": int(n_per_class)}
        return cls(data, labels, s.class_names, s.meta.get("intensity"), prov, model_grid(s.meta), layout, pair_ids)

    @classmethod
    def from_folder(cls, path: str | Path, storage: str = "uint8", layout: str = "monai") -> SyntheticBank:
        """From a ``medgan augment`` output folder (its manifest and files, any format) or an ``.npz``.

        Source values are mapped to [-1, 1] with the intensity range recorded in the folder's ``augment.json``
        (``.npz`` without one: uint8 means 0..255, otherwise the data's own min..max). Files are read back into
        medgan's array layout with the geometry ``augment.json`` records (2D ``.npz`` arrays without one count as
        images, 3D ones as volumes). The folder of an ``augment --pairs`` run gives its pair ids (the manifest's
        ``pair_id``) in :attr:`pair_ids`.
        """
        from medgan.data.dataset import Intensity
        from medgan.data.grid import row_first
        from medgan.data.preprocess import to_model_tensor
        from medgan.synthesis.outdir import INFO, MANIFEST, MANIFEST_COLUMNS, PAIR_ID, read_manifest, typed_columns
        from medgan.synthesis.readback import (
            as_recorded,
            check_manifest,
            inside,
            npz_pair_ids,
            pair_column,
            read_file,
            read_npz,
            recorded_shape,
        )
        from medgan.synthesis.writers import NPZ_NAME, file_axes_swapped

        p = Path(path)
        if not p.exists():
            raise DatasetError(f"synthetic data not found: {p}; pass an augment output folder or an .npz")
        folder = p if p.is_dir() else p.parent
        info: dict[str, Any] = {}
        if (folder / INFO).is_file():
            info = json.loads((folder / INFO).read_text())
        npz = p if p.is_file() else (folder / NPZ_NAME if info.get("format") == "npz" else None)
        want = recorded_shape(folder, info)
        rows: list[dict[str, str]] = []
        if npz is not None:
            if info and (folder / MANIFEST).is_file():
                check_manifest(folder, info)
                rows = read_manifest(folder)  # one row per image, in the file's order
            images, labels, names = read_npz(npz, info.get("spatial_dims"))
            if want is not None and len(images) and tuple(images.shape[1:]) != want:
                raise DatasetError(f"{npz} holds images of shape {tuple(images.shape[1:])} but {folder / INFO} "
                                   f"records {want} (channels, *spatial): the file was changed after medgan augment "
                                   "wrote it; re-run medgan augment")
            prov_rows = None
            pair_ids = npz_pair_ids(folder, info, len(images))
        else:
            rows = read_manifest(folder)
            if not info:
                raise DatasetError(f"{folder} lacks {INFO}; it is not a complete 'medgan augment' output folder")
            files = [inside(folder, r.get("path"), n) for n, r in enumerate(rows, start=2)]
            check_manifest(folder, info)
            # files written before augment.json recorded "file_axes" hold medgan's array order as is
            swap = info.get("file_axes") == "natural" and file_axes_swapped(info["format"], model_grid(info).row_first)
            images = np.stack([as_recorded(read_file(f, int(info["spatial_dims"]), swap), want, f, folder)
                               for f in files]) if rows \
                else np.zeros((0, int(info["channels"]), *([int(info["size"])] * int(info["spatial_dims"]))), np.uint8)
            labels = np.asarray([int(r["label"]) for r in rows], dtype=np.int64)
            pair_ids = pair_column(rows, folder)
            names = None
            prov_rows = len(rows)
        columns = {k: [r[k] for r in rows] for k in (rows[0] if rows and len(rows) == len(labels) else ())
                   if k not in MANIFEST_COLUMNS and k != PAIR_ID}
        class_names = info.get("class_names") or names or [str(i) for i in range(int(labels.max()) + 1 if len(labels) else 1)]
        intensity = Intensity.from_dict(info["intensity"]) if "intensity" in info else Intensity.of(images) \
            if len(images) else Intensity(0.0, 255.0, "uint8")
        dims = images.ndim - 2
        x = to_model_tensor(images, intensity, dims, images.shape[-1]) if len(images) else torch.zeros(images.shape)
        prov = {"source": "folder", "path": str(p), **{k: info[k] for k in ("checkpoint_sha256", "generator_step",
                                                                              "seed", "dataset") if k in info}}
        if prov_rows is not None:
            prov["manifest_rows"] = prov_rows
        if pair_ids is not None:
            prov["pairs"] = int(info.get("pairs") or len(np.unique(pair_ids)))
        if "size" in info or "grid" in info:
            grid = model_grid(info)
        else:
            grid = Grid(dims, int(images.shape[-1]), None, "array", row_first("array", dims))
        return cls.from_tensors(x, labels, class_names, storage, intensity.to_dict(), prov, grid, layout, pair_ids,
                                typed_columns(columns))

    # ---------------------------------------------------------------------------------------- access

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:
        return (f"SyntheticBank({len(self)} images {tuple(self.shape)}, {self._data.dtype}, "
                f"counts={dict(zip(self.class_names, self.counts, strict=True))})")

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, *spatial)`` of one image."""
        return tuple(self._data.shape[1:])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape[2:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def counts(self) -> list[int]:
        """Images per class index."""
        return [len(i) for i in self._by_class]

    @property
    def raw_data(self) -> np.ndarray:
        """The stored array (uint8 or float16, read-only view): what a digest of the bank's content hashes."""
        v = self._data.view()
        v.flags.writeable = False
        return v

    @property
    def storage(self) -> str:
        return self._data.dtype.name

    @property
    def images(self) -> torch.Tensor:
        """All images as a float32 tensor ``(N, C, *spatial)`` in [-1, 1], in the bank's layout (decoded on each
        access)."""
        return self._out(self._data)

    @property
    def array_images(self) -> torch.Tensor:
        """All images in medgan's array layout (what training and evaluation tensors use), whatever ``layout``."""
        return torch.from_numpy(_decode(self._data))

    def mean_image(self, label: int | str | None = None, limit: int = 256) -> torch.Tensor:
        """The mean of (at most ``limit``) images of class ``label`` (``None``: of all), in the bank's layout."""
        idx = np.arange(len(self)) if label is None else self._by_class[self.class_index(label)]
        if len(idx) == 0:
            return torch.zeros(self.shape)
        return self._out(self._data[idx[:limit]]).mean(0)

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self._labels.copy())

    @property
    def pair_ids(self) -> np.ndarray | None:
        """Each image's counterfactual pair id (int64; images with the same id share their latent vector and differ
        only in class), or ``None`` when the bank was not drawn as pairs."""
        return None if self._pairs is None else self._pairs.copy()

    def pair_positions(self, pair_id: int) -> np.ndarray:
        """Positions of the images of pair ``pair_id`` (one per class the pair holds, in the bank's order)."""
        if self._pairs is None:
            raise MedganError("this synthetic bank holds no counterfactual pairs; build it with pairs=True or from a "
                              "'medgan augment --pairs' folder")
        return np.flatnonzero(self._pairs == int(pair_id))

    def class_index(self, c: int | str) -> int:
        """Class index from an index or a name (raises :class:`MedganError` listing the valid ones)."""
        return class_index(c, self.class_names)

    def has(self, label: int) -> bool:
        """Whether the bank holds at least one image of class index ``label``."""
        return 0 <= label < self.num_classes and len(self._by_class[label]) > 0

    def indices(self, label: int) -> np.ndarray:
        """Positions of the images of class ``label``."""
        return self._by_class[self.class_index(label)]

    def get(self, i: int) -> torch.Tensor:
        """Image ``i`` as a float tensor ``(C, *spatial)`` in [-1, 1], in the bank's layout."""
        return self._out(self._data[int(i)])

    def pick(self, label: int, rng: np.random.RandomState | np.random.Generator | None = None) -> int:
        """A random position among the images of class ``label``."""
        idx = self._by_class[self.class_index(label)]
        if len(idx) == 0:
            raise MedganError(f"the synthetic bank holds no image of class {self.class_names[int(label)]!r}; "
                              "build it with that class or leave the class out of the transform")
        rng = rng if rng is not None else np.random.default_rng()
        k = rng.integers(len(idx)) if isinstance(rng, np.random.Generator) else rng.randint(len(idx))
        return int(idx[int(k)])

    def draw(self, label: int | str, rng: np.random.RandomState | np.random.Generator | None = None) -> torch.Tensor:
        """A random image of class ``label`` as a float tensor ``(C, *spatial)`` in [-1, 1]."""
        return self.get(self.pick(self.class_index(label), rng))

    def to_source_range(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Map model-space values to the recorded source intensity range (float, not rounded)."""
        if not self.intensity:
            raise MedganError("this bank has no recorded intensity range; build it from a checkpoint or an augment "
                              "folder, or pass intensity= to from_tensors")
        lo, hi = float(self.intensity["min"]), float(self.intensity["max"])
        return (x + 1.0) * (0.5 * (hi - lo)) + lo

    def subset(self, idx: np.ndarray | Sequence[int]) -> SyntheticBank:
        """A bank of the images at positions ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        return SyntheticBank(self._data[idx], self._labels[idx], self.class_names, self.intensity, self.provenance,
                             self.grid, self.layout, None if self._pairs is None else self._pairs[idx],
                             {k: v[idx] for k, v in self.columns.items()})

