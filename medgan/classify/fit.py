"""Fitting one classifier: the protocol every classifier medgan trains shares (evaluation arms, the domain
feature network, train-on-synthetic).

Adam (``lr``), ``steps_per_epoch`` optimisation steps per epoch whatever the size of the training set (so adding
synthetic data buys no extra compute), batches from :class:`~medgan.data.batches.BatchStream` (shuffled, or
class-balanced). After each epoch the model is scored on the validation images; the weights with the best
balanced accuracy (ties: lower validation loss) are kept, and training stops after ``patience`` epochs without
improvement. ``seed`` sets the weight initialisation and the batch order.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medgan.classify.nets import build_classifier
from medgan.data.batches import BatchStream


@dataclass
class RunResult:
    """One trained classifier: its best weights, when they were reached, and the test probabilities."""

    model: torch.nn.Module
    best_epoch: int
    epochs_run: int
    val_balanced_accuracy: float
    val_loss: float
    seconds: float


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
                     lr: float, steps_per_epoch: int, balanced: bool = False,
                     batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     device: torch.device | str = "cpu") -> RunResult:
    """Train one classifier under the shared protocol (module docstring) and return its best weights.

    ``balanced``: class-balanced batches; ``batch_transform``: applied to every training batch (e.g. the
    evaluation's classical augmentation, with its own seeded generator)."""

    t0 = time.perf_counter()
    device = torch.device(device)
    dims = train_x.ndim - 2
    torch.manual_seed(seed)
    model = build_classifier(classifier, dims, train_x.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    stream = BatchStream(train_y, batch_size, torch.Generator().manual_seed(seed), balanced)
    best = (-1.0, math.inf)
    best_state, best_epoch, since = copy.deepcopy(model.state_dict()), 0, 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        for _ in range(steps_per_epoch):
            idx = stream.next()
            xb = train_x[idx]
            if batch_transform is not None:
                xb = batch_transform(xb)
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
