"""DICOM output of ``medgan augment``: ``<class>/<id>.dcm``, one new Secondary Capture object per sample.

Each sample becomes one new Secondary Capture object (2D: SC Image Storage; 3D: one
multi-frame SC object per volume, frames along the last spatial axis). Fresh UIDs under pydicom's root,
ImageType ``DERIVED\\SECONDARY``, ConversionType ``SYN``, patient placeholder ``SYNTHETIC^``; no attribute of
any input file is copied (only the training modality, when it is a valid DICOM modality code). A volume
``(C, X, Y, Z)`` becomes Z frames of X rows by Y columns (``pixel_array`` is ``(Z, X, Y)``), the layout
medgan's own DICOM loader reads back as ``(C, X, Y, Z)``; the spacing of the model grid (source extent / model
size, see :func:`medgan.data.preprocess.model_spacing`) goes to PixelSpacing and SpacingBetweenSlices /
SliceLocationVector. NominalScannedPixelSpacing (the spacing of scanned film) is not written: it is not
allowed with ConversionType SYN in multi-frame objects and means nothing for a synthetic image.

Objects pass dicom3tools' ``dciodvfy`` without errors (``tests/reliability/test_dicom_conformance.py``). Its
remaining warnings are deliberate: Laterality is present but empty (Type 2C: the generator does not know the
side), StudyDate/StudyTime are empty (Type 2: a date would make two identical runs differ, and repeats are
promised byte-identical), and a volume's SpacingBetweenSlices is outside the multi-frame SC IOD (common readers,
medgan's included, take the slice spacing from it).

UIDs are derived from (checkpoint SHA-256, run seed, requested classes and counts, sample class, index and
seed) so that repeat runs are byte-identical: two runs with the same checkpoint, arguments and seed write the
same images with the same UIDs (they are the same synthetic objects); any change of seed, arguments or
checkpoint gives new UIDs. This trades per-run UID freshness for reproducibility.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from medgan.errors import OutputError
from medgan.synthesis.writers import SYNTHETIC_NOTE, Provenance, Writer, channels_last

_MODALITY = re.compile(r"^[A-Z0-9_ ]{1,16}$")


def dicom_modality(modality: str | None) -> str:
    """The training modality when it is a valid DICOM modality code, else ``OT`` (other)."""
    m = str(modality or "").strip().upper()
    return m if _MODALITY.match(m) else "OT"


class DicomWriter(Writer):
    """One Secondary Capture object per sample (3D: one multi-frame SC object per volume)."""

    fmt = "dicom"

    @classmethod
    def check(cls, prov: Provenance) -> None:
        dt = np.dtype(prov.dtype)
        if dt not in (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.int8)):
            raise OutputError(f"DICOM Secondary Capture holds 8/16-bit integer pixels, but the training data is "
                              f"{dt.name}; use --format nifti or npz")
        if prov.channels not in (1, 3):
            raise OutputError(f"DICOM holds gray or RGB images, not {prov.channels} channels; use --format npz or nifti")
        if prov.channels == 3 and dt != np.uint8:
            raise OutputError("DICOM RGB images must be 8-bit; use --format nifti or npz")

    @classmethod
    def bytes_per_sample(cls, prov: Provenance, shape: tuple[int, ...]) -> int:
        return max(int(np.prod(shape)) * np.dtype(prov.dtype).itemsize + 4096, 4096)

    def __init__(self, out_dir: Path, prov: Provenance, total: int) -> None:
        super().__init__(out_dir, prov, total)
        from pydicom.uid import generate_uid

        base = [prov.checkpoint_sha256, str(prov.seed), prov.run_tag]
        self.study_uid = generate_uid(entropy_srcs=[*base, "study"])
        self.series_uid = generate_uid(entropy_srcs=[*base, "series"])
        self.modality = dicom_modality(prov.modality)

    def sop_class(self) -> str:
        from pydicom import uid

        if self.prov.spatial_dims == 2:
            return uid.SecondaryCaptureImageStorage
        if self.prov.channels == 3:
            return uid.MultiFrameTrueColorSecondaryCaptureImageStorage
        if np.dtype(self.prov.dtype).itemsize == 1:
            return uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage
        return uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage

    def encode(self, a: np.ndarray, label: int, index: int, seed: int, row: int) -> bytes:
        from pydicom import uid
        from pydicom.filewriter import dcmwrite

        prov = self.prov
        sop_uid = uid.generate_uid(entropy_srcs=[prov.checkpoint_sha256, str(prov.seed), prov.run_tag, str(label),
                                                 str(index), str(seed)])
        pix, intercept = self._pixels(a)
        ds = self._header(sop_uid, prov.class_names[label], seed, row)
        self._set_image(ds, pix, intercept)
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()

    def _pixels(self, a: np.ndarray) -> tuple[np.ndarray, int]:
        """``(C, *spatial)`` -> the pixel array DICOM stores (frames first for volumes), and the rescale
        intercept (multi-frame SC stores unsigned pixels: signed data is shifted and the shift recorded)."""
        pix = channels_last(a)  # (rows, cols[, 3]) or (rows, cols, frames[, 3])
        if self.prov.spatial_dims == 3:  # frames along the last spatial axis (as medgan's folder loader and NIfTI)
            pix = np.moveaxis(pix, 2, 0)
        pix = np.ascontiguousarray(pix)
        intercept = 0
        if self.prov.spatial_dims == 3 and pix.dtype.kind == "i":
            info = np.iinfo(pix.dtype)
            intercept = int(info.min)
            pix = (pix.astype(np.int32) - intercept).astype(np.uint8 if info.bits == 8 else np.uint16)
        return pix, intercept

    def _header(self, sop_uid: str, name: str, seed: int, row: int):
        """File meta, SOP common, patient (a placeholder), study, series, equipment and general image modules."""
        from pydicom import uid
        from pydicom.dataset import Dataset, FileMetaDataset

        prov = self.prov
        sop_class = self.sop_class()
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = uid.PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.ImplementationVersionName = f"MEDGAN_{prov.medgan_version}"[:16]
        # SOP common
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = ["DERIVED", "SECONDARY"]
        # Patient: a synthetic placeholder only, never data from an input
        ds.PatientName = "SYNTHETIC^"  # family name only (a name without '^' is the retired PN form)
        ds.PatientID = "SYNTHETIC"
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "synthetic image: no patient data"
        # General study / series / equipment
        ds.StudyInstanceUID = self.study_uid
        ds.StudyDate = ""
        ds.StudyTime = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = f"SYN{self.study_uid.rsplit('.', 1)[-1][-8:]}"  # short, and the same for one run
        ds.AccessionNumber = ""
        ds.StudyDescription = "SYNTHETIC (medgan)"
        ds.SeriesInstanceUID = self.series_uid
        ds.Modality = self.modality
        ds.SeriesNumber = 1
        ds.SeriesDescription = f"SYNTHETIC medgan {prov.medgan_version}"[:64]
        ds.Laterality = ""  # Type 2C: unknown for a synthetic image
        ds.Manufacturer = "medgan"
        ds.SoftwareVersions = str(prov.medgan_version)
        ds.ConversionType = "SYN"
        # General image
        ds.InstanceNumber = row + 1
        ds.PatientOrientation = ""
        ds.BurnedInAnnotation = "NO"
        ds.ImageComments = (f"{SYNTHETIC_NOTE}; class {name!s}; seed {seed}; generator step {prov.generator_step}; "
                            f"checkpoint sha256 {prov.checkpoint_sha256}")[:10240]
        ds.DerivationDescription = f"synthetic: generated by medgan {prov.medgan_version} from a trained GAN"[:1024]
        return ds

    def _set_image(self, ds, pix: np.ndarray, intercept: int) -> None:
        """Pixel data, spacing and (for volumes) the multi-frame attributes."""
        prov = self.prov
        multiframe = prov.spatial_dims == 3
        photometric = "RGB" if prov.channels == 3 else "MONOCHROME2"
        ds.set_pixel_data(pix, photometric, pix.dtype.itemsize * 8, generate_instance_uid=False)
        spacing = [float(v) for v in prov.spacing] if prov.spacing else None
        if spacing and len(spacing) >= 2:
            ds.PixelSpacing = [f"{v:.6g}" for v in spacing[:2]]  # read by common loaders (MONAI, medgan)
        if multiframe:
            frames = pix.shape[0]
            ds.NumberOfFrames = frames
            ds.FrameIncrementPointer = 0x00182005  # Slice Location Vector
            dz = spacing[2] if spacing and len(spacing) > 2 else 1.0
            ds.SpacingBetweenSlices = f"{dz:.6g}"
            ds.SliceLocationVector = [f"{k * dz:.6g}" for k in range(frames)]
            if prov.channels == 1:
                ds.PresentationLUTShape = "IDENTITY"
                ds.RescaleIntercept = str(intercept)
                ds.RescaleSlope = "1"
                ds.RescaleType = "US"
