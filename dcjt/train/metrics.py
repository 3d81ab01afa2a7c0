"""Classification metrics (scikit-learn) and valence/arousal metrics (as in face-analysis/emonet).

scikit-learn has no CCC or SAGR, so those, and the clipped V/A report, are written here.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from dcjt.data.labels import NUM_CLASSES, majority_rate


def confusion_matrix(y_true, y_pred, n: int = NUM_CLASSES) -> np.ndarray:
    """Counts (true class x predicted class) over all ``n`` classes, absent ones included."""
    return skm.confusion_matrix(np.asarray(y_true, int), np.asarray(y_pred, int), labels=list(range(n)))


def classification_report(y_true, y_pred) -> dict:
    """Accuracy, mean per-class recall over classes present in truth, macro-F1 over classes in
    truth or prediction."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if len(y_true) == 0:
        nan = float("nan")
        return {"accuracy": nan, "mean_class_accuracy": nan, "macro_f1": nan, "kappa": nan, "majority_rate": nan}
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "mean_class_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "kappa": kappa(y_true, y_pred),
        "majority_rate": majority_rate(y_true),
    }


def kappa(y_true, y_pred) -> float:
    """Cohen's kappa: agreement beyond what the two label frequencies give by chance (a model that
    always predicts one class scores 0, however frequent that class)."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    observed = float(np.mean(y_true == y_pred))
    p_true = np.bincount(y_true, minlength=NUM_CLASSES) / len(y_true)
    p_pred = np.bincount(y_pred, minlength=NUM_CLASSES) / len(y_pred)
    expected = float(p_true @ p_pred)
    return 0.0 if expected >= 1 else (observed - expected) / (1 - expected)


def _clipped(y, y_hat) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(y, float), np.clip(np.asarray(y_hat, float), -1, 1)


def rmse(y, y_hat) -> float:
    y, y_hat = _clipped(y, y_hat)
    return float(np.sqrt(np.mean((y - y_hat) ** 2)))


def pcc(y, y_hat) -> float:
    y, y_hat = _clipped(y, y_hat)
    if y.std() == 0 or y_hat.std() == 0:
        return float("nan")
    return float(np.corrcoef(y, y_hat)[0, 1])


def ccc(y, y_hat) -> float:
    """Concordance correlation coefficient with population standard deviations."""
    y, y_hat = _clipped(y, y_hat)
    sy, sh = y.std(), y_hat.std()
    denom = sy**2 + sh**2 + (y.mean() - y_hat.mean()) ** 2
    if denom == 0:
        return float("nan")
    rho = pcc(y, y_hat) if sy > 0 and sh > 0 else 0.0
    return float(2 * rho * sy * sh / denom)


def sagr(y, y_hat) -> float:
    y, y_hat = _clipped(y, y_hat)
    return float(np.mean(np.sign(y) == np.sign(y_hat)))


def va_report(va_true, va_pred) -> dict:
    """RMSE/PCC/CCC/SAGR per dimension over rows whose truth is known."""
    va_true, va_pred = np.asarray(va_true, float), np.asarray(va_pred, float)
    known = ~np.isnan(va_true).any(axis=1)
    out = {}
    if known.sum() < 2:
        return out
    for j, dim in enumerate(("valence", "arousal")):
        t, p = va_true[known, j], va_pred[known, j]
        out.update({f"{dim}_rmse": rmse(t, p), f"{dim}_pcc": pcc(t, p), f"{dim}_ccc": ccc(t, p), f"{dim}_sagr": sagr(t, p)})
    return out
