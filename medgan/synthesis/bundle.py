"""``medgan export``: the generator of a checkpoint for use outside medgan.

* ``torchscript``: one ``.pt`` file, ``torch.jit.load(path)(z, y)`` -> images;
* ``onnx``: one ``.onnx`` file with inputs ``z`` (float32, ``(B, latent_dim)``) and ``y`` (int64, ``(B,)``) and
  output ``image``; the batch axis is dynamic (needs the ``onnx`` package: ``pip install 'medgan[export]'``);
* ``bundle``: a MONAI Bundle folder in the standard layout::

      configs/metadata.json    class names, intensity mapping, layout and spacing, latent size, inputs/outputs
      configs/inference.json   a monai.bundle config: network (TorchScript), network_def (medgan's module),
                               latents, labels and images for num_samples per class (or of class_index), and
                               ``run``: write them to output_dir with MONAI's SaveImage
      configs/logging.conf     the logging setup monai.bundle reads
      models/model.ts          the TorchScript module (parameters frozen: its output needs no torch.no_grad)
      models/model.pt          the generator's state dict (for network_def)
      docs/README.md           how to run it; docs/LICENSE

``python -m monai.bundle run --config_file configs/inference.json --meta_file configs/metadata.json`` (in the
bundle's folder, or with ``--bundle_root``; needs ``fire``: ``pip install 'medgan[bundle]'``) or
``monai.bundle.run(config_file=..., meta_file=..., bundle_root=...)`` writes the images.

Every export computes ``G(z, y)``: ``z`` standard-normal latents, ``y`` class indices (``metadata.json`` names
them), images in [-1, 1] ``(B, C, *spatial)`` laid out as MONAI's ``LoadImage`` lays out the training data's files
(``layout="monai"``, as :class:`~medgan.synthesis.bank.SyntheticBank`), or in medgan's array order
(``layout="array"``). Map to the training data's values with ``(x + 1) / 2 * (max - min) + min``
(``metadata.json`` -> ``intensity``). medgan's own per-sample seeds give the latents:
``medgan.synthesis.seeds.latents_for_seeds``, so ``Sampler`` and an export agree sample for sample.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medgan.errors import MedganError, OutputError

EXPORT_FORMATS = ("torchscript", "onnx", "bundle")
ONNX_OPSET = 17


class ExportedGenerator(torch.nn.Module):
    """``G(z, y)`` with the output in the chosen layout (the first two spatial axes swapped for ``monai`` when the
    training data's arrays are row-first)."""

    def __init__(self, generator: torch.nn.Module, swap: bool) -> None:
        super().__init__()
        self.generator = generator
        self.swap = bool(swap)
        self.spatial_dims = int(generator.spatial_dims)
        self.requires_grad_(False)  # an inference module: G(z, y).numpy() works without torch.no_grad()

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.generator(z, y)
        return x.transpose(2, 3) if self.swap else x


@dataclass
class ExportResult:
    path: Path
    format: str
    class_names: list[str]
    shape: tuple[int, ...]
    latent_dim: int
    checkpoint: str = ""
    """The checkpoint exported and why (a run folder gives its ``best.pt`` when present, else ``last.pt``)."""

    def summary(self) -> str:
        kind = {"torchscript": "TorchScript module", "onnx": "ONNX model", "bundle": "MONAI Bundle"}[self.format]
        ck = f"\ncheckpoint: {self.checkpoint}" if self.checkpoint else ""
        return (f"wrote {kind} G(z, y) to {self.path}: z (B, {self.latent_dim}) float32, y (B,) int64 class index "
                f"({', '.join(f'{i}={n!r}' for i, n in enumerate(self.class_names))}) -> images "
                f"(B, {', '.join(map(str, self.shape))}) in [-1, 1]{ck}")


#: The mark every export carries (a TorchScript extra file, an ONNX metadata property): ``--overwrite`` replaces
#: only a file that has it, i.e. one medgan exported (never a checkpoint or a user's model).
EXPORT_MARK = "medgan_export"


def is_medgan_export(path: Path) -> bool:
    """Whether ``path`` is a TorchScript or ONNX file medgan exported (it carries :data:`EXPORT_MARK`)."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(n.endswith(f"/extra/{EXPORT_MARK}.json") for n in z.namelist())
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return any(p.key == EXPORT_MARK for p in model.metadata_props)
    except Exception:  # not a zip, not ONNX, unreadable: not medgan's
        return False


def _check_single_out(out: Path, overwrite: bool, source: Path | None) -> None:
    """``--out`` of a one-file export: a new path, or (``--overwrite``) a file medgan exported; never the
    checkpoint being exported."""
    from medgan.outputs import replaceable_file

    if source is not None and out.exists() and source.exists() and out.resolve() == source.resolve():
        raise OutputError(f"--out {out} is the checkpoint being exported; choose another --out")
    replaceable_file(out, is_medgan_export, "--out", overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)


def _mark(sampler) -> str:
    from medgan import __version__

    return json.dumps({"medgan_version": __version__, "checkpoint_sha256": sampler.checkpoint_sha256,
                       "generator_step": sampler.step})


def exported_module(sampler, layout: str = "monai") -> tuple[ExportedGenerator, tuple[torch.Tensor, torch.Tensor]]:
    """The module to export (eval mode, CPU, fp32, parameters frozen) and example inputs."""
    from medgan.data.grid import model_grid

    if layout not in ("monai", "array"):
        raise MedganError(f"layout must be 'monai' or 'array', got {layout!r}")
    grid = model_grid(sampler.meta)
    module = ExportedGenerator(sampler.generator.float().cpu().eval(), layout == "monai" and grid.row_first).eval()
    n = max(2, sampler.num_classes)
    example = (torch.zeros(n, sampler.latent_dim), torch.arange(n, dtype=torch.long) % sampler.num_classes)
    return module, example


def _torchscript(module: torch.nn.Module, example, path: Path, mark: str) -> None:
    from medgan.io import atomic_write

    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
    atomic_write(path, lambda f: torch.jit.save(traced, f, _extra_files={f"{EXPORT_MARK}.json": mark}))


def _onnx(module: torch.nn.Module, example, path: Path, mark: str) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise MedganError("ONNX export needs the 'onnx' package: pip install 'medgan[export]' (onnx, onnxruntime)") \
            from None
    import io as _io
    import warnings

    from medgan.io import atomic_write

    buf = _io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buf, dynamo=False, input_names=["z", "y"], output_names=["image"],
                          dynamic_axes={"z": {0: "batch"}, "y": {0: "batch"}, "image": {0: "batch"}},
                          opset_version=ONNX_OPSET)
    model = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(model, {EXPORT_MARK: mark})
    atomic_write(path, model.SerializeToString())


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
        "numpy_version": np.__version__, "optional_packages_version": {"medgan": __version__},
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
    images per class (or of class ``class_index`` when set): ``images`` in [-1, 1], ``source_images`` in the
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
        "y": (f"$(torch.arange({c}).repeat_interleave(@num_samples) if @class_index is None else "
              "torch.full((@num_samples,), int(@class_index), dtype=torch.long)).to(@device)"),
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


#: The files of a bundle (relative to its folder).
BUNDLE_FILES = ("models/model.ts", "models/model.pt", "configs/metadata.json", "configs/inference.json",
                "configs/logging.conf", "docs/README.md", "docs/LICENSE")

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
`--num_samples 100 --class_index 1 --seed 3 --output_dir /tmp/synth --output_ext .png` (`.png`: 2D only).
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


def _bundle(sampler, module, example, out: Path, layout: str) -> None:
    """Write the bundle's files into ``out`` (an open :class:`~medgan.outputs.OutputFolder`: each file written
    atomically and recorded; a file medgan did not write is never replaced)."""
    from medgan.io import atomic_write

    _torchscript(module, example, out / "models" / "model.ts", _mark(sampler))
    atomic_write(out / "models" / "model.pt", lambda f: torch.save(sampler.generator.state_dict(), f))
    atomic_write(out / "configs" / "metadata.json", json.dumps(bundle_metadata(sampler, layout), indent=2) + "\n")
    atomic_write(out / "configs" / "inference.json", json.dumps(bundle_inference(sampler, layout), indent=2) + "\n")
    atomic_write(out / "configs" / "logging.conf", LOGGING_CONF)
    atomic_write(out / "docs" / "README.md", bundle_readme(sampler))
    atomic_write(out / "docs" / "LICENSE", bundle_license(sampler))


def bundle_folder(out: Path, overwrite: bool):
    """The bundle's folder, opened under the ownership rule (:mod:`medgan.outputs`): new or empty, or (with
    ``overwrite``) a bundle medgan exported whose files are still medgan's; anything else refused naming it."""
    from medgan.outputs import OutputFolder

    folder = OutputFolder(out, "export")
    if out.is_dir() and folder.entries() and not overwrite:
        raise OutputError(f"{out} exists; pass --overwrite to replace the bundle medgan exported there or choose "
                          "another --out")
    folder.open()
    try:
        folder.check(BUNDLE_FILES)
    except BaseException:
        folder.close()
        raise
    return folder


