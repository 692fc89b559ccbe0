"""Test-set evaluation from labels and predictions: confusion matrix and per-class scores.

Pure numpy (torch tensors are accepted and converted). Every per-class score is derived from the
confusion matrix, the way sklearn's classification_report does it: precision = diagonal / column
sum, recall = diagonal / row sum, F1 their harmonic mean, support = row sum; a 0/0 counts as 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.data import CLASSES


def _numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def confusion_matrix(labels: Any, predictions: Any, num_classes: int = len(CLASSES)) -> np.ndarray:
    """int64 (num_classes, num_classes) counts: rows are the true class, columns the predicted one."""
    y, p = _numpy(labels).astype(np.int64).ravel(), _numpy(predictions).astype(np.int64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} predictions; expected one prediction per label")
    for name, v in (("labels", y), ("predictions", p)):
        if len(v) and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} range {v.min()}..{v.max()}; expected 0..{num_classes - 1}")
    return np.bincount(y * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    num, den = numerator.astype(np.float64), denominator.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


@dataclass(frozen=True)
class PerClass:
    """One entry per class, in CLASSES order."""

    precision: np.ndarray  # float64
    recall: np.ndarray  # float64
    f1: np.ndarray  # float64
    support: np.ndarray  # int64: true images of the class

    def rows(self, classes: tuple[str, ...] = CLASSES) -> list[dict[str, Any]]:
        """[{"class", "precision", "recall", "f1", "support"}, ...] with plain Python scalars."""
        return [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, self.precision, self.recall, self.f1, self.support)
        ]


def per_class(confusion: np.ndarray) -> PerClass:
    """Precision, recall, F1 and support of every class from a confusion matrix (rows true)."""
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix of shape {cm.shape}; expected a square matrix")
    tp = np.diag(cm)
    precision = _ratio(tp, cm.sum(axis=0))
    recall = _ratio(tp, cm.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return PerClass(precision, recall, f1, cm.sum(axis=1))


def accuracy(confusion: np.ndarray) -> float:
    cm = np.asarray(confusion)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def softmax(logits: Any) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, float64, numerically stable."""
    z = _numpy(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predictions(logits: Any) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class int64 (N,), its softmax probability float64 (N,)) from (N, C) logits."""
    probs = softmax(logits)
    predicted = probs.argmax(axis=1)
    return predicted.astype(np.int64), probs[np.arange(len(probs)), predicted]
