"""How far a relabel rule's confidence can be trusted (beyond the paper), measured on rows it was
not fitted on.

The ``posterior`` and ``latent`` rules fit something on A's validation rows (M_A's weight, the
threshold, EM's anchors) and then act on a confidence (the posterior's largest class probability).
Judged on the same rows, their precision is optimistic. So the rows are cross-fitted: split into
``FOLDS`` folds by a hash of the image path (the same split every run), each fold scored by the rule
fitted on the others; the pooled held-out answers give the precision and coverage at the threshold,
the expected calibration error (ECE) and a reliability table. The rule B is relabeled with is fitted
on all the rows.

With fewer than ``MIN_CROSSFIT_ROWS`` rows a fold's threshold would be judged on too few confident
rows (``posterior.MIN_CONFIDENT_ROWS``), so the estimate falls back to in-sample with a warning (and
the run's tag ``relabel.calibration``). On the synthetic world the same measures are taken on B - subB
against the hidden truth: the gap between the two is what a team cannot see on its own data.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from dcjt.method.reports import Reliability

FOLDS = 2
# Per fold at least 30 rows: at a coverage of one third the fold's threshold is still judged on
# ``posterior.MIN_CONFIDENT_ROWS`` (10) confident rows.
MIN_CROSSFIT_ROWS = 60
BINS = 10  # equal-width confidence bins of the reliability table and the ECE


def folds(table: pd.DataFrame) -> np.ndarray:
    """Fold id (0..FOLDS-1) per row from a CRC-32 of its image path: stable across runs and
    processes (Python's ``hash`` is salted per process)."""
    return np.array([zlib.crc32(str(p).encode()) % FOLDS for p in table["image"]], dtype=int)


def reliability(posterior: np.ndarray, labels: np.ndarray, threshold: float, bins: int = BINS) -> Reliability:
    """Calibration of ``posterior``'s confidence (its largest probability) against ``labels``: per
    equal-width bin the mean confidence, the accuracy and the count; ECE (the count-weighted mean
    of |accuracy - confidence|); precision and coverage of the rows at or above ``threshold``."""
    if len(posterior) == 0:
        return Reliability(rows=0)
    conf = posterior.max(axis=1)
    right = posterior.argmax(axis=1) == labels
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / counts
        accuracy = np.bincount(idx, weights=right.astype(float), minlength=bins) / counts
    seen = counts > 0
    ece = float(np.sum(counts[seen] * np.abs(accuracy[seen] - mean_conf[seen])) / len(conf))
    sure = conf >= threshold
    return Reliability(
        rows=len(conf),
        ece=ece,
        precision=float(right[sure].mean()) if sure.any() else float("nan"),
        coverage=float(sure.mean()),
        bins=[[float(c), float(a), int(n)] for c, a, n in zip(mean_conf[seen], accuracy[seen], counts[seen])],
    )
