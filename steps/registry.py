"""Register the DCN in the MLflow model registry and promote it only when it wins.

The model is logged (from code, with its model card) into the run that trained it, registered,
and aliased ``challenger``. The promotion gate then scores the current ``champion`` in this run,
with the same code, on the same rows of A as the challenger (``dcjt.promotion``); the challenger
becomes ``champion`` only if it wins on the configured metric. Scores, the digests of the rows
they were computed on, and the decision are version tags and metrics of the ``register`` run.
ZenML's Model Control Plane mirrors the outcome. Any failure after the version is created deletes
that version and restores the aliases, so the registry is as it was.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Annotated

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from zenml import step

from dcjt.config import PromotionConfig
from dcjt.data.cache import load_cache
from dcjt.data.identity import keys_digest, row_keys
from dcjt.data.images import decode
from dcjt.data.labels import split_rows
from dcjt.method.truth import criteria_report
from dcjt.model_card import model_card
from dcjt.packaging import MODEL_CODE, serving_requirements, stage_code
from dcjt.promotion import Decision, decide
from dcjt.serving import encode_arrays, load_network, save_model_files
from dcjt.train.predict import split_report
from steps.common import child_run, core_cache_policy, log_tables, stderr_to_log, table_name, table_source
from steps.handoff import CacheRef

GATE_SPLITS = ("val", "test")
MODEL_DESCRIPTION = (
    "DCJT facial-expression model: 7 emotions (RAF-DB order) + valence/arousal from a face crop. "
    "Alias `champion`: the version that won the promotion gate on the target's evaluation; "
    "`challenger`: the newest version. Each version's description and model card say what it was trained on."
)


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


def stage_numbers(stats: dict, target_pseudo: pd.DataFrame, extra_marked: pd.DataFrame, extra_prepared: pd.DataFrame) -> dict:
    """Stages 1-3 in numbers for the model card: subset kept, relabeled, clipped, criteria audit."""
    numbers = {
        "subset kept fraction": stats["subset"].get("kept_fraction"),
        "relabeled fraction of B - subB": stats["relabel"].get("changed_fraction"),
        "mapped rows clipped to [-1, 1]": stats["mapping"].get("n_clipped"),
    }
    _, audit = criteria_report(
        split_rows(target_pseudo, "train"), split_rows(extra_marked, "train"), split_rows(extra_prepared, "train")
    )
    return {k: v for k, v in {**numbers, **audit}.items() if v is not None}


def score_splits(model: torch.nn.Module, table: pd.DataFrame, cache: str) -> dict[str, dict]:
    """The report of ``model`` on each gate split (same code for challenger and champion)."""
    images = load_cache(cache)
    return {split: split_report(model, table, images, split=split) for split in GATE_SPLITS}


TRAINING_ROWS = "training_rows.npy"  # the training run's record of the rows a model trained on


def training_row_keys(target_table: pd.DataFrame, extra_table: pd.DataFrame) -> np.ndarray:
    """Keys of the rows a DCN trained on: A's train rows and every train row of the extras."""
    a = row_keys(split_rows(target_table, "train"), target_table)
    b = row_keys(split_rows(extra_table, "train"), extra_table) if len(extra_table) else np.zeros(0, np.uint64)
    return np.union1d(a, b)


def record_training_rows(run_id: str, keys: np.ndarray) -> dict[str, str]:
    """Store the keys beside the model's training run; the version tags that point at them."""
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        path = Path(tmp) / TRAINING_ROWS
        np.save(path, np.asarray(keys, dtype=np.uint64))
        mlflow.log_artifact(str(path))
    return {
        "training_rows.uri": f"runs:/{run_id}/{TRAINING_ROWS}",
        "training_rows.digest": keys_digest(keys),
        "training_rows.count": str(len(keys)),
    }


def champion_training_rows(champion) -> np.ndarray | None:
    """The champion's recorded training-row keys (None: registered before they were recorded)."""
    uri = champion.tags.get("training_rows.uri")
    if not uri:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return np.load(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp), allow_pickle=False)


