"""Stage 3b (paper 3.4, Eqs. 2-3): relabel B - subB by the class centres of A.

- ``nearest`` (the paper): the new label is the class whose centre of A's pseudo valence/arousal
  is nearest.
- ``gated`` (beyond the paper): valence/arousal alone cannot separate fear, anger, surprise and
  disgust, so a label changes only where the nearest centre is clearly nearer than the original
  class's centre (``distance_new < gate_ratio x distance_old``) and, if ``gate_m_a``, M_A's
  prediction for the image agrees with the new label.
- ``posterior`` (beyond the paper): a class posterior from the row's V/A under A's per-class
  Gaussians and M_A's class probabilities (``dcjt.method.posterior``); a label changes where the
  posterior of the new class passes a threshold. Weight and threshold are chosen on A's
  validation rows unless the config sets them.
- ``latent`` (beyond the paper): a latent true class behind B's label, M_A and the V/A posterior
  (Dawid-Skene EM anchored on A's validation rows, ``dcjt.method.latent``); a label changes where
  the latent posterior passes the threshold (default: the target precision: it is calibrated).
- ``oracle`` (synthetic world only): every row of B gets its hidden true emotion (the ceiling).

The posterior and latent rules read B's V/A as the table holds it, or M_B's prediction for B's
image (``rule.va``: ``predicted``, the instrument of A's pseudo V/A), and their precision is
measured on A's validation rows they were not fitted on (``dcjt.method.calibration``).

Rows of B - subB whose posterior passes no threshold are "unresolved": they keep their label
(``keep``), train on the posterior as a soft target (``soft``) or drop their discrete term
(``ignore``) (``SOFT_COLUMNS``; stage 4's loss reads them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import dcjt.method.calibration as calibration
import dcjt.method.latent as latent_model
import dcjt.method.posterior as post
from dcjt.data.labels import AUDIT_COLUMN, EMOTIONS, M_A_COLUMN, M_B_VA_COLUMNS, NUM_CLASSES, SOFT_COLUMNS, split_rows
from dcjt.method.calibration import reliability
from dcjt.method.gaussian import has_va, label_confusion, matrix_record, remaining_rows, va_array
from dcjt.method.reports import LatentRecord, PosteriorRecord, RelabelReport, Reliability
from dcjt.method.truth import relabel_truth
from dcjt.modes import RelabelRule

# Every relabel mode (``dcjt.modes.RELABEL_MODES``) and the stages whose output it reads, so their
# health gates apply to a row that uses it (``dcjt.method.health.stages_used``): a new mode must
# say what it reads here (a unit test fails otherwise).
RELABEL_READS: dict[str, frozenset[str]] = {
    "none": frozenset(),
    "nearest": frozenset({"pseudo"}),  # A's class centres of pseudo V/A
    "gated": frozenset({"pseudo", "subset"}),  # the centres and M_A's prediction
    "posterior": frozenset({"pseudo", "subset"}),  # A's pseudo V/A Gaussians and M_A's probabilities
    "latent": frozenset({"pseudo", "subset"}),  # B's label, M_A and the V/A posterior
    "oracle": frozenset(),  # the synthetic world's truth: no stage to trust
}


def class_centres(target: pd.DataFrame) -> np.ndarray:
    """Mean pseudo valence/arousal of A per class (Eq. 2); NaN rows for absent classes."""
    has = has_va(target)
    x, labels = va_array(target)[has], target["label"].to_numpy()[has]
    sums = np.zeros((NUM_CLASSES, 2))
    np.add.at(sums, labels, x)
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def _squared_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N, 7) squared distances to each class centre; inf for absent classes."""
    d = np.full((len(x), NUM_CLASSES), np.inf)
    for k in np.flatnonzero(~np.isnan(centres).any(axis=1)):  # one pass per class: no (N, 7, 2) temporary
        d[:, k] = (x[:, 0] - centres[k, 0]) ** 2 + (x[:, 1] - centres[k, 1]) ** 2
    return d


