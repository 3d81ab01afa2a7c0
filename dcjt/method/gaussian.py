"""The valence/arousal Gaussians every stage shares: moments per emotion, the linear maps
between two Gaussians (Cholesky, Eq. 1; Bures-Wasserstein optimal transport), the
2-Wasserstein distance and the labeling-criteria audit. Pure numpy/pandas.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, NUM_CLASSES, SUBSET_COLUMN
from dcjt.method.reports import MatrixRecord

log = logging.getLogger(__name__)

MIN_COUNT = 3  # fewer samples than this on either side: fall back to the global map
CONDITION_LIMIT = 1e6  # covariance condition number above which it is shrunk
RIDGE = 1e-4


# --- table helpers --------------------------------------------------------------------------------------
def va_array(table: pd.DataFrame) -> np.ndarray:
    return table[["valence", "arousal"]].to_numpy(dtype="float64")


def has_va(table: pd.DataFrame) -> np.ndarray:
    return table["valence"].notna().to_numpy() & table["arousal"].notna().to_numpy()


def remaining_rows(extra: pd.DataFrame) -> np.ndarray:
    """Rows of B outside the selected subset (all rows when no subset is marked)."""
    if SUBSET_COLUMN not in extra:
        return np.ones(len(extra), dtype=bool)
    return ~extra[SUBSET_COLUMN].fillna(False).to_numpy(dtype=bool)


def label_confusion(a, b) -> np.ndarray:
    m = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(m, (np.asarray(a, dtype=int), np.asarray(b, dtype=int)), 1)
    return m


def matrix_record(m: np.ndarray, rows: str, cols: str) -> MatrixRecord:
    return MatrixRecord(rows=rows, columns=cols, labels=list(EMOTIONS), matrix=m.tolist())


def regularised(cov: np.ndarray, what: str, fallbacks: list) -> np.ndarray:
    """Shrink a singular or near-singular covariance toward its diagonal plus a ridge."""
    eig = np.linalg.eigvalsh(cov)
    if eig.min() > 0 and eig.max() / eig.min() < CONDITION_LIMIT:
        return cov
    shrunk = 0.9 * cov + 0.1 * np.diag(np.diag(cov)) + RIDGE * np.eye(2)
    fallbacks.append({"what": what, "action": "covariance shrunk toward diagonal + ridge", "eigenvalues": eig.tolist()})
    log.warning("%s: near-singular covariance (eigenvalues %s) shrunk toward its diagonal", what, eig)
    return shrunk


def _sqrtm_spd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def cholesky_map(cov_a: np.ndarray, cov_b: np.ndarray) -> np.ndarray:
    """M = P Q^-1 with P P^T = Sigma_A, Q Q^T = Sigma_B (Eq. 1)."""
    p, q = np.linalg.cholesky(cov_a), np.linalg.cholesky(cov_b)
    return p @ np.linalg.inv(q)


def ot_map(cov_a: np.ndarray, cov_b: np.ndarray) -> np.ndarray:
    """Bures-Wasserstein optimal-transport matrix from N(., Sigma_B) to N(., Sigma_A)."""
    b_half = _sqrtm_spd(cov_b)
    b_inv_half = np.linalg.inv(b_half)
    m = b_inv_half @ _sqrtm_spd(b_half @ cov_a @ b_half) @ b_inv_half
    return (m + m.T) / 2


def wasserstein2(mean_a, cov_a, mean_b, cov_b) -> float:
    """2-Wasserstein distance between two Gaussians."""
    a_half = _sqrtm_spd(cov_a)
    cross = _sqrtm_spd(a_half @ cov_b @ a_half)
    d2 = float(np.sum((np.asarray(mean_a) - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * cross))
    return float(np.sqrt(max(d2, 0.0)))


# --- Gaussian statistics ----------------------------------------------------------------------------
def va_stats(table: pd.DataFrame, by_emotion: bool = True, label_column: str = "label") -> pd.DataFrame:
    """Mean, covariance and count of valence/arousal, per emotion (and a ``global`` row).

    Sums of first and second moments per class in one pass each (``bincount``): fast on
    millions of rows.
    """
    has = has_va(table)
    x, labels = va_array(table)[has], table[label_column].to_numpy()[has]
    groups = labels if by_emotion else np.zeros(0, dtype=int)
    rows = []
    if by_emotion:
        n = np.bincount(groups, minlength=NUM_CLASSES).astype(float)
        sums = [
            np.bincount(groups, weights=w, minlength=NUM_CLASSES)
            for w in (x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2, x[:, 0] * x[:, 1])
        ]
        for k, name in enumerate(EMOTIONS):
            rows.append(_moments_row(name, n[k], *(s_[k] for s_ in sums)))
    rows.append(
        _moments_row(
            "global",
            float(len(x)),
            x[:, 0].sum(),
            x[:, 1].sum(),
            (x[:, 0] ** 2).sum(),
            (x[:, 1] ** 2).sum(),
            (x[:, 0] * x[:, 1]).sum(),
        )
    )
    return pd.DataFrame(rows).set_index("emotion")


def _moments_row(name: str, n: float, sv: float, sa: float, svv: float, saa: float, sva: float) -> dict:
    mean_v, mean_a = (sv / n, sa / n) if n else (np.nan, np.nan)
    if n >= 2:
        cov = ((svv - n * mean_v**2) / (n - 1), (sva - n * mean_v * mean_a) / (n - 1), (saa - n * mean_a**2) / (n - 1))
    else:
        cov = (np.nan, np.nan, np.nan)
    return {
        "emotion": name,
        "count": int(n),
        "mean_v": mean_v,
        "mean_a": mean_a,
        "cov_vv": cov[0],
        "cov_va": cov[1],
        "cov_aa": cov[2],
    }


def stats_row(stats: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, int]:
    r = stats.loc[key]
    return (np.array([r.mean_v, r.mean_a]), np.array([[r.cov_vv, r.cov_va], [r.cov_va, r.cov_aa]]), int(r["count"]))


# --- audit ----------------------------------------------------------------------------------------
def criteria_audit(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per emotion (and global): counts, mean shift and 2-Wasserstein distance of A vs B."""
    sa, sb = va_stats(a), va_stats(b)
    rows = []
    for key in list(EMOTIONS) + ["global"]:
        mu_a, cov_a, n_a = stats_row(sa, key)
        mu_b, cov_b, n_b = stats_row(sb, key)
        ok = n_a >= 2 and n_b >= 2
        shift = mu_b - mu_a
        rows.append(
            {
                "emotion": key,
                "count_a": n_a,
                "count_b": n_b,
                "shift_v": shift[0],
                "shift_a": shift[1],
                "shift_norm": float(np.hypot(*shift)),
                "w2": wasserstein2(mu_a, cov_a, mu_b, cov_b) if ok else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("emotion")
