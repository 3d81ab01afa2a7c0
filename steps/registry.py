"""The registry's steps: register the run's model and promote it only when it wins
(``dcjt.registry.promote``); ZenML's Model Control Plane mirrors each outcome.

Registration runs after every row of the run was scored (a row that fails its gate stops the run
before the registry moves). Any failure after the version is created deletes that version and
restores the aliases, so the registry is as it was.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import torch

from dcjt.method.health import failed_gates
from dcjt.method.reports import StageSummary
from dcjt.registry.card import RunData
from dcjt.registry.lifecycle import PromotionOutcome
from dcjt.registry.promote import Challenger, Registration, promote
from dcjt.train.scoring import RowEvaluation
from steps.common import dcjt_step
from steps.handoff import CacheRef
from steps.tracking import run_gates
from steps.visuals import step_metadata


def mirror_in_zenml(name: str, version: str, promoted: bool, accuracy: float) -> None:
    """The registry's outcome as a version of ZenML's model of the same name, linked to the
    pipeline run that made it and to the model artifact it registered (the Model Control Plane
    then lists the run and the artifact), with the MLflow version's URI as metadata."""
    from zenml import log_metadata
    from zenml.client import Client
    from zenml.exceptions import EntityExistsError

    client = Client()
    try:
        client.get_model(name)
    except KeyError:
        try:
            client.create_model(name=name, description="DCJT facial expression model (mirrors the MLflow registry)")
        except EntityExistsError:
            pass  # a run beside this one created it first
    uri = f"models:/{name}/{version}"
    mv = client.create_model_version(
        model_name_or_id=name, name=f"mlflow-v{version}", description=f"MLflow {uri}, test accuracy {accuracy:.4f}"
    )
    client.update_model_version(
        model_name_or_id=name, version_name_or_id=mv.id, stage="production" if promoted else "staging", force=True
    )
    log_metadata(metadata={"mlflow_model_uri": uri, "test_accuracy": accuracy, "promoted": promoted}, model_version_id=mv.id)
    _link_step_run(
        client, mv.id, {"registered_model_version": f"{name}/{mv.name}", "mlflow_model_uri": uri, "promoted": promoted}
    )


def _link_step_run(client, model_version_id, run_metadata: dict) -> None:
    """Link the running step's pipeline run and its ``model`` input to a ZenML model version, and
    name the version in the run's metadata (the open-source dashboard shows run metadata; its
    model pages are ZenML Pro's). Nothing to link outside a step."""
    from zenml import get_step_context
    from zenml.exceptions import StepContextError
    from zenml.models import ModelVersionArtifactRequest, ModelVersionPipelineRunRequest

    try:
        context = get_step_context()
    except (StepContextError, RuntimeError):  # ZenML 0.98 raises RuntimeError outside a step
        return
    store = client.zen_store
    step_metadata(run_metadata, run_id_name_or_prefix=context.pipeline_run.id)
    store.create_model_version_pipeline_run_link(
        ModelVersionPipelineRunRequest(model_version=model_version_id, pipeline_run=context.pipeline_run.id)
    )
    for artifact in client.get_run_step(context.step_run.id).inputs.get("model", []):
        store.create_model_version_artifact_link(
            ModelVersionArtifactRequest(artifact_version=artifact.id, model_version=model_version_id)
        )


@dcjt_step()
def register_and_promote(
    model: torch.nn.Module,
    rows: list[RowEvaluation],
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    extra_prepared: pd.DataFrame,
    stages: StageSummary,
    registration: Registration,
    parent_run_id: str,
) -> Annotated[PromotionOutcome, "promotion"]:
    """The promotion gate of a pipeline run for its DCN (row ``dcjt`` of ``rows``; the other rows
    are the baselines it must not lose to)."""
    challenger = Challenger(
        model,
        next(r for r in rows if r.row == "dcjt"),
        baselines=[r for r in rows if r.row != "dcjt"],
        failed_gates=failed_gates(run_gates(stages, rows)),
    )
    data = RunData(target_table, target_cache.path, extra_prepared, stages.card_numbers())
    return promote(challenger, data, registration, parent_run_id, mirror=mirror_in_zenml)


@dcjt_step()
def register_finetuned(
    model: torch.nn.Module,
    evaluation: RowEvaluation,
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    registration: Registration,
    parent_run_id: str,
) -> Annotated[PromotionOutcome, "promotion"]:
    """The promotion gate of a fine-tuning run: the same gate as a DCJT run, without extras."""
    data = RunData(target_table, target_cache.path, target_table.iloc[:0])
    return promote(Challenger(model, evaluation), data, registration, parent_run_id, mirror=mirror_in_zenml)