def _with_labels(
    extra: pd.DataFrame,
    new: np.ndarray,
    rows: np.ndarray,
    centres: np.ndarray,
    mode: str,
    soft: np.ndarray | None = None,
    resolved: np.ndarray | None = None,
    **settings,
) -> tuple[pd.DataFrame, RelabelReport]:
    old = extra["label"].to_numpy()
    changed = new != old
    out = extra.copy()
    out["label"] = new.astype("int64")
    out["label_origin"] = out["label_origin"].mask(changed, "relabeled")
    if soft is not None:
        has = ~np.isnan(soft).any(axis=1)
        for k, col in enumerate(SOFT_COLUMNS):
            out[col] = soft[:, k]
        ignored = has & (np.nansum(soft, axis=1) == 0)
        out["label_origin"] = out["label_origin"].mask(has & ~ignored, "soft").mask(ignored, "ignored")
        settings.update(n_soft=int((has & ~ignored).sum()), n_ignored=int(ignored.sum()))
    if resolved is not None:
        settings["n_resolved"] = int(resolved.sum())
    present = ~np.isnan(centres).any(axis=1)
    report = RelabelReport(
        mode=mode,
        enabled=True,
        n_considered=int(rows.sum()),
        n_changed=int(changed.sum()),
        changed_fraction=float(changed[rows].mean()) if rows.any() else 0.0,
        centres={EMOTIONS[i]: centres[i].tolist() for i in np.flatnonzero(present)},
        absent_classes=[EMOTIONS[i] for i in np.flatnonzero(~present)],
        transition=matrix_record(label_confusion(old[rows], new[rows]), "old label", "new label"),
        truth=relabel_truth(extra, out, resolved),
        **settings,
    )
    return out, report


def _centres_or_fail(target: pd.DataFrame, who: str) -> np.ndarray:
    centres = class_centres(target)
    if np.isnan(centres).all():
        raise ValueError(f"{who}: the target table has no valence/arousal to compute class centres")
    return centres


def relabel_nearest(extra: pd.DataFrame, target: pd.DataFrame) -> tuple[pd.DataFrame, RelabelReport]:
    """New discrete label of B - subB = nearest class centre of A in valence/arousal (Eq. 3)."""
    centres = _centres_or_fail(target, "relabel_nearest")
    rows = remaining_rows(extra) & has_va(extra)
    new = extra["label"].to_numpy().copy()
    if rows.any():
        new[rows] = _squared_distances(va_array(extra)[rows], centres).argmin(axis=1)
    return _with_labels(extra, new, rows, centres, "nearest", resolved=rows)  # it decides every row it considers


def relabel_gated(
    extra: pd.DataFrame, target: pd.DataFrame, ratio: float = 0.8, require_m_a: bool = True
) -> tuple[pd.DataFrame, RelabelReport]:
    """Relabel only where V/A can decide: the nearest centre is nearer than ``ratio`` x the original
    class's centre (distances, not squared) and, with ``require_m_a``, M_A predicted the new label."""
    if not 0 < ratio <= 1:
        raise ValueError(f"gate ratio must be in (0, 1], got {ratio}")
    if require_m_a and M_A_COLUMN not in extra:
        raise ValueError(f"relabel_gated: column {M_A_COLUMN!r} (M_A's prediction, set by stage 1) is missing")
    centres = _centres_or_fail(target, "relabel_gated")
    rows = remaining_rows(extra) & has_va(extra)
    old = extra["label"].to_numpy()
    new = old.copy()
    vetoed = {"by_distance": 0, "by_m_a": 0}
    resolved = np.zeros(len(extra), dtype=bool)  # the rows the gate let V/A decide: changed or confirmed
    if rows.any():
        d = _squared_distances(va_array(extra)[rows], centres)
        best = d.argmin(axis=1)
        d_old = d[np.arange(len(d)), old[rows]]
        clear = np.sqrt(d[np.arange(len(d)), best]) < ratio * np.sqrt(d_old)
        agree = extra[M_A_COLUMN].to_numpy()[rows] == best if require_m_a else np.ones(len(best), bool)
        wants = best != old[rows]
        vetoed = {"by_distance": int((wants & ~clear).sum()), "by_m_a": int((wants & clear & ~agree).sum())}
        new[rows] = np.where(clear & agree, best, old[rows])
        resolved[np.flatnonzero(rows)[clear & agree]] = True
    return _with_labels(
        extra, new, rows, centres, "gated", resolved=resolved, gate_ratio=ratio, gate_m_a=require_m_a, vetoed=vetoed
    )


