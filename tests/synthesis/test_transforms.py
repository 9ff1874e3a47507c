"""Tests for medgan.synthesis.transforms: the RandSyntheticReplace(d) MONAI transforms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import marked_bank, one_line_error
from monai.data import CacheDataset, DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, EnsureTyped, RandFlipd

from medgan.errors import DatasetError, MedganError
from medgan.synthesis.transforms import (
    RandSyntheticReplace,
    RandSyntheticReplaceD,
    RandSyntheticReplaced,
    RandSyntheticReplaceDict,
)


def test_replace_keeps_class_and_is_deterministic():
    b = marked_bank()
    t = RandSyntheticReplace(b, prob=0.5, value_range="model").set_random_state(7)
    img = torch.full((1, 28, 28), 9.0)
    outs = [t(img, lab) for lab in [0, 1, 2] * 20]
    replaced = [o for o in outs if not torch.equal(o, img)]
    assert 10 < len(replaced) < 50
    for lab, o in zip([0, 1, 2] * 20, outs, strict=True):
        if not torch.equal(o, img):
            assert torch.allclose(o, torch.full_like(o, lab / 2 - 0.5), atol=1 / 127.5)  # same class
    t2 = RandSyntheticReplace(b, prob=0.5, value_range="model").set_random_state(7)
    assert all(torch.equal(o, t2(img, lab)) for lab, o in zip([0, 1, 2] * 20, outs, strict=True))


def test_prob_zero_is_identity_and_prob_one_always_replaces(bank):
    img = MetaTensor(torch.randn(1, 28, 28))
    t0 = RandSyntheticReplace(bank, prob=0.0)
    assert all(t0(img, lab) is img for lab in (0, 1, 0, 1))
    t1 = RandSyntheticReplace(bank, prob=1.0).set_random_state(0)
    assert all(not torch.equal(t1(img, lab), img) for lab in (0, 1, 0, 1))


def test_per_class_probabilities_and_chosen_classes():
    b = marked_bank()
    img = torch.full((1, 28, 28), 9.0)
    t = RandSyntheticReplace(b, prob=0.0, class_prob={"c": 1.0}).set_random_state(0)
    assert torch.equal(t(img, 0), img) and torch.equal(t(img, 1), img) and not torch.equal(t(img, 2), img)
    t = RandSyntheticReplace(b, prob=1.0, classes=["a"]).set_random_state(0)
    assert not torch.equal(t(img, 0), img) and torch.equal(t(img, 1), img) and torch.equal(t(img, 2), img)
    assert t.probability(torch.tensor([0])) == 1.0 and t.probability(np.array([2])) == 0.0
    # one-hot labels work too
    assert not torch.equal(t(img, np.array([1, 0, 0])), img)
    with pytest.raises(MedganError, match="not in classes"):
        RandSyntheticReplace(b, classes=["a"], class_prob={"b": 0.5})


def test_output_type_dtype_and_value_range():
    b = marked_bank()
    assert RandSyntheticReplace(b).value_range == "source"  # auto: the training data's range, as LoadImage gives
    t = RandSyntheticReplace(b, prob=1.0, value_range="source").set_random_state(0)
    meta_in = MetaTensor(torch.zeros(1, 28, 28, dtype=torch.uint8), meta={"filename_or_obj": "real.png"})
    o = t(meta_in, 2)
    assert isinstance(o, MetaTensor) and o.dtype == torch.uint8 and o.shape == (1, 28, 28)
    assert int(o.max()) == 191 and o.meta["filename_or_obj"].startswith("synthetic:")
    o = t(np.zeros((1, 28, 28), np.float32), 0)
    assert isinstance(o, np.ndarray) and o.dtype == np.float32 and abs(o.max() - 63.75) < 1
    o = t(np.zeros((28, 28), np.float64), 1)  # no channel axis in, none out
    assert o.shape == (28, 28) and abs(o.mean() - 127.5) < 1
    t = RandSyntheticReplace(b, prob=1.0, value_range=(0.0, 1.0)).set_random_state(0)
    assert torch.allclose(t(torch.zeros(1, 28, 28), 1), torch.full((1, 28, 28), 0.5), atol=0.01)


def test_spatial_mismatch_is_a_clear_error(bank):
    t = RandSyntheticReplace(bank, prob=1.0)
    with pytest.raises(DatasetError, match=r"does not match the synthetic bank's \(1, 28, 28\)"):
        t(torch.zeros(1, 32, 32), 0)
    with pytest.raises(DatasetError, match="3 channels"):
        t(torch.zeros(3, 28, 28), 0)


def _items(n=24):
    return [{"image": torch.full((1, 28, 28), 9.0), "label": np.array([i % 3]), "name": f"real{i}",
             "mask": torch.ones(1, 28, 28)} for i in range(n)]


def test_dict_transform_flags_and_leaves_other_keys():
    assert RandSyntheticReplaceD is RandSyntheticReplaced and RandSyntheticReplaceDict is RandSyntheticReplaced
    t = RandSyntheticReplaced("image", "label", marked_bank(), prob=0.5, value_range="model").set_random_state(3)
    outs = [t(d) for d in _items()]
    flags = [o["is_synthetic"] for o in outs]
    assert any(flags) and not all(flags)
    for d, o in zip(_items(), outs, strict=True):
        assert o["name"] == d["name"] and torch.equal(o["mask"], d["mask"]) and np.array_equal(o["label"], d["label"])
        if o["is_synthetic"]:
            c = int(d["label"][0])
            assert torch.allclose(o["image"], torch.full((1, 28, 28), c / 2 - 0.5), atol=0.01)
        else:
            assert torch.equal(o["image"], d["image"])
    t2 = RandSyntheticReplaced("image", "label", marked_bank(), prob=0.5).set_random_state(3)
    assert [t2(d)["is_synthetic"] for d in _items()] == flags
    t0 = RandSyntheticReplaced("image", "label", marked_bank(), prob=0.0)
    assert all(not o["is_synthetic"] and torch.equal(o["image"], d["image"])
               for d, o in zip(_items(), map(t0, _items()), strict=True))


def test_dict_transform_same_decision_for_all_keys():
    t = RandSyntheticReplaced(["image", "image2"], "label", marked_bank(), prob=0.5).set_random_state(1)
    for d in _items(12):
        d["image2"] = d["image"].clone()
        o = t(d)
        assert torch.equal(o["image"], o["image2"])
        assert o["is_synthetic"] == (not torch.equal(o["image"], d["image"]))


def test_dict_transform_missing_label_key():
    t = RandSyntheticReplaced("image", "target", marked_bank())
    with pytest.raises(MedganError, match="no label key 'target'"):
        t({"image": torch.zeros(1, 28, 28), "label": 0})


def test_in_compose_dataset_and_cache_dataset():
    def pipeline(seed):
        c = Compose([EnsureTyped(keys="image"), RandSyntheticReplaced("image", "label", marked_bank(), prob=0.5),
                     RandFlipd(keys="image", prob=0.5)])
        c.set_random_state(seed)
        return c

    a = [d["is_synthetic"] for d in Dataset(_items(), transform=pipeline(5))]
    b = [d["is_synthetic"] for d in Dataset(_items(), transform=pipeline(5))]
    assert a == b and any(a) and not all(a)
    cached = CacheDataset(_items(), transform=pipeline(5), progress=False)  # random transforms run after the cache
    assert [d["is_synthetic"] for d in cached] == a


def test_multi_worker_dataloader(bank):
    items = [{"image": torch.zeros(1, 28, 28), "label": i % 2} for i in range(64)]
    tf = Compose([RandSyntheticReplaced("image", "label", bank, prob=0.5, value_range="model", check=False)])

    def run():
        torch.manual_seed(0)
        loader = DataLoader(Dataset(items, transform=tf), batch_size=8, num_workers=2, shuffle=False)
        return [(b["image"], b["label"], b["is_synthetic"]) for b in loader]

    first, second = run(), run()
    flags = torch.cat([f for _, _, f in first])
    assert flags.dtype == torch.bool and 8 < int(flags.sum()) < 56
    images = torch.cat([x for x, _, _ in first])
    labels = torch.cat([y for _, y, _ in first])
    bank_imgs, bank_labels = bank.images, bank.labels
    for img, lab, syn in zip(images, labels, flags, strict=True):
        if syn:  # class consistency: the replacement is a bank image of the sample's own class
            hits = (bank_imgs - img).flatten(1).abs().amax(1) == 0
            assert hits.any() and (bank_labels[hits] == lab).all()
        else:
            assert torch.equal(img, torch.zeros(1, 28, 28))
    # the two workers draw different streams, and the whole run repeats under the same torch seed
    per_batch = flags.reshape(8, 8)  # batch i comes from worker i % 2
    assert not torch.equal(per_batch[0::2], per_batch[1::2])
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) for a, b in zip(first, second, strict=True))


# ------------------------------------------------------------------------------------------- MONAI conventions


def test_replacement_carries_fresh_metadata(bank):
    """Its own empty applied_operations, a synthetic name, the model grid's affine; nothing of the real file."""
    real = MetaTensor(torch.zeros(1, 28, 28), meta={"filename_or_obj": "/data/real.png", "width": 28,
                                                     "original_channel_dim": float("nan")})
    real.push_applied_operation({"class": "RandFlip", "id": 1, "orig_size": (28, 28)})
    out = RandSyntheticReplace(bank, prob=1.0, check=False).set_random_state(0)(real, 0)
    assert isinstance(out, MetaTensor) and out.applied_operations == [] and len(real.applied_operations) == 1
    assert out.meta["filename_or_obj"].startswith("synthetic:malignant/") and out.meta["is_synthetic"]
    assert "width" not in out.meta and np.isnan(out.meta["original_channel_dim"])
    assert torch.equal(out.affine, torch.as_tensor(bank.affine()))
    assert real.meta["filename_or_obj"] == "/data/real.png"  # the input is untouched


