"""Datasets from image files: a folder with one sub-folder per class, or a CSV manifest ``path,label[,split]``.

Supported files, read with MONAI's image readers (``PILReader``, ``NibabelReader``, ``PydicomReader``):

* PNG/JPEG/BMP/TIFF: 2D, gray or RGB (RGBA and palette images become RGB, gray+alpha becomes gray);
* NIfTI ``.nii``/``.nii.gz``: 3D volumes (or 2D images; trailing singleton axes are dropped). A 4D image is
  rejected with a hint to split it into 3D volumes;
* DICOM (``.dcm``, or any extension-less file with the ``DICM`` preamble): a single file is one 2D image (a
  multi-frame file is one 3D volume); a **sub-folder** of DICOM slices inside a class folder is one 3D volume,
  with its slices sorted along the slice normal (``ImagePositionPatient``), else by ``InstanceNumber``.

Folder layouts::

    root/<class>/<files or DICOM series folders>            seeded stratified train/val/test split
    root/{train,val,test}/<class>/...                       the folder's own splits

Class names are the sorted class-folder names (for a manifest: the sorted label names, or the integer labels in
numeric order). Images are returned channel-first ``(C, *spatial)`` in their source dtype: 2D images as
``(rows, columns)`` like NumPy/PIL, DICOM series as ``(rows, columns, slices)``, NIfTI in the file's voxel axis
order. Differently shaped images are kept as a list (preprocessing resizes them to the model size).

The MONAI readers are called directly (``read`` + ``get_data``, exactly what ``LoadImage`` does inside) rather
than through ``LoadImage`` itself: ``LoadImage`` wraps every image in a torch ``MetaTensor``, which cannot hold
big-endian NIfTI data and would cost a tensor round-trip per file.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgan.errors import DatasetError

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test", "testing": "test"}
READABLE = "PNG/JPEG, NIfTI (.nii/.nii.gz) or DICOM files, or DICOM series sub-folders"


@dataclass
class Item:
    """One loaded image: ``array`` is ``(C, *spatial)`` in its source dtype."""

    array: np.ndarray
    path: str
    spacing: tuple[float, ...] | None = None
    modality: str | None = None


# ------------------------------------------------------------------------------------------- helpers


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with the DICOM preamble (128 bytes, then ``DICM``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def kind_of(path: Path) -> str | None:
    """``'pil'``, ``'nifti'``, ``'dicom'``, ``'series'`` (a folder of DICOM slices) or ``None`` (not an image)."""
    if path.is_dir():
        return "series"
    name = path.name.lower()
    if name.endswith(PIL_SUFFIXES):
        return "pil"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if is_dicom_file(path):
        return "dicom"
    return None


def _visible(path: Path) -> bool:
    """False for hidden files and OS clutter (``.DS_Store``, ``__MACOSX``, ``Thumbs.db``)."""
    return not path.name.startswith(".") and path.name not in ("__MACOSX", "Thumbs.db", "desktop.ini")


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _native(arr: np.ndarray, disk_dtype: np.dtype | None) -> np.ndarray:
    """Native byte order, and the on-disk integer dtype back where a reader returned integral floats.

    Rescaled values (DICOM RescaleSlope/Intercept, NIfTI scl_slope/inter) that are whole numbers are kept as the
    smallest integer dtype that holds them (e.g. CT in Hounsfield units as int16); other floats become float32.
    """
    arr = np.asarray(arr)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind != "f":
        return arr
    disk = np.dtype(disk_dtype).newbyteorder("=") if disk_dtype is not None else None
    if disk is not None and disk.kind in "iu" and arr.size and np.isfinite(arr).all() and (arr == np.rint(arr)).all():
        lo, hi = float(arr.min()), float(arr.max())
        for dt in (disk, np.dtype(np.int16), np.dtype(np.int32)):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                return arr.astype(dt)
    return arr.astype(np.float32) if arr.dtype == np.float64 else arr


class Readers:
    """The MONAI readers, built once and reused for every file."""

    def __init__(self) -> None:
        from monai.data import NibabelReader, PILReader, PydicomReader

        # reverse_indexing/swap_ij off: 2D arrays stay (rows, columns) like NumPy, PIL and MedMNIST files.
        self.pil = PILReader(converter=_pil_mode, reverse_indexing=False)
        self.nifti = NibabelReader()
        self.dicom = PydicomReader(swap_ij=False)

    # ---- one file or series -> Item
    def load(self, path: Path, kind: str) -> Item:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return getattr(self, f"_{kind}")(path)
            except DatasetError:
                raise
            except Exception as e:  # every reader failure is a problem with this file
                what = {"pil": "image", "nifti": "NIfTI", "dicom": "DICOM", "series": "DICOM series"}[kind]
                raise DatasetError(
                    f"cannot read {path} as {what} ({_one_line(e)}); replace or remove the corrupt file"
                ) from None

    def _pil(self, path: Path) -> Item:
        img = self.pil.read(str(path))
        try:
            arr, _ = self.pil.get_data(img)
        finally:
            img.close()
        arr = _native(arr, None)
        arr = arr[None] if arr.ndim == 2 else np.ascontiguousarray(np.moveaxis(arr, -1, 0))
        return Item(arr, str(path))

    def _nifti(self, path: Path) -> Item:
        img = self.nifti.read(str(path))
        shape = tuple(int(s) for s in img.shape)
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) > 3:
            raise DatasetError(
                f"{path} is a {len(shape)}D NIfTI image {shape}; medgan uses 2D or 3D images: split it into 3D "
                "volumes (e.g. nibabel.funcs.four_to_three) and put each volume in the class folder"
            )
        if len(shape) < 2:
            raise DatasetError(f"{path} is a {len(shape)}D NIfTI image {shape}; use 2D or 3D images")
        arr, _ = self.nifti.get_data(img)
        arr = _native(np.asarray(arr).reshape(shape), img.header.get_data_dtype())
        zooms = tuple(float(z) for z in img.header.get_zooms()[: len(shape)])
        spacing = zooms if all(z > 0 for z in zooms) else None
        return Item(arr[None], str(path), spacing)

    def _dicom_pixels(self, ds, path: Path) -> np.ndarray:
        """Decoded (rescaled) pixels of one DICOM dataset; a missing decoder for compressed data is named."""
        try:
            arr, _ = self.dicom.get_data(ds)
        except Exception as e:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            if ts is not None and getattr(ts, "is_compressed", False) and "decode" in str(e).lower():
                raise DatasetError(
                    f"cannot decode {path}: its pixel data is compressed as {ts.name} and no installed decoder "
                    "handles it; install one (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) or convert "
                    "the file to uncompressed DICOM"
                ) from None
            raise
        return np.asarray(arr)

    def _dicom(self, path: Path) -> Item:
        ds = self.dicom.read(str(path))
        arr = self._dicom_pixels(ds, path)
        arr = _native(arr, _dicom_disk_dtype(ds))
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if samples > 1:  # colour: channels last
            arr = np.moveaxis(arr, -1, 0)
        else:
            arr = arr[None]
        if frames > 1:  # multi-frame: (C, frames, rows, cols) -> (C, rows, cols, frames), like a series
            arr = np.moveaxis(arr, 1, -1)
        spacing = _pixel_spacing(ds)
        if spacing is not None and frames > 1:
            spacing = spacing + (_slice_spacing_tag(ds) or 1.0,)
        return Item(np.ascontiguousarray(arr), str(path), spacing, _modality(ds))

    def _series(self, folder: Path) -> Item:
        files = [f for f in sorted(folder.iterdir()) if f.is_file() and _visible(f) and kind_of(f) == "dicom"]
        if not files:
            raise DatasetError(
                f"{folder} holds no DICOM slices; a sub-folder inside a class folder must be one DICOM series "
                "(move other images up into the class folder)"
            )
        if len(files) == 1:
            raise DatasetError(
                f"{folder} holds a single DICOM slice; a series sub-folder is one 3D volume: move the file up into "
                "the class folder to use it as a 2D image"
            )
        slices = []
        for f in files:
            try:
                ds = self.dicom.read(str(f))
                arr = self._dicom_pixels(ds, f)
            except DatasetError:
                raise
            except Exception as e:
                raise DatasetError(
                    f"cannot read {f} as DICOM ({_one_line(e)}); replace or remove the corrupt slice"
                ) from None
            if arr.ndim != 2:
                raise DatasetError(
                    f"{f} is not a single gray slice (shape {arr.shape}); a series folder holds one 2D slice per file"
                )
            slices.append((ds, _native(arr, _dicom_disk_dtype(ds)), f))
        uids = {str(getattr(ds, "SeriesInstanceUID", "")) for ds, _, _ in slices}
        if len(uids) > 1:
            raise DatasetError(f"{folder} mixes {len(uids)} DICOM series; put each series in its own sub-folder")
        shapes = {a.shape for _, a, _ in slices}
        if len(shapes) > 1:
            raise DatasetError(f"{folder}: slices differ in size {sorted(shapes)}; a series needs equal slices")
        positions = _slice_positions([ds for ds, _, _ in slices])
        if positions is not None:
            order = np.argsort(positions, kind="stable")
        else:
            order = np.argsort([int(getattr(ds, "InstanceNumber", i) or i) for i, (ds, _, _) in enumerate(slices)],
                               kind="stable")
        vol = np.stack([slices[i][1] for i in order], axis=-1)
        vol = vol.astype(np.result_type(*[a.dtype for _, a, _ in slices]), copy=False)
        first = slices[order[0]][0]
        spacing = _pixel_spacing(first)
        if spacing is not None:
            step = None
            if positions is not None:
                diffs = np.abs(np.diff(np.sort(positions)))
                diffs = diffs[diffs > 1e-6]
                step = float(np.median(diffs)) if len(diffs) else None
            spacing = spacing + (step or _slice_spacing_tag(first) or 1.0,)
        return Item(vol[None], str(folder), spacing, _modality(first))


def _pil_mode(img):
    """PIL images -> gray (``L``, 16-bit, float) or ``RGB``: alpha dropped, palettes expanded."""
    if img.mode in ("L", "I", "I;16", "F", "RGB"):
        return img
    if img.mode in ("1", "LA", "La"):
        return img.convert("L")
    return img.convert("RGB")


def _dicom_disk_dtype(ds) -> np.dtype | None:
    bits = int(getattr(ds, "BitsAllocated", 0) or 0)
    if bits not in (8, 16, 32):
        return None
    return np.dtype(f"{'i' if int(getattr(ds, 'PixelRepresentation', 0) or 0) else 'u'}{bits // 8}")


def _pixel_spacing(ds) -> tuple[float, ...] | None:
    ps = getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None)
    try:
        return (float(ps[0]), float(ps[1])) if ps is not None and len(ps) >= 2 else None
    except (TypeError, ValueError):
        return None


def _slice_spacing_tag(ds) -> float | None:
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            v = float(getattr(ds, tag, 0) or 0)
        except (TypeError, ValueError):
            v = 0.0
        if v > 0:
            return v
    return None


def _modality(ds) -> str | None:
    m = str(getattr(ds, "Modality", "") or "").strip()
    return m or None


def _slice_positions(datasets: list) -> np.ndarray | None:
    """Each slice's position along the slice normal (from ImageOrientation/PositionPatient), or None."""
    try:
        iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        pos = np.asarray([np.asarray(ds.ImagePositionPatient, dtype=float) @ normal for ds in datasets])
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    if not np.isfinite(pos).all() or len(np.unique(np.round(pos, 6))) != len(pos):
        return None
    return pos