def _resolve(
    extra: pd.DataFrame, rows: np.ndarray, posterior: np.ndarray, threshold: float, unresolved: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """New labels where the posterior (of ``rows``) passes ``threshold``; the other rows of
    ``rows`` get a soft target (their posterior), or an all-zero one (ignored), or keep their
    label. Returns (labels, soft targets or None, the rows resolved: changed or confirmed)."""
    new = extra["label"].to_numpy().copy()
    idx = np.flatnonzero(rows)
    sure = posterior.max(axis=1) >= threshold if len(idx) else np.zeros(0, bool)
    new[idx[sure]] = posterior.argmax(axis=1)[sure]
    soft = None
    if unresolved != "keep":
        soft = np.full((len(extra), NUM_CLASSES), np.nan)
        soft[idx[~sure]] = posterior[~sure] if unresolved == "soft" else 0.0
    resolved = np.zeros(len(extra), dtype=bool)
    resolved[idx[sure]] = True
    return new, soft, resolved


def _validation_rows(validation: pd.DataFrame | None, evidence: str) -> pd.DataFrame:
    if validation is None:
        return pd.DataFrame()
    return validation[post.evidence_rows(validation, evidence)].reset_index(drop=True)


A_ROWS = "A's validation rows"
AUDITED_ROWS = "B's audited rows"  # of B - subB, labelled under A's criteria (``AUDIT_COLUMN``)


def _need_validation(val: pd.DataFrame, mode: str, what: str, source: str = A_ROWS) -> None:
    if len(val) < post.MIN_CONFIDENT_ROWS:
        raise ValueError(
            f"relabel {mode}: the {what} is chosen on {source} with V/A and M_A's probabilities, "
            f"and {len(val)} are available; set method.relabel_{what} instead"
        )


def _audited(seen: pd.DataFrame, rows: np.ndarray, mode: str) -> np.ndarray:
    """The rows of ``rows`` an audit labelled under A's criteria (``method.relabel_calibration: audit``)."""
    if AUDIT_COLUMN not in seen:
        raise ValueError(
            f"relabel {mode}: method.relabel_calibration=audit needs rows of B labelled by an audit (column "
            f"{AUDIT_COLUMN!r}; on the synthetic world data.world.audit_rows)"
        )
    return rows & (seen[AUDIT_COLUMN].to_numpy() >= 0)


def _audit_table(seen: pd.DataFrame, audited: np.ndarray) -> pd.DataFrame:
    """The audited rows with their audit label as ``label`` (and their row in ``seen``, ``_row``)."""
    rows = seen[audited].assign(label=seen[AUDIT_COLUMN].to_numpy()[audited], _row=np.flatnonzero(audited))
    return rows.reset_index(drop=True)


def _as_read(extra: pd.DataFrame, rule: RelabelRule) -> pd.DataFrame:
    """B's rows as the rule reads them: with M_B's predicted V/A in place of the table's when
    ``rule.va`` is ``predicted`` (the labels and everything else as they are)."""
    if rule.va == "published":
        return extra
    missing = [c for c in M_B_VA_COLUMNS if c not in extra]
    if missing:
        raise ValueError(
            f"relabel {rule.mode}: column {missing[0]!r} (M_B's predicted V/A, set by stage 2 for "
            "method.relabel_va=predicted) is missing"
        )
    return extra.assign(valence=extra[M_B_VA_COLUMNS[0]], arousal=extra[M_B_VA_COLUMNS[1]])


def _fit_posterior(val: pd.DataFrame, g: post.ClassGaussians, rule: RelabelRule) -> tuple[float | None, float, bool, dict]:
    """(M_A's weight, threshold, whether it reached the target precision, the weights' scores)
    fitted on ``val`` where ``rule`` leaves them open."""
    weight, scores = rule.weight, {}
    if rule.evidence == "both" and weight is None:
        weight, scores = post.choose_weight(val, g)
    weight = weight if rule.evidence == "both" else None
    if rule.threshold is not None:
        return weight, rule.threshold, True, scores
    choice = post.choose_threshold(
        post.posterior_of(val, g, rule.evidence, weight or 0.0), val["label"].to_numpy(), rule.precision
    )
    return weight, choice.threshold, choice.reached, scores


def _held_out(
    val: pd.DataFrame, fitted: bool, scored_by_fold, in_sample: tuple[np.ndarray, float], source: str = A_ROWS
) -> tuple[Reliability, str, list[str]]:
    """The rule's reliability on the calibration rows (``source``) it was not fitted on: every row
    when nothing was fitted on them, else cross-fitted (``scored_by_fold(fit_rows, held_rows)`` ->
    (posterior, threshold) of the held rows), or in-sample with a warning below ``MIN_CROSSFIT_ROWS``."""
    labels = val["label"].to_numpy()
    if not fitted:
        return reliability(in_sample[0], labels, in_sample[1]), "held out (nothing fitted on them)", []
    if len(val) < calibration.MIN_CROSSFIT_ROWS:
        why = (
            f"{len(val)} of {source}: fewer than {calibration.MIN_CROSSFIT_ROWS} to cross-fit, so the relabel "
            "precision and the gate are judged on the rows that chose the rule (optimistic)"
        )
        return reliability(in_sample[0], labels, in_sample[1]), f"in-sample ({len(val)} rows)", [why]
    fold = calibration.folds(val)
    posterior, threshold = np.zeros((len(val), NUM_CLASSES)), np.zeros(len(val))
    for k in range(calibration.FOLDS):
        held = fold == k
        posterior[held], threshold[held] = scored_by_fold(val[~held].reset_index(drop=True), val[held].reset_index(drop=True))
    return reliability(posterior, labels, threshold), f"cross-fitted ({calibration.FOLDS} folds)", []


def _truth_reliability(extra: pd.DataFrame, rows: np.ndarray, posterior: np.ndarray, threshold: float) -> Reliability | None:
    """Synthetic world only: the posterior of B - subB's rows against the hidden truth."""
    if "truth_label" not in extra or not rows.any():
        return None
    return reliability(posterior, extra["truth_label"].to_numpy()[rows], threshold)


def relabel_posterior(
    extra: pd.DataFrame, target: pd.DataFrame, rule: RelabelRule, validation: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, RelabelReport]:
    """B - subB relabeled where the class posterior (``rule.evidence``) of the new class passes
    the threshold; weight and threshold chosen on ``validation`` (A's) unless ``rule`` sets them,
    their precision measured on validation rows they were not chosen on (``dcjt.method.calibration``)."""
    g = post.fit_class_gaussians(target)
    seen = _as_read(extra, rule)
    rows = remaining_rows(extra) & post.evidence_rows(seen, rule.evidence)
    if rule.calibration == "audit":
        audited, source = _audited(seen, rows, "posterior"), AUDITED_ROWS
        val = _audit_table(seen, audited)
    else:
        audited, source = np.zeros(len(extra), dtype=bool), A_ROWS
        val = _validation_rows(validation, rule.evidence)
    fits_weight, fits_threshold = rule.evidence == "both" and rule.weight is None, rule.threshold is None
    if fits_weight:
        _need_validation(val, "posterior", "weight", source)
    if fits_threshold:
        _need_validation(val, "posterior", "threshold", source)
    weight, threshold, reached, scores = (
        _fit_posterior(val, g, rule) if len(val) else (rule.weight if rule.evidence == "both" else None, rule.threshold, True, {})
    )
    applied = threshold if reached else np.inf
    chosen_on = f"{source} ({len(val)})" if fits_threshold else "config"
    if rule.evidence == "both" and not fits_weight:
        chosen_on += "; weight: config"

    def scored_by_fold(fit_rows: pd.DataFrame, held_rows: pd.DataFrame) -> tuple[np.ndarray, float]:
        w, t, ok, _ = _fit_posterior(fit_rows, g, rule)
        return post.posterior_of(held_rows, g, rule.evidence, w or 0.0), t if ok else np.inf

    record = PosteriorRecord(
        evidence=rule.evidence, weight=weight, threshold=threshold, chosen_on=chosen_on, val_rows=len(val),
        target_precision=rule.precision, reached=reached, weight_scores=scores, calibrated_on=source,
    )  # fmt: skip
    warnings = [] if reached else [f"no threshold reached precision {rule.precision:g} on {source}: nothing relabeled"]
    if len(val):
        val_post = post.posterior_of(val, g, rule.evidence, weight or 0.0)
        record.in_sample_precision = post.precision_at(val_post, val["label"].to_numpy(), applied)[0]
        fitted = fits_weight or fits_threshold
        held, record.calibration, why = _held_out(val, fitted, scored_by_fold, (val_post, applied), source)
        record.held_out, record.val_precision, record.val_coverage = held, held.precision, held.coverage
        warnings += why
    posterior = post.posterior_of(seen[rows], g, rule.evidence, weight or 0.0) if rows.any() else np.zeros((0, NUM_CLASSES))
    record.truth = _truth_reliability(extra, rows & ~audited, posterior[~audited[rows]], applied)  # rows it never saw
    new, soft, resolved = _resolve(extra, rows, posterior, applied, rule.unresolved)
    return _with_labels(extra, new, rows, g.means, "posterior", soft, posterior=record, resolved=resolved, warnings=warnings)


def _va_answers(table: pd.DataFrame, g: post.ClassGaussians) -> np.ndarray:
    """The V/A posterior's argmax per row (``latent_model.MISSING`` without V/A)."""
    out = np.full(len(table), latent_model.MISSING)
    rows = has_va(table)
    if rows.any():
        out[rows] = post.va_log_posterior(va_array(table)[rows], g).argmax(axis=1)
    return out


def _m_a_answers(table: pd.DataFrame) -> np.ndarray:
    if M_A_COLUMN not in table:
        raise ValueError(f"relabel latent: column {M_A_COLUMN!r} (M_A's prediction, set by stage 1) is missing")
    return table[M_A_COLUMN].fillna(latent_model.MISSING).to_numpy(dtype=int)


def _latent_answers(extra: pd.DataFrame, val: pd.DataFrame, g: post.ClassGaussians) -> dict[str, np.ndarray]:
    """Each annotator's answers on B's rows then ``val``'s: M_A, the V/A posterior's argmax and one
    "label" annotator per extra dataset (``latent_model.MISSING`` on A's rows: B's annotators never saw them)."""
    n_b, n_val = len(extra), len(val)
    answers = {
        "M_A": np.r_[_m_a_answers(extra), _m_a_answers(val) if n_val else np.zeros(0, int)],
        "V/A": np.r_[_va_answers(extra, g), _va_answers(val, g) if n_val else np.zeros(0, int)],
    }
    names = extra["dataset"].astype(str).to_numpy()
    for d in dict.fromkeys(names):
        said = np.full(n_b + n_val, latent_model.MISSING)
        said[:n_b][names == d] = extra["label"].to_numpy()[names == d]
        answers[f"label: {d}"] = said
    return answers


def _latent_fit(extra: pd.DataFrame, val: pd.DataFrame, g: post.ClassGaussians, max_iter: int) -> latent_model.LatentFit:
    """EM over B's rows and ``val``'s, anchored on ``val``'s labels."""
    anchors = np.r_[np.full(len(extra), latent_model.MISSING), val["label"].to_numpy(dtype=int) if len(val) else np.zeros(0, int)]
    return latent_model.dawid_skene(_latent_answers(extra, val, g), anchors, max_iter=max_iter)


def _anchor_posterior(fit: latent_model.LatentFit, rows: pd.DataFrame, g: post.ClassGaussians) -> np.ndarray:
    """The latent posterior of A's rows from the answers they have (M_A, V/A)."""
    return fit.posterior_from({"M_A": _m_a_answers(rows), "V/A": _va_answers(rows, g)})


def relabel_latent(
    extra: pd.DataFrame, target: pd.DataFrame, rule: RelabelRule, validation: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, RelabelReport]:
    """B - subB relabeled by a latent true class behind each extra's labels, M_A and the V/A
    posterior (EM over all of ``extra``'s rows, anchored on ``validation``: A's rows and labels);
    its precision measured on anchor rows cross-fitted out of EM (``dcjt.method.calibration``)."""
    g = post.fit_class_gaussians(target)
    val = validation[has_va(validation)].reset_index(drop=True) if validation is not None else pd.DataFrame()
    if len(val):
        val = val[val[M_A_COLUMN].to_numpy() >= 0].reset_index(drop=True) if M_A_COLUMN in val else val.iloc[:0]
    n_b, n_val = len(extra), len(val)
    seen = _as_read(extra, rule)
    fit = _latent_fit(seen, val, g, rule.max_iter)
    rows = remaining_rows(extra)
    if rule.calibration == "audit":
        return _latent_on_audit(extra, seen, rows, fit, g, rule)
    threshold = rule.threshold if rule.threshold is not None else rule.precision
    chosen_on = (
        "config" if rule.threshold is not None else "the target precision (its calibration: measured on held-out anchor rows)"
    )
    record = PosteriorRecord(
        evidence="latent", threshold=threshold, chosen_on=chosen_on, val_rows=n_val, target_precision=rule.precision
    )
    warnings = [] if fit.converged else [f"EM did not converge in {fit.iterations} iterations; the last estimate is kept"]
    if n_val:

        def scored_by_fold(fit_rows: pd.DataFrame, held_rows: pd.DataFrame) -> tuple[np.ndarray, float]:
            return _anchor_posterior(_latent_fit(seen, fit_rows, g, rule.max_iter), held_rows, g), threshold

        val_post = _anchor_posterior(fit, val, g)
        record.in_sample_precision = post.precision_at(val_post, val["label"].to_numpy(), threshold)[0]
        held, record.calibration, why = _held_out(val, True, scored_by_fold, (val_post, threshold))
        record.held_out, record.val_precision, record.val_coverage = held, held.precision, held.coverage
        warnings += why
    record.truth = _truth_reliability(extra, rows, fit.posterior[:n_b][rows], threshold)
    out, report = _latent_result(extra, seen, rows, fit, g, rule, record)
    report.warnings = warnings
    return out, report


def _latent_on_audit(extra, seen, rows, fit, g, rule: RelabelRule) -> tuple[pd.DataFrame, RelabelReport]:
    """The latent rule with its threshold chosen (unless set) and judged on B's audited rows of
    B - subB: EM never reads their audit labels, so only the threshold is cross-fitted."""
    audited = _audited(seen, rows, "latent")
    calib = _audit_table(seen, audited)
    posterior = fit.posterior[: len(extra)]
    labels = calib["label"].to_numpy()
    fits = rule.threshold is None
    if fits:
        _need_validation(calib, "latent", "threshold", AUDITED_ROWS)
        choice = post.choose_threshold(posterior[calib["_row"]], labels, rule.precision)
        threshold, reached = choice.threshold, choice.reached
    else:
        threshold, reached = rule.threshold, True
    applied = threshold if reached else np.inf

    def scored_by_fold(fit_rows: pd.DataFrame, held_rows: pd.DataFrame) -> tuple[np.ndarray, float]:
        c = post.choose_threshold(posterior[fit_rows["_row"]], fit_rows["label"].to_numpy(), rule.precision)
        return posterior[held_rows["_row"]], c.threshold if c.reached else np.inf

    record = PosteriorRecord(
        evidence="latent", threshold=threshold, chosen_on=f"{AUDITED_ROWS} ({len(calib)})" if fits else "config",
        val_rows=len(calib), target_precision=rule.precision, reached=reached, calibrated_on=AUDITED_ROWS,
    )  # fmt: skip
    warnings = [] if fit.converged else [f"EM did not converge in {fit.iterations} iterations; the last estimate is kept"]
    if not reached:
        warnings.append(f"no threshold reached precision {rule.precision:g} on {AUDITED_ROWS}: nothing relabeled")
    if len(calib):
        record.in_sample_precision = post.precision_at(posterior[calib["_row"]], labels, applied)[0]
        held, record.calibration, why = _held_out(calib, fits, scored_by_fold, (posterior[calib["_row"]], applied), AUDITED_ROWS)
        record.held_out, record.val_precision, record.val_coverage = held, held.precision, held.coverage
        warnings += why
    unseen = rows & ~audited  # the truth is judged on rows the threshold never saw
    record.truth = _truth_reliability(extra, unseen, posterior[unseen], applied)
    out, report = _latent_result(extra, seen, rows, fit, g, rule, record, applied)
    report.warnings = warnings
    return out, report


def _latent_result(extra, seen, rows, fit, g, rule, record, threshold=None) -> tuple[pd.DataFrame, RelabelReport]:
    """B - subB relabeled by the latent posterior at ``threshold`` (default: the record's), with
    the fit's record and, on the synthetic world, each annotator's confusion against the truth."""
    n_b = len(extra)
    threshold = record.threshold if threshold is None else threshold
    new, soft, resolved = _resolve(extra, rows, fit.posterior[:n_b][rows], threshold, rule.unresolved)
    answers = _latent_answers(seen, pd.DataFrame(), g)  # B's rows' answers (the anchors' are not compared)
    truth = _confusions_against_truth(extra, {k: v[:n_b] for k, v in answers.items()})
    latent = LatentRecord(
        confusions={k: v.round(4).tolist() for k, v in fit.confusions.items()},
        truth_confusions={k: v.round(4).tolist() for k, v in truth.items()},
        prior=fit.prior.round(4).tolist(),
        iterations=fit.iterations,
        converged=fit.converged,
        log_likelihood=fit.log_likelihood,
        anchors=int(fit.posterior.shape[0] - n_b),
    )
    out, report = _with_labels(extra, new, rows, g.means, "latent", soft, posterior=record, latent=latent, resolved=resolved)
    for name, m in truth.items():  # how far EM's confusion is from the one the hidden truth shows
        present = m.sum(axis=1) > 0  # true classes B holds
        report.truth[f"latent_confusion_mae.{name}"] = float(np.abs(fit.confusions[name][present] - m[present]).mean())
    return out, report


def _confusions_against_truth(extra: pd.DataFrame, answers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Synthetic world only: each annotator's confusion (shares per true class) against the truth."""
    if "truth_label" not in extra:
        return {}
    truth = extra["truth_label"].to_numpy(dtype=int)
    out = {}
    for name, said in answers.items():
        seen = said != latent_model.MISSING
        counts = label_confusion(truth[seen], said[seen]).astype(float)
        out[name] = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    return out


def relabel_oracle(extra: pd.DataFrame) -> tuple[pd.DataFrame, RelabelReport]:
    """Every row of B gets its hidden true emotion (synthetic world only): the ceiling of relabeling."""
    if "truth_label" not in extra:
        raise ValueError("the oracle needs the synthetic world's truth_label column")
    rows = np.ones(len(extra), dtype=bool)
    return _with_labels(extra, extra["truth_label"].to_numpy(dtype="int64"), rows, np.full((NUM_CLASSES, 2), np.nan), "oracle")


def relabel(
    extra: pd.DataFrame, target: pd.DataFrame, rule: RelabelRule, *, validation: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, RelabelReport]:
    """Stage 3b by ``rule`` (``MethodConfig.relabel_rule()``; mode ``none`` passes B through);
    ``validation``: A's validation rows (posterior and latent modes)."""
    mode = rule.mode
    if mode == "none":
        return extra, RelabelReport(mode="none")
    if mode == "nearest":
        return relabel_nearest(extra, target)
    if mode == "gated":
        return relabel_gated(extra, target, rule.gate_ratio, rule.gate_m_a)
    if mode == "posterior":
        return relabel_posterior(extra, target, rule, validation)
    if mode == "latent":
        return relabel_latent(extra, target, rule, validation)
    return relabel_oracle(extra)


def validation_part(target_pseudo: pd.DataFrame) -> pd.DataFrame:
    """A's validation rows, which the posterior and latent modes choose and anchor on."""
    return split_rows(target_pseudo, "val")