def export_generator(checkpoint: str | Path, out: str | Path, format: str, use_ema: bool = True,  # noqa: A002
                     layout: str = "monai", overwrite: bool = False,
                    log: Callable[[str], None] | None = None) -> ExportResult:
    """Export the generator of ``checkpoint`` (file or run folder) to ``out`` as ``format`` (see the module
    docstring). ``log``: called with ``checkpoint: PATH (why, step N)``, the file exported (a run folder gives its
    ``best.pt`` when present, else ``last.pt``), before anything is written (the CLI prints it on stderr)."""
    from medgan.synthesis.sampler import Sampler

    fmt = str(format).lower()
    if fmt not in EXPORT_FORMATS:
        raise MedganError(f"unknown export format {format!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if fmt != "bundle":  # checked before the checkpoint is even read
        _check_single_out(out, overwrite, Path(checkpoint))
        folder = None
    else:
        folder = bundle_folder(out, overwrite)
    try:
        sampler = Sampler.from_checkpoint(checkpoint, use_ema=use_ema, fuse=False)
        module, example = exported_module(sampler, layout)
        if log is not None:  # every check passed: which file, then the work
            log(f"checkpoint: {sampler.checkpoint_note}")
        if fmt == "torchscript":
            _torchscript(module, example, out, _mark(sampler))
        elif fmt == "onnx":
            _onnx(module, example, out, _mark(sampler))
        else:
            _bundle(sampler, module, example, out, layout)
    finally:
        if folder is not None:
            folder.close()
    return ExportResult(out, fmt, list(sampler.class_names), tuple(sampler.shape), sampler.latent_dim,
                        sampler.checkpoint_note)