def unrecorded_champion(model_name: str) -> str | None:
    """Why the current champion cannot be gated (no record of its training rows), or None."""
    champion = current_champion(mlflow.MlflowClient(), model_name)
    if champion is None or champion.tags.get("training_rows.uri"):
        return None
    return (
        f"promotion: champion version {champion.version} of {model_name} has no record of its training rows "
        "(registered before they were recorded), so the gate cannot check that it never trained on the rows it would "
        "be scored on; rerun with --force-promote to replace it with this run's model, or --set register_model=false"
    )


def overlap_problem(champion, own_keys: np.ndarray | None, eval_keys: np.ndarray, split: str) -> str | None:
    """Why the champion cannot be compared on ``eval_keys`` (it trained on some of them), or None."""
    if own_keys is None:
        return f"champion version {champion.version} has no record of its training rows: not comparable on this run's rows"
    shared = np.intersect1d(own_keys, eval_keys)
    if not len(shared):
        return None
    return (
        f"champion version {champion.version} trained on {len(shared)} of the {len(eval_keys)} {split} rows it would be "
        f"scored on (its training rows {keys_digest(own_keys)}, this run's {split} rows {keys_digest(eval_keys)}): "
        "not comparable"
    )


def score_champion(champion, model_name: str, image_size: int, table: pd.DataFrame, cache: str):
    """(scores, None) for a usable champion, (None, why not) for one that cannot be scored here."""
    try:
        network = load_network(f"models:/{model_name}/{champion.version}")
    except Exception as exc:  # any load failure: the champion is reported, never deleted
        return None, f"champion version {champion.version} cannot be loaded: {type(exc).__name__}: {str(exc)[:300]}"
    if getattr(network, "image_size", None) != image_size:
        return None, (
            f"champion version {champion.version} takes {getattr(network, 'image_size', '?')} px images, "
            f"this run {image_size} px: not comparable on the same data"
        )
    return score_splits(network, table, cache), None


def log_dcn(
    model: torch.nn.Module, *, run_id: str, example_images: list[str], min_side: int | None, card: str
) -> mlflow.models.model.ModelInfo:
    """Log the DCN as a pyfunc model (from code) with its card into the run that trained it."""
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
        artifacts = save_model_files(model, Path(tmp) / "files", min_side)
        (Path(tmp) / "model_card.md").write_text(card)
        artifacts["model_card"] = str(Path(tmp) / "model_card.md")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            code_paths=[str(stage_code(Path(tmp) / "code"))],
            signature=model_signature(),
            input_example=encode_arrays([decode(p) for p in example_images]),  # clients send bytes
            pip_requirements=serving_requirements(),
        )
        mlflow.log_text(card, "model_card.md")
    return info


def register_version(
    info: mlflow.models.model.ModelInfo,
    model_name: str,
    *,
    decision: Decision,
    tags: dict[str, str],
    description: str,
    gated_against: str | None = None,
    mirror=None,
) -> dict:
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
    previous = {alias: v.version for alias in ("champion", "challenger") if (v := _alias(client, model_name, alias))}
    with stderr_to_log():
        version = mlflow.register_model(info.model_uri, model_name)
    try:
        if not client.get_registered_model(model_name).description:
            client.update_registered_model(model_name, description=MODEL_DESCRIPTION)
        client.update_model_version(model_name, version.version, description=f"{description} Promotion: {decision.reason}.")
        for k, v in tags.items():
            client.set_model_version_tag(model_name, version.version, k, v)
        client.set_registered_model_alias(model_name, "challenger", version.version)
        if decision.promoted:
            client.set_registered_model_alias(model_name, "champion", version.version)
        if mirror is not None:
            mirror(model_name, version.version, decision.promoted, float(tags.get("test_accuracy", "nan")))
    except BaseException:
        client.delete_model_version(model_name, version.version)
        for alias, v in previous.items():
            client.set_registered_model_alias(model_name, alias, v)
        raise
    return {
        "model_name": model_name,
        "version": str(version.version),
        "model_uri": info.model_uri,
        "promoted": decision.promoted,
        "verdict": decision.verdict,
        "reason": decision.reason,
        "accuracy": float(tags.get("test_accuracy", "nan")),
        "gate_metric_challenger": decision.challenger,
        "gate_metric_champion": decision.champion,
        "champion_version_before": str(champion.version) if champion else None,
        "champion_version": str(version.version) if decision.promoted else (str(champion.version) if champion else None),
    }


