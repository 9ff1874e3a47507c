"""Tests for medgan.synthesis.mixing: dataset-level mixing of real and synthetic samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset

from medgan.errors import MedganError
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.export import augment
from medgan.synthesis.mixing import manifest_items, mix_real_synthetic, mixed_dataset


def _bank(per_class=(6, 6)) -> SyntheticBank:
    y = np.concatenate([np.full(k, c) for c, k in enumerate(per_class)])
    x = np.stack([np.full((1, 8, 8), (c / 2) - 0.25 + i * 0.01) for i, c in enumerate(y)])
    return SyntheticBank.from_tensors(x, y, ["minority", "majority"][: len(per_class)],
                                      intensity={"min": 0.0, "max": 255.0, "dtype": "uint8"})


def _real(n0=4, n1=10):
    y = torch.tensor([0] * n0 + [1] * n1)
    return torch.zeros(len(y), 1, 8, 8), y


def test_ratio_mix_from_tensors():
    items = mix_real_synthetic(_real(), _bank(), ratio=0.5, seed=0)
    real = [d for d in items if not d["is_synthetic"]]
    syn = [d for d in items if d["is_synthetic"]]
    assert len(real) == 14 and [d["label"] for d in syn].count(0) == 2 and [d["label"] for d in syn].count(1) == 5
    assert items[:14] == real  # real first, in order
    for d in syn:  # each synthetic item is a bank image of its class
        assert isinstance(d["image"], torch.Tensor) and d["image"].shape == (1, 8, 8)
        c = d["label"]
        assert c / 2 - 0.25 - 0.01 <= float(d["image"].mean()) <= c / 2 - 0.25 + 0.12
    # without replacement while the pool lasts: 5 distinct majority images out of 6
    maj = {float(d["image"].mean()) for d in syn if d["label"] == 1}
    assert len(maj) == 5


def test_balance_and_reuse_beyond_the_pool():
    items = mix_real_synthetic(_real(2, 20), _bank((5, 5)), ratio="balance", seed=1)
    labels = [d["label"] for d in items]
    assert labels.count(0) == 20 and labels.count(1) == 20
    syn0 = [float(d["image"].mean()) for d in items if d["is_synthetic"]]
    assert len(syn0) == 18 and len(set(syn0)) == 5  # 18 drawn from a pool of 5: every image used


def test_seeded_and_source_range():
    a = mix_real_synthetic(_real(), _bank(), ratio=1.0, seed=3)
    b = mix_real_synthetic(_real(), _bank(), ratio=1.0, seed=3)
    c = mix_real_synthetic(_real(), _bank(), ratio=1.0, seed=4)
    means = [[float(d["image"].mean()) for d in m if d["is_synthetic"]] for m in (a, b, c)]
    assert means[0] == means[1] and means[0] != means[2]
    s = mix_real_synthetic(_real(), _bank(), ratio=0.5, value_range="source")
    assert float(s[-1]["image"].mean()) > 100  # majority images in 0..255


def test_list_of_dicts_and_errors():
    real = [{"image": f"/data/{i}.png", "label": np.array([i % 2]), "pid": i} for i in range(6)]
    items = mix_real_synthetic(real, _bank(), ratio=1.0)
    assert items[0]["pid"] == 0 and items[0]["is_synthetic"] is False and len(items) == 12
    with pytest.raises(MedganError, match="no synthetic images of class 1"):
        mix_real_synthetic(real, _bank((3, 0)), ratio=1.0)
    with pytest.raises(MedganError, match="list of dicts"):
        mix_real_synthetic("nope", _bank())


def test_manifest_items_and_datasets(breast, tmp_path):
    ckpt = breast
    augment(ckpt, tmp_path / "s", n=3, format="png", progress=False)
    syn = manifest_items(tmp_path / "s")
    assert len(syn) == 6 and all(d["is_synthetic"] and d["image"].endswith(".png") for d in syn)
    real = [{"image": "/x.png", "label": 0}] * 2 + [{"image": "/y.png", "label": 1}] * 6
    items = mix_real_synthetic(real, syn, ratio="balance", class_names=["malignant", "normal, benign"])
    assert [d["label"] for d in items].count(0) == 6 and items[-1]["image"].startswith(str(tmp_path))
    ds = mixed_dataset(_real(), _bank(), ratio=0.5)
    assert isinstance(ds, Dataset) and len(ds) == 21
    cds = mixed_dataset(_real(), _bank(), ratio=0.5, cache=True)
    assert isinstance(cds, CacheDataset) and sum(bool(d["is_synthetic"]) for d in cds) == 7
    augment(ckpt, tmp_path / "n", n=2, format="npz", progress=False)
    with pytest.raises(MedganError, match="SyntheticBank.from_folder"):
        manifest_items(tmp_path / "n")


# ------------------------------------------------------------------------------------------- synthetic slots


def _labelled(n0=4, n1=12):
    return [{"image": f"img{i}.png", "label": 0 if i < n0 else 1} for i in range(n0 + n1)]


def test_slots_balance_every_class_to_the_majority_count():
    from medgan.synthesis.mixing import add_synthetic_slots

    items = add_synthetic_slots(_labelled(), "balance", seed=1)
    slots = [d for d in items if d.get("synthesize")]
    assert len(items) == 24 and len(slots) == 8 and all(d["label"] == 0 for d in slots)
    assert {d["image"] for d in slots} <= {f"img{i}.png" for i in range(4)}  # copies of the class's real items
    assert add_synthetic_slots(_labelled(), "balance", seed=1) == items  # seeded


def test_slots_reach_a_target_share():
    from medgan.synthesis.mixing import add_synthetic_slots

    items = add_synthetic_slots(_labelled(), 0.4)
    n0 = sum(d["label"] == 0 for d in items)
    assert n0 / len(items) >= 0.4 and (n0 - 1) / (len(items) - 1) < 0.4  # the smallest count that reaches it
    names = ["minority", "majority"]
    by_name = add_synthetic_slots(_labelled(), {"minority": 0.5}, class_names=names)
    assert sum(d["label"] == 0 for d in by_name) == 12 and len(by_name) == 24
    for bad in ("most", 1.5, {"minority": 0.6, "majority": 0.5}):
        with pytest.raises(MedganError, match="target"):
            add_synthetic_slots(_labelled(), bad, class_names=names)


def test_slots_filled_in_a_dataloader_with_workers():
    """The scarce-class recipe: slots + RandSyntheticReplaced in the chain, a real DataLoader with a worker."""
    from monai.data import DataLoader, MetaTensor
    from monai.transforms import Compose, EnsureTyped, Lambdad, RandFlipd

    from medgan.synthesis.mixing import add_synthetic_slots
    from medgan.synthesis.transforms import RandSyntheticReplaced

    bank = _bank()
    real = [{"image": MetaTensor(torch.full((1, 8, 8), 7.0)), "label": 0 if i < 4 else 1} for i in range(16)]
    items = add_synthetic_slots(real, "balance")
    tf = Compose([EnsureTyped("image"),
                  RandSyntheticReplaced("image", bank=bank, class_names=["minority", "majority"], prob=0.0,
                                        check=False),
                  Lambdad("image", lambda x: x / 255.0), RandFlipd("image", prob=0.5)])
    loader = DataLoader(Dataset(items, transform=tf), batch_size=8, num_workers=1, shuffle=True)
    labels, flags = [], []
    for batch in loader:
        labels.append(batch["label"])
        flags.append(batch["is_synthetic"])
    labels, flags = torch.cat(labels), torch.cat(flags)
    assert int((labels == 0).sum()) == int((labels == 1).sum()) == 12  # balanced
    assert int(flags.sum()) == 8 and (labels[flags] == 0).all()  # the 8 added samples are synthetic minority ones
