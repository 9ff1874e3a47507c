"""Fitting one classifier: the protocol every classifier medgan trains shares (evaluation arms, the domain
feature network, train-on-synthetic).

Adam (``lr``), ``steps_per_epoch`` optimisation steps per epoch whatever the size of the training set (so adding
synthetic data buys no extra compute), batches from :class:`~medgan.data.batches.BatchStream` (shuffled, or
class-balanced), optionally a class-weighted cross-entropy and a transform of every batch. After each epoch the
model is scored on the validation images; the weights with the best validation score (``select``: ``auroc``,
``loss`` or ``balanced_accuracy``; ties: the earlier epoch) are kept, and training stops after ``patience``
epochs without improvement, but never before ``min_epochs``. ``seed`` sets the weight initialisation and the
batch order.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medgan.classify.nets import build_classifier
from medgan.data.batches import BatchStream
from medgan.errors import ConfigError

#: Validation scores a run can be selected by; higher is better for all but ``loss``.
SELECTION = ("auroc", "loss", "balanced_accuracy")


@dataclass
class RunResult:
    """One trained classifier: its best weights, when they were reached, and its validation scores there."""

    model: torch.nn.Module
    best_epoch: int
    epochs_run: int
    val_balanced_accuracy: float
    val_loss: float
    seconds: float
    val_auroc: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: the validation scores (``loss``, ``auroc``, ``balanced_accuracy``), when asked for."""


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


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy class weights ``N / (K * n_c)`` (1 for every class when balanced): each class contributes
    equally to the loss, as it would with class-balanced batches."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    w = len(labels) / (num_classes * counts.clamp(min=1))
    return w.float()


def validation_scores(prob: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``loss`` (cross-entropy), ``auroc`` (binary: class 1's score; multi-class: macro one-vs-rest; ``nan``
    with a single class present) and ``balanced_accuracy`` of class probabilities ``prob`` for labels ``y``."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    loss = float(F.nll_loss(torch.log(prob.clamp_min(1e-12)), y).item())
    yn, pn = y.numpy(), prob.double().numpy()
    k = pn.shape[1]
    present = np.unique(yn)
    if len(present) < 2:
        return {"loss": loss, "auroc": float("nan"), "balanced_accuracy": float((pn.argmax(1) == yn).mean())}
    if k == 2:
        auroc = float(roc_auc_score(yn, pn[:, 1]))
    else:
        auroc = float(roc_auc_score(yn, pn / pn.sum(1, keepdims=True), multi_class="ovr", average="macro",
                                    labels=list(range(k)))) if len(present) == k else float("nan")
    return {"loss": loss, "auroc": auroc, "balanced_accuracy": float(balanced_accuracy_score(yn, pn.argmax(1)))}


def _better(score: dict[str, float], best: dict[str, float] | None, select: str) -> bool:
    if best is None:
        return True
    a, b = score[select], best[select]
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a < b - 1e-12 if select == "loss" else a > b + 1e-12


def train_classifier(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
                     classifier: str, num_classes: int, seed: int, epochs: int, patience: int, batch_size: int,
                     lr: float, steps_per_epoch: int, balanced: bool = False, weighted: bool = False,
                     batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     select: str = "balanced_accuracy", min_epochs: int = 0, history: bool = False,
                     epoch_hook: Callable[[int, torch.nn.Module], dict[str, Any]] | None = None,
                     device: torch.device | str = "cpu") -> RunResult:
    """Train one classifier under the shared protocol (module docstring) and return its best weights.

    ``balanced``: class-balanced batches; ``weighted``: class-weighted cross-entropy (:func:`class_weights`);
    ``batch_transform``: applied to every training batch (e.g. the evaluation's classical augmentation, with its
    own seeded generator); ``history``: keep every epoch's validation scores, with what ``epoch_hook(epoch,
    model)`` returns (e.g. test scores, for protocol studies)."""
    if select not in SELECTION:
        raise ConfigError(f"unknown selection score '{select}'; use one of {', '.join(SELECTION)}")
    t0 = time.perf_counter()
    device = torch.device(device)
    dims = train_x.ndim - 2
    torch.manual_seed(seed)
    model = build_classifier(classifier, dims, train_x.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stream = BatchStream(train_y, batch_size, torch.Generator().manual_seed(seed), balanced)
    weight = class_weights(train_y, num_classes).to(device) if weighted else None
    best: dict[str, float] | None = None
    best_state, best_epoch, since = copy.deepcopy(model.state_dict()), 0, 0
    epoch = 0
    hist: list[dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        model.train()
        for _ in range(steps_per_epoch):
            idx = stream.next()
            xb = train_x[idx]
            if batch_transform is not None:
                xb = batch_transform(xb)
            loss = F.cross_entropy(model(xb.to(device)), train_y[idx].to(device), weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        score = validation_scores(predict_proba(model, val_x, device), val_y)
        if history:
            hist.append({"epoch": epoch, **score, **(epoch_hook(epoch, model) if epoch_hook else {})})
        if _better(score, best, select):
            best, best_epoch, since = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
            if since >= patience and epoch >= min_epochs:
                break
    model.load_state_dict(best_state)
    model.eval()
    best = best or {"loss": float("nan"), "auroc": float("nan"), "balanced_accuracy": float("nan")}
    return RunResult(model, best_epoch, epoch, best["balanced_accuracy"], best["loss"], time.perf_counter() - t0,
                     best["auroc"], hist)