def promotion_gate(
    challenger: dict[str, dict],
    champion,
    champion_scores: dict[str, dict] | None,
    champion_problem: str | None,
    settings: PromotionConfig,
    seed: int = 0,
    problem_verdict: str = "champion unusable",
) -> tuple[Decision, dict[str, str]]:
    """Decide on the gate split and return the decision with the version tags that record it."""
    split = settings.metric.removesuffix("_accuracy")
    decision = decide(
        np.asarray(challenger[split][f"{split}_correct"]),
        None if champion_scores is None else np.asarray(champion_scores[split][f"{split}_correct"]),
        metric=settings.metric,
        min_margin=settings.min_margin,
        bootstrap=settings.bootstrap,
        samples=settings.bootstrap_samples,
        force=settings.force,
        champion_problem=champion_problem,
        problem_verdict=problem_verdict,
        seed=seed,
    )
    tags = {
        "promotion.metric": settings.metric,
        "promotion.verdict": decision.verdict,
        "promotion.reason": decision.reason[:4900],
        "promotion.champion_version": str(champion.version) if champion else "none",
    }
    for s in GATE_SPLITS:
        tags[f"promotion.challenger_{s}_accuracy"] = f"{challenger[s][f'{s}_accuracy']:.6f}"
        theirs = "none" if champion_scores is None else f"{champion_scores[s][f'{s}_accuracy']:.6f}"
        tags[f"promotion.champion_{s}_accuracy"] = theirs
    if decision.interval is not None:
        tags["promotion.interval"] = f"[{decision.interval[0]:+.4f}, {decision.interval[1]:+.4f}]"
    return decision, tags


def promote(
    model: torch.nn.Module,
    *,
    evaluation: dict,
    training_run_id: str,
    target_table: pd.DataFrame,
    target_cache: str,
    extra_table: pd.DataFrame,
    stage_numbers: dict,
    recipe: dict,
    model_name: str,
    settings: PromotionConfig,
    parent_run_id: str,
    seed: int = 0,
    min_side: int | None = None,
    mirror=_mirror_in_zenml,
) -> dict:
    """Score challenger and champion on the same rows of A, log the DCN (with its model card) into
    its training run, register it as challenger, promote it only if it wins.

    ``evaluation``: the challenger's test-split report (``split_report``) with its ``variant``."""
    client = mlflow.MlflowClient()
    variant = str(evaluation.get("variant"))
    challenger = {"val": split_report(model, target_table, load_cache(target_cache), split="val"), "test": evaluation}
    champion = current_champion(client, model_name)
    scores, problem = (None, None)
    split = settings.metric.removesuffix("_accuracy")
    verdict = "champion unusable"
    if champion is not None:
        eval_keys = row_keys(split_rows(target_table, split), target_table)
        try:
            own_keys = champion_training_rows(champion)
        except Exception as exc:  # its files are gone: reported like a champion that cannot be loaded
            own_keys, problem = None, f"champion version {champion.version} cannot be loaded: {type(exc).__name__}: {exc}"[:400]
        if problem is None:
            problem = overlap_problem(champion, own_keys, eval_keys, split)
            verdict = "champion unusable" if problem is None else "not comparable"
        if problem is None:
            scores, problem = score_champion(champion, model_name, model.image_size, target_table, target_cache)
    decision, gate_tags = promotion_gate(challenger, champion, scores, problem, settings, seed, verdict)
    sources = {"target (A)": table_source(target_table), "extra (B)": table_source(extra_table)}
    card = model_card(
        model_name=model_name,
        variant=variant,
        sources=sources,
        target_table=target_table,
        extra_table=extra_table,
        stage_numbers=stage_numbers,
        evaluation=evaluation,
        recipe=recipe,
        decision=decision.as_dict(),
    )
    example = split_rows(target_table, "test")["image"].head(2).astype(str).tolist()
    info = log_dcn(model, run_id=training_run_id, example_images=example, min_side=min_side, card=card)
    rows_tags = record_training_rows(training_run_id, training_row_keys(target_table, extra_table))
    try:
        with child_run(parent_run_id, "register"):
            evaluated = [
                (table_name(split_rows(target_table, s), s), split_rows(target_table, s), "evaluation") for s in GATE_SPLITS
            ]
            digests = dict(zip(GATE_SPLITS, log_tables(evaluated).values()))
            tags = {
                **gate_tags,
                **rows_tags,
                **{f"promotion.{s}_digest": d for s, d in digests.items()},
                "test_accuracy": f"{challenger['test']['test_accuracy']:.6f}",
                "val_accuracy": f"{challenger['val']['val_accuracy']:.6f}",
                "variant": variant,
                "mlflow_run_id": training_run_id,
                "pipeline_run_id": parent_run_id,
            }
            description = (
                f"DCJT row `{variant}` on {sources['target (A)']} (A) + {sources['extra (B)']} (B): validation accuracy "
                f"{challenger['val']['val_accuracy']:.4f}, test accuracy {challenger['test']['test_accuracy']:.4f}. "
                "Model card: model_card.md in the training run and in the model's artifacts."
            )
            gated = str(champion.version) if champion else None
            result = register_version(
                info, model_name, decision=decision, tags=tags, description=description, gated_against=gated, mirror=mirror
            )
            numbers = {f"promotion.challenger_{s}_accuracy": challenger[s][f"{s}_accuracy"] for s in GATE_SPLITS}
            if scores is not None:
                numbers |= {f"promotion.champion_{s}_accuracy": scores[s][f"{s}_accuracy"] for s in GATE_SPLITS}
            mlflow.log_metrics(numbers)
            verdict = {"promotion": result["verdict"], "promotion.reason": result["reason"][:4900]}
            mlflow.set_tags({**verdict, "registered_version": result["version"]})
    except BaseException:
        client.delete_logged_model(info.model_id)  # nothing registered: the logged model goes too
        raise
    return result


