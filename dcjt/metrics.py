"""Classification and valence/arousal metrics (definitions as in face-analysis/emonet)."""

from __future__ import annotations

import numpy as np

from dcjt.labels import EMOTIONS, NUM_CLASSES


def confusion_matrix(y_true, y_pred, n: int = NUM_CLASSES) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return m


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def mean_class_accuracy(y_true, y_pred) -> float:
    """Mean of per-class recall over the classes present in ``y_true``."""
    m = confusion_matrix(y_true, y_pred)
    support = m.sum(axis=1)
    present = support > 0
    return float((np.diag(m)[present] / support[present]).mean()) if present.any() else float("nan")


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean F1 over classes present in truth or prediction."""
    m = confusion_matrix(y_true, y_pred)
    tp = np.diag(m).astype(float)
    fp, fn = m.sum(axis=0) - tp, m.sum(axis=1) - tp
    used = (tp + fp + fn) > 0
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=(2 * tp + fp + fn) > 0)
    return float(f1[used].mean()) if used.any() else float("nan")


def rmse(y, y_hat) -> float:
    y, y_hat = np.asarray(y, float), np.clip(np.asarray(y_hat, float), -1, 1)
    return float(np.sqrt(np.mean((y - y_hat) ** 2)))


def pcc(y, y_hat) -> float:
    y, y_hat = np.asarray(y, float), np.clip(np.asarray(y_hat, float), -1, 1)
    if y.std() == 0 or y_hat.std() == 0:
        return float("nan")
    return float(np.corrcoef(y, y_hat)[0, 1])


def ccc(y, y_hat) -> float:
    """Concordance correlation coefficient with population standard deviations."""
    y, y_hat = np.asarray(y, float), np.clip(np.asarray(y_hat, float), -1, 1)
    sy, sh = y.std(), y_hat.std()
    denom = sy**2 + sh**2 + (y.mean() - y_hat.mean()) ** 2
    if denom == 0:
        return float("nan")
    rho = pcc(y, y_hat) if sy > 0 and sh > 0 else 0.0
    return float(2 * rho * sy * sh / denom)


def sagr(y, y_hat) -> float:
    y, y_hat = np.asarray(y, float), np.clip(np.asarray(y_hat, float), -1, 1)
    return float(np.mean(np.sign(y) == np.sign(y_hat)))


def classification_report(y_true, y_pred) -> dict:
    return {
        "accuracy": accuracy(y_true, y_pred),
        "mean_class_accuracy": mean_class_accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
    }


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


def confusion_frame(y_true, y_pred):
    import pandas as pd

    return pd.DataFrame(confusion_matrix(y_true, y_pred), index=list(EMOTIONS), columns=list(EMOTIONS))
