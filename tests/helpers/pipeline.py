"""The tiny pipeline run most integration tests share (``configs/tiny.yaml``) and the registry it fills."""

from __future__ import annotations

import mlflow


def run_tiny(*extra: str):
    """The whole pipeline on the tiny world (``configs/tiny.yaml``) with ``extra`` ``--set`` values."""
    from app.runner import run_pipeline
    from dcjt.config_files import load_config

    return run_pipeline(load_config("tiny", list(extra)))


def demo_registry(name: str = "dcjt-synthetic"):
    """(client, sorted version numbers, the champion version) of a registered model."""
    client = mlflow.MlflowClient()
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    champion = client.get_model_version_by_alias(name, "champion")
    return client, versions, champion
