"""The text files of an exported MONAI Bundle (:mod:`medgan.synthesis.bundle`): ``configs/metadata.json``,
``configs/inference.json`` (whose ``run`` writes images with MONAI's ``SaveImage``, so that
``python -m monai.bundle run`` works as for a model-zoo bundle), ``configs/logging.conf``, ``docs/README.md`` and
``docs/LICENSE``. Pure functions of a loaded :class:`~medgan.synthesis.sampler.Sampler`; nothing is written here.
"""

from __future__ import annotations

from typing import Any

import torch


def bundle_spacing(grid, layout: str) -> list[float] | None:
    """The model grid's spacing in the bundle's layout; ``None`` when the checkpoint does not know it (as
    ``augment.json`` and ``medgan info checkpoint`` say), never a made-up 1.0."""
    if not grid.spacing:
        return None
    return list(grid.monai_spacing()) if layout == "monai" else [float(v) for v in grid.spacing]


def bundle_metadata(sampler, layout: str) -> dict[str, Any]:
    """``configs/metadata.json``: MONAI's bundle metadata fields plus the class names and the intensity mapping."""
    import monai
    import numpy as np

    from medgan import __version__
    from medgan.data.grid import model_grid

    meta, grid = sampler.meta, model_grid(sampler.meta)
    inten = meta["intensity"]
    shape = list(sampler.shape)
    spacing = bundle_spacing(grid, layout)
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by medgan {__version__} from checkpoint step {sampler.step}"},
        "monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__, "required_packages_version": {}, "medgan_version": __version__,
        "name": f"medgan conditional generator ({meta.get('name')})",
        "task": "class-conditional synthesis of labelled images",
        "description": ("DCGAN generator G(z, y) trained by medgan. z: standard-normal latents; y: class index; "
                        "output in [-1, 1]. SYNTHETIC images: not real patient data."),
        "authors": "medgan", "copyright": "see the training data's licence",
        "data_source": meta.get("name"), "data_type": meta.get("source_kind") or "array",
        "class_names": list(sampler.class_names),
        "intensity": {"model_range": [-1.0, 1.0], "source_min": inten["min"], "source_max": inten["max"],
                      "source_dtype": inten["dtype"],
                      "to_source": "x_source = (x + 1) / 2 * (source_max - source_min) + source_min"},
        "layout": layout, "spacing": spacing, "modality": meta.get("modality"),
        "checkpoint_sha256": sampler.checkpoint_sha256, "generator_step": sampler.step, "ema": sampler.used_ema,
        "latents": "standard normal; medgan.synthesis.seeds.latents_for_seeds(seeds, latent_dim) reproduces medgan's",
        "network_data_format": {
            "inputs": {
                "z": {"type": "vector", "format": "latent", "num_channels": sampler.latent_dim,
                      "spatial_shape": [], "dtype": "float32", "value_range": [], "is_patch_data": False},
                "y": {"type": "vector", "format": "class index", "num_channels": 1, "spatial_shape": [],
                      "dtype": "int64", "value_range": [0, sampler.num_classes - 1], "is_patch_data": False},
            },
            "outputs": {
                "pred": {"type": "image", "format": "magnitude", "num_channels": shape[0],
                         "spatial_shape": shape[1:], "dtype": "float32", "value_range": [-1, 1],
                         "is_patch_data": False, "channel_def": {str(c): "intensity" for c in range(shape[0])}},
            },
        },
    }


