"""Class posteriors for stage 3b (beyond the paper): how likely each emotion is for a row of B.

The evidence: the row's valence/arousal under A's per-class Gaussians of pseudo V/A (means,
covariances and class priors: a quadratic discriminant, where the paper's nearest centre uses
means alone) and M_A's class probabilities, combined as ``log p_va + weight x log p_M_A``. The
weight and the threshold a new label must pass are chosen on A's validation rows (labels trusted,
their pseudo V/A and M_A's probabilities), never on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from dcjt.data.labels import M_A_PROB_COLUMNS, NUM_CLASSES
from dcjt.method.gaussian import MIN_COUNT, RIDGE, has_va, va_array
from dcjt.modes import EVIDENCE

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # M_A's weight, chosen on validation (evidence "both")
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.995, 0.01))
MIN_CONFIDENT_ROWS = 10  # a threshold needs this many confident validation rows to be judged
PROB_FLOOR = 1e-6  # M_A's probabilities are floored before the log: one network is never certain


class PosteriorError(ValueError):
    """The evidence a posterior needs is missing (no V/A, no M_A probabilities)."""


@dataclass(frozen=True)
class ClassGaussians:
    """A's pseudo V/A per class: means (7, 2), covariances (7, 2, 2), log priors (-inf: absent)."""

    means: np.ndarray
    covs: np.ndarray
    log_priors: np.ndarray


def fit_class_gaussians(target: pd.DataFrame) -> ClassGaussians:
    """Per-class Gaussians of ``target``'s V/A with class priors; a class with fewer than
    ``MIN_COUNT`` rows borrows the pooled covariance, every covariance gets a small ridge."""
    rows = has_va(target)
    x, labels = va_array(target)[rows], target["label"].to_numpy()[rows]
    if len(x) < MIN_COUNT:
        raise PosteriorError(f"the target table has {len(x)} rows with valence/arousal: too few for class Gaussians")
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    pooled = np.cov(x.T) + RIDGE * np.eye(2)
    means = np.full((NUM_CLASSES, 2), np.nan)
    covs = np.repeat(pooled[None], NUM_CLASSES, axis=0)
    for k in np.flatnonzero(counts):
        means[k] = x[labels == k].mean(axis=0)
        if counts[k] >= MIN_COUNT:
            covs[k] = np.cov(x[labels == k].T) + RIDGE * np.eye(2)
    with np.errstate(divide="ignore"):
        log_priors = np.log(counts / counts.sum())
    return ClassGaussians(means, covs, log_priors)


def va_log_posterior(x: np.ndarray, g: ClassGaussians) -> np.ndarray:
    """(N, 7) log p(class | V/A) under ``g``; absent classes get -inf."""
    out = np.full((len(x), NUM_CLASSES), -np.inf)
    for k in np.flatnonzero(np.isfinite(g.log_priors)):
        d = x - g.means[k]
        inv = np.linalg.inv(g.covs[k])
        mahal = np.einsum("ni,ij,nj->n", d, inv, d)
        out[:, k] = g.log_priors[k] - 0.5 * (mahal + np.log(np.linalg.det(g.covs[k])) + 2 * np.log(2 * np.pi))
    return out - logsumexp(out, axis=1, keepdims=True)


def m_a_log_probs(table: pd.DataFrame) -> np.ndarray:
    """(N, 7) log of M_A's class probabilities (stage 1 stores them), floored at ``PROB_FLOOR``."""
    missing = [c for c in M_A_PROB_COLUMNS if c not in table]
    if missing:
        raise PosteriorError(f"M_A's class probabilities (columns {missing[0]}...) are missing: stage 1 stores them")
    p = np.clip(table[list(M_A_PROB_COLUMNS)].to_numpy(dtype=float), PROB_FLOOR, None)
    return np.log(p / p.sum(axis=1, keepdims=True))


def combine(va_logpost: np.ndarray | None, m_a_logp: np.ndarray | None, evidence: str, weight: float) -> np.ndarray:
    """(N, 7) class posterior from the evidence in use (``both``: V/A + weight x M_A)."""
    if evidence not in EVIDENCE:
        raise ValueError(f"posterior evidence must be one of {EVIDENCE}, got {evidence!r}")
    if weight < 0:
        raise ValueError(f"posterior weight must be >= 0, got {weight}")
    if evidence == "va":
        log = va_logpost
    elif evidence == "m_a":
        log = m_a_logp
    else:
        log = va_logpost + weight * m_a_logp
    return np.exp(log - logsumexp(log, axis=1, keepdims=True))


def evidence_rows(table: pd.DataFrame, evidence: str) -> np.ndarray:
    """Rows that carry the evidence in use (V/A for ``va`` and ``both``; M_A's probabilities)."""
    rows = np.ones(len(table), dtype=bool)
    if evidence in ("va", "both"):
        rows &= has_va(table)
    if evidence in ("m_a", "both"):
        if M_A_PROB_COLUMNS[0] not in table:
            raise PosteriorError("M_A's class probabilities are missing: stage 1 stores them")
        rows &= table[M_A_PROB_COLUMNS[0]].notna().to_numpy()
    return rows


def posterior_of(table: pd.DataFrame, g: ClassGaussians, evidence: str, weight: float) -> np.ndarray:
    """(N, 7) class posterior of every row of ``table`` (which must carry the evidence)."""
    va = va_log_posterior(va_array(table), g) if evidence in ("va", "both") else None
    m_a = m_a_log_probs(table) if evidence in ("m_a", "both") else None
    return combine(va, m_a, evidence, weight)


def choose_weight(val: pd.DataFrame, g: ClassGaussians) -> tuple[float, dict[str, float]]:
    """M_A's weight with the best mean log-likelihood of the trusted labels (a proper score)."""
    labels = val["label"].to_numpy()
    scores = {}
    for w in WEIGHTS:
        post = posterior_of(val, g, "both", w)
        scores[f"{w:g}"] = float(np.mean(np.log(np.clip(post[np.arange(len(labels)), labels], 1e-12, None))))
    best = max(WEIGHTS, key=lambda w: scores[f"{w:g}"])
    return best, scores


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float  # of the confident validation rows at the threshold
    coverage: float  # share of validation rows confident at the threshold
    reached: bool  # the target precision was reached


def choose_threshold(post: np.ndarray, labels: np.ndarray, precision: float) -> ThresholdChoice:
    """The lowest threshold at which the confident rows (max posterior >= threshold) are right at
    least ``precision`` of the time, judged on ``MIN_CONFIDENT_ROWS`` rows or more; when none
    reaches it, 1.0 (nothing is relabeled)."""
    conf, right = post.max(axis=1), post.argmax(axis=1) == labels
    for t in THRESHOLDS:
        mask = conf >= t
        if mask.sum() >= MIN_CONFIDENT_ROWS and right[mask].mean() >= precision:
            return ThresholdChoice(float(t), float(right[mask].mean()), float(mask.mean()), True)
    return ThresholdChoice(1.0, float("nan"), 0.0, False)


def precision_at(post: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """(precision, coverage) of the confident rows at ``threshold``."""
    mask = post.max(axis=1) >= threshold
    right = post.argmax(axis=1) == labels
    return (float(right[mask].mean()) if mask.any() else float("nan")), float(mask.mean()) if len(mask) else 0.0
