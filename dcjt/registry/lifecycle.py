"""A version's life in the MLflow registry: logged from code into the run that trained it,
registered, aliased ``challenger`` and, if the gate says so, ``champion``; rolled back whole if
anything fails after the version exists."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from pydantic import BaseModel

from dcjt.models.emotions import EMOTIONS
from dcjt.registry.gate import Decision
from dcjt.registry.packaging import MODEL_CODE, serving_requirements, stage_code
from dcjt.serving.export import export_checked
from dcjt.serving.inputs import encode_arrays
from dcjt.serving.network import save_model_files
from dcjt.serving.onnx_runtime import ONNX_FILE
from dcjt.utils.mlflow_io import stderr_to_log

MODEL_DESCRIPTION = (
    "DCJT facial-expression model: 7 emotions (RAF-DB order) + valence/arousal from a face crop. "
    "Alias `champion`: the version that won the promotion gate on the target's evaluation; "
    "`challenger`: the newest version. Each version's description and model card say what it was trained on."
)


class PromotionOutcome(BaseModel):
    """What registration did: the version, whether it became champion, and why."""

    model_name: str
    version: str
    model_uri: str
    promoted: bool
    verdict: str
    reason: str
    accuracy: float
    gate_metric_challenger: float
    gate_metric_champion: float | None = None
    champion_version_before: str | None = None
    champion_version: str | None = None


def model_signature() -> ModelSignature:
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


def alias(client: mlflow.MlflowClient, name: str, which: str):
    """The version ``which`` (champion, challenger) points at, or None."""
    try:
        return client.get_model_version_by_alias(name, which)
    except mlflow.exceptions.MlflowException:
        return None


def current_champion(client: mlflow.MlflowClient, name: str):
    return alias(client, name, "champion")


@contextlib.contextmanager
def own_sys_path():
    """MLflow loads the model to check its input example and puts the model's code folder first on
    ``sys.path`` for good. The served code is a part of ``dcjt``: a process started afterwards
    (DDP workers, worker pools) would import that part as the whole package. Restored here."""
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved


@dataclasses.dataclass(frozen=True)
class ParitySet:
    """The fixed images (preprocessed, uint8 NHWC) the ONNX graph is compared on, and their names."""

    images: np.ndarray
    names: list[str]


def log_dcn(
    model: torch.nn.Module,
    *,
    run_id: str,
    examples: list[np.ndarray],
    min_side: int | None,
    card: str,
    parity_set: ParitySet,
    requirements: list[str] | None = None,
) -> tuple[mlflow.models.model.ModelInfo, dict[str, str]]:
    """Log the DCN as a pyfunc model (from code) served by its ONNX graph, with its card, into the
    run that trained it (``examples``: the images of its input example); returns the logged model
    and the version tags of its ONNX graph.

    The graph is exported and must pass ``onnx.checker`` and parity on ``parity_set`` first:
    otherwise ``ServingExportError`` (one line, naming the worst image) and nothing is logged.
    ``requirements``: its pip requirements (default ``serving_requirements()``)."""
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = save_model_files(model, Path(tmp) / "files", min_side)
        exported, agreed = export_checked(model, Path(tmp) / "files" / ONNX_FILE, parity_set.images, parity_set.names)
        artifacts["onnx"] = str(exported.path)
        (Path(tmp) / "model_card.md").write_text(card)
        artifacts["model_card"] = str(Path(tmp) / "model_card.md")
        with mlflow.start_run(run_id=run_id), own_sys_path():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts=artifacts,
                code_paths=[str(stage_code(Path(tmp) / "code"))],
                signature=model_signature(),
                input_example=encode_arrays(examples),  # clients send bytes
                pip_requirements=requirements or serving_requirements(),
            )
            mlflow.log_text(card, "model_card.md")
            mlflow.log_metrics({"onnx.size_bytes": exported.size_bytes, "onnx.parity_max_abs_diff": agreed.max_abs_diff})
    tags = {
        # the file itself (a models:/m-... URI names the whole logged model, not a file inside it)
        "onnx": f"{mlflow.get_logged_model(info.model_id).artifact_location}/artifacts/{ONNX_FILE}",
        "onnx.opset": str(exported.opset),
        "onnx.size_bytes": str(exported.size_bytes),
        "onnx.parity": f"max |p_onnx - p_torch| {agreed.max_abs_diff:.1e} <= {agreed.atol:.0e} and the same class on "
        f"{agreed.images} validation images",
    }
    return info, tags


def register_version(
    info: mlflow.models.model.ModelInfo,
    model_name: str,
    *,
    decision: Decision,
    tags: dict[str, str],
    description: str,
    gated_against: str | None = None,
    mirror=None,
) -> PromotionOutcome:
    """Register the logged model, alias it challenger, and champion if ``decision`` says so.

    ``gated_against``: the champion version the gate scored. If another run moved ``champion``
    since, this version is not promoted (its win was against a model that is no longer champion).
    ``mirror(name, version, promoted, accuracy)`` records the outcome elsewhere (ZenML). If anything
    fails after the version exists, the version is deleted and the aliases restored."""
    client = mlflow.MlflowClient()
    champion = current_champion(client, model_name)
    now = str(champion.version) if champion else None
    if decision.promoted and decision.verdict != "forced" and now != gated_against:
        reason = f"champion moved from {gated_against} to {now} while this run was gating; rerun to compare with it"
        decision = dataclasses.replace(decision, promoted=False, verdict="champion changed", reason=reason)
        tags = {**tags, "promotion.verdict": decision.verdict, "promotion.reason": reason}
    previous = {which: v.version for which in ("champion", "challenger") if (v := alias(client, model_name, which))}
    with stderr_to_log():
        version = mlflow.register_model(info.model_uri, model_name)
    try:
        if not client.get_registered_model(model_name).description:
            client.update_registered_model(model_name, description=MODEL_DESCRIPTION)
        client.update_model_version(
            model_name, version.version, description=f"**Promotion:** {decision.reason}.\n\n{description}"
        )
        for k, v in tags.items():
            client.set_model_version_tag(model_name, version.version, k, v)
        client.set_registered_model_alias(model_name, "challenger", version.version)
        if decision.promoted:
            client.set_registered_model_alias(model_name, "champion", version.version)
        if mirror is not None:
            mirror(model_name, version.version, decision.promoted, float(tags.get("test_accuracy", "nan")))
    except BaseException:
        client.delete_model_version(model_name, version.version)
        for which, v in previous.items():
            client.set_registered_model_alias(model_name, which, v)
        raise
    before = str(champion.version) if champion else None
    return PromotionOutcome(
        model_name=model_name,
        version=str(version.version),
        model_uri=info.model_uri,
        promoted=decision.promoted,
        verdict=decision.verdict,
        reason=decision.reason,
        accuracy=float(tags.get("test_accuracy", "nan")),
        gate_metric_challenger=decision.challenger,
        gate_metric_champion=decision.champion,
        champion_version_before=before,
        champion_version=str(version.version) if decision.promoted else before,
    )
