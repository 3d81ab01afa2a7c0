"""The race of ``run.py select`` (``dcjt.experiments.racing``, ``choose``): a planted
loser stops after one seed, ties race on, the bound by hand and as a property, the winner's lead
measured on the half of validation that did not rank it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dcjt.experiments import racing

N = 400  # validation rows per seed, half of them in each fold


def _run(row: str, seed: int, rank_acc: float, lead_acc: float | None = None, test: float = 0.5) -> racing.Scored:
    """A candidate at a seed right on the first ``acc`` share of each fold's rows."""
    fold = np.arange(N) % 2
    correct = np.zeros(N, int)
    for f, acc in ((racing.RANK_FOLD, rank_acc), (racing.LEAD_FOLD, rank_acc if lead_acc is None else lead_acc)):
        rows = np.flatnonzero(fold == f)
        correct[rows[: round(acc * len(rows))]] = 1
    return racing.Scored(row, seed, correct, fold, test, 100)


def test_a_planted_loser_stops_after_one_seed_and_a_tie_races_on():
    evidence = {"lead": [_run("lead", 0, 0.80)], "tie": [_run("tie", 0, 0.79)], "loser": [_run("loser", 0, 0.55)]}
    dropped = racing.drops(evidence)
    assert [d.row for d in dropped] == ["loser"]
    assert dropped[0].leader == "lead" and dropped[0].seed == 0 and dropped[0].deficit == pytest.approx(-25.0)
    assert dropped[0].bound < 0 < racing.paired_bound(evidence["tie"], evidence["lead"], 2.0)[1]
    assert racing.drops(evidence, protected=frozenset({"loser"})) == []  # compared, never stopped


def test_the_bound_by_hand_rows_then_seeds():
    lead, mine = [_run("a", 0, 0.80), _run("a", 1, 0.70)], [_run("b", 0, 0.60), _run("b", 1, 0.66)]
    z = float(stats.norm.ppf(1 - 0.05))
    per_row = [m.val_correct[m.fold == 0] - a.val_correct[a.fold == 0] for m, a in zip(mine, lead)]
    d = np.array([x.mean() for x in per_row])
    rows_var = sum(x.var(ddof=1) / len(x) for x in per_row) / 4
    var = max(rows_var, d.var(ddof=1) / 2)
    deficit, bound = racing.paired_bound(mine, lead, z)
    assert deficit == pytest.approx(100 * d.mean()) and bound == pytest.approx(100 * (d.mean() + z * np.sqrt(var)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.2, 0.95), st.floats(0.2, 0.95)), min_size=1, max_size=4), st.floats(0.5, 4.0))
def test_the_bound_lies_above_the_deficit_and_drops_only_candidates_behind(pairs, z):
    lead = [_run("a", s, hi) for s, (hi, _) in enumerate(pairs)]
    mine = [_run("b", s, lo) for s, (_, lo) in enumerate(pairs)]
    deficit, bound = racing.paired_bound(mine, lead, z)
    assert bound >= deficit - 1e-9
    if bound < 0:
        assert deficit < 0


def test_runs_on_different_validation_rows_are_refused():
    other = racing.Scored("b", 0, np.ones(N, int), (np.arange(N) + 1) % 2, 0.5, 1)
    with pytest.raises(ValueError, match="seed 0: 'b' and 'a' were scored on different validation rows"):
        racing.paired_bound([other], [_run("a", 0, 0.8)], 2.0)