def test_class_names_map_pipeline_labels_to_bank_classes():
    b = marked_bank()  # class c images are constant c/2 - 0.5
    img = torch.full((1, 28, 28), 9.0)
    t = RandSyntheticReplace(b, prob=1.0, value_range="model", class_names=["c", "a", "b"]).set_random_state(0)
    assert torch.allclose(t(img, 0), torch.full_like(img, 0.5), atol=0.01)  # pipeline label 0 is the bank's 'c'
    assert torch.allclose(t(img, "b"), torch.full_like(img, 0.0), atol=0.01)  # a name works as a label
    t = RandSyntheticReplace(b, prob=1.0, value_range="model", class_names={7: "b", 9: "a"}).set_random_state(0)
    assert torch.allclose(t(img, torch.tensor([7])), torch.full_like(img, 0.0), atol=0.01)
    one_line_error(RandSyntheticReplace, b, class_names=["a", "benign"], match="'benign' (label 1) is not a class")
    one_line_error(RandSyntheticReplace, b, class_names=["a", "a"], match="both map to")


def test_folder_names_resolve_to_bank_classes(bank):
    t = RandSyntheticReplace(bank, prob=1.0, class_names=["normal_benign", "malignant"], check=False)
    assert t.classes(0) == 1 and t.classes("normal_benign") == 1 and t.classes("malignant") == 0


