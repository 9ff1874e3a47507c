"""A MONAI training pipeline that uses medgan's synthetic images through ``RandSyntheticReplaced``.

BreastMNIST (malignant is the scarce class: 147 of 546 training images). The real images are written as PNG
files to a temporary folder, so the pipeline reads files like any MONAI pipeline does; the synthetic images come
from a ``medgan augment --format png`` folder (``--synthetic``) or are generated here from ``--checkpoint``.

The minority class is oversampled to the majority count, and ``RandSyntheticReplaced`` swaps each minority
sample for a synthetic malignant image with probability ``--prob``, so the repeated copies become new images.
The synthetic images go through the same intensity transform as the real ones (``value_range="source"``:
they enter the chain in the 0..255 range, right after loading).

    medgan train --dataset breastmnist --out runs/breast
    medgan augment --checkpoint runs/breast/checkpoints/last.pt --n 500 --class malignant --out synth/breast
    python pipelines/monai_training_with_synthetic.py --synthetic synth/breast --epochs 5
    python pipelines/monai_training_with_synthetic.py --synthetic synth/breast --prob 0   # the real-only baseline

Runs in a couple of minutes on a CPU. Data: BreastMNIST (Al-Dhabyani et al. 2020; MedMNIST, Yang et al. 2023,
CC BY 4.0), found via --data-dir or MEDGAN_DATA_DIR.
"""

from __future__ import annotations

import argparse
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
from medgan.synthesis.export import augment
from medgan.synthesis.transforms import RandSyntheticReplaced


def write_pngs(images: np.ndarray, labels: np.ndarray, folder: Path) -> list[dict]:
    """Real (N, 1, H, W) uint8 images -> PNG files; returns MONAI items {"image": path, "label": int}."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        path = folder / f"{i:05d}.png"
        Image.fromarray(img[0]).save(path)
        items.append({"image": str(path), "label": int(y)})
    return items


def balance_by_repeating(items: list[dict], seed: int) -> list[dict]:
    """Repeat the items of smaller classes until every class has the majority count."""
    rng = np.random.default_rng(seed)
    labels = np.array([d["label"] for d in items])
    top = np.bincount(labels).max()
    out = list(items)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out += [items[i] for i in rng.choice(idx, top - len(idx), replace=True)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synthetic", type=Path, help="folder written by 'medgan augment --format png'")
    ap.add_argument("--checkpoint", type=Path, help="generate the synthetic images from this checkpoint instead")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--prob", type=float, default=0.5, help="replacement probability for minority samples")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    if args.synthetic is None and args.checkpoint is None:
        ap.error("pass --synthetic (an augment output folder) or --checkpoint")
    with tempfile.TemporaryDirectory(prefix="medgan-monai-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:
    """Write the real PNGs under ``tmp``, build the bank and the transforms, train and report test AUROC."""
    set_determinism(args.seed)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    real = load_dataset("breastmnist", data_dir=args.data_dir)
    minority = int(np.argmin(real.counts("train")))
    train_items = write_pngs(real.splits["train"].images, real.splits["train"].labels, tmp / "train")
    test_items = write_pngs(real.splits["test"].images, real.splits["test"].labels, tmp / "test")

    synthetic = args.synthetic
    if synthetic is None:
        synthetic = tmp / "synthetic"
        augment(args.checkpoint, synthetic, n=500, classes=[minority], format="png", seed=args.seed)
    bank = SyntheticBank.from_folder(synthetic)
    print(f"real train counts {real.counts('train')}; synthetic bank {bank}")

    # PIL's reader would give (W, H) by default; reverse_indexing=False keeps (H, W) like the bank's images
    load = [LoadImaged(keys="image", reader="PILReader", reverse_indexing=False, image_only=True),
            EnsureChannelFirstd(keys="image", channel_dim="no_channel")]
    train_tf = Compose([
        *load,
        RandSyntheticReplaced(keys="image", label_key="label", bank=bank, prob=args.prob,
                              classes=[minority], value_range="source"),
        ScaleIntensityd(keys="image"),
        RandFlipd(keys="image", prob=0.5, spatial_axis=1),
        EnsureTyped(keys="image", dtype=torch.float32),
    ])
    test_tf = Compose([*load, ScaleIntensityd(keys="image"), EnsureTyped(keys="image", dtype=torch.float32)])
    train_tf.set_random_state(args.seed)

    train_loader = DataLoader(Dataset(balance_by_repeating(train_items, args.seed), train_tf), batch_size=64,
                              shuffle=True, num_workers=args.workers)
    test_loader = DataLoader(Dataset(test_items, test_tf), batch_size=256, num_workers=args.workers)

    model = DenseNet(spatial_dims=2, in_channels=1, out_channels=real.num_classes, init_features=16,
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
                probs.append(torch.softmax(model(batch["image"]), 1)[:, minority])
                ys.append((batch["label"] == minority).long())
        auc(torch.cat(probs), torch.cat(ys))
        print(f"epoch {epoch}: loss {total / n_seen:.4f}, synthetic {n_syn}/{n_seen} samples, "
              f"test AUROC (malignant vs rest) {auc.aggregate():.3f}")
        auc.reset()


if __name__ == "__main__":
    main()
