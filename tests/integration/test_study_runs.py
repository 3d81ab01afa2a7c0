"""A two-row study on the tiny world end to end: tracked in MLflow, resumed from ZenML's cache."""

from __future__ import annotations

import re

import mlflow
import numpy as np
import pandas as pd
import pytest

from helpers.pipeline import SMALLEST

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_two_row_study_tracks_rows_and_resumes_from_the_cache():
    from zenml.client import Client

    from app.study import StudySpec, run_study

    rows = ["target only (A, DL)", "DCJT"]
    spec = StudySpec("tiny", "main", [0], overrides=SMALLEST, only=rows, name="tiny-study")
    first = run_study(spec, progress=lambda _: None)
    assert list(first.summary["row"]) == rows
    assert first.csv_path.exists() and "| DCJT |" in first.md_path.read_text()
    records = pd.read_csv(first.csv_path)
    assert set(records.columns) >= {"row", "seed", "accuracy", "images_seen", "epochs_run", "subset_purity", "pseudo_rmse"}
    dcjt, target = (records.set_index("row").loc[r] for r in ("DCJT", "target only (A, DL)"))
    assert dcjt["images_seen"] > target["images_seen"]  # same recipe, B seen on joint epochs
    assert np.isfinite(dcjt["remaining_correct_after"])  # stage 3's columns only where a row uses stage 3
    assert "remaining_correct_after" not in target or np.isnan(target["remaining_correct_after"])
    dcjt_line = first.summary.set_index("row").loc["DCJT"]
    assert np.isfinite(dcjt_line["diff"]) and np.isnan(dcjt_line["diff_lo"])  # one seed: no interval over seeds
    study_run = mlflow.get_run(first.mlflow_run_id)
    assert study_run.data.tags["study"] == "tiny-study" and study_run.data.tags["table"] == "main"
    artifacts = {f.path for f in mlflow.MlflowClient().list_artifacts(first.mlflow_run_id)}
    assert {"study.csv", "study.md", "study.png"} <= artifacts
    tagged = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string="tags.study = 'tiny-study'")
    assert {r.data.tags.get("row") for r in tagged} >= set(rows)
    # Run again (as after an interruption): nothing is trained again.
    again = run_study(spec, progress=lambda _: None)
    pd.testing.assert_frame_equal(again.summary, first.summary)
    last_runs = Client().list_pipeline_runs(sort_by="desc:created", size=2).items
    for run in last_runs:
        trained = {n: str(s.status) for n, s in run.steps.items() if n.startswith("train_")}
        assert set(trained.values()) == {"cached"}, trained


def test_rows_that_warm_up_alike_go_on_from_one_warm_up_a_seed():
    """Two rows of the DCJT family, each its own pipeline run: the first trains the warm-up on A,
    the second finds it in ZenML's cache; both go on from it (the same numbers as warming up
    alone: tests/unit/test_warmup.py)."""
    from zenml.client import Client

    from app.study import StudySpec, run_study

    settings = (*SMALLEST, "dcn.epochs=3", "dcn.warmup_epochs=1")
    spec = StudySpec("tiny", "select", [0], overrides=settings, only=["dcjt", "cls_gated_none"], name="tiny-warmup")
    records = pd.read_csv(run_study(spec, progress=lambda _: None).csv_path)
    shared = records["warmup_steps"]
    assert (shared > 0).all() and shared.nunique() == 1 and (records["steps"] > shared).all(), records
    first, second = reversed(Client().list_pipeline_runs(sort_by="desc:created", size=2).items)
    assert str(first.steps["train_warmup"].status) == "completed" and str(second.steps["train_warmup"].status) == "cached"
    # The same rows cut at a rung, beside the later checkpoints of the runs above (a select race after an
    # exhaustive one): they train without their folders, from the start, yet their recipe's warm-up is the
    # seed's, so the steps a selection counts (a fresh one's) leave it to the warm-up, as above.
    rung = StudySpec("tiny", "select", [0], overrides=(*settings, "budget.rung=0.5"), only=spec.only, name="tiny-warmup-rung")
    cut = pd.read_csv(run_study(rung, progress=lambda _: None).csv_path)
    assert (cut["warmup_steps"] == shared).all() and (cut["steps"] < records["steps"]).all(), cut


