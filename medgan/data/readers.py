"""Image readers: one file (PNG/JPEG/BMP/TIFF, NIfTI, DICOM) or one DICOM series folder -> an :class:`Item`.

Read with MONAI's image readers (``PILReader``, ``NibabelReader``, ``PydicomReader``):

* PNG/JPEG/BMP/TIFF: 2D, gray or RGB (RGBA and palette images become RGB, gray+alpha becomes gray); 16-bit
  gray PNGs keep their values through Pillow, and 16-bit colour PNGs (48-bit RGB, 64-bit RGBA, 32-bit gray+alpha),
  which Pillow reduces to 8 bits, are decoded by :func:`read_png16` with their 16-bit values (alpha dropped);
* NIfTI ``.nii``/``.nii.gz``: 3D volumes (or 2D images; trailing singleton axes are dropped). A 4D image is
  rejected with a hint to split it into 3D volumes;
* DICOM (``.dcm``, or any extension-less file with the ``DICM`` preamble): a single file is one 2D image (a
  multi-frame file is one 3D volume); a folder of DICOM slices is one 3D volume, with its slices sorted along
  the slice normal (``ImagePositionPatient``), else by ``InstanceNumber``; spacing from the DICOM geometry.

Arrays are channel-first ``(C, *spatial)`` in their source dtype: 2D images as ``(rows, columns)`` like
NumPy/PIL, DICOM series as ``(rows, columns, slices)``, NIfTI in the file's voxel axis order.

The MONAI readers are called directly (``read`` + ``get_data``, exactly what ``LoadImage`` does inside) rather
than through ``LoadImage`` itself: ``LoadImage`` wraps every image in a torch ``MetaTensor``, which cannot hold
big-endian NIfTI data and would cost a tensor round-trip per file.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medgan.errors import DatasetError

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
READABLE = "PNG/JPEG, NIfTI (.nii/.nii.gz) or DICOM files, or DICOM series sub-folders"


@dataclass
class Item:
    """One loaded image: ``array`` is ``(C, *spatial)`` in its source dtype."""

    array: np.ndarray
    path: str
    spacing: tuple[float, ...] | None = None
    modality: str | None = None
    kind: str | None = None
    """The reader kind (``pil``, ``nifti``, ``dicom``, ``series``)."""


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


def visible(path: Path) -> bool:
    """False for hidden files and OS clutter (``.DS_Store``, ``__MACOSX``, ``Thumbs.db``)."""
    return not path.name.startswith(".") and path.name not in ("__MACOSX", "Thumbs.db", "desktop.ini")


def one_line(e: BaseException) -> str:
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
                item = getattr(self, f"_{kind}")(path)
                item.kind = kind
                return item
            except DatasetError:
                raise
            except Exception as e:  # every reader failure is a problem with this file
                what = {"pil": "image", "nifti": "NIfTI", "dicom": "DICOM", "series": "DICOM series"}[kind]
                raise DatasetError(
                    f"cannot read {path} as {what} ({one_line(e)}); replace or remove the corrupt file"
                ) from None

    def _pil(self, path: Path) -> Item:
        wide = read_png16(path) if path.name.lower().endswith(".png") else None
        if wide is not None:
            return Item(wide, str(path))
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
        files = [f for f in sorted(folder.iterdir()) if f.is_file() and visible(f) and kind_of(f) == "dicom"]
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
                    f"cannot read {f} as DICOM ({one_line(e)}); replace or remove the corrupt slice"
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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth) on ``(h, 1 + stride)`` filtered bytes."""
    h, stride = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((h, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        ft, line = int(rows[y, 0]), rows[y, 1:].astype(np.int32)
        if ft == 0:
            cur = line
        elif ft == 1:  # Sub: running sums per byte position within a pixel
            cur = np.empty_like(line)
            for k in range(bpp):
                cur[k::bpp] = np.cumsum(line[k::bpp]) & 0xFF
        elif ft == 2:
            cur = (line + prev) & 0xFF
        elif ft in (3, 4):  # Average, Paeth: sequential along the row, one pixel at a time
            cur = line.copy()
            left = np.zeros(bpp, dtype=np.int32)
            upleft = np.zeros(bpp, dtype=np.int32)
            for x in range(0, stride, bpp):
                up = prev[x : x + bpp]
                if ft == 3:
                    pred = (left + up) >> 1
                else:
                    p = left + up - upleft
                    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
                    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
                cur[x : x + bpp] = (line[x : x + bpp] + pred) & 0xFF
                left, upleft = cur[x : x + bpp], up
        else:
            raise DatasetError(f"unknown PNG filter type {ft}")
        out[y] = prev = cur
    return out.astype(np.uint8)


def read_png16(path: Path) -> np.ndarray | None:
    """A 16-bit colour PNG as ``(C, H, W)`` uint16 (RGB: 3 channels, gray+alpha: 1; alpha dropped), or ``None``
    for any other file (those are read by Pillow, which keeps 8-bit and 16-bit gray values as they are)."""
    with open(path, "rb") as f:
        head = f.read(29)
        if len(head) < 29 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
            return None
        w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
        if depth != 16 or color not in (2, 4, 6):
            return None
        if interlace:
            raise DatasetError(f"{path} is an interlaced 16-bit colour PNG; save it without interlacing (or as "
                               "NIfTI) to keep its 16-bit values")
        data = head + f.read()
    pos, idat = 8, []
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + n])
        elif kind == b"IEND":
            break
        pos += 12 + n
    ch = {2: 3, 4: 2, 6: 4}[color]
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)[: h * (1 + 2 * ch * w)]
    pix = _unfilter(rows.reshape(h, 1 + 2 * ch * w), 2 * ch).view(">u2").reshape(h, w, ch).astype(np.uint16)
    keep = 3 if color in (2, 6) else 1
    return np.ascontiguousarray(np.moveaxis(pix[..., :keep], -1, 0))


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
