"""Sample quality, offline: no downloaded network weights.

The feature space is the penultimate layer of a small CNN trained on the real training split with class-balanced
batches (the ``oversample`` arm's first-seed model when the study runs ``smallcnn`` with that arm; otherwise one
trained the same way), i.e. a domain-specific stand-in for Inception features.
Every distance is printed beside its *floor*, the same distance between the real training and real test images,
because absolute values mean nothing on their own at this sample size.

* :func:`frechet_distance` (FD): Gaussian fits of the two feature clouds.
* :func:`kernel_distance` (KID): unbiased MMD² with the cubic polynomial kernel ``(x·y/d + 1)^3``, averaged over
  random subsets of ``min(100, n_real, n_synthetic)`` samples (small subsets keep it usable on scarce classes).
* :func:`prdc`: precision / recall / density / coverage (Naeem et al. 2020) with k = 5 nearest neighbours, per
  class.
* synthetic-sample accuracy under the real-data classifier (do samples of class c look like class c?),
  train-on-synthetic / test-on-real (TSTR), and within-class diversity (mean pairwise distance) against the
  real data's.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from medgan.data.preprocess import TensorData


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, F)`` feature sets."""
    from scipy import linalg

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    def sqrtm(m: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # singular products are handled below
            r = linalg.sqrtm(m)
        return r[0] if isinstance(r, tuple) else r  # older scipy returns (sqrtm, errest)

    covmean = sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all() or np.abs(np.imag(covmean)).max() > 1e-3:
        # a singular covariance (e.g. a collapsed generator): regularise both, as common FID code does
        eps = 1e-6 * np.eye(len(s1))
        covmean = sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(max(0.0, ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


def kernel_distance(a: np.ndarray, b: np.ndarray, subset_size: int = 100, n_subsets: int = 50,
                    seed: int = 0) -> dict[str, float]:
    """Kernel (KID-style) distance: unbiased MMD² with a cubic polynomial kernel over random subsets."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    m = int(min(subset_size, len(a), len(b)))
    if m < 2:
        return {"mean": float("nan"), "sd": float("nan"), "subset_size": m}
    d = a.shape[1]
    rs = np.random.RandomState(seed)
    vals = []
    for _ in range(n_subsets):
        x = a[rs.choice(len(a), m, replace=False)]
        y = b[rs.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        vals.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                    - 2 * kxy.mean())
    return {"mean": float(np.mean(vals)), "sd": float(np.std(vals)), "subset_size": m}


def _kth_nn_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # index 0 is the point itself


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float] | None:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (k-NN balls); ``None`` when either
    set has fewer than ``k + 1`` samples."""
    if len(real) < k + 1 or len(fake) < k + 1:
        return None
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    rr = _kth_nn_radius(r, k)
    fr = _kth_nn_radius(f, k)
    d = torch.cdist(r, f)  # (n_real, n_fake)
    inside = d <= rr[:, None]
    return {
        "precision": float(inside.any(0).double().mean()),
        "recall": float((d <= fr[None, :]).any(1).double().mean()),
        "density": float(inside.double().sum() / (k * len(f))),
        "coverage": float((d.min(1).values <= rr).double().mean()),
        "k": k,
    }


def mean_pairwise_distance(x: np.ndarray | torch.Tensor, max_n: int = 500, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct samples (a seeded subset of ``max_n`` for large sets)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).reshape(len(x), -1).double()
    if len(t) < 2:
        return float("nan")
    if len(t) > max_n:
        t = t[torch.as_tensor(np.random.RandomState(seed).choice(len(t), max_n, replace=False))]
    d = torch.cdist(t, t)
    n = len(t)
    return float(d.sum() / (n * (n - 1)))


def sample_quality(feature_model, td: TensorData, syn_x: torch.Tensor, syn_y: torch.Tensor, *, device,
                   epochs: int, patience: int, batch_size: int, lr: float, steps_per_epoch: int,
                   k: int = 5) -> dict[str, Any]:
    """All sample-quality numbers of one synthetic set against the real splits (see the module docstring)."""
    from sklearn.metrics import balanced_accuracy_score

    from medgan.evaluation.downstream import extract_features, predict_proba, train_classifier

    names = td.data.class_names
    f_train = extract_features(feature_model, td.x["train"], device).numpy()
    f_test = extract_features(feature_model, td.x["test"], device).numpy()
    f_syn = extract_features(feature_model, syn_x, device).numpy()
    y_train, y_test, y_syn = td.y["train"].numpy(), td.y["test"].numpy(), syn_y.numpy()

    out: dict[str, Any] = {
        "feature_space": f"penultimate layer ({f_train.shape[1]} features) of a smallcnn trained on the real "
                         "training split with class-balanced batches",
        "n_synthetic": int(len(syn_y)),
        "frechet": {"synthetic_vs_train": frechet_distance(f_train, f_syn),
                    "floor_test_vs_train": frechet_distance(f_train, f_test)},
        "kid": {"synthetic_vs_train": kernel_distance(f_train, f_syn),
                "floor_test_vs_train": kernel_distance(f_train, f_test)},
        "per_class": {},
    }
    pred_syn = predict_proba(feature_model, syn_x, device).argmax(1).numpy()
    real_test_pred = predict_proba(feature_model, td.x["test"], device).argmax(1).numpy()
    out["synthetic_accuracy"] = float((pred_syn == y_syn).mean()) if len(y_syn) else float("nan")
    for c, name in enumerate(names):
        rs_, ss_ = y_train == c, y_syn == c
        pc: dict[str, Any] = {"n_real_train": int(rs_.sum()), "n_synthetic": int(ss_.sum())}
        pc["prdc"] = prdc(f_train[rs_], f_syn[ss_], k)
        pc["prdc_floor_test_vs_train"] = prdc(f_train[rs_], f_test[y_test == c], k)
        pc["synthetic_accuracy"] = float((pred_syn[ss_] == c).mean()) if ss_.any() else None
        pc["real_test_sensitivity"] = float((real_test_pred[y_test == c] == c).mean()) if (y_test == c).any() else None
        pc["diversity"] = {
            "feature": {"synthetic": mean_pairwise_distance(f_syn[ss_]), "real": mean_pairwise_distance(f_train[rs_])},
            "pixel": {"synthetic": mean_pairwise_distance(syn_x[torch.as_tensor(ss_)]),
                      "real": mean_pairwise_distance(td.x["train"][torch.as_tensor(rs_)])},
        }
        out["per_class"][name] = pc

    # train on synthetic, test on real (same protocol, early stopping on the real validation split)
    if len(np.unique(y_syn)) == len(names):
        tstr = train_classifier(syn_x, syn_y, td.x["val"], td.y["val"], classifier="smallcnn",
                                num_classes=len(names), seed=0, epochs=epochs, patience=patience,
                                batch_size=batch_size, lr=lr, steps_per_epoch=steps_per_epoch, device=device)
        p = predict_proba(tstr.model, td.x["test"], device).argmax(1).numpy()
        out["tstr"] = {"accuracy": float((p == y_test).mean()),
                       "balanced_accuracy": float(balanced_accuracy_score(y_test, p)),
                       "trtr_accuracy": float((real_test_pred == y_test).mean()),
                       "trtr_balanced_accuracy": float(balanced_accuracy_score(y_test, real_test_pred))}
    else:
        out["tstr"] = None
    return out