# -------------------------------------------------------------------------------------------- assembly


def _assemble(name: str, source: str, root: Path, items: list[Item], labels: list[int], splits: list[str | None],
              class_names: list[str], split_seed: int, split_note: str | None):
    """Check consistency of the loaded images and build a :class:`RealData` (split when no splits given)."""
    from medgan.data.sources import SPLITS, Intensity, RealData, Split, ensure_splits

    dims = {len(it.array.shape) - 1 for it in items}
    if len(dims) > 1:
        a = next(it for it in items if it.array.ndim - 1 == min(dims))
        b = next(it for it in items if it.array.ndim - 1 == max(dims))
        raise DatasetError(
            f"images of mixed dimensionality in {root}: {a.path} is {min(dims)}D but {b.path} is {max(dims)}D; "
            "use only 2D or only 3D images in one dataset"
        )
    chans = {it.array.shape[0] for it in items}
    if len(chans) > 1:
        a = next(it for it in items if it.array.shape[0] == min(chans))
        b = next(it for it in items if it.array.shape[0] == max(chans))
        raise DatasetError(
            f"images with mixed channel counts in {root}: {a.path} has {a.array.shape[0]} channel(s) but {b.path} "
            f"has {b.array.shape[0]}; convert them to one kind (all gray or all RGB)"
        )
    dtype = np.result_type(*{it.array.dtype for it in items})
    arrays = [it.array.astype(dtype, copy=False) for it in items]
    lab = np.asarray(labels, dtype=np.int64)
    given = [s for s in splits if s is not None]
    split_of = np.asarray([s or "train" for s in splits])
    out: dict[str, Split] = {}
    for s in SPLITS:
        if s != "train" and s not in given:
            continue
        idx = np.flatnonzero(split_of == s)
        imgs = [arrays[i] for i in idx]
        if imgs and len({a.shape for a in imgs}) == 1:
            stacked: np.ndarray | list[np.ndarray] = np.stack(imgs)
        elif imgs:
            stacked = imgs
        else:
            stacked = np.empty((0, *arrays[0].shape), dtype=dtype)
        out[s] = Split(stacked, lab[idx], [items[i].path for i in idx])
    if not len(out["train"]):
        raise DatasetError(f"{root} has no training images; add a train split (or drop the split column/folders)")
    train_items = [items[i] for i in np.flatnonzero(split_of == "train")]
    spacings = [it.spacing for it in train_items if it.spacing is not None and len(it.spacing) == max(dims)]
    spacing = None
    extra: dict = {"root": str(root), "files": len(items)}
    if spacings:
        sp = np.asarray(spacings, dtype=float)
        spacing = tuple(round(float(v), 6) for v in np.median(sp, axis=0))
        if not np.allclose(sp, sp[0], rtol=1e-3):
            extra["spacing_varies"] = True
    modalities = sorted({it.modality for it in items if it.modality})
    if split_note:
        extra["split"] = split_note
    data = RealData(
        name=name,
        source=source,
        class_names=class_names,
        spatial_dims=int(max(dims)),
        channels=int(max(chans)),
        splits=out,
        intensity=Intensity.of(out["train"].images),
        spacing=spacing,
        modality="+".join(modalities) if modalities else None,
        extra=extra,
    )
    return ensure_splits(data, split_seed)


