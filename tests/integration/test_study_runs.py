"""A two-row study on the tiny world end to end: tracked in MLflow, resumed from ZenML's cache."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_two_row_study_tracks_rows_and_resumes_from_the_cache():
    from zenml.client import Client

    from app.study import run_study

    rows = ["target only (A, DL)", "DCJT"]
    first = run_study("tiny", "main", [0], only=rows, name="tiny-study", progress=lambda _: None)
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
    again = run_study("tiny", "main", [0], only=rows, name="tiny-study", progress=lambda _: None)
    pd.testing.assert_frame_equal(again.summary, first.summary)
    last_runs = Client().list_pipeline_runs(sort_by="desc:created", size=2).items
    for run in last_runs:
        trained = {n: str(s.status) for n, s in run.steps.items() if n.startswith("train_")}
        assert set(trained.values()) == {"cached"}, trained


def test_select_registers_the_planted_winner_with_its_evidence():
    """B's labels are pure noise in this world, so A alone must beat the straight merge on
    validation: select picks it over two seeds and registers it with the evidence."""
    from app.select import run_select

    candidates = ["target only (A, DL)", "straight A + B"]
    planted = {"data.world.extra.noise": 1.0, "model_name": "tiny-select"}
    outcome = run_select("tiny", [0, 1], candidates=candidates, values=planted, progress=lambda _: None)
    evidence = outcome.evidence
    assert evidence.winner == "target only (A, DL)" and evidence.runner_up == "straight A + B"
    assert evidence.lead > 0 and [c.row for c in evidence.candidates] == candidates
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("tiny-select", "champion")
    assert version.tags["selection.winner"] == "target only (A, DL)" and "extra-none" in version.tags["variant"]
    card = mlflow.artifacts.load_text(f"runs:/{version.tags['mlflow_run_id']}/model_card.md")
    assert "## How this variant was chosen" in card and "straight A + B" in card