@step(cache_policy=core_cache_policy())
def register_and_promote(
    model: torch.nn.Module,
    evaluation: dict,
    training: dict,
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    target_pseudo: pd.DataFrame,
    extra_marked: pd.DataFrame,
    extra_prepared: pd.DataFrame,
    subset_stats: dict,
    mapping_stats: dict,
    relabel_stats: dict,
    recipe: dict,
    model_name: str,
    promotion: PromotionConfig,
    seed: int,
    parent_run_id: str,
    min_image_side: int | None = None,
) -> Annotated[dict, "promotion"]:
    """The promotion gate of a pipeline run (``promote``), with the model card's stage numbers."""
    stats = {"subset": subset_stats, "mapping": mapping_stats, "relabel": relabel_stats}
    return promote(
        model,
        evaluation=evaluation,
        training_run_id=training["mlflow_run_id"],
        target_table=target_table,
        target_cache=target_cache.path,
        extra_table=extra_prepared,
        stage_numbers=stage_numbers(stats, target_pseudo, extra_marked, extra_prepared),
        recipe=recipe,
        model_name=model_name,
        settings=promotion,
        parent_run_id=parent_run_id,
        seed=seed,
        min_side=min_image_side,
    )


@step(cache_policy=core_cache_policy())
def register_finetuned(
    model: torch.nn.Module,
    evaluation: dict,
    training: dict,
    target_table: pd.DataFrame,
    target_cache: CacheRef,
    recipe: dict,
    model_name: str,
    promotion: PromotionConfig,
    seed: int,
    parent_run_id: str,
    min_image_side: int | None = None,
) -> Annotated[dict, "promotion"]:
    """The promotion gate of a fine-tuning run: the same gate as a DCJT run, without extras."""
    return promote(
        model,
        evaluation=evaluation,
        training_run_id=training["mlflow_run_id"],
        target_table=target_table,
        target_cache=target_cache.path,
        extra_table=target_table.iloc[:0],
        stage_numbers={},
        recipe=recipe,
        model_name=model_name,
        settings=promotion,
        parent_run_id=parent_run_id,
        seed=seed,
        min_side=min_image_side,
    )
