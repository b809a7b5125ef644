"""Per-tumor probabilities from per-slice logits, temperature scaling, and calibration metrics.

A tumor is seen in several sagittal slices. Its log-probabilities are the mean of the
slices' log-softmax outputs weighted by the tumor's area in each slice, renormalized
(a weighted geometric mean of the slice distributions): a slice that cuts the tumor's
edge counts for little. Temperature scaling (Guo et al., ICML 2017) divides every
logit by one scalar ``T`` fitted by minimizing the negative log-likelihood of the
per-tumor probabilities on validation tumors; it changes confidence, never the
argmax of a single slice (an error-free validation set leaves it at 1: see
:func:`fit_temperature`). ECE uses equal-width confidence bins (default 10).
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``[n, K]`` logits (numerically stable)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def combine_slices(slice_logits: np.ndarray, areas: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Log-probabilities ``[K]`` of one tumor from its slices' logits ``[n, K]`` and tumor areas ``[n]``."""
    logp = log_softmax(np.asarray(slice_logits, np.float64) / float(temperature))
    w = np.asarray(areas, np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    mixed = (w[:, None] * logp).sum(axis=0)
    return mixed - np.log(np.exp(mixed - mixed.max()).sum()) - mixed.max()


def tumor_log_probs(tumors, temperature: float = 1.0) -> np.ndarray:
    """``[N, K]`` log-probabilities of ``tumors``, a list of ``(slice_logits, areas)``."""
    return np.stack([combine_slices(z, a, temperature) for z, a in tumors])


def nll(log_probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the targets."""
    return float(-np.mean(log_probs[np.arange(len(targets)), targets]))


def ece(probs: np.ndarray, targets: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: bin-size-weighted mean |accuracy - confidence| over confidence bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def fit_temperature(tumors, targets: np.ndarray, bounds=(0.05, 20.0)) -> float:
    """The temperature minimizing the per-tumor NLL of ``tumors`` (list of ``(slice_logits, areas)``).

    When every tumor is already classified correctly the NLL falls monotonically as the
    temperature goes to 0, so the fit would only sharpen the model towards certainty on
    no evidence; the temperature is then left at 1.
    """
    from scipy.optimize import minimize_scalar

    targets = np.asarray(targets)
    if np.all(tumor_log_probs(tumors, 1.0).argmax(axis=1) == targets):
        return 1.0

    def loss(log_t):
        return nll(tumor_log_probs(tumors, float(np.exp(log_t))), targets)

    result = minimize_scalar(loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x))


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    m = np.zeros((classes, classes), int)
    for t, p in zip(targets, predicted):
        m[int(t), int(p)] += 1
    return m


def summary(log_probs: np.ndarray, targets: np.ndarray, class_names) -> dict:
    """Accuracy, per-class recall, confusion matrix, NLL and ECE of per-tumor log-probabilities."""
    probs = np.exp(log_probs)
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(targets, pred, len(class_names))
    recall = {name: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i, name in enumerate(class_names)}
    return {"tumors": int(len(targets)), "accuracy": float(np.mean(pred == targets)) if len(targets) else None,
            "recall": recall, "confusion_matrix": cm.tolist(), "nll": nll(log_probs, targets),
            "ece": ece(probs, targets)}