def test_select_races_out_a_planted_loser_and_registers_the_winner_from_its_own_run():
    """B's annotators call every emotion the next one (a planted permutation, B larger than A) and
    every row takes the same optimiser steps: the straight merge learns B's criteria and trails A
    alone. The race trains both on a third of their epochs at seed 0 (one pipeline run: target only
    its own row, straight beside it) and stops the merge there; target only runs seed 1's rung
    alone. Then both (the winner and a baseline) go on from their seed-0 rung to the full budget in
    one run; the winner is registered from it, no pipeline runs after that, and its promotion
    and model card compare it with that run's straight row."""
    from zenml.client import Client

    from app.select import run_select
    from app.select_request import RaceSettings
    from dcjt.models.emotions import EMOTIONS

    candidates = ["target_only", "straight"]  # row ids (a label is accepted too)
    swaps = {e: (EMOTIONS[(i + 1) % len(EMOTIONS)], 1.0) for i, e in enumerate(EMOTIONS)}
    planted = {"data.world.extra.random_swaps": swaps, "data.world.extra.noise": 0.0, "budget.mode": "steps"}
    planted |= {"model_name": "tiny-select", "val_fraction": 0.5}  # half of A's train rows validate: ~80 a half
    planted |= {"m_a.epochs": 1, "m_b.epochs": 1}  # stages 1-2 feed neither row
    # alpha 0.5 (z = 0: a deficit stops): at this size the bound at 0.05 stopped the merge on one thread
    # count and not on another (16.8 points behind, bound -5.1; 10.5 on average over the seeds)
    outcome = run_select(
        "tiny", [0, 1], candidates=candidates, race=RaceSettings(alpha=0.5), values=planted, progress=lambda _: None
    )
    evidence = outcome.evidence
    assert evidence.winner == "target_only" and evidence.runner_up == "straight" and evidence.strategy == "race"
    scores = {c.row: c for c in evidence.candidates}
    assert scores["straight"].seeds == [0] and scores["straight"].dropped_after == 0 and scores["target_only"].seeds == [0, 1]
    assert evidence.runs == 3 and evidence.ranked_lead is not None and evidence.lead is not None
    assert evidence.rung == pytest.approx(1 / 3) and evidence.full_lead is not None and evidence.full_versus == "straight"
    assert scores["straight"].full_test is not None and scores["target_only"].full_heldout is not None
    latest = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
    assert "-s0-" in latest.name  # the finalists' run (seed 0): nothing ran after it
    trained = {n: s for n, s in latest.steps.items() if n.startswith("train_")}
    assert {str(s.status) for n, s in trained.items() if n not in ("train_m_a", "train_m_b")} == {"completed"}
    raced = mlflow.search_runs(search_all_experiments=True, filter_string="tags.study = 'tiny-select-race'")
    assert len(raced) == 3  # the three pipeline runs' parent runs (their steps' runs carry no study tag)
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("tiny-select", "champion")
    assert version.tags["selection.winner"] == "target_only" and version.tags["pipeline_run_id"]
    source = client.get_run(version.tags["mlflow_run_id"])  # the row's training run, inside the seed-0 race run
    parent = client.get_run(source.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["row_id"] == "target_only" and parent.data.params["seed"] == "0"
    full = source.data.metrics["steps"]  # went on from its rung: every epoch in its history, the rung's logged again
    assert len(client.get_metric_history(source.info.run_id, "epoch.steps")) == source.data.metrics["epochs_run"]
    assert 1 <= source.data.metrics["resumed_epochs"] < source.data.metrics["epochs_run"]
    assert full < scores["target_only"].steps < 2 * full  # its rung at seed 1, and its seed-0 run counted once
    assert "straight" in version.description  # the run's own baseline row beside it
    card = mlflow.artifacts.load_text(f"runs:/{version.tags['mlflow_run_id']}/model_card.md")
    assert "## How this variant was chosen" in card and "held-out validation rows" in card and "stopped after seed" in card
    assert "full budget: test %" in card and "went on from those runs to the full budget at seed 0" in card


def test_a_cross_world_study_scores_regret_and_resumes_from_its_worlds():
    """One suite world trained at the tiny scale (two rows, one seed), a second world planted from
    its files with the rows' test scores swapped: the summary reads both back without training
    and scores regret and the selection rules on known numbers."""
    import shutil

    from app.study import StudySpec, run_world_study
    from dcjt.experiments.regret import RULES, SELECT_POOLED

    rows = ["target only (A, DL)", "straight A + B"]
    small = ("data.world.n_target=420", "data.world.n_extra=700")
    seen: list[str] = []
    spec = StudySpec("tiny", "select", [0], overrides=small, only=rows, name="tiny-worlds")
    first = run_world_study(spec, ["close"], progress=seen.append)
    records = pd.read_csv(first.csv_path)
    assert set(records["world"]) == {"close"} and len(records) == 2
    assert records["subset_purity"].min() > 0.85  # the run used the close world: B's labels near the truth
    assert set(first.summary["row"]) == set(rows) | set(RULES)
    # plant a second world: the same files with the two rows' test accuracies swapped
    folder = first.md_path.parent.parent
    shutil.copytree(folder / "tiny-worlds-close", folder / "tiny-worlds-random-swaps")
    planted = folder / "tiny-worlds-random-swaps" / "study.csv"
    table = pd.read_csv(planted)
    table["accuracy"] = table["accuracy"].to_numpy()[::-1]
    table.to_csv(planted, index=False)
    seen.clear()
    both = run_world_study(spec, ["close", "random-swaps"], progress=seen.append)
    assert sum("read back from" in line for line in seen) == 2 and not any("seed 0, row" in line for line in seen)
    gap = 100 * abs(table["accuracy"].iloc[0] - table["accuracy"].iloc[1])
    regret = both.summary.set_index("row")["regret_mean"]
    assert regret[rows[0]] == pytest.approx(gap / 2) and regret[rows[1]] == pytest.approx(gap / 2)
    pooled = both.long[both.long["row"] == SELECT_POOLED].set_index("world")
    assert pooled.loc["close", "chosen"] == pooled.loc["random-swaps", "chosen"]  # same validation scores: same pick
    assert both.select_regret == pytest.approx(gap / 2)
    text = both.md_path.read_text()
    assert "regret across 2 worlds" in text and "#### tiny-worlds-close" in text and "`random-swaps`:" in text
    assert (both.md_path.parent / "regret.png").is_file() and (both.md_path.parent / "regret.csv").is_file()
    tracked = mlflow.search_runs(
        search_all_experiments=True, output_format="list", filter_string="tags.`dcjt.kind` = 'world-study'"
    )
    assert tracked and tracked[0].data.metrics["select_regret"] == pytest.approx(gap / 2)


def test_select_refuses_a_truth_row_and_candidates_without_a_baseline_and_its_help_counts_the_real_candidates():
    from click.testing import CliRunner

    import run
    from app.select import run_select
    from app.select_request import CANDIDATES, RaceSettings, threads_per_run
    from dcjt.experiments.tables import StudyError

    for oracle in ("oracle", "oracle (B relabeled by truth)"):  # by id or by label
        with pytest.raises(StudyError, match=rf"'{re.escape(oracle)}' reads the synthetic world's hidden truth"):
            run_select("tiny", [0, 1], candidates=["dcjt", oracle], progress=lambda _: None)
    with pytest.raises(StudyError, match=r"none of \['dcjt', 'cls_gated_none'\] is a baseline \(target_only, straight"):
        run_select("tiny", [0, 1], candidates=["dcjt", "cls_gated_none"], progress=lambda _: None)
    with pytest.raises(StudyError, match=r"--strategy race with --seeds \[0\]: a race stops candidates between seeds"):
        run_select("tiny", [0], candidates=["dcjt", "target_only"], progress=lambda _: None)
    for race, why in [
        (RaceSettings(strategy="halving"), "--strategy 'halving': expected one of race, exhaustive"),
        (RaceSettings(alpha=1.0), "--alpha 1.0: expected a probability between 0 and 1"),
        (RaceSettings(parallel=10_000), "--parallel 10000 with 1 thread"),
        (RaceSettings(parallel=0), "--parallel 0: expected 1 or more"),
        (RaceSettings(rung=0.0), "--rung 0.0: expected a share of the epochs in (0, 1]"),
        (RaceSettings(rung=1.5), "--rung 1.5: expected a share of the epochs in (0, 1]"),
        (RaceSettings(strategy="exhaustive", rung=0.5), "--rung 0.5 with --strategy exhaustive: only a race trains"),
    ]:
        with pytest.raises(StudyError, match=re.escape(why)):
            run_select("tiny", [0, 1], candidates=["dcjt", "target_only"], race=race, progress=lambda _: None)
    assert RaceSettings().budget_share() == pytest.approx(1 / 3) and RaceSettings(rung=1.0).budget_share() is None
    assert RaceSettings(strategy="exhaustive").budget_share() is None
    assert threads_per_run(2, None, 16, 0) == 8 and threads_per_run(1, None, 16, 0) is None
    with pytest.raises(StudyError, match=r"--parallel 4 with 4 thread\(s\) a run needs 16 cores; this machine has 8"):
        threads_per_run(4, 4, 8, 0)
    with pytest.raises(StudyError, match=r"--parallel 2: this machine has 1 CUDA device\(s\), one a run"):
        threads_per_run(2, None, 16, 1)
    help_text = CliRunner().invoke(run.cli, ["select", "--help"], terminal_width=200).output
    assert f"default: all {len(CANDIDATES)}: {', '.join(CANDIDATES)}" in " ".join(help_text.split())
