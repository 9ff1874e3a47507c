"""Fitting one classifier: the protocol every classifier medgan trains shares (evaluation arms, the teacher's
members, train-on-synthetic).

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
from medgan.runtime import make_adam

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
    group: int = 1
    """How many members trained together with this one (1: alone, also when a group could not be stacked)."""
    precision: str = "float32"


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


@dataclass
class Member:
    """One run of a group: its seed, training images and labels, and the arm's measures."""

    seed: int
    x: torch.Tensor
    y: torch.Tensor
    balanced: bool = False
    weighted: bool = False
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Applied to every training batch; a transform class with a static ``apply_group(transforms, batches)``
    augments the batches of a whole group at once (same results, one pass)."""


@dataclass(frozen=True)
class Protocol:
    """The shared fitting protocol (module docstring)."""

    classifier: str
    epochs: int
    patience: int
    batch_size: int
    lr: float
    steps_per_epoch: int
    select: str = "balanced_accuracy"
    min_epochs: int = 0
    amp: str = "off"
    """``bf16``: the forward and backward passes of a stacked group (two members or more) run under bfloat16
    autocast; weights, optimiser and every prediction stay float32. A lone run stays float32: on CPU, bf16
    convolutions of these small networks are several times slower than float32 ones when not grouped
    (docs/results.md, evaluation speed)."""
    channels_last: bool = False
    """Channels-last memory format for the network and its batches."""


@dataclass
class _State:
    """One member's progress: its batch stream, loss weights, best validation score and weights."""

    stream: BatchStream
    weight: torch.Tensor | None
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0
    since: int = 0
    stopped_at: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _build(member: Member, protocol: Protocol, num_classes: int, device: torch.device) -> torch.nn.Module:
    from medgan.classify.nets import SeededDropout
    from medgan.runtime import derive_seed

    torch.manual_seed(member.seed)
    model = build_classifier(protocol.classifier, member.x.ndim - 2, member.x.shape[1], num_classes)
    for m in model.modules():
        if isinstance(m, SeededDropout):
            m.generator = torch.Generator().manual_seed(derive_seed(member.seed, 31))
    return model.to(device)


def fit_group(members: list[Member], protocol: Protocol, val_x: torch.Tensor, val_y: torch.Tensor, num_classes: int,
              device: torch.device | str = "cpu", history: bool = False,
              epoch_hook: Callable[[int, torch.nn.Module], dict[str, Any]] | None = None,
              on_epoch: Callable[[int, int], None] | None = None) -> list[RunResult]:
    """Train ``members`` (same architecture, any training sets) together, each exactly as if alone
    (:mod:`medgan.classify.group`); members whose network cannot be stacked, or whose batch size differs (a
    training set smaller than the batch), train one by one. Returns one :class:`RunResult` per member.
    ``on_epoch(epoch, members)`` is called after every epoch with the number of members that trained in it (for
    progress bars)."""
    from medgan.classify.group import stack

    if protocol.select not in SELECTION:
        raise ConfigError(f"unknown selection score '{protocol.select}'; use one of {', '.join(SELECTION)}")
    device = torch.device(device)
    sizes = {min(protocol.batch_size, len(m.y)) for m in members}
    models = [_build(m, protocol, num_classes, device) for m in members]
    net = models[0] if len(members) == 1 else stack(models)
    if net is None or len(sizes) > 1:
        return [r for m in members for r in fit_group([m], protocol, val_x, val_y, num_classes, device, history,
                                                      epoch_hook, on_epoch)]
    if epoch_hook is not None and len(members) > 1:
        raise ValueError("epoch_hook needs a group of one member")
    return _train(net, models, members, protocol, val_x, val_y, num_classes, device, history, epoch_hook, on_epoch)


