"""Register a run's model and promote it only when it wins: the registry's side of a pipeline run.

The challenger (the run's DCN, already scored on A's validation and test splits) and the current
champion are compared in this run, by the same code, on the same rows of A's validation split,
rows neither trained on (``dcjt.registry.record``); the challenger is logged with its model card
into the run that trained it, registered as ``challenger`` and becomes ``champion`` only if it
wins (``dcjt.registry.gate``). The registry is as it was if anything fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict

from dcjt.config import PipelineConfig, PromotionConfig
from dcjt.data.cache import load_cache
from dcjt.data.identity import row_keys
from dcjt.data.labels import EMOTIONS, split_rows
from dcjt.models.images import decode
from dcjt.registry.card import RunData, model_card, quality_tags, version_description
from dcjt.registry.gate import GATE_SPLITS, promotion_gate, score_champion
from dcjt.registry.lifecycle import ParitySet, PromotionOutcome, current_champion, log_dcn, register_version
from dcjt.registry.record import champion_training_rows, overlap_problem, record_training_rows, training_row_keys
from dcjt.selection import SelectionEvidence
from dcjt.train.scoring import RowEvaluation
from dcjt.utils.mlflow_io import child_run, log_tables, table_name, table_source


class Registration(BaseModel):
    """Where and how a run registers its model: a slice of the run's configuration."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    promotion: PromotionConfig
    recipe: dict
    seed: int = 0
    min_side: int | None = None
    selection: SelectionEvidence | None = None

    @classmethod
    def of(cls, config: PipelineConfig, stage: str = "dcn") -> Registration:
        return cls(
            model_name=config.model_name,
            promotion=config.promotion,
            recipe=config.recipe(stage),
            seed=config.seed,
            min_side=config.min_image_side,
            selection=config.selection,
        )


def _champion_problem(champion, challenger_size: int, table: pd.DataFrame, cache: str, registration: Registration):
    """(scores, None) of a champion comparable on this run's rows, else (None, (verdict, why))."""
    split = registration.promotion.metric.removesuffix("_accuracy")
    eval_keys = row_keys(split_rows(table, split), table)
    try:
        own_keys = champion_training_rows(champion)
    except Exception as exc:  # its files are gone: reported like a champion that cannot be loaded
        why = f"champion version {champion.version} cannot be loaded: {type(exc).__name__}: {exc}"[:400]
        return None, ("champion unusable", why)
    why = overlap_problem(champion, own_keys, eval_keys, split)
    if why:
        return None, ("not comparable", why)
    scores, why = score_champion(champion, registration.model_name, challenger_size, table, cache)
    return scores, (("champion unusable", why) if why else None)


PARITY_IMAGES = 64  # the first validation rows of A: the fixed images the ONNX graph is checked on


def parity_set(table: pd.DataFrame, cache: str) -> ParitySet:
    """A's first ``PARITY_IMAGES`` validation images as the network sees them (from the run's cache)."""
    rows = split_rows(table, "val").head(PARITY_IMAGES)
    images = load_cache(cache)
    return ParitySet(np.asarray(images.images[images.positions(rows)]), rows["image"].astype(str).tolist())


@dataclass(frozen=True)
class Challenger:
    """The run's model and what the gate weighs it against: its evaluation, the run's own baseline
    rows (``promotion.beat_baselines``) and the health gates the run failed in warn mode."""

    model: torch.nn.Module
    evaluation: RowEvaluation
    baselines: list[RowEvaluation] = field(default_factory=list)
    failed_gates: list[str] = field(default_factory=list)


def promote(
    challenger: Challenger, data: RunData, registration: Registration, parent_run_id: str, mirror=None
) -> PromotionOutcome:
    """Score the champion on the challenger's rows, log the DCN (with its model card) into its
    training run, register it as challenger, promote it only if it wins (against the champion
    and, with ``promotion.beat_baselines``, against the run's own baselines; never while the
    run's failed gates (warn mode) stand, unless forced)."""
    model, baselines, failed_gates = challenger.model, challenger.baselines, challenger.failed_gates
    target_table, target_cache, extra_table = data.target_table, data.target_cache, data.extra_table
    scored = challenger.evaluation
    name, settings = registration.model_name, registration.promotion
    champion = current_champion(mlflow.MlflowClient(), name)
    scores, problem = (None, None)
    if champion is not None:
        scores, problem = _champion_problem(champion, model.image_size, target_table, target_cache, registration)
    split = settings.metric.removesuffix("_accuracy")
    others = {b.row: getattr(b, split) for b in baselines}
    decision, gate_tags = promotion_gate(
        scored, champion, scores, problem, settings, registration.seed, others, list(failed_gates)
    )
    sources = {"target (A)": table_source(target_table), "extra (B)": table_source(extra_table)}
    card = model_card(name, data, scored, sources, registration.recipe, decision.as_dict(), registration.selection)
    run_id = scored.training_run_id
    example = [decode(p) for p in split_rows(target_table, "test")["image"].head(2).astype(str)]
    info, onnx_tags = log_dcn(
        model,
        run_id=run_id,
        examples=example,
        min_side=registration.min_side,
        card=card,
        parity_set=parity_set(target_table, target_cache),
    )
    rows_tags = record_training_rows(run_id, training_row_keys(target_table, extra_table))
    try:
        with child_run(parent_run_id, "register"):
            evaluated = [
                (table_name(split_rows(target_table, s), s), split_rows(target_table, s), "evaluation") for s in GATE_SPLITS
            ]
            digests = dict(zip(GATE_SPLITS, log_tables(evaluated, EMOTIONS).values()))
            tags = {
                **gate_tags,
                **rows_tags,
                **onnx_tags,
                **{f"promotion.{s}_digest": d for s, d in digests.items()},
                "test_accuracy": f"{scored.test.accuracy:.6f}",
                "val_accuracy": f"{scored.val.accuracy:.6f}",
                **quality_tags(scored),
                "variant": scored.variant,
                "mlflow_run_id": run_id,
                "pipeline_run_id": parent_run_id,
            }
            if registration.selection is not None:
                sel = registration.selection
                tags |= {"selection.winner": sel.winner, "selection.study": sel.study, "selection": sel.summary()[:4900]}
                mlflow.log_dict(sel.model_dump(mode="json"), "selection.json")
            experiment = mlflow.get_run(run_id).info.experiment_id
            link = f"#/experiments/{experiment}/runs/{run_id}/artifactPath/model_card.md"
            description = version_description(scored, list(baselines), sources, link)
            gated = str(champion.version) if champion else None
            outcome = register_version(
                info, name, decision=decision, tags=tags, description=description, gated_against=gated, mirror=mirror
            )
            numbers = {f"promotion.challenger_{s}_accuracy": getattr(scored, s).accuracy for s in GATE_SPLITS}
            if scores is not None:
                numbers |= {f"promotion.champion_{s}_accuracy": scores[s].accuracy for s in GATE_SPLITS}
            mlflow.log_metrics(numbers)
            mlflow.set_tags(
                {"promotion": outcome.verdict, "promotion.reason": outcome.reason[:4900], "registered_version": outcome.version}
            )
    except BaseException:
        mlflow.MlflowClient().delete_logged_model(info.model_id)  # nothing registered: the logged model goes too
        raise
    return outcome
