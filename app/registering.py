"""Register a row of a finished pipeline run, from that run's own artifacts (``run.py select``).

The race of ``run.py select`` trains every candidate without registering; once the winner is
chosen, its model is registered from the run that trained it (no training after the choice): the
model, its evaluation and the run's baseline rows come from that run's ZenML artifacts, the gate is
the pipeline's own (``dcjt.registry.promote``), and the version's source run is the row's training
run in MLflow. Outside a step, as ZenML's templates call the registry.
"""

from __future__ import annotations

from dcjt.config import BASELINES, PipelineConfig
from dcjt.method.health import failed_gates
from dcjt.plan import plan_run, train_step
from dcjt.registry.card import RunData
from dcjt.registry.lifecycle import PromotionOutcome
from dcjt.registry.promote import Challenger, Registration, promote


def register_row(run_name: str, row: str, cfg: PipelineConfig) -> PromotionOutcome:
    """Register row ``row`` (``dcjt`` or a baseline id) of ZenML pipeline run ``run_name``, run with
    ``cfg``; the run's other baseline rows are what ``promotion.beat_baselines`` compares it with."""
    from zenml.client import Client

    from steps.registry import mirror_in_zenml
    from steps.tracking import run_gates

    run = Client().get_pipeline_run(run_name)

    def output(step: str, name: str):
        return run.steps[step].outputs[name][0].load()

    ids = [r.id for r in plan_run(cfg).rows]
    if row not in ids:
        raise ValueError(f"run {run_name} has no row {row!r}; its rows: {ids}")
    rows = [output(f"evaluate_{i}", "evaluation") for i in ids]
    stages = output("summarise_stage_reports", "stages")
    mine = rows[ids.index(row)]
    baselines = [r for r, i in zip(rows, ids) if i != row and i in BASELINES]
    challenger = Challenger(
        output(train_step(row), "model"), mine, baselines=baselines, failed_gates=failed_gates(run_gates(stages, rows))
    )
    last_stage3 = (
        ("map_extra_continuous", "extra_mapped")
        if cfg.method.stage3_order == "relabel_first"
        else ("relabel_extra", "extra_prepared")
    )
    target = output("screen_datasets", "target_screened")
    data = RunData(target, output("cache_target", "image_cache").path, output(*last_stage3), stages.card_numbers())
    registration = Registration.of(cfg)
    if row != "dcjt":  # a baseline row: its own method in the model card's recipe
        registration.recipe["method"] = cfg.method_for(row).model_dump(mode="json")
    return promote(challenger, data, registration, output("open_tracking", "parent_run_id"), mirror=mirror_in_zenml)
