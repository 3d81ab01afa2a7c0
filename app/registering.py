"""Register a row of a finished pipeline run, from that run's own artifacts (``run.py select``).

The race of ``run.py select`` trains every candidate without registering; once the winner is
chosen, its model is registered from the race's run that trained it (no training after the race): the
model, its evaluation and the run's baseline rows come from that run's ZenML artifacts, the gate is
the pipeline's own (``dcjt.registry.promote``), and the version's source run is the row's training
run in MLflow. Outside a step, as ZenML's templates call the registry.
"""

from __future__ import annotations

from dcjt.config import BASELINES, PipelineConfig
from dcjt.method.health import failed_gates
from dcjt.plan import plan_run
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

    def inputs(step: str, *names: str) -> dict:
        """What the pipeline handed the step (recorded for a step served from the cache too)."""
        return {name: run.steps[step].inputs[name][0].load() for name in names}

    plan = plan_run(cfg).rows
    if row not in [r.id for r in plan]:
        raise ValueError(f"run {run_name} has no row {row!r}; its rows: {[r.id for r in plan]}")
    rows = {r.id: run.steps[r.evaluate_step].outputs["evaluation"][0].load() for r in plan}
    scored = inputs(next(r.evaluate_step for r in plan if r.id == row), "model", "target_table", "target_cache")
    stage = inputs("log_stages", "stages", "extra_prepared", "parent_run_id")
    baselines = [e for i, e in rows.items() if i != row and i in BASELINES]
    gates = failed_gates(run_gates(stage["stages"], list(rows.values())))
    challenger = Challenger(scored["model"], rows[row], baselines=baselines, failed_gates=gates)
    data = RunData(scored["target_table"], scored["target_cache"].path, stage["extra_prepared"], stage["stages"].card_numbers())
    registration = Registration.of(cfg)
    if row != "dcjt":  # a baseline row: its own method in the model card's recipe
        registration.recipe["method"] = cfg.method_for(row).model_dump(mode="json")
    return promote(challenger, data, registration, stage["parent_run_id"], mirror=mirror_in_zenml)
