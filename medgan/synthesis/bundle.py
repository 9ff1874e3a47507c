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

import torch

from medgan.errors import MedganError, OutputError
from medgan.synthesis.bundle_config import (  # noqa: F401  (part of this module's API)
    LOGGING_CONF,
    bundle_inference,
    bundle_license,
    bundle_metadata,
    bundle_readme,
    bundle_spacing,
)

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


#: The files of a bundle (relative to its folder).
BUNDLE_FILES = ("models/model.ts", "models/model.pt", "configs/metadata.json", "configs/inference.json",
                "configs/logging.conf", "docs/README.md", "docs/LICENSE")

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
