"""DCJT label maths: properties, a hand-worked example, degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcjt.data.labels import EMOTIONS, make_table
from dcjt.method import class_centres, criteria_audit, map_continuous, relabel_nearest, select_subset, va_stats
from dcjt.method.gaussian import cholesky_map, ot_map, wasserstein2


def _table(va, labels, name="t", subset=None):
    va = np.asarray(va, dtype=float)
    df = make_table(name, "train", [f"{name}{i}" for i in range(len(va))], labels, va[:, 0], va[:, 1])
    if subset is not None:
        df["in_subset"] = subset
    return df


def _spd(draw):
    a = draw(st.floats(0.005, 0.03))
    c = draw(st.floats(0.005, 0.03))
    rho = draw(st.floats(-0.8, 0.8))
    return np.array([[a, rho * np.sqrt(a * c)], [rho * np.sqrt(a * c), c]])


@st.composite
def gaussians(draw):
    mu_a = np.array([draw(st.floats(-0.3, 0.3)), draw(st.floats(-0.3, 0.3))])
    mu_b = np.array([draw(st.floats(-0.3, 0.3)), draw(st.floats(-0.3, 0.3))])
    return mu_a, _spd(draw), mu_b, _spd(draw), draw(st.integers(0, 10_000))


def _sample(mu, cov, n, seed):
    return np.random.default_rng(seed).multivariate_normal(mu, cov, size=n)


@settings(max_examples=40, deadline=None)
@given(gaussians(), st.sampled_from(["global", "emotion", "emotion_ot"]))
def test_mapped_samples_match_target_moments(g, mode):
    mu_a, cov_a, mu_b, cov_b, seed = g
    a = _table(_sample(mu_a, cov_a, 400, seed), [3] * 400, "a")
    xb = _sample(mu_b, cov_b, 400, seed + 1)
    b = _table(xb, [3] * 400, "b")
    mapped, stats = map_continuous(b, a, mode)
    y = mapped[["valence", "arousal"]].to_numpy()
    if stats.n_clipped == 0:
        emp_a = a[["valence", "arousal"]].to_numpy()
        np.testing.assert_allclose(y.mean(0), emp_a.mean(0), atol=1e-9)
        np.testing.assert_allclose(np.cov(y, rowvar=False), np.cov(emp_a, rowvar=False), atol=1e-9)
    assert (mapped["va_origin"] == "mapped").all()


@settings(max_examples=30, deadline=None)
@given(gaussians())
def test_emotion_equals_global_with_one_class(g):
    mu_a, cov_a, mu_b, cov_b, seed = g
    a = _table(_sample(mu_a, cov_a, 50, seed), [4] * 50, "a")
    b = _table(_sample(mu_b, cov_b, 60, seed + 1), [4] * 60, "b")
    ge, _ = map_continuous(b, a, "global")
    em, _ = map_continuous(b, a, "emotion")
    np.testing.assert_allclose(ge[["valence", "arousal"]], em[["valence", "arousal"]], atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(gaussians(), st.sampled_from(["global", "emotion", "emotion_ot"]))
def test_identity_when_statistics_are_equal(g, mode):
    mu_a, cov_a, *_, seed = g
    x = _sample(mu_a, cov_a, 80, seed)
    labels = np.arange(80) % 7
    mapped, _ = map_continuous(_table(x, labels, "b"), _table(x, labels, "a"), mode)
    np.testing.assert_allclose(mapped[["valence", "arousal"]].to_numpy(), x, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(gaussians())
def test_ot_matrix_is_spd_and_identity_for_equal_covariances(g):
    _, cov_a, _, cov_b, _ = g
    m = ot_map(cov_a, cov_b)
    np.testing.assert_allclose(m, m.T, atol=1e-12)
    assert np.linalg.eigvalsh(m).min() > 0
    np.testing.assert_allclose(m @ cov_b @ m.T, cov_a, atol=1e-10)  # pushes Sigma_B onto Sigma_A
    np.testing.assert_allclose(ot_map(cov_a, cov_a), np.eye(2), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=1, max_size=40), st.integers(0, 1000))
def test_relabel_matches_brute_force(points, seed):
    rng = np.random.default_rng(seed)
    a = _table(rng.uniform(-1, 1, size=(35, 2)), np.arange(35) % 7, "a")
    b = _table(points, rng.integers(0, 7, len(points)), "b", subset=rng.random(len(points)) < 0.3)
    out, stats = relabel_nearest(b, a)
    centres = class_centres(a)
    for i, (v, ar) in enumerate(points):
        if b["in_subset"].iat[i]:
            assert out["label"].iat[i] == b["label"].iat[i]
            continue
        best = min(range(7), key=lambda k: (v - centres[k, 0]) ** 2 + (ar - centres[k, 1]) ** 2)
        d = [(v - centres[k, 0]) ** 2 + (ar - centres[k, 1]) ** 2 for k in range(7)]
        assert d[out["label"].iat[i]] == pytest.approx(d[best])
        assert (out["label_origin"].iat[i] == "relabeled") == (out["label"].iat[i] != b["label"].iat[i])
    assert np.asarray(stats.transition.matrix).sum() == stats.n_considered


def test_hand_worked_example():
    """Sigma_A = diag(4, 1)/100, Sigma_B = diag(1, 1)/100: P Q^-1 = diag(2, 1)."""
    a = _table([[0.1, 0.0], [-0.1, 0.0], [0.0, 0.05], [0.0, -0.05]], [0] * 4, "a")
    # a: mean 0; cov_vv = (0.01+0.01)/3, cov_aa = (0.0025*2)/3 -> ratio 4:1
    b = _table([[0.25, 0.25], [0.15, 0.25], [0.2, 0.3], [0.2, 0.2]], [0] * 4, "b")
    # b: mean (0.2, 0.25); cov_vv = 0.005/3, cov_aa = 0.005/3
    m = cholesky_map(
        va_stats(a).loc["surprise"].pipe(lambda r: np.diag([r.cov_vv, r.cov_aa])),
        va_stats(b).loc["surprise"].pipe(lambda r: np.diag([r.cov_vv, r.cov_aa])),
    )
    np.testing.assert_allclose(m, np.diag([np.sqrt(4), 1.0]), atol=1e-12)
    mapped, stats = map_continuous(b, a, "global")
    np.testing.assert_allclose(
        mapped[["valence", "arousal"]].to_numpy(), [[0.1, 0.0], [-0.1, 0.0], [0.0, 0.05], [0.0, -0.05]], atol=1e-12
    )
    assert stats.transforms["global"]["mu_extra"] == pytest.approx([0.2, 0.25])


def test_select_subset_counts_and_agreement():
    b = _table(np.zeros((6, 2)), [0, 0, 3, 3, 6, 6], "b")
    out, stats = select_subset(b, [0, 1, 3, 3, 3, 6])
    assert out["in_subset"].tolist() == [True, False, True, True, False, True]
    assert stats.kept_per_class["happiness"] == 2 and stats.kept_per_class["surprise"] == 1
    agree = np.asarray(stats.agreement.matrix)
    assert agree[6, 3] == 1 and agree[0, 1] == 1 and agree.sum() == 6
    with pytest.raises(ValueError, match="6 rows"):
        select_subset(b, [0, 1])


def test_only_remaining_rows_are_mapped():
    rng = np.random.default_rng(0)
    a = _table(rng.normal(0, 0.1, (70, 2)), np.arange(70) % 7, "a")
    xb = rng.normal(0.3, 0.1, (70, 2))
    b = _table(xb, np.arange(70) % 7, "b", subset=np.arange(70) < 35)
    out, stats = map_continuous(b, a, "emotion", b_stats_from="remaining")
    np.testing.assert_array_equal(out[["valence", "arousal"]].to_numpy()[:35], xb[:35])
    assert (out["va_origin"].iloc[:35] == "human").all() and (out["va_origin"].iloc[35:] == "mapped").all()
    assert stats.n_mapped == 35


@pytest.mark.parametrize("mode", ["global", "emotion"])
def test_b_statistics_come_from_all_of_b_or_only_its_remaining_rows(mode):
    """The subset sits far from the remaining rows: only ``remaining`` statistics map the remaining
    rows exactly onto A's moments; ``all`` statistics (the paper's reading) do not."""
    rng = np.random.default_rng(3)
    a = _table(rng.normal(0, 0.1, (140, 2)), np.arange(140) % 7, "a")
    xb = np.vstack([rng.normal(-0.5, 0.05, (70, 2)), rng.normal(0.3, 0.1, (70, 2))])
    b = _table(xb, np.arange(140) % 7, "b", subset=np.arange(140) < 70)
    a_mean = a[["valence", "arousal"]].to_numpy().mean(0)
    means = {}
    for source in ("remaining", "all"):
        out, stats = map_continuous(b, a, mode, b_stats_from=source)
        assert stats.b_stats_from == source and stats.n_clipped == 0
        means[source] = out[["valence", "arousal"]].to_numpy()[70:].mean(0)
    np.testing.assert_allclose(means["remaining"], a_mean, atol=1e-9)
    assert np.abs(means["all"] - a_mean).max() > 0.05


def test_degenerate_cases_take_documented_fallbacks(caplog):
    rng = np.random.default_rng(1)
    # Target lacks fear (class 1) entirely; disgust (2) has only 2 samples.
    labels_a = [0] * 10 + [2] * 2 + [3] * 10 + [4] * 10
    a = _table(rng.normal(0, 0.2, (len(labels_a), 2)), labels_a, "a")
    # Extra class 3 has a singular covariance (all on a line).
    line = np.c_[np.linspace(-0.5, 0.5, 10), np.linspace(-0.5, 0.5, 10)]
    xb = np.r_[rng.normal(0.1, 0.2, (10, 2)), rng.normal(0.1, 0.2, (5, 2)), rng.normal(0, 0.2, (5, 2)), line]
    labels_b = [0] * 10 + [1] * 5 + [2] * 5 + [3] * 10
    b = _table(xb, labels_b, "b")
    out, stats = map_continuous(b, a, "emotion")
    reasons = {f["what"]: f for f in stats.fallbacks}
    assert reasons["fear"]["reason"] == "class absent from target"
    assert reasons["disgust"]["reason"] == "fewer than 3 samples"
    assert "happiness extra" in reasons and "shrunk" in reasons["happiness extra"]["action"]
    assert stats.transforms["fear"]["fallback"] is True
    assert np.isfinite(out[["valence", "arousal"]].to_numpy()).all()
    assert (out[["valence", "arousal"]].abs() <= 1).all().all()
    # Relabeling never proposes a class the target lacks.
    rel, rstats = relabel_nearest(out, a)
    assert 1 not in set(rel["label"]) or (rel["label_origin"][rel["label"] == 1] == "human").all()
    assert "fear" in rstats.absent_classes


def test_too_few_samples_overall_leaves_labels_unchanged():
    a = _table([[0.1, 0.1], [0.2, 0.2]], [0, 0], "a")
    b = _table([[0.5, 0.5], [0.4, 0.4], [0.3, 0.1]], [0, 0, 0], "b")
    out, stats = map_continuous(b, a, "global")
    np.testing.assert_array_equal(out["valence"], b["valence"])
    assert stats.fallbacks[0]["action"].startswith("identity")


def test_clipping_is_counted():
    a = _table(np.c_[np.linspace(0.5, 1.0, 20), np.linspace(0.5, 1.0, 20) ** 2], [3] * 20, "a")
    b = _table(np.c_[np.linspace(-1, 1, 20), np.linspace(-1, 1, 20) ** 3], [3] * 20, "b")
    out, stats = map_continuous(b, a, "global")
    assert stats.n_clipped > 0
    assert out[["valence", "arousal"]].abs().max().max() <= 1.0


def test_mode_none_and_bad_mode():
    a = _table(np.zeros((5, 2)), [0] * 5, "a")
    b = _table(np.ones((5, 2)) * 0.5, [0] * 5, "b")
    out, stats = map_continuous(b, a, "none")
    assert (out["valence"] == 0.5).all() and stats.n_mapped == 0
    with pytest.raises(ValueError, match="unknown mapping mode"):
        map_continuous(b, a, "cholesky")


def test_criteria_audit_and_w2():
    rng = np.random.default_rng(3)
    a = _table(rng.normal(0, 0.1, (700, 2)), np.arange(700) % 7, "a")
    b = _table(rng.normal(0, 0.1, (700, 2)) + [0.3, 0.0], np.arange(700) % 7, "b")
    audit = criteria_audit(a, b)
    assert list(audit.index) == list(EMOTIONS) + ["global"]
    assert audit.loc["global", "shift_v"] == pytest.approx(0.3, abs=0.02)
    assert audit.loc["happiness", "w2"] == pytest.approx(0.3, abs=0.05)
    eye = np.eye(2) * 0.01
    assert wasserstein2([0, 0], eye, [0.3, 0.4], eye) == pytest.approx(0.5)
    mapped, _ = map_continuous(b, a, "emotion")
    after = criteria_audit(a, mapped)
    assert (after["w2"] < 1e-6).all()