def bundle_inference(sampler, layout: str) -> dict[str, Any]:
    """``configs/inference.json``: a monai.bundle config that loads the network and generates ``num_samples``
    images per class (or of class ``class_index`` when set: an index, a class name or its folder name): ``images`` in [-1, 1], ``source_images`` in the
    training data's range; ``run`` writes ``source_images`` (the training data's dtype) to ``output_dir`` with
    MONAI's ``SaveImage`` as ``<class folder>_<index>`` files (``output_ext``: ``.png`` for 2D 8-bit images,
    else ``.nii.gz``; either may be asked for)."""
    from medgan.data.classes import folder_names
    from medgan.data.grid import model_grid

    meta = sampler.meta
    inten = meta["intensity"]
    cfg = sampler.config.get("model") or {}
    dims, c = int(meta["spatial_dims"]), sampler.num_classes
    spacing = bundle_spacing(model_grid(meta), layout) or [1.0] * dims  # the affine: identity when unknown
    dtype, channels = str(inten["dtype"]), int(meta["channels"])
    integer = dtype.startswith(("uint", "int"))
    png = dims == 2 and dtype == "uint8" and channels in (1, 3)  # PNG holds these exactly; else NIfTI
    # MONAI's NIfTI writer fails on a squeezed 2D single-channel image: keep its trailing axis of length 1
    squeeze = f"$not (str(@output_ext).lower().startswith('.nii') and {dims == 2 and channels == 1})"
    return {
        "imports": ["$import torch", "$import monai"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".png" if png else ".nii.gz",
        "device": "$torch.device('cpu')",
        "network_def": {
            "_target_": "medgan.models.generator.ConditionalGenerator",
            "spatial_dims": dims, "out_channels": channels,
            "size": int(meta["size"]), "num_classes": c,
            "latent_dim": int(cfg.get("latent_dim", sampler.latent_dim)),
            "base_channels": int(cfg.get("base_channels", 64)), "embed_dim": int(cfg.get("embed_dim", 32)),
            "conditioning": str(cfg.get("conditioning", "concat")),
        },
        "layout": layout,
        "network": "$torch.jit.load(@bundle_root + '/models/model.ts', map_location=@device).eval()",
        "class_names": list(sampler.class_names),
        "class_folders": folder_names(sampler.class_names),
        "num_samples": 8,
        "class_index": None,
        "seed": 0,
        "rng": "$torch.Generator().manual_seed(@seed)",
        "class_id": ("$None if @class_index is None else (@class_names.index(@class_index) if @class_index in "
                     "@class_names else @class_folders.index(@class_index) if @class_index in @class_folders else "
                     "int(@class_index))"),
        "y": (f"$(torch.arange({c}).repeat_interleave(@num_samples) if @class_id is None else "
              "torch.full((@num_samples,), @class_id, dtype=torch.long)).to(@device)"),
        "z": f"$torch.randn(len(@y), {sampler.latent_dim}, generator=@rng).to(@device)",
        "images": "$@network(@z, @y).detach()",
        "source_images": f"$(@images.clamp(-1, 1) + 1) * 0.5 * ({inten['max']} - {inten['min']}) + {inten['min']}",
        "output_images": "$@source_images.round()" if integer else "$@source_images",
        "affine": f"$torch.diag(torch.tensor({[*spacing, 1.0]}, dtype=torch.float64))",
        "saver": {"_target_": "SaveImage", "output_dir": "@output_dir", "output_ext": "@output_ext",
                  "output_postfix": "", "separate_folder": False, "resample": False, "output_dtype": dtype,
                  "squeeze_end_dims": squeeze, "print_log": False},
        "run": [
            "$[@saver(monai.data.MetaTensor(x.cpu(), affine=@affine, meta={'filename_or_obj': "
            "@class_folders[int(label)] + '_' + str(k % @num_samples).zfill(4), 'original_affine': @affine, "
            "'spatial_shape': tuple(x.shape[1:])})) "
            "for k, (x, label) in enumerate(zip(@output_images, @y))]",
            "$print('wrote', len(@y), 'synthetic images to', @output_dir)",
        ],
    }


#: ``configs/logging.conf``: the model zoo's logging setup (INFO to stdout), which ``monai.bundle run`` applies.
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def bundle_readme(sampler) -> str:
    """``docs/README.md``: what the bundle makes and how to run it."""
    names = ", ".join(f"{i} = {n!r}" for i, n in enumerate(sampler.class_names))
    return f"""# medgan conditional generator ({sampler.meta.get('name')})

A DCGAN generator `G(z, y)` trained by medgan: `z` standard-normal latents, `y` a class index ({names}).
It makes SYNTHETIC images, not real patient data. `configs/metadata.json` names the classes, the intensity
mapping back to the training data's values, the layout and the spacing (`null`: unknown).

## Run

In this folder (`pip install monai fire`; elsewhere add `--bundle_root PATH/TO/BUNDLE`):

```bash
python -m monai.bundle run --config_file configs/inference.json --meta_file configs/metadata.json
```

writes `num_samples` (8) images of every class to `eval/` (`output_dir`), named `<class>_<index>.nii.gz`,
in the training data's value range and dtype. Override any setting on the command line, e.g.
`--num_samples 100 --class_index 1 --seed 3 --output_dir /tmp/synth --output_ext .png` (`.png`: 2D only;
`class_index` may also be a class name or its folder name).
From Python:

```python
from monai.bundle import run
run(config_file="configs/inference.json", meta_file="configs/metadata.json", bundle_root=".", num_samples=4)
```

or, for the images as a tensor:

```python
from monai.bundle import ConfigParser
p = ConfigParser()
p.read_config("configs/inference.json")
p["bundle_root"], p["class_index"] = ".", 0
images = p.get_parsed_content("images")  # (8, C, *spatial) in [-1, 1]
```

`network` is the TorchScript module `models/model.ts` (no medgan needed; its output needs no
`torch.no_grad()`); `network_def` builds medgan's own module for the state dict `models/model.pt`.

Checkpoint SHA-256 `{sampler.checkpoint_sha256}`, generator step {sampler.step}.
"""


def bundle_license(sampler) -> str:
    """``docs/LICENSE``: the terms of the bundle's parts."""
    lic = sampler.meta.get("licence") or sampler.meta.get("license")
    data = f"its licence: {lic}" if lic else "the licence of that dataset"
    return (f"The configuration files of this bundle were written by medgan (Apache License 2.0).\n\n"
            f"The weights in models/ were trained on the dataset {sampler.meta.get('name')!r}; they and the images "
            f"they generate are subject to {data}.\n")
