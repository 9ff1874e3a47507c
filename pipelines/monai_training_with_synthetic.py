"""A stock MONAI training pipeline that uses medgan's synthetic images: one transform line, one dataset line.

BreastMNIST (malignant is the scarce class: 147 of 546 training images; fewer with ``--scarce``). The classifier
trains on the same real training images as the generator: pass the ``--dataset``/``--scarce``/``--split-seed`` of
``medgan train``; the training split is checked against the fingerprint the checkpoint (or the augment folder)
records, and a mismatch is refused (the data a checkpoint names is never opened unless you name it). The real
images are written as PNG
class folders (``train/malignant/*.png``, ``train/normal_benign/*.png``) to a temporary folder and read the way
any MONAI pipeline reads them: ``LoadImaged`` with its default reader. medgan adds two lines, nothing else:

* ``add_synthetic_slots(items, target)`` appends slots for the scarce class until it reaches ``--target``
  (``balance``: the majority count; or a share such as ``0.4``);
* ``RandSyntheticReplaced(..., class_names=folder names)`` right after ``EnsureChannelFirstd`` fills every slot
  with a synthetic malignant image (fresh each epoch) and, with ``--prob``, also swaps real samples. Its defaults
  match the real images at that point (LoadImage's layout, the 0..255 source range), so synthetic images go
  through ``ScaleIntensityd`` and the random augmentations like real ones.

    medgan train --dataset breastmnist --config breastmnist --scarce malignant=0.2 --out runs/breast
    medgan augment --checkpoint runs/breast --n 500 --class malignant --out synth/breast
    python pipelines/monai_training_with_synthetic.py --synthetic synth/breast --scarce malignant=0.2 --epochs 5
    python pipelines/monai_training_with_synthetic.py --checkpoint runs/breast --scarce malignant=0.2  # from G
    python pipelines/monai_training_with_synthetic.py --synthetic synth/breast --scarce malignant=0.2 --target none

Runs in a couple of minutes on a CPU. It is an example of use, not an evaluation (use ``medgan evaluate``).
Data: BreastMNIST (Al-Dhabyani et al. 2020; MedMNIST, Yang et al. 2023, CC BY 4.0), found via --data-dir or
MEDGAN_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.metrics import ROCAUCMetric
from monai.networks.nets import DenseNet
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, RandFlipd, ScaleIntensityd
from monai.utils import set_determinism
from PIL import Image

from medgan.data.sources import load_dataset
from medgan.synthesis.bank import SyntheticBank
from medgan.synthesis.mixing import add_synthetic_slots
from medgan.synthesis.transforms import RandSyntheticReplaced


def write_class_folders(images: np.ndarray, labels: np.ndarray, class_names: list[str], root: Path,
                        limit: int | None = None) -> list[dict]:
    """Real (N, 1, H, W) uint8 images -> ``root/<class folder>/<i>.png``; returns MONAI items (``label``: the index
    of the class folder in sorted order, as a folder-reading MONAI recipe numbers them)."""
    from medgan.data.classes import folder_names

    folders = folder_names(class_names)
    order = sorted(folders)
    items = []
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        if limit is not None and i >= limit:
            break
        path = root / folders[int(y)] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(path)
        items.append({"image": str(path), "label": order.index(folders[int(y)])})
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synthetic", type=Path, help="folder written by 'medgan augment --format png'")
    ap.add_argument("--checkpoint", type=Path, help="generate the synthetic images from this checkpoint instead")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--target", default="balance", help="bring the scarce class to: balance, a share (0.4) or none")
    ap.add_argument("--prob", type=float, default=0.0, help="also swap real malignant samples with this probability")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (quick runs)")
    ap.add_argument("--dataset", default="breastmnist", help="the generator's training data (medgan train's --dataset)")
    ap.add_argument("--scarce", action="append", default=[],
                    help="the generator's scarcity (medgan train's --scarce, e.g. malignant=0.2); repeatable")
    ap.add_argument("--split-seed", type=int, default=0, help="medgan train's --split-seed")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    if args.synthetic is None and args.checkpoint is None:
        ap.error("pass --synthetic (an augment output folder) or --checkpoint")
    with tempfile.TemporaryDirectory(prefix="medgan-monai-") as tmp:
        run(args, Path(tmp))


def check_training_data(real, args: argparse.Namespace) -> str:
    """Whether ``real``'s training split is the generator's: its fingerprint against the one the checkpoint (or the
    augment folder's ``augment.json``) records. A mismatch exits with a one-line error; returns what was checked."""
    if args.checkpoint is not None:
        from medgan.synthesis.near_copies import recorded_training_data
        from medgan.training.checkpoint import load_checkpoint

        ck = load_checkpoint(args.checkpoint)
        theirs, said = (ck.get("data") or {}).get("train_fingerprint"), recorded_training_data(ck)
    else:
        rec_path = args.synthetic / "augment.json"
        rec = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
        theirs = rec.get("train_fingerprint")
        said = f"{rec_path} says the generator was trained on {rec.get('dataset')!r}"
    if not theirs:
        return ("note: the synthetic images record no training-set fingerprint, so this run cannot check that its "
                "real training images are the generator's")
    mine = real.fingerprint()
    if mine != theirs:
        scarce = " ".join(f"--scarce {s}" for s in args.scarce) or "no --scarce"
        sys.exit(f"monai_training_with_synthetic.py: error: the training split of --dataset {args.dataset} with "
                 f"{scarce} (fingerprint {mine[:12]}) is not the generator's (fingerprint {theirs[:12]}), so the "
                 f"classifier would train on other real images than the generator saw; pass the --dataset, --scarce "
                 f"and --split-seed of its training ({said})")
    return f"real training split = the generator's (fingerprint {mine[:12]})"


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Write the real PNG class folders under ``tmp``, build the bank and the chain, train, report test AUROC."""
    set_determinism(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    real = load_dataset(args.dataset, data_dir=args.data_dir, split_seed=args.split_seed, scarce=args.scarce or None)
    print(check_training_data(real, args))
    train_items = write_class_folders(real.splits["train"].images, real.splits["train"].labels, real.class_names,
                                      tmp / "train", args.limit)
    test_items = write_class_folders(real.splits["test"].images, real.splits["test"].labels, real.class_names,
                                     tmp / "test", args.limit)
    names = sorted(p.name for p in (tmp / "train").iterdir())  # the pipeline's classes: its folder names
    scarce = names.index("malignant")

    if args.synthetic is not None:
        bank = SyntheticBank.from_folder(args.synthetic)
    else:
        bank = SyntheticBank.from_checkpoint(args.checkpoint, n_per_class=500, classes=["malignant"], seed=args.seed)
    print(f"real train counts {dict(zip(names, np.bincount([d['label'] for d in train_items]).tolist(), strict=True))}"
          f"; synthetic bank {bank}")

    if args.target != "none":  # medgan line 1: slots that bring the scarce class to the target
        train_items = add_synthetic_slots(train_items, args.target if args.target == "balance" else float(args.target))
    train_tf = Compose([
        LoadImaged(keys="image"),
        EnsureChannelFirstd(keys="image"),
        # medgan line 2: fills the slots (and swaps real malignant samples with --prob)
        RandSyntheticReplaced(keys="image", bank=bank, class_names=names, prob=args.prob, classes=["malignant"]),
        ScaleIntensityd(keys="image"),
        RandFlipd(keys="image", prob=0.5, spatial_axis=0),
        EnsureTyped(keys="image", dtype=torch.float32),
    ])
    test_tf = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image"), ScaleIntensityd(keys="image"),
                       EnsureTyped(keys="image", dtype=torch.float32)])
    train_tf.set_random_state(args.seed)

    train_loader = DataLoader(Dataset(train_items, train_tf), batch_size=64, shuffle=True, num_workers=args.workers)
    test_loader = DataLoader(Dataset(test_items, test_tf), batch_size=256, num_workers=args.workers)

    model = DenseNet(spatial_dims=2, in_channels=1, out_channels=len(names), init_features=16,
                     growth_rate=8, block_config=(4, 4, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    auc = ROCAUCMetric()
    for epoch in range(1, args.epochs + 1):
        model.train()
        total, n_syn, n_seen = 0.0, 0, 0
        for batch in train_loader:
            opt.zero_grad()
            loss = loss_fn(model(batch["image"]), batch["label"].long())
            loss.backward()
            opt.step()
            total += loss.item() * len(batch["label"])
            n_syn += int(batch["is_synthetic"].sum())
            n_seen += len(batch["label"])
        model.eval()
        with torch.no_grad():
            probs, ys = [], []
            for batch in test_loader:
                probs.append(torch.softmax(model(batch["image"]), 1)[:, scarce])
                ys.append((batch["label"] == scarce).long())
        auc(torch.cat(probs), torch.cat(ys))
        print(f"epoch {epoch}: loss {total / n_seen:.4f}, synthetic {n_syn}/{n_seen} samples, "
              f"test AUROC (malignant vs rest) {auc.aggregate():.3f}")
        auc.reset()


if __name__ == "__main__":
    main()
