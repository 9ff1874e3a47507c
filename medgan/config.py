"""Typed, validated configuration.

Precedence: built-in defaults < YAML file (``--config``) < CLI flags. Unknown keys are rejected with a
"did you mean" hint. The resolved configuration is saved in every run directory and checkpoint.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_serializer

from medgan.config_rules import (
    MAX_EVAL_SEEDS,
    MAX_SEED,
    MAX_SPLIT_SEED,
    Section,
    check_ratio,
    csv_list,
    scarce_rule,
    seed_bound,
)
from medgan.config_sections import TeacherConfig, TranslatorConfig
from medgan.errors import ConfigError


class DataConfig(Section):
    dataset: str = "phantom2d"
    """A MedMNIST name (``breastmnist``, ``pneumoniamnist_64``), ``phantom2d``/``phantom3d``, or a path
    (.npz in MedMNIST layout, a folder with one sub-folder per class, a CSV manifest ``path,label[,split]``)."""
    data_dir: str | None = None
    """Where MedMNIST files are looked for (then ``MEDGAN_DATA_DIR``, then the user cache)."""
    size: int | None = None
    """Model image size (28, 32, 64; 128 in 2D). ``None``: the dataset's native size when supported."""
    scarce: list[str] = Field(default_factory=list)
    """Scarcity for studies: ``CLASS=FRACTION`` or ``CLASS=N`` (index or name), training split only."""
    split_seed: int = 0
    """Seed of the stratified split for sources without their own splits, and of the scarcity draw."""
    download: bool = True
    """Download missing MedMNIST files from the registry (MD5-checked)."""

    @field_validator("scarce", mode="before")
    @classmethod
    def _split_scarce(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s for s in v.split(",") if s.strip()]
        return v

    @field_validator("scarce")
    @classmethod
    def _check_scarce(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        for spec in v:
            name = scarce_rule(spec)[0].strip()
            if name.lower() in seen:
                raise ConfigError(f"two --scarce rules for class '{name}' ({', '.join(v)}); give one rule per class")
            seen.add(name.lower())
        return v

    @field_validator("split_seed")
    @classmethod
    def _split_seed(cls, v: int) -> int:
        return seed_bound(v, MAX_SPLIT_SEED, "it seeds numpy.random.RandomState")


class ModelConfig(Section):
    kind: Literal["dcgan", "translator"] = "dcgan"
    """What ``medgan train`` trains: ``dcgan`` (the conditional GAN) or ``translator`` (real image -> the same image as
    another class; the ``translator`` section). Recorded only when not ``dcgan``: GAN records stay as they were."""
    latent_dim: int = Field(100, ge=1)
    base_channels: int = Field(64, ge=1)
    """Width of the last generator block / first discriminator block; doubled per resolution level."""
    embed_dim: int = Field(32, ge=1)
    """Size of the generator's label embedding (concatenated to z; ``concat`` and ``both`` conditioning)."""
    conditioning: Literal["concat", "cbn", "both"] = "cbn"
    """How the generator sees the class: ``cbn`` (class-conditional batch norm: a per-class gain and bias after every
    hidden batch norm, as in SNGAN/BigGAN; zero at the start), ``concat`` (a label embedding concatenated to z: the
    textbook DCGAN, the default before ``pipelines/bench_quality.py`` showed it collapsing in 3D and drifting in 2D)
    or ``both``. The discriminator is a projection discriminator in every case. Checkpoints written before this key
    existed are read as ``concat``."""
    spectral_norm: bool = True
    minibatch_std: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_serializer(mode="wrap")
    def _record(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if (k, v) != ("kind", "dcgan")}


class DiffAugmentConfig(Section):
    policy: list[Literal["translation", "cutout", "brightness", "contrast"]] = Field(
        default_factory=lambda: ["translation", "cutout", "brightness", "contrast"]
    )
    enabled: bool = True
    p: float = Field(1.0, ge=0.0, le=1.0)
    """Probability of augmenting each sample (the starting value when adaptive)."""
    adaptive: bool = False
    """ADA-style: adjust p so that the sign of D's output on real data stays near ``target``."""
    target: float = Field(0.6, ge=0.0, le=1.0)
    adjust_every: int = Field(4, ge=1)
    adjust_speed: float = Field(0.05, ge=0.0)


class TrainConfig(Section):
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr_g: float = Field(2e-4, gt=0.0)
    lr_d: float = Field(2e-4, gt=0.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    loss: Literal["minimax", "bce", "hinge", "lsgan", "energy"] = "bce"
    energy_margin: float = Field(1.0, gt=0.0)
    d_steps: int = Field(1, ge=1)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    """One-sided: real targets become 1 - label_smoothing."""
    feature_matching: float = Field(0.0, ge=0.0)
    """Weight of the feature-matching term in G's loss (0: off)."""
    r1_gamma: float = Field(0.0, ge=0.0)
    """Weight of the R1 gradient penalty on real data (0: off)."""
    r1_every: int = Field(16, ge=1)
    """Lazy R1: apply the penalty every this many D updates (scaled up by the same factor)."""
    lecam: float = Field(0.0, ge=0.0)
    """Weight of the LeCam regulariser of D (Tseng et al., CVPR 2021): ``mean((D(x) - a_fake)²) + mean((D(G(z)) -
    a_real)²)`` on raw logits, with ``a_real``/``a_fake`` moving averages of D's mean outputs (0: off)."""
    lecam_decay: float = Field(0.99, ge=0.0, lt=1.0)
    """Decay of LeCam's moving averages of D's mean output on real and generated images."""
    cond_start: int = Field(0, ge=0)
    """Transitional conditioning (Shahbazi et al., CVPR 2022): G and D are unconditional up to this step, ..."""
    cond_ramp: int = Field(0, ge=0)
    """... then the class information (G's embedding and conditional gains/biases, D's projection term) is phased in
    linearly over this many steps. ``cond_start = cond_ramp = 0``: conditional from the start."""
    instance_noise: float = Field(0.0, ge=0.0)
    """Instance noise: standard deviation of Gaussian noise added to every image D sees (real and generated, after
    DiffAugment), in the [-1, 1] intensity range (0: off)."""
    instance_noise_decay: int = Field(0, ge=0)
    """Decay the instance noise linearly to 0 over this many steps (0: constant)."""
    diffaugment: DiffAugmentConfig = Field(default_factory=DiffAugmentConfig)
    augment_real: Literal["none", "classical"] = "none"
    """Train the GAN on classically augmented real images (Frid-Adar et al. 2018): ``classical`` passes every real
    batch through :func:`medgan.classify.augment.classical_augment` (the augmentation of evaluate's ``classical``
    arms, at ``augment_real_strength``) before D sees it, so G learns the augmented distribution (DiffAugment, in
    contrast, augments real and generated images alike for D only; both may be on). ``none``: the raw images."""
    augment_real_strength: Literal["mild", "moderate"] = "mild"
    """Strength of ``augment_real: classical`` (:data:`medgan.classify.augment.STRENGTHS`)."""
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    """Exponential moving average of G's weights (0: off); the EMA generator samples by default."""
    ema_start: int = Field(0, ge=0)
    balanced: Literal["auto", "on", "off"] = "auto"
    """Class-balanced batches; ``auto`` turns them on when the largest class is >1.5x the smallest."""
    amp: Literal["off", "bf16"] = "off"
    channels_last: bool | Literal["auto"] = "auto"
    """Channels-last (3D: channels-last-3d) memory format for weights and data; ``auto``: on for bf16 and for 3D
    on CPU, off for 2D float32 (docs/results.md measures both layouts)."""
    threads: int = Field(0, ge=0)
    """torch intra-op threads (0: leave torch's default)."""
    device: str = "auto"
    seed: int = 0
    """0 to 2**63 - 1 (:data:`MAX_SEED`)."""
    log_every: int = Field(50, ge=0)
    sample_every: int = Field(500, ge=0)
    checkpoint_every: int = Field(1000, ge=0)
    collapse_every: int = Field(500, ge=0)
    """How often the within-class diversity (mode-collapse alarm) is measured (0: off)."""
    collapse_threshold: float = Field(0.5, ge=0.0)
    """Alarm when a class's generated diversity falls below this fraction of the real data's."""
    eval_every: int = Field(500, ge=0)
    """Quality tracking (:mod:`medgan.training.tracking`): every this many steps and at the end, per-class Fréchet
    distance, KID, class fidelity and diversity ratio of the EMA generator in the teacher's eyes, and
    ``checkpoints/best.pt`` by the quality score (0: off)."""
    eval_samples: int = Field(128, ge=2)
    """Generated images per class at each quality measurement."""
    drift_threshold: float = Field(0.5, ge=0.0)
    """Drift alarm when a class's fidelity (the teacher's mean probability of the class on its samples, over the same
    on its real validation images) falls below this, once the class is fully phased in; never for a class whose
    fidelity is not measurable (the teacher does not recognise it on real validation images)."""
    tensorboard: bool = False
    progress: bool = True

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        return seed_bound(v, MAX_SEED, "a signed 64-bit integer")


class AugmentConfig(Section):
    n: int | None = None
    classes: list[str] = Field(default_factory=list)
    balance: bool = False
    format: Literal["png", "npz", "nifti", "dicom"] = "png"
    batch_size: int = Field(256, ge=1)
    seed: int = 0
    use_ema: bool = True
    reject_near_copies: bool = False
    pairs: bool = False
    """Counterfactual pairs: ``n`` is the number of pairs; every class is generated from the same latent ``z`` per
    pair (the manifest's ``pair_id``), so the members of a pair differ only in their class. Excludes ``classes`` and
    ``balance``; with ``reject_near_copies`` a flagged member has its whole pair redrawn."""
    from_real: bool = False
    """Instead of sampling noise, translate real training images of the other classes (read from ``--dataset``,
    checked against the checkpoint's training-set fingerprint) into each requested class by latent inversion
    (:mod:`medgan.synthesis.from_real`); the manifest names each source image. With ``reject_near_copies`` the check
    is against the target class's real training images."""
    strength: float | None = Field(None, ge=0.0, le=1.0)
    """Translation strength of ``from_real`` (0: the source image, 1: the full target class); default (``null``):
    the strength chosen on validation (``medgan.synthesis.from_real.DEFAULT_STRENGTH``, docs/augment.md)."""
    overwrite: bool = False
    device: str = "cpu"
    """Where the generator runs (``cpu``, ``cuda``, ``cuda:N``, ``auto``); byte-identical repeats are promised on CPU."""
    workers: int = Field(0, ge=0)
    """Generator threads (whole batches each, single-threaded torch ops); 0: one per CPU core, at most 4."""
    amp: Literal["off", "bf16"] = "off"
    """Generator precision: ``off`` (fp32) or ``bf16`` (bfloat16 inference: several times faster on CPUs with
    AMX / AVX512-BF16, images within about 1% of the fp32 ones, byte-identical repeats on the same machine)."""

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        return seed_bound(v, MAX_SEED, "a signed 64-bit integer")


ARM_NAMES = Literal["baseline", "oversample", "weighted", "classical", "classical+oversample", "gan",
                    "gan+oversample", "gan+weighted", "gan+classical", "gan+classical+oversample"]


class EvalConfig(Section):
    arms: list[ARM_NAMES] = Field(default_factory=lambda: [
        "baseline", "oversample", "weighted", "classical+oversample", "gan+oversample", "gan+classical+oversample"])
    """Arms to compare (docs/evaluation.md). GAN arms run once per ratio."""
    ratios: list[float | Literal["balance"]] = Field(default_factory=lambda: [0.5, 1.0])
    seeds: int = 10
    """Seeds per arm (paired across arms): 10 allow exact permutation p-values down to 0.002; 2 to
    :data:`MAX_EVAL_SEEDS`."""
    classifier: Literal["smallcnn", "resnet18"] = "smallcnn"
    epochs: int = Field(80, ge=1)
    """Budget: at most this many epochs of ceil(N_real_train / batch_size) steps (classical+oversample needed ~50
    to converge on BreastMNIST 20%: docs/results.md, protocol check)."""
    patience: int = Field(20, ge=1)
    """Stop after this many epochs without a better validation score (but not before ``min_epochs``)."""
    min_epochs: int = Field(40, ge=0)
    """No early stop before this many epochs (capped at ``epochs``)."""
    select: Literal["auroc", "loss", "balanced_accuracy"] = "auroc"
    """The validation score that picks the kept weights (pipelines/protocol_check.py measures the choice)."""
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    tuning: bool = False
    """Tuning mode, for choices that must not see the test split (``--tuning``): the test split is not used, and the
    validation split is halved (stratified, ``data.split_seed``): one half selects (epochs, operating points, the
    teacher), the other scores in the test split's place (medgan.data.splits.tuning_view). Every number in the
    report is then a validation number, and the report says so."""
    primary: Literal["sens_at_spec", "sens_youden", "auroc", "pauroc", "balanced_accuracy"] = "sens_at_spec"
    """The metric the verdict uses; default: scarce-class sensitivity at the specificity chosen on validation."""
    target_specificity: float = Field(0.8, gt=0.0, lt=1.0)
    """Thresholds are chosen on validation for at least this specificity (per scarce class, one-vs-rest)."""
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    """Family-wise error rate of the verdict (Holm over the primary metric's comparisons)."""
    classical: Literal["mild", "moderate"] = "mild"
    """Strength of the classical augmentation (medgan.classify.augment.STRENGTHS)."""
    group_size: int = Field(0, ge=0)
    """Seeds of an arm trained together as one stacked network (medgan.classify.group); 0: as many as fit in
    ``group_memory_gb`` (on a CPU, ResNet-18 one by one: it is no faster stacked there); 1: one by one."""
    group_memory_gb: float = Field(3.0, gt=0)
    """Memory budget of one group (estimated from the network's activations and weights)."""
    amp: Literal["off", "bf16"] = "bf16"
    """Stacked groups of classifiers train under bfloat16 autocast (predictions, weights and the optimiser stay
    float32; a lone run stays float32). Measured: docs/results.md, evaluation speed."""
    channels_last: bool | Literal["auto"] = "auto"
    """Channels-last memory format for the classifiers; ``auto``: on for the small CNN, off for ResNet-18 (as
    measured by pipelines/bench_evaluate.py)."""
    n_synthetic: int | None = Field(None, ge=1)
    """Size of the synthetic pool per class drawn from a checkpoint (default: enough for the largest ratio)."""
    pool: Literal["sample", "from_real"] = "sample"
    """How the pool is drawn from a checkpoint: ``sample`` (noise -> image) or ``from_real`` (real training images of
    the other classes translated into each class by latent inversion, :mod:`medgan.synthesis.from_real`; at most as
    many per class as there are such images, reused with replacement beyond that)."""
    strength: float | None = Field(None, ge=0.0, le=1.0)
    """Translation strength of ``pool: from_real`` (default: the one chosen on validation, as ``augment.strength``)."""
    filter_confidence: float = Field(0.0, ge=0.0, lt=1.0)
    """Sample filtering: keep only synthetic images that the teacher (``teacher``: an ensemble fitted on the real
    training split, medgan.classify.teacher) assigns to their conditioned class with at least this probability; 0
    keeps every image. The pool is drawn ``filter_pool_factor`` times larger so that enough images survive."""
    filter_pool_factor: int = Field(3, ge=1)
    pairs: bool = False
    """Draw the synthetic pool from ``--checkpoint`` as counterfactual pairs: image ``k`` of every class comes from
    the same latent vector (as ``medgan augment --pairs``), and the pool keeps the pair ids
    (:attr:`medgan.synthesis.bank.SyntheticBank.pair_ids`). The GAN arms still draw their images per class from the
    pool. With ``--synthetic``, the folder must be an ``augment --pairs`` run."""
    quality: bool = True
    oracle_teacher: Literal["auto", "on", "off"] = "auto"
    """In a scarcity simulation (``data.scarce``), also measure sample quality with an *oracle* teacher: the
    teacher's recipe fitted on the full training split before scarcity (the held-back images included; never
    test), reported as "oracle (measuring only)" beside the teacher's numbers and never used for filtering, labels
    or choices (medgan.evaluation.quality.oracle_quality). ``auto``: on when the full training split is at most
    twice the scarce one (the oracle then costs at most about twice the teacher); ``on`` needs a scarcity
    simulation."""
    privacy: bool = True
    threads: int = Field(0, ge=0)
    device: str = "auto"
    """Where classifiers train: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``."""

    @field_validator("arms", mode="before")
    @classmethod
    def _split_arms(cls, v: Any) -> Any:
        return csv_list(v)

    @field_validator("arms")
    @classmethod
    def _some_arm(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("no arm to run; name at least one, e.g. --arms baseline,gan+oversample")
        return v

    @field_validator("ratios", mode="before")
    @classmethod
    def _ratios(cls, v: Any) -> Any:
        v = csv_list(v)
        for r in v if isinstance(v, list) else []:
            if r != "balance" and not isinstance(r, bool):
                check_ratio(r)
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int) -> int:
        if v < 2:
            raise ValueError("confidence intervals and paired tests need at least 2 seeds; use --seeds 5 "
                             "(or 10 for permutation p-values below 0.0625)")
        if v > MAX_EVAL_SEEDS:
            raise ValueError(f"at most {MAX_EVAL_SEEDS} seeds per arm (each seed trains one classifier per arm)")
        return v


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    translator: TranslatorConfig = Field(default_factory=TranslatorConfig)

    @model_serializer(mode="wrap")
    def _record(self, handler: Any) -> dict[str, Any]:  # the translator section: for translators, or when changed
        hide = self.model.kind == "dcgan" and self.translator == TranslatorConfig()
        return {k: v for k, v in handler(self).items() if not (hide and k == "translator")}

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _check_keys(model: type[BaseModel], data: Any, where: str) -> None:
    """Reject unknown keys anywhere in ``data`` with a 'did you mean' hint."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{where}{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"unknown config key '{where}{key}'{hint}")
        ann = fields[key].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _check_keys(ann, value, f"{where}{key}.")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _dotted(overrides: dict[str, Any]) -> dict:
    """``{"train.steps": 10}`` -> ``{"train": {"steps": 10}}``; ``None`` values are skipped."""
    out: dict = {}
    for key, value in overrides.items():
        if value is None:
            continue
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def packaged_configs() -> dict[str, Path]:
    """The configurations shipped with medgan (``medgan/configs/*.yaml``, the repository's ``configs/``), by name."""
    from importlib.resources import files

    root = files("medgan") / "configs"
    try:
        return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def resolve_config_path(path: str | Path) -> Path:
    """``--config`` value -> a YAML file: an existing file, else a packaged config by name (``breastmnist`` or
    ``breastmnist.yaml``), so the quickstart works from any folder. One-line error naming both when neither."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    shipped = packaged_configs()
    name = p.name[: -len(".yaml")] if p.name.endswith(".yaml") else p.name
    if name in shipped and (p.parent == Path(".") or p.parent.name == "configs"):
        return shipped[name]
    raise ConfigError(f"config file not found: {p}; pass an existing YAML file or a packaged config name "
                      f"({', '.join(sorted(shipped)) or 'none installed'})")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Resolve the configuration: defaults < YAML ``path`` < ``overrides`` (dotted keys, ``None`` = unset).

    ``path`` is a YAML file or the name of a packaged config (:func:`packaged_configs`)."""
    import yaml

    data: dict = {}
    if path is not None:
        p = resolve_config_path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start}); a config must be a UTF-8 YAML "
                              "file") from None
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            at = f" (line {line + 1})" if line is not None else ""
            raise ConfigError(f"config file {p} is not valid YAML{at}; fix the syntax") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections (data, model, train, ...)")
        data = loaded
    if overrides:
        data = _merge(data, _dotted(overrides))
    _check_keys(Config, data, "")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), (dict, list)) else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid value for '{loc}': {msg}{got}") from None
