"""The ``medgan`` command line: parse, load the config, call one library function.

Nothing heavy is imported at module level (the typed configuration only, for the defaults ``--help`` shows), so
``medgan --help`` stays fast; each command imports what it needs. User errors (:class:`medgan.errors.MedganError`)
become one line on stderr and a non-zero exit code. Shell completion: ``medgan --install-completion``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from medgan import __version__
from medgan.config import Config
from medgan.errors import MedganError

#: Built-in defaults, shown by --help for options that fall back to the configuration (defaults < YAML < flags).
_DEFAULTS = Config().model_dump(mode="json")


def _default(key: str) -> str:
    """The built-in default of config key ``section.name``, as --help shows it."""
    sec, name = key.split(".")
    v = _DEFAULTS[sec][name]
    if v is None:
        return "none"
    if isinstance(v, list):
        return ",".join(map(str, v)) or "none"
    return str(v).lower() if isinstance(v, bool) else str(v)


def opt(key: str, *decls: str, help: str) -> typer.models.OptionInfo:  # noqa: A002 (typer's own word)
    """An option that overrides config key ``key`` (unset: the YAML's or the built-in value, shown in --help)."""
    return typer.Option(None, *decls, help=f"{help} (config: {key})", show_default=_default(key))

app = typer.Typer(
    name="medgan",
    help="Conditional DCGANs on MONAI for class-scarce medical imaging: train, augment, evaluate.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
info_app = typer.Typer(help="What medgan can use: datasets, checkpoints.", no_args_is_help=True)
app.add_typer(info_app, name="info")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medgan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Conditional DCGANs on MONAI for class-scarce medical imaging."""


# Shared option declarations (so every command spells them the same way).
DataDirOpt = typer.Option(None, "--data-dir", help="Folder with MedMNIST files (else MEDGAN_DATA_DIR, then the user cache).")
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file, or the name of a packaged one (breastmnist, "
                         "pneumoniamnist, adrenalmnist3d, phantom2d, phantom3d); defaults < config < flags.")
ScarceOpt = typer.Option(None, "--scarce", help="Keep CLASS=FRACTION or CLASS=N of a class's training images (repeatable).")


def _to_stderr(line: str) -> None:
    """What a command says before its work starts (which checkpoint file it uses): on stderr, so that stdout
    holds the summary only."""
    typer.echo(line, err=True)


def load_cli_config(config: Path | None, overrides: dict):
    from medgan.config import load_config

    return load_config(config, overrides)


# ----------------------------------------------------------------------------------------------- info
# (commands: info datasets, info dataset SPEC, info checkpoint PATH)


@info_app.command("datasets")
def info_datasets(data_dir: Path | None = DataDirOpt) -> None:
    """List the MedMNIST subsets (and whether each size is available locally) and the built-in phantoms."""
    from medgan.data.describe import list_datasets

    typer.echo(list_datasets(data_dir))


@info_app.command("dataset")
def info_dataset(
    spec: str | None = typer.Argument(None, help="MedMNIST name, phantom2d/phantom3d, .npz, class folder or CSV."),
    data_dir: Path | None = DataDirOpt,
    config: Path | None = ConfigOpt,
    scarce: list[str] | None = ScarceOpt,
    size: int | None = opt("data.size", "--size", help="Model image size (none: the native size when supported)."),
    split_seed: int | None = opt("data.split_seed", "--split-seed", help="Seed of the stratified split and "
                                 "scarcity."),
    grid: Path | None = typer.Option(None, "--grid", help="Write a PNG grid of real examples per class here."),
    per_class: int = typer.Option(8, "--per-class", min=1, help="Examples per class in the grid."),
) -> None:
    """Describe one dataset: classes and counts per split, shape, intensity, spacing, licence, model size."""
    cfg = load_cli_config(config, {"data.dataset": spec, "data.data_dir": str(data_dir) if data_dir else None,
                                   "data.scarce": scarce or None, "data.size": size, "data.split_seed": split_seed})
    from medgan.data.describe import dataset_report

    typer.echo(dataset_report(cfg.data, grid=grid, per_class=per_class))


@info_app.command("checkpoint")
def info_checkpoint(
    path: Path = typer.Argument(..., help="A checkpoint file, or a run folder (best.pt when present, else last.pt)."),
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
) -> None:
    """Describe a checkpoint: classes and training counts, image shape and grid, step, training config,
    training-set fingerprint, file hash, and sample quality when the run recorded it."""
    from medgan.training.info import checkpoint_info, checkpoint_report

    if as_json:
        import json

        from medgan.io import json_safe

        typer.echo(json.dumps(json_safe(checkpoint_info(path)), indent=2, allow_nan=False))
    else:
        typer.echo(checkpoint_report(path))


# ---------------------------------------------------------------------------------------------- train


@app.command("train")
def train_cmd(
    dataset: str = opt("data.dataset", "--dataset", "-d", help="MedMNIST name, phantom2d/phantom3d, or a path."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (checkpoints, samples, metrics)."),
    config: Path = ConfigOpt,
    steps: int = opt("train.steps", "--steps", help="Training steps (the total, also after --resume)."),
    batch_size: int = opt("train.batch_size", "--batch-size", help="Batch size per process."),
    size: int = opt("data.size", "--size", help="Model image size: 28, 32, 64 (128 in 2D); none: the native size."),
    scarce: list[str] = ScarceOpt,
    seed: int = opt("train.seed", "--seed", help="Seed of weights, noise, batches and augmentation."),
    loss: str = opt("train.loss", "--loss", help="minimax, bce, hinge, lsgan or energy."),
    amp: str = opt("train.amp", "--amp", help="off or bf16 autocast."),
    device: str = opt("train.device", "--device", help="auto, cpu or cuda[:N]."),
    augment_real: str = opt("train.augment_real", "--augment-real", help="none, or classical: the GAN learns "
                            "classically augmented real images."),
    model: str = typer.Option(None, "--model", help="What to train: dcgan (the conditional GAN) or translator (an "
                              "image translator: real image of one class -> the same image as another class; the "
                              "config's translator section) (config: model.kind)", show_default="dcgan"),
    data_dir: Path = DataDirOpt,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoints/last.pt."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config (YAML) and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar (train.progress: false); only the "
                               "summary and warnings."),
) -> None:
    """Train a class-conditional DCGAN (or, with --model translator, an image translator); keeps a run directory
    with checkpoints, sample grids and metrics."""
    import os

    if resume and config is None and (out / "config.yaml").is_file():
        config = out / "config.yaml"  # resume with the run's own settings unless told otherwise
    cfg = load_cli_config(config, {
        "data.dataset": dataset, "data.size": size, "data.scarce": scarce or None,
        "data.data_dir": str(data_dir) if data_dir is not None else None,
        "train.steps": steps, "train.batch_size": batch_size, "train.seed": seed, "train.loss": loss,
        "train.amp": amp, "train.device": device, "train.progress": False if quiet else None,
        "train.augment_real": augment_real, "model.kind": model,
    })
    if dry_run:
        typer.echo(cfg.to_yaml(), nl=False)
        return
    from medgan.training.run import train

    res = train(cfg, out, resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(res.summary())


# -------------------------------------------------------------------------------------------- augment


@app.command("augment")
def augment_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by 'medgan train', or its run "
                                    "folder (best.pt when present, else last.pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <class>/<id>.<ext> files + manifest.csv."),
    n: int = opt("augment.n", "--n", help="Samples PER requested class (with --pairs: the number of pairs)."),
    classes: list[str] = typer.Option(None, "--class", help="Generate only this class: name, index or the folder "
                                      "name augment writes (normal_benign); repeatable. Default: every class."),
    balance: bool = opt("augment.balance", "--balance", help="Instead of --n: top each requested class up to the "
                        "majority class count of the checkpoint's training data."),
    pairs: bool = opt("augment.pairs", "--pairs", help="Counterfactual pairs: one latent z per pair for every "
                      "class, so a pair's images differ only in class; pair_id in the manifest. Not with --class "
                      "or --balance."),
    fmt: str = opt("augment.format", "--format", "-f", help="png (2D only), npz (one MedMNIST-layout file), nifti "
                   "or dicom."),
    seed: int = opt("augment.seed", "--seed", help="Run seed: same checkpoint + arguments + seed = identical files."),
    batch_size: int = opt("augment.batch_size", "--batch-size", help="Samples per generator batch."),
    overwrite: bool = opt("augment.overwrite", "--overwrite", help="Replace the synthetic files of a non-empty --out."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw generator instead of its EMA weights."),
    device: str = opt("augment.device", "--device", help="cpu, cuda[:N] or auto; byte-identical repeats are "
                      "promised on CPU."),
    amp: str = opt("augment.amp", "--amp", help="Generator precision: off (fp32) or bf16 (faster on AMX/AVX512-BF16 "
                   "CPUs, images within ~1% of fp32)."),
    workers: int = opt("augment.workers", "--workers", help="Generator threads (0: one per core, at most 4). "
                       "Outputs do not depend on it."),
    config: Path = ConfigOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    reject_near_copies: bool = opt("augment.reject_near_copies", "--reject-near-copies", help="Redraw samples "
                                   "that are near-copies of the generator's training images, read from --dataset "
                                   "(see medgan.evaluation.privacy); redraws go to the manifest."),
    from_real: bool = opt("augment.from_real", "--from-real", help="Translate real training images of the other "
                          "classes (from --dataset) into each requested class by latent inversion, instead of "
                          "sampling noise; the manifest names each source image."),
    strength: float = opt("augment.strength", "--strength", help="Translation strength of --from-real: 0 keeps "
                          "the source image, 1 the full target class (default: chosen on validation, docs/augment.md)."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="With --reject-near-copies or --from-real: the "
                                "generator's training data (as given to 'medgan train', with its --scarce, "
                                "--split-seed, --data-dir); checked against the checkpoint's training-set fingerprint. Required: medgan never "
                                "opens the dataset a checkpoint names. (config: data.dataset)"),
    scarce: list[str] = ScarceOpt,
    split_seed: int = opt("data.split_seed", "--split-seed", help="Seed of the training split and scarcity."),
    data_dir: Path = DataDirOpt,
) -> None:
    """Write labelled synthetic samples from a checkpoint, with a provenance manifest.

    --n N writes N samples for each requested class (every class unless --class is given); --balance writes, for
    each requested class, the number that tops it up to the majority class count of the training data; --pairs
    --n N writes N counterfactual pairs (one image of every class per pair, from the same latent z).
    """
    cfg = load_cli_config(config, {
        "augment.n": n, "augment.classes": classes or None, "augment.balance": balance, "augment.format": fmt,
        "augment.pairs": pairs,
        "augment.seed": seed, "augment.batch_size": batch_size, "augment.overwrite": overwrite,
        "augment.use_ema": False if no_ema else None, "augment.device": device,
        "augment.reject_near_copies": reject_near_copies, "augment.amp": amp, "augment.workers": workers,
        "augment.from_real": from_real, "augment.strength": strength, "data.dataset": dataset, "data.scarce": scarce or None, "data.split_seed": split_seed,
        "data.data_dir": str(data_dir) if data_dir is not None else None,
    })
    from medgan.synthesis.export import augment

    named = "dataset" in cfg.data.model_fields_set  # by --dataset or the --config file, never the built-in default
    typer.echo(augment(checkpoint, out, cfg.augment, train_data=cfg.data if named else None,
                       progress=not quiet, log=None if quiet else _to_stderr).summary())


# ------------------------------------------------------------------------------------------- evaluate


@app.command("evaluate")
def evaluate_cmd(
    dataset: str = opt("data.dataset", "--dataset", "-d", help="The dataset the classifiers learn."),
    scarce: list[str] = ScarceOpt,
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Generator checkpoint to draw synthetic images from "
                                    "(must have been trained on this exact training split), or its run folder "
                                    "(best.pt when present, else last.pt)."),
    synthetic: Path = typer.Option(None, "--synthetic", help="A 'medgan augment' output folder or .npz instead of "
                                   "--checkpoint."),
    arms: str = opt("evaluate.arms", "--arms", help="Comma-separated arms: baseline, oversample, weighted, classical, "
                    "classical+oversample, gan, gan+oversample, gan+weighted, gan+classical, "
                    "gan+classical+oversample."),
    ratio: str = opt("evaluate.ratios", "--ratio", help="Synthetic:real ratios of the GAN arms, e.g. 0.5,1.0 or "
                     "balance."),
    seeds: int = opt("evaluate.seeds", "--seeds", help="Seeds per arm (>= 2)."),
    primary: str = opt("evaluate.primary", "--primary", help="The verdict's metric: sens_at_spec, sens_youden, "
                       "auroc, pauroc or balanced_accuracy."),
    target_specificity: float = opt("evaluate.target_specificity", "--target-specificity", help="Validation "
                                    "specificity the scarce-class threshold is chosen for."),
    classifier: str = opt("evaluate.classifier", "--classifier", help="smallcnn or resnet18."),
    epochs: int = opt("evaluate.epochs", "--epochs", help="Maximum epochs per run."),
    batch_size: int = opt("evaluate.batch_size", "--batch-size", help="Classifier batch size."),
    size: int = opt("data.size", "--size", help="Image size (none: the generator's / the native size)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: report.json, report.md, PNG plots."),
    config: Path = ConfigOpt,
    data_dir: Path = DataDirOpt,
    filter_confidence: float = opt("evaluate.filter_confidence", "--filter-confidence", help="Sample filtering: keep "
                                   "synthetic images the teacher (fitted on the real training split) gives >= "
                                   "this probability of their class (0: off)."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip the sample-quality measures."),
    no_privacy: bool = typer.Option(False, "--no-privacy", help="Skip the memorisation check."),
    threads: int = opt("evaluate.threads", "--threads", help="torch CPU threads (0: torch default)."),
    device: str = opt("evaluate.device", "--device", help="auto, cpu or cuda[:N]."),
    group_size: int = opt("evaluate.group_size", "--group-size", help="Seeds of an arm trained together as one "
                          "stacked network (0: as many as fit evaluate.group_memory_gb; 1: one by one)."),
    tuning: bool = opt("evaluate.tuning", "--tuning", help="Tuning mode: never use the test split; halve validation "
                       "(stratified) to select on one half and score on the other."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or per-run lines; only the summary."),
    restart: bool = typer.Option(False, "--restart", help="Discard the runs a previous evaluation left in --out "
                                 "(by default they are reused and only missing runs are trained)."),
) -> None:
    """Measure the downstream benefit of synthetic images (arms x seeds, CIs, paired tests), their quality and
    memorisation; writes JSON, Markdown and PNGs to --out and prints a summary table."""
    from medgan.evaluation.arms import check_choices
    from medgan.evaluation.evaluate import evaluate

    check_choices(arms, classifier, ratio)
    cfg = load_cli_config(config, {
        "data.dataset": dataset, "data.scarce": scarce or None, "data.size": size,
        "data.data_dir": str(data_dir) if data_dir is not None else None,
        "evaluate.arms": arms, "evaluate.ratios": ratio, "evaluate.seeds": seeds, "evaluate.classifier": classifier,
        "evaluate.epochs": epochs, "evaluate.batch_size": batch_size, "evaluate.threads": threads,
        "evaluate.device": device, "evaluate.quality": False if no_quality else None,
        "evaluate.privacy": False if no_privacy else None, "evaluate.filter_confidence": filter_confidence,
        "evaluate.primary": primary, "evaluate.target_specificity": target_specificity,
        "evaluate.group_size": group_size, "evaluate.tuning": tuning,
    })
    report = evaluate(cfg, checkpoint=checkpoint, synthetic=synthetic, out_dir=out, restart=restart,
                      log=None if quiet else typer.echo, progress=not quiet)
    typer.echo(report.summary(out))


# --------------------------------------------------------------------------------------------- export


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by 'medgan train', or its run folder (best.pt "
                                      "when present, else last.pt)."),
    fmt: str = typer.Option(..., "--format", "-f", help="torchscript (a .pt module G(z, y)), onnx (a .onnx model "
                            "G(z, y)) or bundle (a MONAI Bundle folder)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (torchscript, onnx) or folder (bundle)."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Export the raw generator instead of its EMA weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Export the generator for use outside medgan: TorchScript, ONNX, or a MONAI Bundle (configs/metadata.json
    with class names and intensity mapping, configs/inference.json, models/)."""
    from medgan.synthesis.bundle import export_generator

    typer.echo(export_generator(checkpoint, out, fmt, use_ema=not no_ema, overwrite=overwrite,
                                log=_to_stderr).summary())


def main() -> None:
    """Console-script entry point: user errors become one line on stderr, no traceback.

    Exit codes: 0 success, 1 user error, 2 usage or configuration error, 130 interrupted (Ctrl-C).
    """
    import os

    # OpenMP threads that spin while waiting make training ~10x slower on a shared or busy CPU; sleeping costs
    # little when the CPU is idle. Only effective before torch is imported (it is not yet); a user value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        # Without standalone mode typer turns Ctrl-C into Exit(130) and *returns* the code (as it does for an
        # explicit typer.Exit), so the return value is the exit status.
        rv = app(standalone_mode=False)
    except MedganError as e:
        typer.echo(f"medgan: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        rv = 130
    except typer.Exit as e:
        rv = e.exit_code
    except typer.Abort:
        typer.echo("medgan: aborted", err=True)
        sys.exit(1)
    except OSError as e:
        from medgan.io import is_disk_error

        if not is_disk_error(e):
            raise
        where = f" writing {e.filename}" if e.filename else ""
        typer.echo(f"medgan: error: {e.strerror}{where}; free space or choose a writable location", err=True)
        sys.exit(1)
    except Exception as e:  # click's usage errors (typer may vendor click, so duck-type them)
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(e.exit_code)
        raise
    if isinstance(rv, int) and not isinstance(rv, bool) and rv != 0:
        if rv == 130:
            typer.echo("medgan: interrupted", err=True)
        sys.exit(rv)


if __name__ == "__main__":
    main()