def _train(net, models, members, protocol, val_x, val_y, num_classes, device, history, epoch_hook,
           on_epoch=None) -> list[RunResult]:
    from medgan.classify.group import unstack

    t0 = time.perf_counter()
    g = len(members)
    fmt = None
    if protocol.channels_last:
        fmt = torch.channels_last if val_x.ndim == 4 else torch.channels_last_3d
        net.to(memory_format=fmt)
    bf16 = protocol.amp == "bf16" and g > 1
    opt = make_adam(net.parameters(), protocol.lr)
    states = [_State(BatchStream(m.y, protocol.batch_size, torch.Generator().manual_seed(m.seed), m.balanced),
                     class_weights(m.y, num_classes).to(device) if m.weighted else None) for m in members]
    val_in = val_x.repeat(1, g, *([1] * (val_x.ndim - 2))) if g > 1 else val_x
    epoch = 0
    for epoch in range(1, protocol.epochs + 1):
        net.train()
        for _ in range(protocol.steps_per_epoch):
            xs, ys = [], []
            for m, st in zip(members, states, strict=True):
                idx = st.stream.next()
                xs.append(m.x[idx])
                ys.append(m.y[idx].to(device))
            xs = _transform(members, xs)
            x = torch.cat(xs, 1).to(device) if g > 1 else xs[0].to(device)
            if fmt is not None:
                x = x.contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = net(x)
            loss = _group_loss(logits.float().view(len(ys[0]), g, -1), ys, [st.weight for st in states])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        probs = _predict_group(net, val_in, g, device)
        for k, st in enumerate(states):
            if st.stopped_at is not None:
                continue
            score = validation_scores(probs[:, k], val_y)
            if history:
                extra = epoch_hook(epoch, net) if epoch_hook else {}
                st.history.append({"epoch": epoch, **score, **extra})
            if _better(score, st.best, protocol.select):
                st.best, st.best_epoch, st.since = score, epoch, 0
                st.best_state = unstack(net, models[0], k, g) if g > 1 else copy.deepcopy(net.state_dict())
            else:
                st.since += 1
                if st.since >= protocol.patience and epoch >= min(protocol.min_epochs, protocol.epochs):
                    st.stopped_at = epoch
        if on_epoch is not None:
            on_epoch(epoch, g)
        if all(st.stopped_at is not None for st in states):
            break
    seconds = (time.perf_counter() - t0) / g
    out = []
    for model, st in zip(models, states, strict=True):  # each member's own module, with its best weights
        model.load_state_dict(st.best_state)
        model.eval()
        best = st.best or {"loss": float("nan"), "auroc": float("nan"), "balanced_accuracy": float("nan")}
        out.append(RunResult(model, st.best_epoch, st.stopped_at or epoch, best["balanced_accuracy"], best["loss"],
                             seconds, best["auroc"], st.history, g, "bf16 autocast" if bf16 else "float32"))
    return out


def _transform(members: list[Member], xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each member's batch transform on its batch; transforms of one type that offer ``apply_group(transforms,
    batches)`` (e.g. the classical augmentation) process the whole group in one pass."""
    ts = [m.batch_transform for m in members]
    if all(t is None for t in ts):
        return xs
    kind = type(ts[0])
    if len(ts) > 1 and all(type(t) is kind for t in ts) and hasattr(kind, "apply_group"):
        return kind.apply_group(ts, xs)
    return [t(x) if t is not None else x for t, x in zip(ts, xs, strict=True)]


def _group_loss(logits: torch.Tensor, ys: list[torch.Tensor], weights: list[torch.Tensor | None]) -> torch.Tensor:
    """The sum over members of each member's (class-weighted) mean cross-entropy; ``logits`` ``(B, G, K)``. One
    vectorised cross-entropy for the whole group instead of ``G`` small ones."""
    b, g, k = logits.shape
    if g == 1:
        return F.cross_entropy(logits[:, 0], ys[0], weight=weights[0])
    y = torch.stack(ys, 1)  # (B, G)
    ce = F.cross_entropy(logits.reshape(b * g, k), y.reshape(-1), reduction="none").view(b, g)
    if all(w is None for w in weights):
        return ce.mean(0).sum()
    w = torch.stack([wt[y[:, i]] if wt is not None else torch.ones(b, device=y.device)
                     for i, wt in enumerate(weights)], 1)  # (B, G): each sample's class weight in its member
    return ((w * ce).sum(0) / w.sum(0)).sum()


@torch.no_grad()
def _predict_group(net: torch.nn.Module, x: torch.Tensor, g: int, device: torch.device,
                   batch_size: int = 512) -> torch.Tensor:
    """Class probabilities ``(N, G, K)`` of every member (``x`` already repeated along channels)."""
    net.eval()
    out = [F.softmax(net(x[i : i + batch_size].to(device)).float().view(len(x[i : i + batch_size]), g, -1),
                     -1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def train_classifier(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
                     classifier: str, num_classes: int, seed: int, epochs: int, patience: int, batch_size: int,
                     lr: float, steps_per_epoch: int, balanced: bool = False, weighted: bool = False,
                     batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     select: str = "balanced_accuracy", min_epochs: int = 0, history: bool = False,
                     epoch_hook: Callable[[int, torch.nn.Module], dict[str, Any]] | None = None,
                     device: torch.device | str = "cpu") -> RunResult:
    """Train one classifier under the shared protocol (module docstring) and return its best weights
    (:func:`fit_group` with one member).

    ``balanced``: class-balanced batches; ``weighted``: class-weighted cross-entropy (:func:`class_weights`);
    ``batch_transform``: applied to every training batch (e.g. the evaluation's classical augmentation, with its
    own seeded generator); ``history``: keep every epoch's validation scores, with what ``epoch_hook(epoch,
    model)`` returns (e.g. test scores, for protocol studies)."""
    protocol = Protocol(classifier, epochs, patience, batch_size, lr, steps_per_epoch, select, min_epochs)
    member = Member(seed, train_x, train_y, balanced, weighted, batch_transform)
    return fit_group([member], protocol, val_x, val_y, num_classes, device, history, epoch_hook)[0]
