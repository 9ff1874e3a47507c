"""A stock MONAI recipe with medgan's transform added in ONE line and nothing else.

The MedNIST-style chain (``LoadImaged`` with the default reader on PNG class folders -> ``EnsureChannelFirstd``
-> ``ScaleIntensityd`` -> random rotate/flip/zoom -> ``DataLoader`` with a worker), and the same on NIfTI volumes.
The bank holds real held-out images in medgan's array layout, i.e. exactly what a generator trained on the dataset
makes, so the assertions measure the plumbing: synthetic samples reach the network in the real samples'
orientation (their mean image correlates with the real mean image better as they are than transposed), in the
real samples' value range and dtype, with metadata that collates with the real samples' and describes
themselves (no operation of the real file they replaced).
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medgan.data.grid import model_grid
from medgan.data.preprocess import to_model_tensor
from medgan.data.sources import load_dataset
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.transforms import RandSyntheticReplaced

pytestmark = pytest.mark.usefixtures("medmnist_dir")


def _bank(spec: str, split: str, n: int, size: int) -> SyntheticBank:
    """A bank of ``n`` images per class of ``split``, in medgan's array layout, with the dataset's model grid."""
    data = load_dataset(spec, download=False)
    sp = data.splits[split]
    idx = np.concatenate([np.flatnonzero(sp.labels == c)[:n] for c in range(data.num_classes)])
    x = to_model_tensor(sp.images[idx], data.intensity, data.spatial_dims, size)
    meta = {**data.meta(), "size": size}
    return SyntheticBank.from_tensors(x, sp.labels[idx], data.class_names, intensity=data.intensity.to_dict(),
                                      grid=model_grid(meta))


def _png_folders(root, spec: str, n: int) -> tuple[list[dict], list[str]]:
    """Real training images as PNG class folders (natural orientation), MedNIST-style items."""
    data = load_dataset(spec, download=False)
    sp = data.splits["train"]
    names = ["malignant", "normal_benign"]  # the folder names a user would pick (or augment writes)
    items = []
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in np.flatnonzero(sp.labels == c)[:n]:
            p = root / name / f"{i}.png"
            Image.fromarray(sp.images[i, 0]).save(p)
            items.append({"image": str(p), "label": c})
    return items, names


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def _run(items, transform, workers=1):
    from monai.data import DataLoader, Dataset

    loader = DataLoader(Dataset(items, transform=transform), batch_size=32, num_workers=workers, shuffle=False)
    return list(loader)


def _check_orientation(batches, spatial_dims):
    x = torch.cat([b["image"].as_tensor() for b in batches])
    syn = torch.cat([b["is_synthetic"] for b in batches])
    assert 0.2 < syn.float().mean() < 0.8
    real_mean, syn_mean = x[~syn].mean(0)[0], x[syn].mean(0)[0]
    direct = _corr(real_mean, syn_mean)
    swapped = _corr(real_mean, syn_mean.transpose(0, 1))
    assert direct > 0.8 and direct > swapped + 0.05, (direct, swapped)
    assert x.dtype == torch.float32 and 0.0 <= float(x[syn].min()) and float(x[syn].max()) <= 1.0
    return syn


def test_png_class_folders_loadimaged_default_reader(tmp_path):
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        RandFlipd,
        RandRotated,
        RandZoomd,
        ScaleIntensityd,
    )

    items, names = _png_folders(tmp_path / "png", "breastmnist", 100)
    bank = _bank("breastmnist", "val", 40, 28)
    recipe = [
        LoadImaged(keys="image"),
        EnsureChannelFirstd(keys="image"),
        RandSyntheticReplaced(keys="image", bank=bank, class_names=names, prob=0.5),  # the one added line
        ScaleIntensityd(keys="image"),
        RandRotated(keys="image", range_x=0.15, prob=0.5, keep_size=True),
        RandFlipd(keys="image", spatial_axis=0, prob=0.5),
        RandZoomd(keys="image", min_zoom=0.9, max_zoom=1.1, prob=0.5),
        EnsureTyped(keys="image"),
    ]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="medgan")  # neither a layout nor a range warning
        batches = _run(items, Compose(recipe).set_random_state(0))
    syn = _check_orientation(batches, 2)
    # metadata: synthetic samples name themselves, carry only the operations applied after the transform,
    # and collate with the real samples' (the batch meta holds the shared keys)
    names_out = [n for b in batches for n in b["image"].meta["filename_or_obj"]]
    assert all(n.startswith("synthetic:") == bool(s) for n, s in zip(names_out, syn.tolist(), strict=True))
    ops = [op["class"] for b in batches for sample in b["image"].applied_operations for op in sample]
    assert set(ops) <= {"RandRotated", "RandFlipd", "RandZoomd"}
    # value range and dtype at the placement: what LoadImaged gives (float32, 0..255)
    head = Compose(recipe[:3]).set_random_state(1)
    out = [head(d) for d in items[:40]]
    real = [o["image"] for o in out if not o["is_synthetic"]]
    fake = [o["image"] for o in out if o["is_synthetic"]]
    assert real and fake and {t.dtype for t in real + fake} == {torch.float32}
    assert {tuple(t.shape) for t in real + fake} == {(1, 28, 28)}
    assert 0 <= min(float(t.min()) for t in fake) and max(float(t.max()) for t in fake) <= 255
    assert abs(np.mean([float(t.max()) for t in fake]) - np.mean([float(t.max()) for t in real])) < 40


def test_nifti_volumes_loadimaged_default_reader(tmp_path):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, RandFlipd, ScaleIntensityd

    data = load_dataset("adrenalmnist3d", download=False)
    sp = data.splits["train"]
    items = []
    for c in range(data.num_classes):
        for i in np.flatnonzero(sp.labels == c)[:30]:
            p = tmp_path / f"{c}_{i}.nii.gz"
            nib.save(nib.Nifti1Image(sp.images[i, 0], np.eye(4)), p)
            items.append({"image": str(p), "label": int(c)})
    bank = _bank("adrenalmnist3d", "val", 20, 28)
    recipe = Compose([
        LoadImaged(keys="image"),
        EnsureChannelFirstd(keys="image"),
        RandSyntheticReplaced(keys="image", bank=bank, prob=0.5),  # the one added line
        ScaleIntensityd(keys="image"),
        RandFlipd(keys="image", spatial_axis=2, prob=0.5),
    ]).set_random_state(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="medgan")
        batches = _run(items, recipe)
    syn = _check_orientation(batches, 3)
    spacing = [b["image"].meta["affine"] for b in batches]
    assert all(a.shape[-2:] == (4, 4) for a in spacing) and int(syn.sum()) > 0
