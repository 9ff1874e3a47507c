"""Human-readable summaries of datasets, for ``medgan info datasets`` and ``medgan info dataset SPEC``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medgan.data import medmnist

if TYPE_CHECKING:
    from medgan.config import DataConfig
    from medgan.data.dataset import RealData

PHANTOMS = {
    "phantom2d": "2D  1 ch  3 classes (few_large, many_small, single_bright: scarce)  28x28, procedural, offline",
    "phantom3d": "3D  1 ch  2 classes (few_large, many_small: scarce)  28x28x28, procedural, offline",
}


def list_datasets(data_dir: str | Path | None = None) -> str:
    """Every MedMNIST subset of the registry (with local availability per size) and the built-in phantoms."""
    dirs = medmnist.search_dirs(data_dir)
    from medgan.tables import render_table

    rows = []
    for name, info in medmnist.registry().items():
        sizes = " ".join(
            f"{s}{'*' if medmnist.find_local(name, int(s), data_dir) else ''}" for s in info["sizes"]
        )
        n = info["n_samples"]
        task = info["task"]
        if task.startswith("multi-label"):
            task = "multi-label (n/a)"
        rows.append([name, f"{info['dims']}D", info["n_channels"], len(info["label"]), task,
                     f"{n['train']}/{n['val']}/{n['test']}", info["license"], sizes])
    lines = ["MedMNIST v3 subsets (use NAME for 28 px, NAME_64 etc. for larger sizes; * = file found locally)",
             render_table(["name", "dims", "ch", "classes", "task", "train/val/test", "licence", "sizes"], rows)]
    lines += ["", "Built-in phantoms (no files needed):"]
    lines += [f"  {name:<11}{text}" for name, text in PHANTOMS.items()]
    lines += [
        "",
        "Also: a path to a MedMNIST-layout .npz, a folder with one sub-folder per class (PNG/JPEG, NIfTI, DICOM), "
        "or a CSV manifest path,label[,split].",
        "Multi-label subsets (n/a) need one class per image and cannot be used as they are.",
        f"Data directories searched: {', '.join(dict.fromkeys(str(d) for d in dirs))}",
    ]
    return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _shape_text(data: RealData) -> str:
    shapes = set()
    for sp in data.splits.values():
        shapes |= sp.shapes()
    if len(shapes) <= 1:
        return _shape(next(iter(shapes))) if shapes else "?"
    arr = np.asarray(sorted(shapes))
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    return f"{_shape(tuple(lo))} .. {_shape(tuple(hi))} ({len(shapes)} different shapes; resized to the model size)"


def _value_range(data: RealData) -> tuple[float, float]:
    imgs = data.splits["train"].images
    arrs = imgs if isinstance(imgs, list) else [imgs]
    arrs = [a for a in arrs if a.size]
    if not arrs:
        return float("nan"), float("nan")
    return float(min(a.min() for a in arrs)), float(max(a.max() for a in arrs))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4g}"


def describe(data: RealData, size: int | None = None) -> str:
    """A multi-line summary: source, classes with counts per split, shape, dtype and intensity, spacing,
    modality, licence, the model size it would be trained at, and the scarcity record when present."""
    from medgan.data.preprocess import choose_size, model_spacing

    where = data.extra.get("path") or data.extra.get("root")
    source = {"medmnist": "MedMNIST", "npz": "npz file", "phantom": "built-in phantom (procedural)",
              "folder": "class folders", "csv": "CSV manifest"}.get(data.source, data.source)
    lines = [f"dataset      {data.name}", f"source       {source}" + (f": {where}" if where else "")]
    splits = [s for s in ("train", "val", "test") if s in data.splits]
    from medgan.tables import render_table

    lines.append(f"classes      {data.num_classes}")
    counts = {s: data.counts(s) for s in splits}
    rows = [[i, name, *(counts[s][i] for s in splits)] for i, name in enumerate(data.class_names)]
    rows.append(["", "total", *(len(data.splits[s]) for s in splits)])
    lines += ["  " + line for line in render_table(["#", "name", *splits], rows, no_wrap=(0, 1)).splitlines()]
    if data.extra.get("split"):
        lines.append(f"splits       {data.extra['split']}")
    else:
        lines.append("splits       the source's own train/val/test")
    ch = f"{data.channels} channel{'s' if data.channels != 1 else ''}"
    lines.append(f"image        {data.spatial_dims}D, {ch}, {_shape_text(data)}")
    lo, hi = _value_range(data)
    it = data.intensity
    lines.append(
        f"intensity    {it.dtype}, values {_num(lo)}..{_num(hi)} in train; {_num(it.min)}..{_num(it.max)} maps "
        "linearly to [-1, 1]"
    )
    if data.spacing:
        varies = " (median; varies between images)" if data.extra.get("spacing_varies") else ""
        lines.append(f"spacing      {' x '.join(_num(s) for s in data.spacing)} mm{varies}")
    if data.modality:
        lines.append(f"modality     {data.modality}")
    lines.append(f"licence      {data.licence or 'unknown (check the source before publishing results)'}")
    model = choose_size(data, size)
    lines.append(
        f"model size   {model} ({_shape((data.channels,) + (model,) * data.spatial_dims)} tensors in [-1, 1]"
        + ("" if size else "; --size to change") + ")"
    )
    grid = model_spacing(data, model)
    if grid:
        lines.append(f"grid spacing {' x '.join(_num(s) for s in grid)} mm at the model size (source extent / "
                     f"{model}; synthetic files carry it)")
    if data.scarcity:
        sc = data.scarcity
        rules = ", ".join(
            f"{c}: keep {r['value']:g}{' of its images' if r['kind'] == 'fraction' else ' images'}"
            for c, r in sc["rules"].items()
        )
        lines.append(f"scarcity     {rules} (seed {sc['seed']})")
        lines.append(
            "             train counts "
            + ", ".join(f"{n} {a}->{b}" for n, a, b in zip(data.class_names, sc["original_counts"], sc["counts"],
                                                            strict=True))
        )
    lines.append(f"fingerprint  {data.fingerprint()[:16]} (SHA-256 of the training images and labels)")
    return "\n".join(lines)


def write_grid(data: RealData, path: str | Path, size: int | None = None, per_class: int = 8, split: str = "train",
               seed: int = 0) -> Path:
    """A per-class PNG grid of real examples (3D: three middle slices), at the model size."""
    from medgan.data.preprocess import choose_size, to_model_tensor
    from medgan.viz import save_grid

    sp = data.splits[split]
    rs = np.random.RandomState(seed)
    idx = []
    for c in range(data.num_classes):
        members = np.flatnonzero(sp.labels == c)
        if len(members) > per_class:
            members = np.sort(rs.choice(members, per_class, replace=False))
        idx.extend(members.tolist())
    sub = sp.subset(np.asarray(idx, dtype=np.int64))
    model = choose_size(data, size)
    if not len(sub):
        from medgan.errors import DatasetError

        raise DatasetError(f"the {split} split of '{data.name}' is empty; nothing to draw")
    x = to_model_tensor(sub.images, data.intensity, data.spatial_dims, model)
    title = f"{data.name}: real {split} examples ({'middle slices, ' if data.spatial_dims == 3 else ''}{model} px)"
    return save_grid(path, x, sub.labels, data.class_names, per_class=per_class, title=title)


def dataset_report(cfg: DataConfig, grid: str | Path | None = None, per_class: int = 8) -> str:
    """Load the dataset of a data config, describe it, and write the example grid if asked (the ``info`` CLI).

    The grid is a PNG: another suffix is refused (:class:`ConfigError`) before the dataset is loaded."""
    from medgan.data.sources import load_dataset

    if grid is not None and Path(grid).suffix.lower() != ".png":
        from medgan.errors import ConfigError

        raise ConfigError(f"--grid {grid}: the grid is written as a PNG image; give a file name ending in .png")
    if grid is not None:  # before any work: a new path or a grid medgan wrote, never a user's file
        from medgan.outputs import replaceable_file
        from medgan.viz import is_medgan_png

        replaceable_file(grid, is_medgan_png, "--grid")
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, split_seed=cfg.split_seed, download=cfg.download,
                        scarce=cfg.scarce or None)
    text = describe(data, cfg.size)
    if grid is not None:
        try:
            out = write_grid(data, grid, cfg.size, per_class)
        except OSError as e:
            from medgan.errors import OutputError

            raise OutputError(f"cannot write the grid {grid} ({e.strerror or type(e).__name__}); choose a writable "
                              "path for --grid") from None
        text += f"\ngrid         {out}"
    return text
