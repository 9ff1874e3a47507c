"""Downstream benefit: does adding synthetic images make a classifier better on the scarce classes?

:func:`evaluate` trains the same classifier under several *arms* and several seeds, tests every run on the real
test split, and aggregates with confidence intervals and paired tests (:mod:`medgan.evaluation.metrics`).

Arms
----
``baseline``        the real (scarce) training split only, shuffled batches.
``oversample``      the real training split with class-balanced batches (each class drawn with equal
                    probability, with replacement).
``classical``       real batches through :class:`ClassicalAugment` (MONAI ``Warp`` with a random affine plus a
                    smooth elastic displacement, left-right flips, gamma contrast and Gaussian noise), on the fly.
``gan@R``           real + synthetic images (see the allocation policy below), shuffled batches.
``gan+classical@R`` the ``gan@R`` training set with :class:`ClassicalAugment` on every batch (real and synthetic).

Synthetic allocation policy (:func:`synthetic_allocation`): ratio ``R`` adds ``round(R * N_real)`` synthetic
images, given to the classes with the fewest real images first ("water filling": the lowest classes are raised
level until all are equal; what remains goes one image each to the classes with the fewest real images first);
``balance`` tops every class up to the majority class's count. Per seed, each class's synthetic images are a seeded draw without replacement from the pool
(with replacement only if the pool is too small; the report then says so).

Same budget, same seeds
-----------------------
Every arm uses the same classifier, Adam (``evaluate.lr``), batch size, number of epochs and *the same number of
optimisation steps per epoch*, ``ceil(N_real_train / batch_size)``, whatever the size of its training set, so
that adding synthetic data buys no extra compute. After each epoch the model is scored on the REAL validation
split; the weights with the best balanced accuracy (ties: lower validation loss) are kept, and training stops
after ``evaluate.patience`` epochs without improvement. Seed ``s`` sets the weight initialisation (identical
across arms), the batch-order stream and the augmentation stream. Test images are always real.

Leakage guard
-------------
A generator must have been trained on exactly this evaluation's (scarce) training split, never on its
validation or test images: the checkpoint's ``data.train_fingerprint`` must equal the fingerprint of the
training split built here from ``--dataset``, ``--scarce`` and the split seed, or :func:`evaluate` refuses.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from medgan.errors import EvaluationError

if TYPE_CHECKING:
    from medgan.config import Config
    from medgan.data.sources import RealData
    from medgan.evaluation.report import Report

BASE_ARMS = ("baseline", "oversample", "classical", "gan", "gan+classical", "gan+oversample")
GAN_ARMS = ("gan", "gan+classical", "gan+oversample")
ALLOCATION_POLICY = (
    "ratio R adds round(R x N_real) synthetic images, given to the classes with the fewest real images first "
    "(water filling: lowest classes raised level until equal, the rest one each, fewest-real classes first); "
    "'balance' tops every class up to the majority count"
)
BUDGET_POLICY = (
    "Every arm: same classifier, Adam, batch size, epochs and ceil(N_real_train / batch_size) optimisation steps "
    "per epoch; early stopping on the real validation split (best balanced accuracy, ties: lower loss)"
)


# ------------------------------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class Arm:
    """One experimental condition."""

    name: str
    kind: str
    ratio: float | str | None = None

    @property
    def synthetic(self) -> bool:
        return self.kind in GAN_ARMS

    @property
    def classical(self) -> bool:
        return self.kind in ("classical", "gan+classical")

    @property
    def balanced(self) -> bool:
        return self.kind in ("oversample", "gan+oversample")


def _ratio_label(r: float | str) -> str:
    return r if isinstance(r, str) else str(float(r))  # 0.5 -> "0.5", 1 -> "1.0"


def expand_arms(arms: list[str], ratios: list[float | str]) -> list[Arm]:
    """Arm names -> :class:`Arm` objects; GAN arms expand to one arm per ratio (``gan@0.5``, ``gan@balance``)."""
    out: list[Arm] = []
    for a in arms:
        a = a.strip().lower()
        if a not in BASE_ARMS:
            raise EvaluationError(f"unknown arm '{a}'; choose from: {', '.join(BASE_ARMS)} (--arms, comma-separated)")
        if a in GAN_ARMS:
            if not ratios:
                raise EvaluationError(f"arm '{a}' needs at least one ratio; pass --ratio 0.5,1.0 or --ratio balance")
            for r in ratios:
                if not isinstance(r, str) and not (float(r) > 0):
                    raise EvaluationError(f"synthetic ratio must be > 0 or 'balance', got {r} (--ratio)")
                out.append(Arm(f"{a}@{_ratio_label(r)}", a, r))
        else:
            out.append(Arm(a, a))
    names = [a.name for a in out]
    if len(set(names)) != len(names):
        raise EvaluationError(f"arms repeat: {', '.join(names)}; list each arm and ratio once")
    return out


def check_choices(arms: str | None = None, classifier: str | None = None, ratios: str | None = None) -> None:
    """Friendly errors for command-line values before the config validates them."""
    from medgan.models.classifier import CLASSIFIERS

    for a in (arms or "").split(","):
        if a.strip() and a.strip().lower() not in BASE_ARMS:
            raise EvaluationError(f"unknown arm '{a.strip()}'; choose from: {', '.join(BASE_ARMS)} "
                                  "(--arms, comma-separated)")
    if classifier is not None and classifier not in CLASSIFIERS:
        raise EvaluationError(f"unknown classifier '{classifier}'; choose one of: {', '.join(CLASSIFIERS)} "
                              "(--classifier)")
    for r in (ratios or "").split(","):
        r = r.strip()
        if not r or r == "balance":
            continue
        try:
            ok = float(r) > 0
        except ValueError:
            ok = False
        if not ok:
            raise EvaluationError(f"bad synthetic ratio '{r}'; use numbers > 0 (synthetic:real, e.g. 0.5,1.0) or "
                                  "'balance' (--ratio)")


def synthetic_allocation(real_counts: list[int], ratio: float | str) -> list[int]:
    """Synthetic images per class for one ratio (see the module docstring for the policy)."""
    c = np.asarray(real_counts, dtype=np.int64)
    if isinstance(ratio, str):
        if ratio != "balance":
            raise EvaluationError(f"unknown ratio '{ratio}'; use a number > 0 or 'balance' (--ratio)")
        return (c.max() - c).tolist()
    total = int(round(float(ratio) * int(c.sum())))
    if total <= 0:
        return [0] * len(c)

    def filled(level: int) -> int:
        return int(np.maximum(0, level - c).sum())

    lo, hi = int(c.min()), int(c.max()) + total
    while lo < hi:  # the highest level reachable with `total` images
        mid = (lo + hi + 1) // 2
        if filled(mid) <= total:
            lo = mid
        else:
            hi = mid - 1
    alloc = np.maximum(0, lo - c)
    left = total - int(alloc.sum())
    at_level = [i for i in np.lexsort((np.arange(len(c)), c)) if c[i] <= lo]
    for i in at_level[:left]:
        alloc[i] += 1
    return alloc.tolist()


# --------------------------------------------------------------------------------- classical augmentation


class ClassicalAugment:
    """Classical augmentation of whole batches in one resampling pass (2D and 3D).

    Per sample, independently: a left-right flip (p=0.5); an affine transform (rotation up to ±15° in 2D, ±10°
    about each axis in 3D; isotropic scale 0.9-1.1; translation up to ±8% of the size); with p=0.5 a smooth
    elastic displacement (random vectors on a 4-point control grid, bicubic/trilinear upsampled, up to ~1.5 px);
    with p=0.5 a gamma contrast change (gamma in [0.7, 1.5], as ``RandAdjustContrast``); with p=0.5 Gaussian noise
    (sd 0.03 of the [-1, 1] range, as ``RandGaussianNoise``). The geometric part is one dense displacement field
    applied with MONAI's :class:`~monai.networks.blocks.Warp` (border padding), so a batch costs one
    ``grid_sample`` instead of a per-sample transform chain. All randomness comes from ``generator``.
    """

    def __init__(self, spatial_dims: int, generator: torch.Generator, rotate_deg: float | None = None,
                 scale: float = 0.1, translate: float = 0.08, elastic_px: float = 1.5, p_elastic: float = 0.5,
                 gamma: tuple[float, float] = (0.7, 1.5), p_gamma: float = 0.5, noise_sd: float = 0.03,
                 p_noise: float = 0.5, p_flip: float = 0.5):
        from monai.networks.blocks import Warp

        self.dims = spatial_dims
        self.g = generator
        self.rotate = math.radians(rotate_deg if rotate_deg is not None else (15.0 if spatial_dims == 2 else 10.0))
        self.scale, self.translate = scale, translate
        self.elastic_px, self.p_elastic = elastic_px, p_elastic
        self.gamma, self.p_gamma = gamma, p_gamma
        self.noise_sd, self.p_noise, self.p_flip = noise_sd, p_noise, p_flip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.warp = Warp(mode="bilinear", padding_mode="border")

    def _u(self, *shape: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
        return torch.rand(*shape, generator=self.g) * (hi - lo) + lo

    def _rotation(self, n: int) -> torch.Tensor:
        if self.dims == 2:
            a = self._u(n) * self.rotate
            c, s = torch.cos(a), torch.sin(a)
            return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        r = torch.eye(3).repeat(n, 1, 1)
        for axes in ((1, 2), (0, 2), (0, 1)):
            a = self._u(n) * self.rotate
            m = torch.eye(3).repeat(n, 1, 1)
            i, j = axes
            m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)
            r = m @ r
        return r

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, d = x.shape[0], self.dims
        spatial = x.shape[2:]
        dev = x.device
        # flips along the last spatial axis (left-right)
        flip = torch.rand(n, generator=self.g) < self.p_flip
        x = torch.where(flip.to(dev).view(n, *([1] * (x.ndim - 1))), x.flip(-1), x)
        # affine part of the displacement field, about the image centre, in voxels
        a = self._rotation(n) * self._u(n, lo=1 - self.scale, hi=1 + self.scale).view(n, 1, 1)
        t = self._u(n, d) * self.translate * torch.tensor([float(s) for s in spatial])
        coords = torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) - (s - 1) / 2 for s in spatial],
                                            indexing="ij"))  # (d, *spatial)
        flat = coords.reshape(d, -1)
        ddf = (torch.einsum("nij,jp->nip", a - torch.eye(d), flat) + t.unsqueeze(-1)).reshape(n, d, *spatial)
        # smooth elastic part
        use_el = (torch.rand(n, generator=self.g) < self.p_elastic).float().view(n, 1, *([1] * d))
        ctrl = self._u(n, d, *([4] * d)) * self.elastic_px
        mode = "bicubic" if d == 2 else "trilinear"
        ddf = ddf + F.interpolate(ctrl, size=tuple(spatial), mode=mode, align_corners=True) * use_el
        x = self.warp(x, ddf.to(dev))
        # intensity: gamma contrast (on [0, 1]) and Gaussian noise
        shape = (n, *([1] * (x.ndim - 1)))
        gam = torch.where(torch.rand(n, generator=self.g) < self.p_gamma,
                          self._u(n, lo=self.gamma[0], hi=self.gamma[1]), torch.ones(n)).view(shape).to(dev)
        x = ((x.clamp(-1, 1) + 1) / 2).pow(gam) * 2 - 1
        use_noise = (torch.rand(n, generator=self.g) < self.p_noise).float().view(shape).to(dev)
        noise = torch.randn(x.shape, generator=self.g).to(dev) * self.noise_sd
        return (x + noise * use_noise).clamp(-1, 1)


# ------------------------------------------------------------------------------------------- training


@dataclass
class RunResult:
    """One trained classifier: its best weights, when they were reached, and the test probabilities."""

    model: torch.nn.Module
    best_epoch: int
    epochs_run: int
    val_balanced_accuracy: float
    val_loss: float
    seconds: float


class _BatchStream:
    """An endless stream of index batches: shuffled epochs, or class-balanced draws with replacement."""

    def __init__(self, labels: torch.Tensor, batch_size: int, generator: torch.Generator, balanced: bool):
        self.n = len(labels)
        self.bs = min(batch_size, self.n)
        self.g = generator
        self.weights = None
        if balanced:
            counts = torch.bincount(labels).float()
            self.weights = (1.0 / counts)[labels]
        self.perm = torch.empty(0, dtype=torch.long)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.weights is not None:
            return torch.multinomial(self.weights, self.bs, replacement=True, generator=self.g)
        out = []
        need = self.bs
        while need:
            if self.pos >= len(self.perm):
                self.perm, self.pos = torch.randperm(self.n, generator=self.g), 0
            take = self.perm[self.pos : self.pos + need]
            self.pos += len(take)
            need -= len(take)
            out.append(take)
        return torch.cat(out)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities ``(N, K)`` on CPU (model in eval mode)."""
    model.eval()
    out = [F.softmax(model(x[i : i + batch_size].to(device)).float(), 1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def extract_features(model, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Penultimate classifier features ``(N, F)`` on CPU."""
    model.eval()
    return torch.cat([model.features(x[i : i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(x), batch_size)])


def _val_scores(model, x, y, device, num_classes) -> tuple[float, float]:
    from sklearn.metrics import balanced_accuracy_score

    p = predict_proba(model, x, device)
    loss = float(F.nll_loss(torch.log(p.clamp_min(1e-12)), y).item())
    present = torch.unique(y).numel() > 1 or num_classes == 1
    bal = float(balanced_accuracy_score(y.numpy(), p.argmax(1).numpy())) if present else float((p.argmax(1) == y).float().mean())
    return bal, loss


def train_classifier(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
                     classifier: str, num_classes: int, seed: int, epochs: int, patience: int, batch_size: int,
                     lr: float, steps_per_epoch: int, balanced: bool = False, classical: bool = False,
                     device: torch.device | str = "cpu") -> RunResult:
    """Train one classifier under the shared protocol (module docstring) and return its best weights."""
    from medgan.models.classifier import build_classifier

    t0 = time.perf_counter()
    device = torch.device(device)
    dims = train_x.ndim - 2
    torch.manual_seed(seed)
    model = build_classifier(classifier, dims, train_x.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stream = _BatchStream(train_y, batch_size, torch.Generator().manual_seed(seed), balanced)
    aug = ClassicalAugment(dims, torch.Generator().manual_seed(seed + 7919)) if classical else None
    best = (-1.0, math.inf)
    best_state, best_epoch, since = copy.deepcopy(model.state_dict()), 0, 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        for _ in range(steps_per_epoch):
            idx = stream.next()
            xb = train_x[idx]
            if aug is not None:
                xb = aug(xb)
            loss = F.cross_entropy(model(xb.to(device)), train_y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        bal, vloss = _val_scores(model, val_x, val_y, device, num_classes)
        if bal > best[0] + 1e-12 or (abs(bal - best[0]) <= 1e-12 and vloss < best[1]):
            best, best_epoch, since = (bal, vloss), epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return RunResult(model, best_epoch, epoch, best[0], best[1], time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------- synthetic data


@dataclass
class SyntheticPool:
    """Synthetic images in model range [-1, 1] with labels, and where they came from."""

    x: torch.Tensor
    y: torch.Tensor
    source: dict[str, Any]


def check_leakage(ckpt_data: dict[str, Any], data: RealData, where: str = "the checkpoint") -> None:
    """Refuse a generator that was not trained on exactly this evaluation's training split."""
    theirs = ckpt_data.get("train_fingerprint")
    ours = data.fingerprint()
    if theirs is None:
        raise EvaluationError(f"{where} records no training-set fingerprint, so the leakage guard cannot verify what "
                              "the generator saw; use a checkpoint written by 'medgan train'")
    if theirs != ours:
        sc = ckpt_data.get("scarcity") or {}
        their_spec = " ".join(f"--scarce {s}" for s in sc.get("spec", [])) or "no --scarce"
        seed = sc.get("seed")
        raise EvaluationError(
            f"leakage guard: {where} was trained on a different training split (fingerprint {theirs[:12]}) than "
            f"this evaluation's (fingerprint {ours[:12]}); evaluate with the generator's dataset "
            f"'{ckpt_data.get('name')}', {their_spec}" + (f" and split seed {seed}" if seed is not None else "")
            + " (--dataset, --scarce, data.split_seed), or train a generator on this split"
        )


def check_compatible(class_names: list[str], shape: tuple[int, ...], data: RealData, size: int, where: str) -> None:
    """Classes and image shape of synthetic data must match the evaluation dataset."""
    if list(class_names) != list(data.class_names):
        raise EvaluationError(
            f"{where} has classes {list(class_names)} but dataset '{data.name}' has {list(data.class_names)}; "
            "evaluate on the dataset the generator was trained on"
        )
    want = (data.channels,) + (size,) * data.spatial_dims
    if tuple(shape) != want:
        raise EvaluationError(
            f"{where} holds images of shape {tuple(shape)} but the evaluation uses {want} (channels, *spatial); "
            "use the same dataset and --size as the generator"
        )


def _load_pool_from_checkpoint(path: str | Path, data: RealData, size: int | None, n_per_class: int,
                               seed: int) -> tuple[SyntheticPool, int]:
    from medgan.training.checkpoint import file_sha256, load_checkpoint

    ckpt = load_checkpoint(path)
    meta = ckpt["data"]
    ck_size = int(meta.get("size") or 0)
    if size is not None and ck_size and size != ck_size:
        raise EvaluationError(f"--size {size} differs from the generator's image size {ck_size}; drop --size or "
                              f"pass --size {ck_size}")
    size = ck_size or size
    shape = (int(meta["channels"]),) + (size,) * int(meta["spatial_dims"])
    check_compatible(meta["class_names"], shape, data, size, f"checkpoint {path}")
    check_leakage(meta, data, f"checkpoint {path}")
    del ckpt
    from medgan.synthesis.bank import SyntheticBank

    bank = SyntheticBank.from_checkpoint(path, n_per_class=n_per_class, seed=seed)
    source = {"kind": "checkpoint", "path": str(path), "sha256": file_sha256(path), "seed": seed,
              "n_per_class": n_per_class, "leakage_guard": "passed", "train_fingerprint": meta["train_fingerprint"]}
    return SyntheticPool(bank.images.float(), bank.labels.long(), source), size


def _folder_fingerprint(path: Path) -> tuple[str | None, str]:
    """The training-set fingerprint behind an augment output folder, and how it was found.

    Read from the folder's ``augment.json`` (``train_fingerprint``) when recorded there, else from the checkpoint
    it names, if that file still exists and its SHA-256 matches the one recorded.
    """
    import json

    from medgan.synthesis.augment import INFO
    from medgan.training.checkpoint import file_sha256, load_checkpoint

    folder = path if path.is_dir() else path.parent
    info_path = folder / INFO
    if not info_path.is_file():
        return None, f"unverified: no {INFO} beside the synthetic images"
    info = json.loads(info_path.read_text())
    if info.get("train_fingerprint"):
        return str(info["train_fingerprint"]), f"passed ({INFO})"
    ck = info.get("checkpoint")
    if ck and Path(ck).is_file() and info.get("checkpoint_sha256") == file_sha256(ck):
        return load_checkpoint(ck)["data"].get("train_fingerprint"), f"passed (checkpoint {ck})"
    return None, "unverified: the folder records no training-set fingerprint and its checkpoint is not available"


def _load_pool_from_folder(path: str | Path, data: RealData, size: int | None) -> tuple[SyntheticPool, int]:
    from medgan.synthesis.bank import SyntheticBank

    path = Path(path)
    bank = SyntheticBank.from_folder(path)
    x = bank.images.float()
    if len(x) == 0:
        raise EvaluationError(f"synthetic data in {path} holds no images; run medgan augment with --n or --balance")
    if x.ndim != data.spatial_dims + 2:
        raise EvaluationError(f"synthetic data in {path} is {x.ndim - 2}D but dataset '{data.name}' is "
                              f"{data.spatial_dims}D; use synthetic images of this dataset")
    syn_size = int(x.shape[-1])
    if size is not None and size != syn_size:
        raise EvaluationError(f"--size {size} differs from the synthetic images' size {syn_size}; drop --size")
    check_compatible(bank.class_names, tuple(x.shape[1:]), data, syn_size, f"synthetic folder {path}")
    fp, how = _folder_fingerprint(path)
    if fp is not None:
        check_leakage({"train_fingerprint": fp, "name": bank.provenance.get("dataset")}, data,
                      f"the generator behind {path}")
    source = {"kind": "folder", "path": str(path), "leakage_guard": how, **bank.provenance}
    return SyntheticPool(x, bank.labels.long(), source), syn_size


def filter_pool(pool: SyntheticPool, model: torch.nn.Module, threshold: float, device: torch.device,
                class_names: list[str], allocs: dict[str, list[int]] | None = None
                ) -> tuple[SyntheticPool, dict[str, Any]]:
    """Sample filtering: keep the pool images that ``model`` (trained on real data only) gives at least
    ``threshold`` probability of their conditioned class. Returns the filtered pool and what was kept per class.

    Raises :class:`EvaluationError` when an arm needs a class of which no image survives."""
    prob = predict_proba(model, pool.x, device)
    p_own = prob.gather(1, pool.y.view(-1, 1)).squeeze(1)
    keep = p_own >= threshold
    n = len(class_names)
    drawn = torch.bincount(pool.y, minlength=n).tolist()
    kept = torch.bincount(pool.y[keep], minlength=n).tolist()
    needed = [max((a[c] for a in (allocs or {}).values()), default=0) for c in range(n)]
    for c in range(n):
        if needed[c] > 0 and kept[c] == 0:
            raise EvaluationError(
                f"sample filtering kept no synthetic image of class '{class_names[c]}' (0 of {drawn[c]} reach "
                f"p >= {threshold}): lower --filter-confidence or train the generator longer")
    info = {"threshold": threshold, "drawn": drawn, "kept": kept,
            "mean_p_own_class": [float(p_own[pool.y == c].mean()) if drawn[c] else None for c in range(n)],
            "classifier": "smallcnn trained on the real training split (class-balanced, seed 0)"}
    return SyntheticPool(pool.x[keep], pool.y[keep], {**pool.source, "filter": info}), info


def _draw_synthetic(pool: SyntheticPool, alloc: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per class, a seeded draw of ``alloc[c]`` pool images (without replacement while the pool lasts)."""
    rs = np.random.RandomState(seed)
    idx, notes = [], []
    for c, k in enumerate(alloc):
        if k == 0:
            continue
        have = np.flatnonzero(pool.y.numpy() == c)
        if len(have) == 0:
            raise EvaluationError(f"the synthetic pool has no image of class {c}; it is needed to add {k} synthetic "
                                  "images: generate every class (medgan augment without --classes)")
        if k <= len(have):
            idx.append(rs.choice(have, size=k, replace=False))
        else:
            notes.append(f"class {c}: {k} synthetic images asked, pool has {len(have)}; reused with replacement")
            idx.append(np.concatenate([have, rs.choice(have, size=k - len(have), replace=True)]))
    if not idx:
        return pool.x[:0], pool.y[:0], notes
    sel = torch.as_tensor(np.concatenate(idx))
    return pool.x[sel], pool.y[sel], notes


# ------------------------------------------------------------------------------------------- the study


def scarce_classes(data: RealData) -> list[int]:
    """The classes a study cares about: those named by ``--scarce`` that end up with fewer training images than
    the largest class; otherwise the smallest training class(es)."""
    counts = np.asarray(data.counts("train"))
    if data.scarcity and data.scarcity.get("rules"):
        named = [data.class_names.index(n) for n in data.scarcity["rules"] if n in data.class_names]
        picked = sorted(c for c in named if counts[c] < counts.max())
        if picked:
            return picked
    return np.flatnonzero(counts == counts.min()).tolist()


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate(cfg: Config, checkpoint: str | Path | None = None, synthetic: str | Path | SyntheticPool | None = None,
             out_dir: str | Path | None = None, log: Callable[[str], None] | None = None) -> Report:
    """Run the downstream study (and, when asked, sample quality and memorisation checks); write the report.

    ``checkpoint``: a generator checkpoint (synthetic images are drawn from it, leakage-guarded); ``synthetic``: an
    augment output folder or ``.npz``, or an in-memory :class:`SyntheticPool` (its provenance is the caller's
    responsibility: no leakage guard); never both. Without either, only ``baseline``, ``oversample`` and
    ``classical`` can run. Returns the :class:`~medgan.evaluation.report.Report` (also written to ``out_dir``).
    """
    from medgan import __version__
    from medgan.data.preprocess import prepare
    from medgan.data.sources import load_dataset
    from medgan.evaluation import metrics as M
    from medgan.evaluation.report import Report

    say = log or (lambda s: None)
    ev = cfg.evaluate
    t_start = time.perf_counter()
    if checkpoint is not None and synthetic is not None:
        raise EvaluationError("pass either --checkpoint or --synthetic, not both")
    arms = expand_arms(list(ev.arms), list(ev.ratios))
    if any(a.synthetic for a in arms) and checkpoint is None and synthetic is None:
        gan = ", ".join(a.name for a in arms if a.synthetic)
        raise EvaluationError(f"arms {gan} need synthetic images: pass --checkpoint RUN/checkpoints/last.pt or "
                              "--synthetic AUGMENT_OUTPUT, or keep only --arms baseline,oversample,classical")
    if ev.seeds < 2:
        raise EvaluationError(f"--seeds {ev.seeds}: confidence intervals and paired tests need at least 2 seeds; "
                              "use --seeds 5 (or 10 for permutation p-values below 0.0625)")
    if ev.epochs < 1 or ev.batch_size < 1 or ev.patience < 1:
        raise EvaluationError("evaluate.epochs, evaluate.batch_size and evaluate.patience must be at least 1")
    if ev.threads > 0:
        torch.set_num_threads(ev.threads)
    device = _device(ev.device)

    d = cfg.data
    data = load_dataset(d.dataset, d.data_dir, d.split_seed, d.download, list(d.scarce))
    for split in ("val", "test"):
        if split not in data.splits or len(data.splits[split]) == 0:
            raise EvaluationError(f"dataset '{data.name}' has no {split} split; evaluation needs real val and test "
                                  "images")
    M.check_test_classes(data.splits["test"].labels, data.class_names, "test")
    real_counts = data.counts("train")
    allocs = {a.name: synthetic_allocation(real_counts, a.ratio) for a in arms if a.synthetic}
    pool: SyntheticPool | None = None
    size = d.size
    need_pool = any(a.synthetic for a in arms) or ((ev.quality or ev.privacy) and (checkpoint or synthetic))
    if checkpoint is not None and need_pool:
        n_pc = ev.n_synthetic or max([100] + [max(v) for v in allocs.values()])
        if ev.filter_confidence > 0:
            n_pc *= ev.filter_pool_factor  # enough images survive the filter
        say(f"drawing {n_pc} synthetic images per class from {checkpoint}")
        pool, size = _load_pool_from_checkpoint(checkpoint, data, size, n_pc, cfg.augment.seed)
    elif isinstance(synthetic, SyntheticPool):
        size = int(synthetic.x.shape[-1])
        check_compatible(list(data.class_names), tuple(synthetic.x.shape[1:]), data, size, "the synthetic pool")
        pool = synthetic
    elif synthetic is not None and need_pool:
        pool, size = _load_pool_from_folder(synthetic, data, size)
    notes: list[str] = []
    if pool is not None and str(pool.source.get("leakage_guard", "")).startswith("unverified"):
        notes.append(f"leakage guard {pool.source['leakage_guard']}")
        say(f"warning: leakage guard {pool.source['leakage_guard']}")
    td = prepare(data, size)
    scarce = scarce_classes(data)
    say(f"dataset {data.name}: train {real_counts}, val {data.counts('val')}, test {data.counts('test')}; "
        f"size {td.size}; scarce classes {[data.class_names[c] for c in scarce]}")

    n_real = len(td.y["train"])
    steps = max(1, math.ceil(n_real / ev.batch_size))
    seeds = list(range(ev.seeds))
    runs: dict[str, list[dict[str, Any]]] = {a.name: [] for a in arms}
    feature_model = None
    filter_info = None
    if pool is not None and ev.filter_confidence > 0:
        say(f"sample filtering: reference classifier on the real training split, keeping synthetic images with "
            f"p(conditioned class) >= {ev.filter_confidence}")
        # the same call as the oversample arm's seed-0 run, so the quality feature space does not change
        feature_model = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"],
                                         classifier="smallcnn", num_classes=data.num_classes, seed=0,
                                         epochs=ev.epochs, patience=ev.patience, batch_size=ev.batch_size,
                                         lr=ev.lr, steps_per_epoch=steps, balanced=True, device=device).model
        pool, filter_info = filter_pool(pool, feature_model, ev.filter_confidence, device, data.class_names,
                                        allocs)
        say(f"  kept per class {filter_info['kept']} of {filter_info['drawn']}")
    arm_seconds: dict[str, float] = {a.name: 0.0 for a in arms}
    for s in seeds:
        for arm in arms:
            x, y = td.x["train"], td.y["train"]
            n_syn = [0] * data.num_classes
            if arm.synthetic:
                assert pool is not None
                sx, sy, msg = _draw_synthetic(pool, allocs[arm.name], seed=s)
                notes += [f"{arm.name} seed {s}: {m}" for m in msg]
                x, y = torch.cat([x, sx]), torch.cat([y, sy])
                n_syn = allocs[arm.name]
            res = train_classifier(x, y, td.x["val"], td.y["val"], classifier=ev.classifier,
                                   num_classes=data.num_classes, seed=s, epochs=ev.epochs, patience=ev.patience,
                                   batch_size=ev.batch_size, lr=ev.lr, steps_per_epoch=steps,
                                   balanced=arm.balanced, classical=arm.classical, device=device)
            prob = predict_proba(res.model, td.x["test"], device).numpy()
            m = M.classification_metrics(td.y["test"].numpy(), prob, data.class_names, scarce)
            runs[arm.name].append({"seed": s, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                                   "val_balanced_accuracy": res.val_balanced_accuracy, "val_loss": res.val_loss,
                                   "train_size": int(len(y)), "synthetic_per_class": list(n_syn),
                                   "seconds": res.seconds, "test": m})
            arm_seconds[arm.name] += res.seconds
            say(f"  seed {s} {arm.name:<22} epochs {res.epochs_run:>3} (best {res.best_epoch:>3})  "
                f"val bal-acc {res.val_balanced_accuracy:.3f}  test bal-acc {m['balanced_accuracy']:.3f}  "
                f"scarce sens {m['scarce_sensitivity']:.3f}  [{res.seconds:.1f}s]")
            if arm.kind == "oversample" and s == seeds[0] and ev.classifier == "smallcnn" and feature_model is None:
                feature_model = res.model  # class-balanced, so its features also separate the scarce classes
            del res

    summary, comparisons, verdicts = summarise(runs, data.class_names, [a.name for a in arms])
    quality = privacy = None
    extra_images: dict[str, Any] = {}
    if pool is not None and (ev.quality or ev.privacy):
        if feature_model is None:
            say("training the reference small CNN on the real training split (feature space for quality checks)")
            feature_model = train_classifier(td.x["train"], td.y["train"], td.x["val"], td.y["val"],
                                             classifier="smallcnn", num_classes=data.num_classes, seed=0,
                                             epochs=ev.epochs, patience=ev.patience, batch_size=ev.batch_size,
                                             lr=ev.lr, steps_per_epoch=steps, balanced=True, device=device).model
        if ev.quality:
            from medgan.evaluation.fidelity import sample_quality

            say("sample quality: Frechet/kernel distances, precision/recall/density/coverage, TSTR, diversity")
            quality = sample_quality(feature_model, td, pool.x, pool.y, device=device, epochs=ev.epochs,
                                     patience=ev.patience, batch_size=ev.batch_size, lr=ev.lr,
                                     steps_per_epoch=steps)
        if ev.privacy:
            from medgan.evaluation.privacy import memorisation_check

            say("memorisation: nearest real training image of every synthetic sample")
            privacy, pairs = memorisation_check(td.x["train"], td.y["train"], pool.x, pool.y,
                                                feature_fn=lambda t: extract_features(feature_model, t, device))
            extra_images["nearest_pairs"] = pairs
        extra_images["real_vs_synthetic"] = (td.x["train"], td.y["train"], pool.x, pool.y)

    info = {
        "medgan_version": __version__,
        "dataset": {"name": data.name, "class_names": list(data.class_names), "spatial_dims": data.spatial_dims,
                    "channels": data.channels, "size": td.size, "train_counts": real_counts,
                    "val_counts": data.counts("val"), "test_counts": data.counts("test"),
                    "train_fingerprint": data.fingerprint(), "scarcity_spec": list(d.scarce),
                    "split_seed": d.split_seed, "scarce_classes": [data.class_names[c] for c in scarce]},
        "synthetic": None if pool is None else {**pool.source, "pool_counts": torch.bincount(
            pool.y, minlength=data.num_classes).tolist(), "allocation": allocs, "filter": filter_info},
        "protocol": {"classifier": ev.classifier, "epochs": ev.epochs, "patience": ev.patience,
                     "batch_size": ev.batch_size, "lr": ev.lr, "optimizer": "Adam", "steps_per_epoch": steps,
                     "seeds": seeds, "selection": "best real-validation balanced accuracy (ties: lower loss)",
                     "budget": BUDGET_POLICY, "allocation_policy": ALLOCATION_POLICY, "test": M.TEST_NAME,
                     "test_note": M.TEST_NOTE, "ci": "95% t-interval over seeds", "device": str(device)},
        "arms": [{"name": a.name, "kind": a.kind, "ratio": a.ratio} for a in arms],
        "runs": runs,
        "summary": summary,
        "comparisons": comparisons,
        "verdicts": verdicts,
        "quality": quality,
        "privacy": privacy,
        "notes": notes,
        "timing": {"total_s": time.perf_counter() - t_start, "per_arm_s": arm_seconds},
        "config": cfg.model_dump(mode="json"),
    }
    report = Report(info, images=extra_images)
    if out_dir is not None:
        report.write(out_dir)
        report.data["timing"]["total_s"] = time.perf_counter() - t_start
        report.write_json(out_dir)
    return report


def summarise(runs: dict[str, list[dict[str, Any]]], class_names: list[str],
              arm_names: list[str]) -> tuple[dict, dict, list[str]]:
    """Mean and CI per arm and metric, paired comparisons against baseline and oversample, and verdicts."""
    from medgan.evaluation import metrics as M

    summary: dict[str, Any] = {}
    for a in arm_names:
        tests = [r["test"] for r in runs[a]]
        summary[a] = {k: M.mean_ci([t[k] for t in tests]) for k in M.SUMMARY_METRICS}
        summary[a]["per_class"] = {
            c: {q: M.mean_ci([t["per_class"][c][q] for t in tests]) for q in ("sensitivity", "specificity",
                                                                                 "precision")}
            for c in class_names
        }
    comparisons: dict[str, Any] = {}
    verdicts: list[str] = []
    refs = [r for r in ("baseline", "oversample") if r in runs]
    for a in arm_names:
        comparisons[a] = {}
        for ref in refs:
            if a in refs and refs.index(a) <= refs.index(ref):  # no baseline-vs-oversample mirror image
                continue
            comp = {k: M.paired_comparison([t["test"][k] for t in runs[a]], [t["test"][k] for t in runs[ref]])
                    for k in M.SUMMARY_METRICS}
            comp["per_class_sensitivity"] = {
                c: M.paired_comparison([t["test"]["per_class"][c]["sensitivity"] for t in runs[a]],
                                       [t["test"]["per_class"][c]["sensitivity"] for t in runs[ref]])
                for c in class_names
            }
            comparisons[a][f"vs_{ref}"] = comp
            if ref == "baseline" or a.startswith("gan"):
                for k in ("scarce_sensitivity", "balanced_accuracy"):
                    verdicts.append(M.verdict(a, ref, k, comp[k]))
    return summary, comparisons, verdicts
