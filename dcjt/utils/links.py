"""Where a team opens what a run made: the MLflow UI's page of an MLflow run and the ZenML
dashboard's page of a pipeline run, so each can link to the other."""

from __future__ import annotations

import os

MLFLOW_UI = "http://127.0.0.1:5000"  # `mlflow ui`'s default address (DCJT_MLFLOW_UI overrides it)
ZENML_DASHBOARD = "http://127.0.0.1:8237"  # `run.py dashboard`'s default address (DCJT_ZENML_DASHBOARD overrides it)


def mlflow_ui_base(tracking_uri: str) -> str | None:
    """The UI that shows ``tracking_uri``'s runs: the server itself, or ``mlflow ui`` on a local store."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    if tracking_uri.startswith("sqlite:"):
        return os.environ.get("DCJT_MLFLOW_UI", MLFLOW_UI).rstrip("/")
    return None


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page (the runs view directly: MLflow 3's UI opens an experiment on its GenAI overview otherwise)."""
    base = mlflow_ui_base(tracking_uri)
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def zenml_dashboard_base() -> str:
    return os.environ.get("DCJT_ZENML_DASHBOARD", ZENML_DASHBOARD).rstrip("/")


def zenml_run_url(project: str, run_id: str) -> str:
    """The pipeline run's page in ZenML's dashboard (its DAG, steps, artifacts and metadata)."""
    return f"{zenml_dashboard_base()}/projects/{project}/runs/{run_id}"
