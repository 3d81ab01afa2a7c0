"""DCJT stages 1-3 as vectorised functions over label tables (paper sections 3.2-3.4).

Public interface (used by the pipeline and in notebooks alike)::

    select_subset(extra, predictions)        -> (extra_marked, stats)
    va_stats(table, by_emotion=True)         -> DataFrame of Gaussian statistics
    map_continuous(extra, target, mode)      -> (extra_mapped, stats)
    relabel_nearest(extra, target)           -> (extra_relabeled, stats)
    criteria_audit(a, b)                     -> DataFrame

``target`` is A's table carrying its pseudo valence/arousal; only rows of ``extra`` outside the
selected subset (``in_subset`` False) are mapped and relabeled. Statistics records are plain
JSON-able dicts (lists, floats, ints) meant for MLflow.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from dcjt.labels import EMOTIONS, NUM_CLASSES, SUBSET_COLUMN

log = logging.getLogger(__name__)

MAPPING_MODES = ("none", "global", "emotion", "emotion_ot")
B_STATS_SOURCES = ("all", "remaining")
MIN_COUNT = 3  # fewer samples than this on either side: fall back to the global map
CONDITION_LIMIT = 1e6  # covariance condition number above which it is shrunk
RIDGE = 1e-4


# --- helpers --------------------------------------------------------------------------------------
def _va(table: pd.DataFrame) -> np.ndarray:
    return table[["valence", "arousal"]].to_numpy(dtype="float64")


def _has_va(table: pd.DataFrame) -> np.ndarray:
    return table["valence"].notna().to_numpy() & table["arousal"].notna().to_numpy()


def _remaining(extra: pd.DataFrame) -> np.ndarray:
    """Rows of B outside the selected subset (all rows when no subset is marked)."""
    if SUBSET_COLUMN not in extra:
        return np.ones(len(extra), dtype=bool)
    return ~extra[SUBSET_COLUMN].fillna(False).to_numpy(dtype=bool)


def _confusion(a, b) -> np.ndarray:
    m = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(m, (np.asarray(a, dtype=int), np.asarray(b, dtype=int)), 1)
    return m


def _matrix_frame(m: np.ndarray, rows: str, cols: str) -> dict:
    return {"rows": rows, "columns": cols, "labels": list(EMOTIONS), "matrix": m.tolist()}


def _regularised(cov: np.ndarray, what: str, fallbacks: list) -> np.ndarray:
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


# --- stage 1: subset selection ----------------------------------------------------------------------
def select_subset(extra: pd.DataFrame, predictions) -> tuple[pd.DataFrame, dict]:
    """Mark rows of B where M_A's prediction equals B's human label (``in_subset``)."""
    pred = np.asarray(predictions.to_numpy() if isinstance(predictions, pd.Series) else predictions)
    if pred.ndim == 2:  # class probabilities
        pred = pred.argmax(axis=1)
    if len(pred) != len(extra):
        raise ValueError(f"select_subset: {len(pred)} predictions for {len(extra)} rows of the extra table")
    if len(pred) and (pred.min() < 0 or pred.max() >= NUM_CLASSES):
        raise ValueError(f"select_subset: predictions must be class ids 0..{NUM_CLASSES - 1}")
    labels = extra["label"].to_numpy()
    keep = pred.astype(int) == labels
    out = extra.copy()
    out[SUBSET_COLUMN] = keep
    agreement = _confusion(labels, pred)
    totals = np.bincount(labels, minlength=NUM_CLASSES)
    kept = np.bincount(labels[keep], minlength=NUM_CLASSES)
    stats = {
        "n_rows": int(len(out)),
        "n_kept": int(keep.sum()),
        "kept_fraction": float(keep.mean()) if len(keep) else 0.0,
        "kept_per_class": dict(zip(EMOTIONS, kept.tolist())),
        "total_per_class": dict(zip(EMOTIONS, totals.tolist())),
        "agreement": _matrix_frame(agreement, "extra label", "M_A prediction"),
    }
    return out, stats


# --- Gaussian statistics ----------------------------------------------------------------------------
def va_stats(table: pd.DataFrame, by_emotion: bool = True, label_column: str = "label") -> pd.DataFrame:
    """Mean, covariance and count of valence/arousal, per emotion (and a ``global`` row).

    Sums of first and second moments per class in one pass each (``bincount``): fast on
    millions of rows.
    """
    has = _has_va(table)
    x, labels = _va(table)[has], table[label_column].to_numpy()[has]
    groups = labels if by_emotion else np.zeros(0, dtype=int)
    rows = []
    if by_emotion:
        n = np.bincount(groups, minlength=NUM_CLASSES).astype(float)
        sums = [np.bincount(groups, weights=w, minlength=NUM_CLASSES) for w in (x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2, x[:, 0] * x[:, 1])]
        for k, name in enumerate(EMOTIONS):
            rows.append(_moments_row(name, n[k], *(s_[k] for s_ in sums)))
    rows.append(_moments_row("global", float(len(x)), x[:, 0].sum(), x[:, 1].sum(), (x[:, 0] ** 2).sum(), (x[:, 1] ** 2).sum(),
                             (x[:, 0] * x[:, 1]).sum()))  # fmt: skip
    return pd.DataFrame(rows).set_index("emotion")


def _moments_row(name: str, n: float, sv: float, sa: float, svv: float, saa: float, sva: float) -> dict:
    mean_v, mean_a = (sv / n, sa / n) if n else (np.nan, np.nan)
    if n >= 2:
        cov = ((svv - n * mean_v**2) / (n - 1), (sva - n * mean_v * mean_a) / (n - 1), (saa - n * mean_a**2) / (n - 1))
    else:
        cov = (np.nan, np.nan, np.nan)
    return {"emotion": name, "count": int(n), "mean_v": mean_v, "mean_a": mean_a, "cov_vv": cov[0], "cov_va": cov[1], "cov_aa": cov[2]}


def _stats_row(stats: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, int]:
    r = stats.loc[key]
    return (np.array([r.mean_v, r.mean_a]), np.array([[r.cov_vv, r.cov_va], [r.cov_va, r.cov_aa]]), int(r["count"]))


# --- stage 3a: continuous-label mapping -----------------------------------------------------------
def map_continuous(
    extra: pd.DataFrame,
    target: pd.DataFrame,
    mode: str = "emotion",
    *,
    b_stats_from: str = "all",
) -> tuple[pd.DataFrame, dict]:
    """Map valence/arousal of B - subB onto A's (pseudo) per-emotion Gaussians.

    ``mode``: none | global (Algorithm 1) | emotion (Algorithm 2) | emotion_ot (Bures-Wasserstein
    map per emotion). ``b_stats_from``: statistics of B from ``all`` of B (the paper's reading)
    or from the ``remaining`` rows only. Mapped values are clipped to [-1, 1] and counted.
    """
    if mode not in MAPPING_MODES:
        raise ValueError(f"unknown mapping mode {mode!r}; choose from {MAPPING_MODES}")
    if b_stats_from not in B_STATS_SOURCES:
        raise ValueError(f"b_stats_from must be one of {B_STATS_SOURCES}, got {b_stats_from!r}")
    out = extra.copy()
    rows = _remaining(extra) & _has_va(extra)
    fallbacks: list[dict] = []
    stats: dict = {"mode": mode, "b_stats_from": b_stats_from, "n_mapped": 0, "n_clipped": 0,
                   "transforms": {}, "fallbacks": fallbacks}  # fmt: skip
    if mode == "none" or not rows.any():
        return out, stats

    source = extra[_has_va(extra) & (_remaining(extra) if b_stats_from == "remaining" else True)]
    a_stats, b_stats = va_stats(target), va_stats(source)
    stats["target_stats"] = a_stats.reset_index().to_dict("records")
    stats["extra_stats"] = b_stats.reset_index().to_dict("records")
    builder = ot_map if mode == "emotion_ot" else cholesky_map

    def transform(key_a: str, key_b: str, what: str):
        mu_a, cov_a, n_a = _stats_row(a_stats, key_a)
        mu_b, cov_b, n_b = _stats_row(b_stats, key_b)
        if n_a < MIN_COUNT or n_b < MIN_COUNT:
            return None, (n_a, n_b)
        cov_a = _regularised(cov_a, f"{what} target", fallbacks)
        cov_b = _regularised(cov_b, f"{what} extra", fallbacks)
        return (builder(cov_a, cov_b), mu_a, mu_b), (n_a, n_b)

    glob, counts = transform("global", "global", "global")
    if glob is None:
        fallbacks.append({"what": "global", "action": "identity (too few samples)", "counts": list(counts)})
        log.warning("global map: too few samples (target %d, extra %d); labels left unchanged", *counts)
        return out, stats

    x = _va(extra)
    mapped = x.copy()
    labels = extra["label"].to_numpy()
    keys = list(EMOTIONS) if mode in ("emotion", "emotion_ot") else ["global"]
    for key in keys:
        sel = rows & (labels == EMOTIONS.index(key)) if key != "global" else rows
        if not sel.any():
            continue
        t, counts = (glob, None) if key == "global" else transform(key, key, key)
        if t is None:
            fallbacks.append({"what": key, "action": "global map used", "counts": list(counts),
                              "reason": "class absent from target" if counts[0] == 0 else f"fewer than {MIN_COUNT} samples"})  # fmt: skip
            log.warning("class %s: %s samples (target, extra); global map used", key, counts)
            t = glob
        m, mu_a, mu_b = t
        mapped[sel] = (x[sel] - mu_b) @ m.T + mu_a
        stats["transforms"][key] = {"matrix": m.tolist(), "mu_target": mu_a.tolist(), "mu_extra": mu_b.tolist(),
                                    "n": int(sel.sum()), "fallback": t is glob and key != "global"}  # fmt: skip
    clipped = rows & ((np.abs(mapped) > 1).any(axis=1))
    mapped = np.clip(mapped, -1.0, 1.0)
    out["valence"] = np.where(rows, mapped[:, 0], x[:, 0])
    out["arousal"] = np.where(rows, mapped[:, 1], x[:, 1])
    out["va_origin"] = out["va_origin"].mask(rows, "mapped")
    stats["n_mapped"], stats["n_clipped"] = int(rows.sum()), int(clipped.sum())
    return out, stats


# --- stage 3b: relabeling by nearest class centre -------------------------------------------------
def class_centres(target: pd.DataFrame) -> np.ndarray:
    """Mean pseudo valence/arousal of A per class (Eq. 2); NaN rows for absent classes."""
    has = _has_va(target)
    x, labels = _va(target)[has], target["label"].to_numpy()[has]
    sums = np.zeros((NUM_CLASSES, 2))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def relabel_nearest(extra: pd.DataFrame, target: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """New discrete label of B - subB = nearest class centre of A in valence/arousal (Eq. 3)."""
    centres = class_centres(target)
    present = ~np.isnan(centres).any(axis=1)
    if not present.any():
        raise ValueError("relabel_nearest: the target table has no valence/arousal to compute class centres")
    out = extra.copy()
    rows = _remaining(extra) & _has_va(extra)
    old = extra["label"].to_numpy()
    new = old.copy()
    if rows.any():
        x = _va(extra)[rows]
        best, best_d = np.full(len(x), -1), np.full(len(x), np.inf)
        for k in np.flatnonzero(present):  # one pass per class: no (N, 7, 2) temporary
            d = (x[:, 0] - centres[k, 0]) ** 2 + (x[:, 1] - centres[k, 1]) ** 2
            closer = d < best_d
            best[closer], best_d[closer] = k, d[closer]
        new[rows] = best
    changed = new != old
    out["label"] = new.astype("int64")
    out["label_origin"] = out["label_origin"].mask(changed, "relabeled")
    stats = {
        "n_considered": int(rows.sum()),
        "n_changed": int(changed.sum()),
        "changed_fraction": float(changed[rows].mean()) if rows.any() else 0.0,
        "centres": {EMOTIONS[i]: centres[i].tolist() for i in np.flatnonzero(present)},
        "absent_classes": [EMOTIONS[i] for i in np.flatnonzero(~present)],
        "transition": _matrix_frame(_confusion(old[rows], new[rows]), "old label", "new label"),
    }
    return out, stats


# --- audit ----------------------------------------------------------------------------------------
def criteria_audit(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per emotion (and global): counts, mean shift and 2-Wasserstein distance of A vs B."""
    sa, sb = va_stats(a), va_stats(b)
    rows = []
    for key in list(EMOTIONS) + ["global"]:
        mu_a, cov_a, n_a = _stats_row(sa, key)
        mu_b, cov_b, n_b = _stats_row(sb, key)
        ok = n_a >= 2 and n_b >= 2
        shift = mu_b - mu_a
        rows.append({
            "emotion": key, "count_a": n_a, "count_b": n_b,
            "shift_v": shift[0], "shift_a": shift[1], "shift_norm": float(np.hypot(*shift)),
            "w2": wasserstein2(mu_a, cov_a, mu_b, cov_b) if ok else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("emotion")
