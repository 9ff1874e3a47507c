"""Procedural class-conditional phantoms (``phantom2d``, ``phantom3d``): offline data for demos and tests."""

from __future__ import annotations

import numpy as np

from medgan.data.dataset import SPLITS, Intensity, RealData, Split

PHANTOM_CLASSES = {
    2: ["few_large", "many_small", "single_bright"],
    3: ["few_large", "many_small"],
}
_PHANTOM_SHAPES = {"few_large": (2, 6, 9), "many_small": (9, 2, 3), "single_bright": (1, 2, 4)}

_PHANTOM_COUNTS = {
    2: {"train": [400, 400, 80], "val": [30, 30, 30], "test": [60, 60, 60]},
    3: {"train": [160, 40], "val": [20, 20], "test": [40, 40]},
}


def make_phantom(dims: int, size: int = 28, seed: int = 1234) -> RealData:
    """Procedural class-conditional phantoms from MONAI's ``create_test_image_{2,3}d`` (offline, seeded).

    2D: three classes (two common, ``single_bright`` scarce); 3D: two classes (``many_small`` scarce).
    """
    from monai.data.synthetic import create_test_image_2d, create_test_image_3d

    rs = np.random.RandomState(seed)
    names = PHANTOM_CLASSES[dims]
    scale = size / 28
    splits = {}
    for s in SPLITS:
        imgs, labels = [], []
        for c, n in enumerate(_PHANTOM_COUNTS[dims][s]):
            num, rmin, rmax = _PHANTOM_SHAPES[names[c]]
            rmin, rmax = max(1, int(rmin * scale)), max(2, int(rmax * scale))
            for _ in range(n):
                if dims == 2:
                    img, _ = create_test_image_2d(size, size, num_objs=num, rad_min=rmin, rad_max=rmax,
                                                  noise_max=0.15, random_state=rs)
                else:
                    img, _ = create_test_image_3d(size, size, size, num_objs=num, rad_min=rmin, rad_max=rmax,
                                                  noise_max=0.15, random_state=rs)
                if names[c] == "single_bright":
                    img = np.clip(img * 1.6, 0, 1.15)
                imgs.append(img)
                labels.append(c)
        arr = np.stack(imgs)
        arr = np.clip(arr / max(arr.max(), 1e-6) * 255.0, 0, 255).astype(np.uint8)[:, None]
        order = rs.permutation(len(labels))
        splits[s] = Split(arr[order], np.asarray(labels, dtype=np.int64)[order])
    return RealData(
        name=f"phantom{dims}d",
        source="phantom",
        class_names=list(names),
        spatial_dims=dims,
        channels=1,
        splits=splits,
        source_kind="array",
        intensity=Intensity(0.0, 255.0, "uint8"),
        licence="generated (no licence needed)",
    )