# ----------------------------------------------------------------------------------------------- folder


def _class_entries(class_dir: Path) -> list[tuple[Path, str]]:
    entries = []
    for p in sorted(class_dir.iterdir()):
        if not _visible(p):
            continue
        k = kind_of(p)
        if k is not None:
            entries.append((p, k))
    if not entries:
        found = [p.name for p in sorted(class_dir.iterdir()) if _visible(p)][:3]
        listing = f" (found: {', '.join(found)})" if found else " (it is empty)"
        raise DatasetError(
            f"class folder {class_dir} has no readable images{listing}; add {READABLE}, or remove the folder"
        )
    return entries


def _split_layout(root: Path, subdirs: list[Path]) -> dict[str, Path] | None:
    named = {SPLIT_ALIASES.get(d.name.lower()): d for d in subdirs}
    if "train" in named and None not in named:
        return {s: d for s, d in named.items() if s is not None}
    return None


def load_folder(path: str | Path, split_seed: int = 0):
    """A folder with one sub-folder per class (optionally under ``train/``, ``val/``, ``test/``)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}; check the path")
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _visible(d)]
    if not subdirs:
        files = [p for p in root.iterdir() if p.is_file() and _visible(p)]
        if any(kind_of(p) for p in files):
            raise DatasetError(
                f"{root} holds image files but no class sub-folders; put each class's images in its own sub-folder "
                f"({root}/<class name>/...)"
            )
        raise DatasetError(f"dataset folder {root} is empty; add one sub-folder per class holding {READABLE}")
    layout = _split_layout(root, subdirs)
    if layout is not None:
        per_split = {s: [d for d in sorted(sd.iterdir()) if d.is_dir() and _visible(d)] for s, sd in layout.items()}
        class_names = sorted({d.name for ds in per_split.values() for d in ds})
        jobs = [(d, s) for s, ds in per_split.items() for d in ds]
        note = "the folder's own train/val/test folders"
    else:
        class_names = [d.name for d in subdirs]
        jobs = [(d, None) for d in subdirs]
        note = None
    if not class_names:
        raise DatasetError(f"{root}/train has no class sub-folders; put each class's images in train/<class name>/")
    readers = Readers()
    items, labels, splits = [], [], []
    for class_dir, split in jobs:
        c = class_names.index(class_dir.name)
        for p, k in _class_entries(class_dir):
            items.append(readers.load(p, k))
            labels.append(c)
            splits.append(split)
    return _assemble(root.name, "folder", root, items, labels, splits, class_names, split_seed, note)


# -------------------------------------------------------------------------------------------------- csv


def _class_names_from_labels(raw: list[str], names_col: list[str] | None) -> tuple[list[str], list[int]]:
    """Sorted unique names, or integer labels in numeric order (named by a ``class_name`` column if present)."""
    if all(re.fullmatch(r"[+-]?\d+", v) for v in raw):
        values = sorted({int(v) for v in raw})
        index = {v: i for i, v in enumerate(values)}
        names = [str(v) for v in values]
        if names_col is not None:
            by_value: dict[int, str] = {}
            for v, n in zip(raw, names_col, strict=True):
                if n:
                    by_value.setdefault(int(v), n)
            names = [by_value.get(v, str(v)) for v in values]
        return names, [index[int(v)] for v in raw]
    names = sorted(set(raw))
    return names, [names.index(v) for v in raw]


def load_csv(path: str | Path, split_seed: int = 0):
    """A CSV manifest with a header row ``path,label[,split]``; paths are relative to the CSV's folder."""
    path = Path(path).expanduser()
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read manifest {path} ({_one_line(e)}); use a UTF-8 CSV file") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"manifest {path} is empty; write a header row path,label[,split] and one row per image")
    header = [h.strip().lower().replace(" ", "_") for h in rows[0]]
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise DatasetError(
            f"manifest {path} lacks the column(s) {', '.join(missing)} (header: {','.join(rows[0])}); the first row "
            "must be a header path,label[,split]"
        )
    col = {h: i for i, h in enumerate(header)}
    body = rows[1:]
    if not body:
        raise DatasetError(f"manifest {path} lists no images; add one row path,label[,split] per image")

    def cell(r: list[str], name: str) -> str:
        i = col.get(name)
        return r[i].strip() if i is not None and i < len(r) else ""

    files, raw_labels, splits = [], [], []
    for n, r in enumerate(body, start=2):
        p, lab = cell(r, "path"), cell(r, "label")
        if not p or not lab:
            raise DatasetError(f"manifest {path} row {n} has an empty {'path' if not p else 'label'}; fill it in")
        s: str | None = None
        if "split" in col:
            raw = cell(r, "split").lower()
            s = SPLIT_ALIASES.get(raw)
            if s is None:
                raise DatasetError(f"manifest {path} row {n}: split '{raw}' must be train, val or test")
        fp = Path(p).expanduser()
        files.append(fp if fp.is_absolute() else path.parent / fp)
        raw_labels.append(lab)
        splits.append(s)
    absent = [(n, f) for n, f in enumerate(files, start=2) if not f.exists()]
    if absent:
        n, f = absent[0]
        raise DatasetError(
            f"manifest {path} lists {len(absent)} missing file(s) (first: row {n}, {f}); fix the paths "
            "(relative paths are read from the CSV's folder)"
        )
    names_col = [cell(r, "class_name") for r in body] if "class_name" in col else None
    class_names, labels = _class_names_from_labels(raw_labels, names_col)
    readers = Readers()
    items = []
    for n, f in enumerate(files, start=2):
        k = kind_of(f)
        if k is None:
            raise DatasetError(f"manifest {path} row {n}: {f} is not an image file; use {READABLE}")
        items.append(readers.load(f, k))
    note = "the manifest's split column" if "split" in col else None
    return _assemble(path.stem, "csv", path, items, labels, splits, class_names, split_seed, note)
