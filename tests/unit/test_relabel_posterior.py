"""Stage 3b beyond the paper: the class posterior (V/A Gaussians + M_A) and the latent true class
(Dawid-Skene EM) against hand-computed values and a planted confusion; soft targets in the loss
and the GX contract; bad settings refused by name."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from dcjt.config_files import ConfigError, load_config
from dcjt.data.labels import EMOTIONS, LABEL_ORIGINS, M_A_PROB_COLUMNS, NUM_CLASSES, SOFT_COLUMNS, make_table
from dcjt.data.validation import validate_table
from dcjt.method import calibration
from dcjt.method import posterior as post
from dcjt.method.latent import MISSING, dawid_skene
from dcjt.method.relabel import relabel
from dcjt.method.subset import with_m_a_probabilities
from dcjt.modes import RelabelRule
from dcjt.train.batches import class_targets
from dcjt.train.loop import loss_fn


def _target() -> pd.DataFrame:
    """A's train rows: class 0 (surprise) around (0, 0.6), class 3 (happiness) around (0.6, 0),
    class 6 (neutral) around (0, 0): four points each, twice as many neutral rows."""
    pts = {0: [(0.1, 0.6), (-0.1, 0.6), (0.0, 0.7), (0.0, 0.5)], 3: [(0.6, 0.1), (0.6, -0.1), (0.7, 0.0), (0.5, 0.0)]}
    pts[6] = [(0.1, 0.0), (-0.1, 0.0), (0.0, 0.1), (0.0, -0.1)] * 2
    va = np.array([p for k in (0, 3, 6) for p in pts[k]])
    labels = [k for k in (0, 3, 6) for _ in pts[k]]
    return make_table("a", "train", [f"t{i}" for i in range(len(va))], labels, va[:, 0], va[:, 1])


def _rows(va, labels, m_a, name="b", split="train", subset=False) -> pd.DataFrame:
    va = np.asarray(va, dtype=float)
    t = make_table(name, split, [f"{name}{i}" for i in range(len(va))], labels, va[:, 0], va[:, 1])
    t = with_m_a_probabilities(t, np.asarray(m_a, dtype=float))
    t["in_subset"] = subset
    return t


def _probs(k: int, p: float) -> list[float]:
    out = [(1 - p) / (NUM_CLASSES - 1)] * NUM_CLASSES
    out[k] = p
    return out


def test_va_posterior_matches_a_hand_computed_gaussian_discriminant():
    target = _target()
    g = post.fit_class_gaussians(target)
    x = np.array([[0.3, 0.3], [0.05, 0.55], [0.0, 0.0]])
    expected = np.zeros((3, NUM_CLASSES))
    for k in (0, 3, 6):
        pts = target.loc[target["label"] == k, ["valence", "arousal"]].to_numpy()
        cov = np.cov(pts.T) + post.RIDGE * np.eye(2)
        prior = len(pts) / len(target)
        expected[:, k] = prior * multivariate_normal(pts.mean(0), cov).pdf(x)
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.exp(post.va_log_posterior(x, g)), expected, atol=1e-12)
    assert np.isneginf(post.va_log_posterior(x, g)[:, [1, 2, 4, 5]]).all()  # classes A lacks


def test_combined_posterior_is_va_times_m_a_to_the_weight():
    g = post.fit_class_gaussians(_target())
    rows = _rows([[0.3, 0.3]], [1], [_probs(3, 0.6)])
    va = np.exp(post.va_log_posterior(np.array([[0.3, 0.3]]), g))[0]
    m_a = np.array(_probs(3, 0.6))
    for w in (0.0, 0.5, 2.0):
        hand = va * m_a**w
        np.testing.assert_allclose(post.posterior_of(rows, g, "both", w)[0], hand / hand.sum(), atol=1e-12)
    np.testing.assert_allclose(post.posterior_of(rows, g, "m_a", 1.0)[0], m_a, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 4), st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=1, max_size=20))
def test_posteriors_are_distributions_and_weight_zero_is_va_alone(weight, points):
    g = post.fit_class_gaussians(_target())
    rng = np.random.default_rng(len(points))
    probs = rng.dirichlet(np.ones(NUM_CLASSES), len(points))
    rows = _rows(points, [0] * len(points), probs)
    both = post.posterior_of(rows, g, "both", weight)
    np.testing.assert_allclose(both.sum(axis=1), 1.0, atol=1e-9)
    assert (both >= 0).all()
    if weight == 0:
        np.testing.assert_allclose(both, post.posterior_of(rows, g, "va", 1.0), atol=1e-12)


def test_threshold_is_the_lowest_that_reaches_the_precision_on_validation():
    # 20 rows: confidence 0.95 (10 rows, all right), 0.6 (10 rows, 5 right).
    post_ = np.zeros((20, NUM_CLASSES))
    post_[:10, 0], post_[:10, 1] = 0.95, 0.05
    post_[10:, 0], post_[10:, 1] = 0.6, 0.4
    labels = np.r_[np.zeros(10, int), np.zeros(5, int), np.ones(5, int)]
    choice = post.choose_threshold(post_, labels, 0.9)
    assert choice.reached and 0.6 < choice.threshold <= 0.95 and choice.precision == 1.0 and choice.coverage == 0.5
    assert post.choose_threshold(post_, labels, 0.7).threshold == 0.3  # 15 of 20 right: 0.75 at any threshold
    never = post.choose_threshold(post_[10:], labels[10:], 0.9)
    assert not never.reached and never.threshold == 1.0 and never.coverage == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.2, 1.0), st.booleans()), min_size=1, max_size=80),  # 0.2: no tie for the top class
    st.floats(0.0, 1.0),
)
def test_reliability_counts_every_row_once_and_its_ece_is_a_weighted_gap(rows, threshold):
    conf = np.array([c for c, _ in rows])
    right = np.array([r for _, r in rows])
    posterior = np.full((len(rows), NUM_CLASSES), 0.0)
    posterior[:, 0] = conf  # class 0 is the answer; the rest of the mass spread below it
    posterior[:, 1:] = ((1 - conf) / (NUM_CLASSES - 1))[:, None]
    rel = calibration.reliability(posterior, np.where(right, 0, 1), threshold)
    bins = np.array(rel.bins)
    assert rel.rows == len(rows) and bins[:, 2].sum() == len(rows)
    gap = np.sum(bins[:, 2] * np.abs(bins[:, 1] - bins[:, 0])) / len(rows)
    assert 0 <= rel.ece <= 1 and rel.ece == pytest.approx(gap)
    sure = conf >= threshold
    assert rel.coverage == pytest.approx(sure.mean())
    assert rel.precision == pytest.approx(right[sure].mean()) if sure.any() else np.isnan(rel.precision)


def test_a_calibrated_confidence_has_zero_ece_and_an_overconfident_one_its_gap():
    p = np.array([_probs(0, 0.75)] * 8)
    assert calibration.reliability(p, np.array([0] * 6 + [1] * 2), 0.5).ece == pytest.approx(0.0)  # 6 of 8 right at 0.75
    assert calibration.reliability(p, np.array([1] * 8), 0.5).ece == pytest.approx(0.75)


def test_folds_follow_the_image_path_not_the_row_order():
    table = _rows(np.zeros((200, 2)), [0] * 200, [_probs(0, 0.9)] * 200, "v", "val")
    f = calibration.folds(table)
    assert set(f) == set(range(calibration.FOLDS)) and 70 < (f == 0).sum() < 130
    shuffled = table.sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(calibration.folds(shuffled), f[shuffled.index.to_numpy()])


def test_posterior_precision_is_judged_on_validation_rows_that_did_not_choose_the_threshold():
    """M_A's confidence is uninformative on these rows (right 60 % of the time at any confidence):
    judged on the rows that chose it, the threshold looks better than on the rows held out."""
    rng = np.random.default_rng(2)
    n = 160
    conf = rng.uniform(0.3, 1.0, n)
    labels = np.where(rng.random(n) < 0.6, 0, 3)
    val = _rows(rng.normal(0, 0.05, (n, 2)), labels, [_probs(0, c) for c in conf], "v", "val")
    extra = _rows([[0.0, 0.6]], [1], [_probs(0, 0.8)])
    rule = RelabelRule("posterior", evidence="m_a", precision=0.7)
    _, report = relabel(extra, _target(), rule, validation=val)
    record = report.posterior
    assert record.calibration == "cross-fitted (2 folds)" and record.held_out.rows == n
    assert record.val_precision == record.held_out.precision and record.val_coverage == record.held_out.coverage
    fold = calibration.folds(val)  # by hand: each fold scored at the threshold the other fold chose
    right, sure = np.zeros(n, bool), np.zeros(n, bool)
    for k in range(calibration.FOLDS):
        fit, held = fold != k, fold == k
        choice = post.choose_threshold(np.array([_probs(0, c) for c in conf[fit]]), labels[fit], 0.7)
        sure[held] = conf[held] >= (choice.threshold if choice.reached else np.inf)
        right[held] = labels[held] == 0
    assert record.val_precision == pytest.approx(right[sure].mean()) and record.val_coverage == pytest.approx(sure.mean())
    assert record.in_sample_precision >= 0.7 > record.val_precision  # the optimism cross-fitting removes


def test_relabel_posterior_changes_sure_rows_and_trains_the_rest_soft_or_not_at_all():
    target = _target()
    val = _rows(
        [[0.0, 0.62], [0.62, 0.0], [0.0, 0.02]] * 4,
        [0, 3, 6] * 4,
        [_probs(0, 0.7), _probs(3, 0.7), _probs(6, 0.7)] * 4,
        "v",
        "val",
    )
    # B - subB: a surprise-like row labelled fear (1), a happiness-like row labelled sadness (4), an
    # ambiguous row between neutral and happiness labelled anger (5), and a subset row left alone.
    extra = _rows(
        [[0.0, 0.6], [0.6, 0.0], [0.3, 0.0], [0.6, 0.0]],
        [1, 4, 5, 3],
        [_probs(0, 0.8), _probs(3, 0.8), _probs(5, 0.4), _probs(3, 0.8)],
        subset=[False, False, False, True],
    )
    _, chosen = relabel(extra, target, RelabelRule("posterior", precision=0.9), validation=val)
    assert chosen.posterior.chosen_on == "A's validation rows (12)" and chosen.posterior.reached
    assert chosen.posterior.weight in post.WEIGHTS and chosen.posterior.val_precision == 1.0
    assert chosen.posterior.threshold == post.THRESHOLDS[0]  # every validation row is right: the lowest
    assert chosen.posterior.calibration == "in-sample (12 rows)"  # too few to cross-fit: said, not hidden
    assert any(f"fewer than {calibration.MIN_CROSSFIT_ROWS} to cross-fit" in w for w in chosen.warnings)
    kept, report = relabel(extra, target, RelabelRule("posterior", threshold=0.9, weight=1.0))
    assert report.posterior.chosen_on == "config; weight: config" and report.posterior.val_rows == 0
    p = post.posterior_of(extra, post.fit_class_gaussians(target), "both", 1.0)
    assert (p[:2].max(axis=1) >= 0.9).all() and 0.5 < p[2].max() < 0.9  # the ambiguous row is not sure
    assert kept["label"].tolist() == [0, 3, 5, 3]
    assert kept["label_origin"].tolist() == ["relabeled", "relabeled", "human", "human"]
    assert report.n_resolved == 2 and report.n_considered == 3
    soft, report_soft = relabel(extra, target, RelabelRule("posterior", threshold=0.9, weight=1.0, unresolved="soft"))
    np.testing.assert_allclose(soft.loc[2, list(SOFT_COLUMNS)].to_numpy(float), p[2], atol=1e-12)
    assert soft["label"].iat[2] == 5 and soft["label_origin"].iat[2] == "soft" and report_soft.n_soft == 1
    assert soft.loc[[0, 1, 3], list(SOFT_COLUMNS)].isna().all().all()
    ignored, report_ignored = relabel(extra, target, RelabelRule("posterior", threshold=0.9, weight=1.0, unresolved="ignore"))
    assert (ignored.loc[2, list(SOFT_COLUMNS)] == 0).all() and ignored["label_origin"].iat[2] == "ignored"
    assert report_ignored.n_ignored == 1
    for table in (kept, soft, ignored):
        assert validate_table(table, require_all_classes=False).success


def test_predicted_va_replaces_b_s_published_va_as_evidence_and_its_absence_is_refused_by_name():
    """``relabel_va: predicted``: the rule reads M_B's V/A for B's image (here a surprise-like point)
    where the published V/A (happiness-like) would say otherwise; the table keeps its own V/A."""
    target = _target()
    extra = _rows([[0.6, 0.0]], [1], [_probs(2, 0.5)])
    rule = dict(evidence="va", threshold=0.5)
    published, _ = relabel(extra, target, RelabelRule("posterior", **rule))
    assert published["label"].tolist() == [3]
    with pytest.raises(ValueError, match=r"relabel posterior: column 'm_b_valence' \(M_B's predicted V/A, set by stage 2"):
        relabel(extra, target, RelabelRule("posterior", va="predicted", **rule))
    extra[["m_b_valence", "m_b_arousal"]] = [[0.0, 0.6]]
    predicted, _ = relabel(extra, target, RelabelRule("posterior", va="predicted", **rule))
    assert predicted["label"].tolist() == [0] and predicted["valence"].tolist() == [0.6]


def test_predicted_va_lets_latent_run_after_the_map_and_is_refused_for_other_rules_by_key():
    cfg = load_config("demo", ["method.relabel=latent", "method.relabel_va=predicted"])  # map_first, the default
    assert cfg.method.stage3_order == "map_first" and cfg.method.relabel_rule().va == "predicted"
    assert "va-predicted" in cfg.method.variant_name
    with pytest.raises(ConfigError, match=r"method.relabel_va: predicted needs method.relabel: posterior or latent"):
        load_config("demo", ["method.relabel=gated", "method.relabel_va=predicted"])
    with pytest.raises(ConfigError, match=r"or method.relabel_va=predicted"):
        load_config("demo", ["method.relabel=latent"])


def _audited_world(seed: int = 0, n: int = 200, n_audit: int = 120):
    """B - subB around A's three class centres whose labels B flipped to anger (5) on a third of
    the rows; the truth in ``truth_label``; ``n_audit`` rows audited (their truth as ``audit_label``)."""
    rng = np.random.default_rng(seed)
    centres = {0: (0.0, 0.6), 3: (0.6, 0.0), 6: (0.0, 0.0)}
    truth = rng.choice([0, 3, 6], n)
    va = np.array([centres[t] for t in truth]) + rng.normal(0, 0.12, (n, 2))
    b_label = np.where(rng.random(n) < 0.33, 5, truth)
    m_a = np.array([_probs(t if rng.random() < 0.7 else 2, 0.6) for t in truth])
    extra = _rows(va, b_label, m_a)
    extra["truth_label"] = truth
    extra["audit_label"] = -1
    extra.loc[: n_audit - 1, "audit_label"] = truth[:n_audit]
    return extra


@pytest.mark.parametrize("mode", ["posterior", "latent"])
def test_an_audit_of_b_chooses_and_judges_the_threshold_on_the_rows_the_rule_acts_on(mode):
    """``relabel_calibration: audit``: the threshold comes from B - subB's audited rows (cross-fitted
    for the held-out precision); the truth is judged on the rows no audit saw."""
    extra, target = _audited_world(), _target()
    rule = RelabelRule(mode, calibration="audit", precision=0.8, **({"evidence": "va"} if mode == "posterior" else {}))
    val = _rows([[0.0, 0.6], [0.6, 0.0], [0.0, 0.0]] * 4, [0, 3, 6] * 4, [_probs(k, 0.6) for k in [0, 3, 6] * 4], "v", "val")
    _, report = relabel(extra, target, rule, validation=val)
    record = report.posterior
    assert record.chosen_on == "B's audited rows (120)" and record.val_rows == 120 and record.calibrated_on == "B's audited rows"
    assert record.calibration == "cross-fitted (2 folds)" and record.held_out.rows == 120
    assert record.truth.rows == len(extra) - 120  # the audited rows never judge the rule
    assert record.reached and abs(record.val_precision - record.truth.precision) < 0.1
    with pytest.raises(ValueError, match=rf"relabel {mode}: method.relabel_calibration=audit needs rows of B labelled"):
        relabel(extra.drop(columns="audit_label"), target, rule, validation=val)


def test_the_synthetic_audit_reveals_the_truth_of_b_train_rows_only():
    from dcjt.synthetic.world import WorldSpec, with_audit, world_tables

    extra = world_tables(WorldSpec(n_target=50, n_extra=300), seed=3)["extra"][0]
    audited = with_audit(extra, 40, seed=3)
    picked = audited[audited["audit_label"] >= 0]
    assert len(picked) == 40 and (picked["split"] == "train").all()
    assert (picked["audit_label"] == picked["truth_label"]).all() and (audited.drop(columns="audit_label") == extra).all().all()
    assert with_audit(extra, 40, seed=3).equals(audited)  # the same rows for the same world
    with pytest.raises(ValueError, match=r"data.world.audit_rows = 1000: B's train split holds \d+ rows"):
        with_audit(extra, 1000, seed=3)
    with pytest.raises(ConfigError, match=r"method.relabel_calibration: audit needs method.relabel: posterior or latent"):
        load_config("demo", ["method.relabel=gated", "method.relabel_calibration=audit"])
    audit = ["method.relabel=posterior", "method.relabel_calibration=audit"]
    with pytest.raises(
        ConfigError, match=r"method.relabel_calibration: audit needs audited rows of B: set data.world.audit_rows"
    ):
        load_config("demo", audit)
    assert load_config("demo", [*audit, "data.world.audit_rows=300"]).method.relabel_rule().calibration == "audit"


def test_a_team_s_audit_file_labels_its_extra_s_train_images_and_bad_rows_are_named(tmp_path):
    from dcjt.data.audit import AuditError, read_audit

    b = make_table("affectnet", ["train", "train", "test"], ["a/1.jpg", "a/2.jpg", "a/3.jpg"], [6, 6, 6], [0.1] * 3, [0.2] * 3)
    table = pd.concat([b, make_table("rafdb", "train", ["a/1.jpg"], [3])], ignore_index=True)
    good = tmp_path / "audit.csv"
    good.write_text("image,emotion\na/2.jpg, Happiness\n")
    audited = read_audit(good, table, "affectnet")
    assert audited["audit_label"].tolist() == [-1, EMOTIONS.index("happiness"), -1, -1]
    bad = {
        "image,label\na/2.jpg,happiness\n": r"audit.csv: no column 'emotion' \(columns: image, emotion\)",
        "image,emotion\na/2.jpg,joy\n": r"audit.csv, row 2: unknown emotion 'joy'",
        "image,emotion\na/3.jpg,sadness\n": r"audit.csv, row 2: image 'a/3.jpg' is not a train image of affectnet",
        "image,emotion\na/1.jpg,fear\na/1.jpg,fear\n": r"audit.csv, row 3: image 'a/1.jpg' is audited twice",
    }
    for text, message in bad.items():
        good.write_text(text)
        with pytest.raises(AuditError, match=message):
            read_audit(good, table, "affectnet")
    with pytest.raises(AuditError, match=r"nowhere.csv \(data.extras.K.audit\): not found"):
        read_audit(tmp_path / "nowhere.csv", table, "affectnet")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = ["data.kind=files", "data.target.dataset=rafdb", f"data.target.root={tmp_path / 'a'}"]
    files += ["data.extra.dataset=affectnet", f"data.extra.root={tmp_path / 'b'}"]
    files += ["method.relabel=posterior", "method.relabel_calibration=audit"]
    with pytest.raises(ConfigError, match=r"audit needs audited rows of B: set data.extras.K.audit=FILE.csv"):
        load_config("demo", files)
    assert load_config("demo", [*files, f"data.extra.audit={good}"]).data.extras[0].audit == str(good)
    with pytest.raises(ConfigError, match=r"data.target.audit: an audit labels an extra dataset's images"):
        load_config("demo", [*files, "data.target.audit=x.csv"])


def test_posterior_without_validation_rows_or_m_a_probabilities_is_refused_by_name():
    target = _target()
    extra = _rows([[0.0, 0.6]], [1], [_probs(0, 0.8)])
    with pytest.raises(ValueError, match="set method.relabel_weight"):
        relabel(extra, target, RelabelRule("posterior"))
    no_probs = extra.drop(columns=list(M_A_PROB_COLUMNS))
    with pytest.raises(post.PosteriorError, match="M_A's class probabilities"):
        relabel(no_probs, target, RelabelRule("posterior", weight=1.0, threshold=0.9))
    # V/A alone needs no M_A; a row without V/A is not considered.
    va_only = no_probs.assign(valence=[np.nan], arousal=[np.nan], va_origin="none")
    out, report = relabel(va_only, target, RelabelRule("posterior", evidence="va", threshold=0.9))
    assert report.n_considered == 0 and out["label"].tolist() == [1]


def test_an_extra_without_published_va_is_relabeled_on_its_pseudo_va():
    from dcjt.method.pseudo import with_pseudo_va

    target = _target()
    c = _rows([[0.0, 0.0]], [1], [_probs(0, 0.8)], name="c").assign(valence=np.nan, arousal=np.nan, va_origin="none")
    c = with_pseudo_va(c, np.array([[0.6, 0.0]]))  # stage 2 gives discrete-only extras M_B's V/A, as A
    out, report = relabel(c, target, RelabelRule("posterior", evidence="va", threshold=0.6))
    assert report.n_considered == 1 and out["label"].tolist() == [3]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
        ({"weight": -0.5}, "weight must be >= 0"),
        ({"unresolved": "drop"}, "unresolved rows"),
        ({"mode": "fancy"}, "unknown relabel mode"),
    ],
)
def test_bad_rules_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        RelabelRule(**{"mode": "posterior", **bad})


def test_config_refuses_soft_targets_without_a_posterior_by_key():
    with pytest.raises(ConfigError, match="method.unresolved: soft needs method.relabel: posterior or latent"):
        load_config("demo", ["method.unresolved=soft"])
    with pytest.raises(ConfigError, match="method.relabel_threshold"):
        load_config("demo", ["method.relabel=posterior", "method.relabel_threshold=1.5"])


# --- the latent true class -------------------------------------------------------------------------
def _confusion(rng, accuracy: float) -> np.ndarray:
    m = rng.dirichlet(np.ones(NUM_CLASSES), NUM_CLASSES) * (1 - accuracy)
    m[np.arange(NUM_CLASSES), np.arange(NUM_CLASSES)] += accuracy
    return m / m.sum(axis=1, keepdims=True)


def _planted(seed: int, n: int = 6000, n_anchor: int = 1500):
    rng = np.random.default_rng(seed)
    planted = {"label": _confusion(rng, 0.6), "M_A": _confusion(rng, 0.7), "V/A": _confusion(rng, 0.5)}
    planted["label"][1] = np.eye(NUM_CLASSES)[4] * 0.7 + planted["label"][1] * 0.3  # B calls most fear "sadness"
    truth = rng.choice(NUM_CLASSES, n + n_anchor, p=rng.dirichlet(np.ones(NUM_CLASSES) * 5))
    answers = {k: np.array([rng.choice(NUM_CLASSES, p=m[t]) for t in truth]) for k, m in planted.items()}
    answers["label"][n:] = MISSING  # anchors (A's rows) carry no B label
    anchors = np.r_[np.full(n, MISSING), truth[n:]]
    return planted, truth, answers, anchors


def test_em_recovers_a_planted_confusion_of_b_labels_it_never_sees_the_truth_of():
    planted, truth, answers, anchors = _planted(0)
    fit = dawid_skene(answers, anchors)
    assert fit.converged and fit.iterations < 200
    for name in planted:
        assert np.abs(fit.confusions[name] - planted[name]).max() < 0.08, name
    assert fit.confusions["label"][1, 4] > 0.6  # the criteria mismatch (fear -> sadness) is found
    latent = anchors == MISSING
    assert (fit.posterior[latent].argmax(axis=1) == truth[latent]).mean() > 0.8
    np.testing.assert_allclose(fit.posterior.sum(axis=1), 1.0, atol=1e-9)
    assert (fit.posterior[~latent].argmax(axis=1) == anchors[~latent]).all()


def test_em_that_does_not_converge_warns_and_keeps_its_last_estimate(caplog):
    _, _, answers, anchors = _planted(1, n=800, n_anchor=200)
    with caplog.at_level(logging.WARNING):
        fit = dawid_skene(answers, anchors, max_iter=2)
    assert not fit.converged and fit.iterations == 2 and "did not converge in 2 iterations" in caplog.text
    np.testing.assert_allclose(fit.posterior.sum(axis=1), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="at least one iteration"):
        dawid_skene(answers, anchors, max_iter=0)
    with pytest.raises(ValueError, match="annotator 'M_A': 3 answers"):
        dawid_skene({"M_A": np.zeros(3, int)}, anchors)


def test_relabel_latent_reports_confusions_against_the_truth_and_warns_when_em_stops_early():
    target = _target()
    rng = np.random.default_rng(3)
    centres = {0: (0.0, 0.6), 3: (0.6, 0.0), 6: (0.0, 0.0)}
    truth = rng.choice([0, 3, 6], 300)
    va = np.array([centres[t] for t in truth]) + rng.normal(0, 0.08, (300, 2))
    b_label = np.where(rng.random(300) < 0.3, 5, truth)  # B calls 30 % of everything "anger"
    m_a = np.array([_probs(t if rng.random() < 0.8 else 2, 0.7) for t in truth])
    extra = _rows(va, b_label, m_a, subset=b_label == m_a.argmax(axis=1))
    extra["truth_label"] = truth
    val_truth = rng.choice([0, 3, 6], 60)
    val_va = np.array([centres[t] for t in val_truth]) + rng.normal(0, 0.08, (60, 2))
    val = _rows(val_va, val_truth, [_probs(t, 0.7) for t in val_truth], "v", "val")
    out, report = relabel(extra, target, RelabelRule("latent"), validation=val)
    assert report.latent.converged and report.latent.anchors == 60
    assert set(report.latent.confusions) == {"M_A", "V/A", "label: b"} == set(report.latent.truth_confusions)
    assert report.posterior.threshold == 0.9 and "held-out anchor rows" in report.posterior.chosen_on
    assert report.truth["relabel_precision"] > 0.9 and report.truth["latent_confusion_mae.label: b"] < 0.05
    record = report.posterior  # 60 anchors: cross-fitted, and on this world the truth agrees with them
    assert record.calibration == "cross-fitted (2 folds)" and record.held_out.rows == 60
    assert record.truth.rows == report.n_considered and record.truth.precision == report.truth["resolved_correct"]
    assert abs(record.val_precision - record.truth.precision) < 0.1 and record.truth.ece < 0.1
    _, early = relabel(extra, target, RelabelRule("latent", max_iter=1), validation=val)
    assert early.warnings == ["EM did not converge in 1 iterations; the last estimate is kept"]


# --- soft targets in the loss and the table contract -----------------------------------------------
def test_soft_targets_reach_the_loss_one_hot_equals_hard_and_zero_rows_add_nothing():
    torch.manual_seed(0)
    out = torch.randn(4, NUM_CLASSES + 2)
    va = torch.full((4, 2), float("nan"))
    y = torch.tensor([0, 3, 6, 2])
    hard = loss_fn(out, y, va, 1.0)[1]
    one_hot = torch.nn.functional.one_hot(y, NUM_CLASSES).float()
    torch.testing.assert_close(loss_fn(out, one_hot, va, 1.0)[1], hard)
    dropped = one_hot.clone()
    dropped[3] = 0
    first3 = torch.nn.functional.cross_entropy(out[:3, :NUM_CLASSES], y[:3], reduction="sum") / 4
    torch.testing.assert_close(loss_fn(out, dropped, va, 1.0)[1], first3)
    soft = torch.full((1, NUM_CLASSES), 1 / NUM_CLASSES)
    expected = -torch.log_softmax(out[:1, :NUM_CLASSES], 1).mean()
    torch.testing.assert_close(loss_fn(out[:1], soft, va[:1], 1.0)[1], expected)


def test_class_targets_from_a_table_and_a_broken_distribution_fails_gx():
    t = make_table("b", "train", ["x", "y", "z"], [1, 2, 3], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0])
    assert class_targets(t, t["label"].to_numpy()) is None
    for col in SOFT_COLUMNS:
        t[col] = np.nan
    assert class_targets(t, t["label"].to_numpy()) is None
    t.loc[1, list(SOFT_COLUMNS)] = _probs(4, 0.4)
    t.loc[2, list(SOFT_COLUMNS)] = 0.0
    t["label_origin"] = ["human", "soft", "ignored"]
    targets = class_targets(t, t["label"].to_numpy())
    np.testing.assert_allclose(targets[0], np.eye(NUM_CLASSES)[1])
    np.testing.assert_allclose(targets[1], _probs(4, 0.4), atol=1e-7)
    assert (targets[2] == 0).all()
    assert set(LABEL_ORIGINS) >= {"soft", "ignored"} and validate_table(t, require_all_classes=False).success
    t.loc[1, SOFT_COLUMNS[0]] = 0.9  # no longer sums to 1
    report = validate_table(t, require_all_classes=False)
    assert not report.success and "distributions" in report.message("t")


# --- the pipeline picks: never a DCN below its own baseline ------------------------------------------
def _scores(accuracy: float, n: int = 100):
    from dcjt.train.scoring import SplitScores

    right = int(round(accuracy * n))
    return SplitScores(
        split="val", n=n, accuracy=accuracy, mean_class_accuracy=accuracy, macro_f1=accuracy, kappa=0.0,
        majority_rate=0.3, confusion=[[0] * 7] * 7, correct=[1] * right + [0] * (n - right),
    )  # fmt: skip


def _row(val: float, test: float, **spent):
    from dcjt.train.scoring import RowEvaluation

    return RowEvaluation(row="dcjt", variant="v", val=_scores(val), test=_scores(test), **spent)


def test_a_challenger_below_its_own_baseline_on_validation_is_registered_not_promoted():
    from dcjt.config import PromotionConfig
    from dcjt.registry.gate import promotion_gate

    mine = _row(0.70, 0.72)
    settings = PromotionConfig(bootstrap=False)
    decision, tags = promotion_gate(mine, None, None, None, settings, 0, {"target_only": _scores(0.73), "straight": _scores(0.6)})
    assert not decision.promoted and decision.verdict == "loses to a baseline" and tags["promotion.verdict"] == decision.verdict
    assert "below this run's target_only row (0.7300)" in decision.reason
    assert promotion_gate(mine, None, None, None, settings, 0, {"straight": _scores(0.6)})[0].verdict == "first version"
    off = PromotionConfig(bootstrap=False, beat_baselines=False)
    assert promotion_gate(mine, None, None, None, off, 0, {"target_only": _scores(0.73)})[0].promoted
    forced = PromotionConfig(bootstrap=False, force=True)
    assert promotion_gate(mine, None, None, None, forced, 0, {"target_only": _scores(0.73)})[0].promoted


def test_a_run_whose_gates_failed_in_warn_mode_never_promotes_unless_forced():
    from dcjt.config import PromotionConfig
    from dcjt.registry.gate import promotion_gate

    mine = _row(0.70, 0.72)
    failed = ["stage 1 (M_A, subset): M_A's agreement (kappa) = 0.01 (must be >= 0.2)"]
    decision, tags = promotion_gate(mine, None, None, None, PromotionConfig(bootstrap=False), 0, {}, failed)
    assert not decision.promoted and tags["promotion.verdict"] == "gates failed"
    assert decision.reason.startswith("this run failed 1 health gate(s) in warn mode (stage 1 (M_A, subset)")
    assert promotion_gate(mine, None, None, None, PromotionConfig(bootstrap=False), 0, {}, [])[0].promoted
    forced = PromotionConfig(bootstrap=False, force=True)
    assert promotion_gate(mine, None, None, None, forced, 0, {}, failed)[0].promoted
    smoke = PromotionConfig(bootstrap=False, despite_failed_gates=True)  # configs/tiny.yaml
    assert promotion_gate(mine, None, None, None, smoke, 0, {}, failed)[0].verdict == "first version"


def test_a_joint_row_selected_before_its_first_pass_over_b_is_never_promoted_not_even_forced():
    from dcjt.config import PromotionConfig
    from dcjt.registry.gate import promotion_gate

    settings, forced = PromotionConfig(bootstrap=False), PromotionConfig(bootstrap=False, force=True)
    before = _row(0.70, 0.72, selected_epoch=1, b_passes=4, b_passes_selected=0)
    assert before.selected_before_b
    for cfg in (settings, forced):
        decision, tags = promotion_gate(before, None, None, None, cfg, 0, {})
        assert not decision.promoted and decision.verdict == "selected before B", decision
        assert tags["selected_before_b"] == "true" and "epoch 1" in decision.reason
    after = _row(0.70, 0.72, selected_epoch=5, b_passes=4, b_passes_selected=2)
    alone = _row(0.70, 0.72, selected_epoch=1, b_passes=0, b_passes_selected=0)  # target only: no B to miss
    for row in (after, alone):
        decision, tags = promotion_gate(row, None, None, None, settings, 0, {})
        assert decision.promoted and tags["selected_before_b"] == "false"


def test_a_precision_no_threshold_reaches_relabels_nothing_even_at_posterior_one():
    target = _target()
    # validation rows whose V/A point at another class than their label: no threshold is precise
    val = _rows([[0.0, 0.62], [0.62, 0.0]] * 6, [3, 0] * 6, [_probs(3, 0.7), _probs(0, 0.7)] * 6, "v", "val")
    extra = _rows([[0.0, 0.9], [0.9, 0.0]], [1, 4], [_probs(0, 0.99), _probs(3, 0.99)])
    assert (post.posterior_of(extra, post.fit_class_gaussians(target), "both", 1.0).max(axis=1) > 0.999999).all()
    out, report = relabel(extra, target, RelabelRule("posterior", weight=1.0, unresolved="soft"), validation=val)
    assert not report.posterior.reached and report.n_changed == 0 and report.n_soft == 2 and out["label"].tolist() == [1, 4]
    assert report.warnings and "nothing relabeled" in report.warnings[0]


def test_the_model_line_names_a_version_while_no_champion_answers():
    """A run that registered without promoting, with no champion before, points at its version."""
    from types import SimpleNamespace

    from app.runner import RunOutcome

    def outcome(champion):
        promotion = SimpleNamespace(model_name="fer", version="3", champion_version=champion)
        return RunOutcome("r", "sqlite://", "models:/fer@champion", "c.csv", None, promotion, None, 1.0)

    assert outcome(None).model_line() == "no champion yet; this run's version: models:/fer/3"
    assert outcome("2").model_line() == "models:/fer@champion"
