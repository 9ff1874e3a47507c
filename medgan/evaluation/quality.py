"""Sample quality of a synthetic set against the real splits, offline: no downloaded network weights.

The feature space is the penultimate layer of a small CNN trained on the real training split with class-balanced
batches (the ``oversample`` arm's first-seed model when the study runs ``smallcnn`` with that arm; otherwise one
trained the same way), i.e. a domain-specific stand-in for Inception features.
Every distance is printed beside its *floor*, the same distance between the real training and real test images,
because absolute values mean nothing on their own at this sample size.

The measures themselves live in :mod:`medgan.distances`: Fréchet distance (FD), kernel distance (KID),
precision / recall / density / coverage (k = 5 nearest neighbours, per class) and diversity; here they are
computed in the feature space, per class, beside their floors, together with

* synthetic-sample accuracy under the real-data classifier (do samples of class c look like class c?),
  train-on-synthetic / test-on-real (TSTR), and within-class diversity (mean pairwise distance) against the
  real data's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medgan.distances import frechet_distance, kernel_distance, mean_pairwise_distance, prdc

if TYPE_CHECKING:
    from medgan.data.preprocess import TensorData


def sample_quality(feature_model, td: TensorData, syn_x: torch.Tensor, syn_y: torch.Tensor, *, device,
                   epochs: int, patience: int, batch_size: int, lr: float, steps_per_epoch: int,
                   k: int = 5) -> dict[str, Any]:
    """All sample-quality numbers of one synthetic set against the real splits (see the module docstring)."""
    from sklearn.metrics import balanced_accuracy_score

    from medgan.classify.fit import extract_features, predict_proba, train_classifier

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
