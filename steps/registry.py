"""Register the DCN in the MLflow model registry and promote it only when it wins.

The new version gets alias ``challenger``; it becomes ``champion`` only if its test accuracy
beats the current champion's (or there is none). Decision and both numbers are version tags.
ZenML's Model Control Plane mirrors it (stage production / staging). Any failure after the
version is created deletes that version, so the registry and champion stay as they were.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import mlflow
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from zenml import step

from dcjt.serving import DCNPyfunc, save_model_files
from steps.common import REPO_ROOT, child_run, core_cache_policy

ACCURACY_TAG = "test_accuracy"


def model_signature() -> ModelSignature:
    from dcjt.data.labels import EMOTIONS

    inputs = Schema([ColSpec("string", "image", required=False), ColSpec("binary", "image_bytes", required=False)])
    outputs = Schema(
        [
            ColSpec("long", "label"),
            ColSpec("string", "emotion"),
            *[ColSpec("double", f"prob_{e}") for e in EMOTIONS],
            ColSpec("double", "valence"),
            ColSpec("double", "arousal"),
            ColSpec("string", "error"),  # empty, or why an input was refused (unreadable, too small)
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def _alias(client: mlflow.MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def current_champion(client: mlflow.MlflowClient, name: str):
    return _alias(client, name, "champion")


def _mirror_in_zenml(name: str, version: str, promoted: bool, accuracy: float) -> None:
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
    mv = client.create_model_version(
        model_name_or_id=name, name=f"mlflow-v{version}", description=f"MLflow version {version}, test accuracy {accuracy:.4f}"
    )
    client.update_model_version(
        model_name_or_id=name, version_name_or_id=mv.id, stage="production" if promoted else "staging", force=True
    )


def register_version(
    model: torch.nn.Module,
    accuracy: float,
    model_name: str,
    *,
    variant: str,
    example_images: list[str],
    mirror=None,
    min_side: int | None = None,
) -> dict:
    """Log + register ``model`` inside the active MLflow run; alias challenger; champion if it wins.

    ``mirror(name, version, promoted, accuracy)`` records the outcome elsewhere (ZenML). If anything
    fails after the version exists, the version is deleted and the aliases restored.
    """
    client = mlflow.MlflowClient()
    run = mlflow.active_run()
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = save_model_files(model, Path(tmp), min_side)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DCNPyfunc(),
            artifacts=artifacts,
            code_paths=[str(REPO_ROOT / "dcjt")],
            signature=model_signature(),
            input_example=pd.DataFrame({"image": example_images}),
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "torchvision",
                "opencv-python-headless<5",
                "pillow",
                "pandas",
                "numpy",
            ],
        )
    champion = current_champion(client, model_name)
    previous = {alias: v.version for alias in ("champion", "challenger") if (v := _alias(client, model_name, alias))}
    version = mlflow.register_model(info.model_uri, model_name)
    try:
        champion_acc = float(champion.tags[ACCURACY_TAG]) if champion is not None and ACCURACY_TAG in champion.tags else None
        promoted = champion_acc is None or accuracy > champion_acc
        tags = {
            ACCURACY_TAG: f"{accuracy:.6f}",
            "champion_accuracy_before": "none" if champion_acc is None else f"{champion_acc:.6f}",
            "promotion": "promoted" if promoted else "kept champion",
            "variant": variant,
            "mlflow_run_id": run.info.run_id if run else "",
        }
        for k, v in tags.items():
            client.set_model_version_tag(model_name, version.version, k, v)
        client.set_registered_model_alias(model_name, "challenger", version.version)
        if promoted:
            client.set_registered_model_alias(model_name, "champion", version.version)
        if mirror is not None:
            mirror(model_name, version.version, promoted, accuracy)
    except BaseException:
        client.delete_model_version(model_name, version.version)
        for alias, v in previous.items():
            client.set_registered_model_alias(model_name, alias, v)
        raise
    return {
        "model_name": model_name,
        "version": str(version.version),
        "model_uri": info.model_uri,
        "promoted": promoted,
        "accuracy": accuracy,
        "champion_accuracy_before": champion_acc,
        "champion_version": str(version.version) if promoted else (str(champion.version) if champion else None),
    }


@step(cache_policy=core_cache_policy())
def register_and_promote(
    model: torch.nn.Module,
    evaluation: dict,
    target_table: pd.DataFrame,
    model_name: str,
    parent_run_id: str,
    min_image_side: int | None = None,
) -> Annotated[dict, "promotion"]:
    """Log the DCN as a pyfunc model, register it, alias it challenger, promote it if it wins."""
    accuracy = float(evaluation["test_accuracy"])
    example = target_table.loc[target_table["split"] == "test", "image"].head(2).astype(str).tolist()
    with child_run(parent_run_id, "register"):
        promotion = register_version(
            model,
            accuracy,
            model_name,
            variant=str(evaluation.get("variant")),
            example_images=example,
            mirror=_mirror_in_zenml,
            min_side=min_image_side,
        )
        mlflow.log_metrics({"test_accuracy": accuracy})
        mlflow.set_tags(
            {"promotion": "promoted" if promotion["promoted"] else "kept champion", "registered_version": promotion["version"]}
        )
    return promotion
