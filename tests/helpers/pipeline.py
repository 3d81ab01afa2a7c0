"""The tiny pipeline run most integration tests share (``configs/tiny.yaml``) and the registry it fills."""

from __future__ import annotations

import mlflow

# The smallest world a whole run of the tiny profile finishes on (20 validation rows, one epoch per
# stage model, the DCJT row alone): for tests that assert what a run does (its stores, console,
# schedule, concurrency), not what it learns. About 20 s of CPU instead of 40.
SMALLEST = (
    "data.world.n_target=200",
    "data.world.n_extra=300",
    "m_a.epochs=1",
    "m_b.epochs=1",
    "dcn.epochs=2",
    "gates.min_val_rows=10",
    "baselines=[]",
)


def set_args(settings) -> list[str]:
    """``--set`` arguments of the command line for ``settings``."""
    return [arg for s in settings for arg in ("--set", s)]


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