def test_choose_ranks_on_one_half_and_reports_the_lead_on_the_other():
    """b ranks first on the ranking half (75 vs 72 % on average) but the held-out half shows less
    of a lead: the evidence carries both, and the t-interval over seeds of the held-out one."""
    evidence = {
        "a": [_run("a", s, r, h, test=0.7) for s, (r, h) in enumerate([(0.70, 0.70), (0.72, 0.72), (0.74, 0.74)])],
        "b": [_run("b", s, r, h, test=0.8) for s, (r, h) in enumerate([(0.71, 0.70), (0.75, 0.73), (0.79, 0.74)])],
        "c": [_run("c", 0, 0.40)],
    }
    drop = racing.Drop("c", 0, "b", -31.0, -20.0)
    chosen = racing.choose(evidence, ["a", "b"], {"c": drop}, study="s", seeds=[0, 1, 2], strategy="race", runs=4)
    assert chosen.winner == "b" and chosen.runner_up == "a"
    held = np.array([0.00, 0.01, 0.00])
    assert chosen.lead == pytest.approx(100 * held.mean()) and chosen.ranked_lead == pytest.approx(100 * 0.03)
    half = stats.t.ppf(0.975, 2) * held.std(ddof=1) / np.sqrt(3)
    assert chosen.lead_hi == pytest.approx(100 * (held.mean() + half))
    c = {s.row: s for s in chosen.candidates}
    assert c["c"].dropped_after == 0 and c["c"].seeds == [0] and c["b"].seeds == [0, 1, 2] and c["b"].steps == 300
    assert c["b"].val_mean == pytest.approx(75.0) and c["b"].test_mean == pytest.approx(80.0)
    assert chosen.steps == 700 and "held-out validation rows" in chosen.summary() and "(race)" in chosen.summary()
    alone = racing.choose({"a": evidence["a"][:1]}, ["a"], {}, study="s", seeds=[0], strategy="exhaustive")
    assert alone.winner == "a" and alone.lead is None and alone.summary().endswith("'a' (s)")


def test_a_race_at_a_rung_finishes_the_winner_and_the_baselines_and_counts_each_step_once():
    """Rung runs cost 100 steps (in the DCJT family, 30 of them a warm-up shared once a seed);
    finishing a rung at the full budget (300 steps) costs the 200 beyond it."""
    family = lambda row, seed, acc: replace(_run(row, seed, acc), shared=30)  # noqa: E731
    evidence = {
        "target_only": [_run("target_only", s, 0.70) for s in (0, 1)],
        "straight": [_run("straight", 0, 0.40)],
        "dcjt": [family("dcjt", s, 0.74) for s in (0, 1)],
        "latent": [family("latent", s, 0.76) for s in (0, 1)],
    }
    survivors, dropped = ["target_only", "dcjt", "latent"], {"straight": racing.Drop("straight", 0, "latent", -36.0, -25.0)}
    order = racing.standing(evidence, survivors, dropped)
    assert order == ["latent", "dcjt", "target_only", "straight"]
    assert racing.finishing(order, ("target_only", "straight")) == ["latent", "target_only", "straight"]
    assert racing.finishing(["target_only", "dcjt", "latent", "straight"], ("target_only", "straight")) == [
        "target_only",
        "straight",
    ]
    full = {"latent": (0.77, 0.70), "target_only": (0.72, 0.72), "straight": (0.50, 0.40)}
    finished = {r: replace(_run(r, 0, acc, test=test), steps=300) for r, (acc, test) in full.items()}
    chosen = racing.choose(evidence, survivors, dropped, finished, study="s", seeds=[0, 1], strategy="race", rung=1 / 3)
    c = {s.row: s for s in chosen.candidates}
    assert chosen.winner == "latent" and chosen.runner_up == "dcjt" and c["dcjt"].full_val is None
    assert chosen.full_versus == "target_only" and chosen.full_lead == pytest.approx(5.0)  # over the best other finalist
    assert c["latent"].steps == 2 * 70 + 200 and c["dcjt"].steps == 2 * 70 and c["target_only"].steps == 2 * 100 + 200
    assert c["straight"].steps == 100 + 200 and c["straight"].full_test == pytest.approx(40.0)
    assert c["latent"].full_val == pytest.approx(77.0) and c["latent"].test_mean == pytest.approx(50.0)  # the rung's test
    assert chosen.steps == (2 * 70 + 200) + 2 * 70 + (2 * 100 + 200) + 300 + 2 * 30
    assert "on 33% of the epochs, finalists finished" in chosen.summary()
    assert "at the full budget +5.00 over 'target_only'" in chosen.summary()