@pytest.mark.parametrize("label, match", [("z", "unknown class 'z'"), (None, "no class label"),
                                          (-1, "out of range"), (5, "out of range"), (2.5, "cannot read a class"),
                                          (True, "boolean")])
def test_bad_labels_are_one_line_errors(label, match):
    t = RandSyntheticReplace(marked_bank(), prob=1.0)
    one_line_error(t.randomize, label, match=match)
    td = RandSyntheticReplaced("image", "label", marked_bank(), prob=1.0)
    one_line_error(td, {"image": torch.zeros(1, 28, 28), "label": label}, match=match)


def test_a_class_name_key_that_contradicts_the_label_is_refused():
    t = RandSyntheticReplaced("image", "label", marked_bank(), prob=0.0)
    assert t({"image": torch.zeros(1, 28, 28), "label": 1, "class_name": "b"})["is_synthetic"] is False
    one_line_error(t, {"image": torch.zeros(1, 28, 28), "label": 1, "class_name": "a"},
                   match="class_name is 'a'")


def test_synthesize_flag_forces_a_replacement_and_is_removed():
    t = RandSyntheticReplaced("image", "label", marked_bank(), prob=0.0, value_range="model").set_random_state(0)
    d = t({"image": torch.zeros(1, 28, 28), "label": 2, "synthesize": True})
    assert d["is_synthetic"] and "synthesize" not in d
    assert torch.allclose(d["image"], torch.full((1, 28, 28), 0.5), atol=0.01)


def _gradient_bank():
    """Images brighter along the first spatial axis (values from the row index), class 0 only."""
    from medgan.synthesis.bank import SyntheticBank

    ramp = torch.linspace(-1, 1, 28)[:, None].expand(28, 28)
    x = (ramp + 0.05 * torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    return SyntheticBank.from_tensors(x, [0] * 8, ["a"], intensity={"min": 0.0, "max": 255.0, "dtype": "uint8"})


def test_first_real_image_in_another_layout_warns_once_naming_the_fix():
    b = _gradient_bank()
    real = (b.images[0] + 1) * 127.5  # same layout, source range: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RandSyntheticReplace(b, prob=0.0)(real, 0)
    t = RandSyntheticReplace(b, prob=0.0)
    with pytest.warns(UserWarning, match="layout='array'") as rec:
        t(real.transpose(-1, -2), 0)
        t(real.transpose(-1, -2), 0)
    assert len([w for w in rec if "transposed" in str(w.message)]) == 1


def test_first_real_image_in_another_value_range_warns():
    b = _gradient_bank()
    with pytest.warns(UserWarning, match="value_range='source'"):
        RandSyntheticReplace(b, prob=0.0)((b.images[0] + 1) / 2, 0)  # real in [0, 1], synthetic in 0..255
    with pytest.warns(UserWarning, match=r"\[-1, 1\]|value_range=\(low, high\)"):
        RandSyntheticReplace(b, prob=0.0, value_range="model")((b.images[0] + 1) * 127.5, 0)
