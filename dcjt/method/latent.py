"""A latent true emotion behind noisy annotators (Dawid & Skene 1979; in the spirit of IPA2LT).

Each row of B has a hidden true class and up to three noisy "annotators": B's own label (one
annotator per extra dataset), M_A's prediction and the V/A posterior's argmax. Each annotator has a
confusion matrix (P(says j | truth k)); B has class priors. EM estimates both; rows whose truth
is known (A's validation rows: their label, with M_A's and the V/A posterior's answers) anchor
the confusions of M_A and of the V/A evidence, so B's own confusion is identified from B's rows.

Anchors are A's validation rows, not its training rows: M_A trained on those, so its answers
there would look far better than on any other image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from dcjt.data.labels import NUM_CLASSES

log = logging.getLogger(__name__)

SMOOTHING = 1.0  # Dirichlet pseudo-count per confusion cell and prior class
MISSING = -1


@dataclass
class LatentFit:
    """EM's result: per-row posterior (N, 7), each annotator's confusion (truth x answer), the
    class prior, and how EM ended."""

    posterior: np.ndarray
    confusions: dict[str, np.ndarray]
    prior: np.ndarray
    iterations: int
    converged: bool
    log_likelihood: float

    def posterior_from(self, answers: dict[str, np.ndarray]) -> np.ndarray:
        """(N, 7) posterior of new rows from the answers of some of the fitted annotators."""
        n = len(next(iter(answers.values())))
        logp = np.tile(np.log(self.prior), (n, 1))
        for name, said in answers.items():
            logp += _answer_log_likelihood(np.log(self.confusions[name]), said)
        return np.exp(logp - logsumexp(logp, axis=1, keepdims=True))


def _answer_log_likelihood(log_conf: np.ndarray, said: np.ndarray) -> np.ndarray:
    """(N, 7): log P(answer | truth k) per row; 0 where the annotator gave no answer."""
    out = np.zeros((len(said), NUM_CLASSES))
    seen = said != MISSING
    out[seen] = log_conf[:, said[seen]].T
    return out


def dawid_skene(answers: dict[str, np.ndarray], anchors: np.ndarray, *, max_iter: int = 200, tol: float = 1e-7) -> LatentFit:
    """EM over annotators' ``answers`` (name -> (N,) class ids, ``MISSING`` = no answer) with
    ``anchors`` ((N,) known true class, or ``MISSING``). Stops when the log-likelihood changes by
    less than ``tol`` (relative) or after ``max_iter`` iterations (then warns; the last estimate
    is kept)."""
    if max_iter < 1:
        raise ValueError(f"EM needs at least one iteration, got max_iter={max_iter}")
    n = len(anchors)
    for name, said in answers.items():
        if len(said) != n:
            raise ValueError(f"annotator {name!r}: {len(said)} answers for {n} rows")
        if ((said < MISSING) | (said >= NUM_CLASSES)).any():
            raise ValueError(f"annotator {name!r}: answers must be class ids 0..{NUM_CLASSES - 1} or {MISSING}")
    known = anchors != MISSING
    latent = ~known
    t = np.zeros((n, NUM_CLASSES))
    t[known, anchors[known]] = 1.0
    votes = np.zeros((latent.sum(), NUM_CLASSES))  # start: each latent row's answers as votes
    for said in answers.values():
        s = said[latent]
        votes[np.flatnonzero(s != MISSING), s[s != MISSING]] += 1
    t[latent] = (votes + 0.1) / (votes + 0.1).sum(axis=1, keepdims=True)
    previous, ll, converged, iterations = -np.inf, -np.inf, False, 0
    for it in range(1, max_iter + 1):
        iterations = it
        prior = t[latent].sum(axis=0) + SMOOTHING
        prior /= prior.sum()
        confusions = {}
        for name, said in answers.items():
            counts = np.full((NUM_CLASSES, NUM_CLASSES), SMOOTHING)
            seen = said != MISSING
            np.add.at(counts.T, said[seen], t[seen])  # counts[k, j] += T[i, k] for rows answering j
            confusions[name] = counts / counts.sum(axis=1, keepdims=True)
        logp = np.tile(np.log(prior), (n, 1))
        for name, said in answers.items():
            logp += _answer_log_likelihood(np.log(confusions[name]), said)
        norm = logsumexp(logp, axis=1, keepdims=True)
        t_latent = np.exp(logp[latent] - norm[latent])
        ll = float(norm[latent].sum() + logp[known, anchors[known]].sum())
        t[latent] = t_latent
        if np.isfinite(previous) and abs(ll - previous) <= tol * max(abs(ll), 1.0):
            converged = True
            break
        previous = ll
    if not converged:
        log.warning("latent relabeling: EM did not converge in %d iterations; the last estimate is kept", max_iter)
    return LatentFit(t, confusions, prior, iterations, converged, ll)
