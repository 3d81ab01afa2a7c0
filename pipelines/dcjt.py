"""The DCJT pipeline: ingest -> cache -> screening (class overlap, leakage guard) -> M_A -> subset
-> M_B -> pseudo labels -> mapping and relabeling (either order) -> DCN -> evaluation -> registry, with the
paper's baselines as config switches. One or more extra datasets travel as one table of extras
(``dataset`` tells them apart); each stage treats them dataset by dataset (``dcjt.method.extras``).

Variants of an ablation share M_A, the subset and M_B through ZenML's cache: only the steps whose
parameters differ (mapping, relabeling, DCN) run again. Every reported row (DCJT and the
baselines: target only, straight, the oracle) trains with the DCN's recipe and budget in
``train_row`` (DCJT's step: ``train_dcn``) and is scored by the same ``evaluate_model`` step on A's test split.
"""

from __future__ import annotations

from zenml import pipeline
from zenml.enums import ExecutionMode

from dcjt import plan
from dcjt.config import MethodConfig, PipelineConfig
from dcjt.registry.promote import Registration
from steps.data import build_image_cache, ingest_dataset, ingest_extras, ingest_synthetic, merge_reports, screen_datasets
from steps.evaluation import RowScoring, evaluate_model
from steps.registry import register_and_promote
from steps.stages import (
    StageCheck,
    map_extra_continuous,
    pseudo_label_extras,
    pseudo_label_target,
    relabel_extra,
    select_extra_subset,
    summarise_stage_reports,
)
from steps.tracking import log_stages, open_tracking, report_run
from steps.training import RowSetup, TrainingSetup, train_classifier, train_m_b, train_row, train_warmup

# Steps that train or run a network over a dataset: on a cluster they get the GPU image and GPUs
# (the remote run configurations' ``gpu_step`` settings are applied to exactly these).
GPU_STEPS = plan.GPU_STEPS


def local_folder(paths, key: str) -> str:
    """A configured folder when every step sees the same disk, else "": each pod's scratch
    folder, resolved in the step (``steps.handoff.folder_or_scratch``)."""
    return getattr(paths, key) if paths.handoff == "shared_disk" else ""


def ingest(config: PipelineConfig):
    """Label tables of A and B (validated) and the ingest report."""
    data, paths, min_val = config.data, config.paths, config.gates.min_val_rows
    if data.kind == "synthetic":
        return ingest_synthetic(
            world=data.world,
            image_size=config.network.image_size,
            val_fraction=config.val_fraction,
            seed=config.seed,
            data_dir=local_folder(paths, "data_dir"),
            cache_dir=local_folder(paths, "cache_dir"),
            min_val_rows=min_val,
        )
    common = dict(max_bad_fraction=data.max_bad_fraction)
    target, t_report = ingest_dataset(
        id="ingest_target", spec=data.target, val_fraction=config.val_fraction, min_val_rows=min_val, **common
    )
    # B's validation rows are carved where they are used: from M_B's subset in stage 2 (m_b_rows).
    extra, e_report = ingest_extras(specs=data.extras, **common)
    return target, extra, merge_reports(t_report, e_report)


def screened_data(config: PipelineConfig, parent):
    """Label tables, their image caches and the screening before any training (class overlap,
    leakage guard): (target, extra, target cache, extra cache, ingest report, leakage report)."""
    p = config.paths
    target, extra, gx = ingest(config)
    caches = dict(image_size=config.network.image_size, cache_dir=local_folder(p, "cache_dir"), handoff=p.handoff)
    t_cache = build_image_cache(table=target, **caches, id="cache_target")
    e_cache = build_image_cache(table=extra, **caches, id="cache_extra")
    target, extra, leakage = screen_datasets(target, extra, t_cache, e_cache, leakage=config.leakage, parent_run_id=parent)
    return target, extra, t_cache, e_cache, gx, leakage


STAGE3_STEPS = ("map_extra_continuous", "relabel_extra")  # DCJT's stage 3 (a row's own: RowPlan.stage3_steps)


def stage3(with_va, pseudo, method, gates, used: frozenset[str], steps: tuple[str, str] = STAGE3_STEPS):
    """Stage 3 in the method's order: map B - subB's V/A, then relabel (the paper), or relabel on
    the unmapped V/A, then map by the new labels. (prepared table, mapping report, relabel report).
    ``steps``: the (map, relabel) step names; a reported row's own are its plan's."""
    map_id, relabel_id = steps
    on_map = dict(method=method, check=StageCheck(gates=gates, applies="mapping" in used), id=map_id)
    on_relabel = dict(method=method, check=StageCheck(gates=gates, applies="relabel" in used), id=relabel_id)
    if method.stage3_order == "relabel_first":
        relabeled, relabel_report = relabel_extra(with_va, pseudo, **on_relabel)
        prepared, mapping = map_extra_continuous(relabeled, pseudo, **on_map)
        return prepared, mapping, relabel_report
    mapped, mapping = map_extra_continuous(with_va, pseudo, **on_map)
    prepared, relabel_report = relabel_extra(mapped, pseudo, **on_relabel)
    return prepared, mapping, relabel_report


def extra_for_row(row: plan.RowPlan, tables: tuple, gates):
    """B's table the row trains on, as the plan says (``dcjt.plan.extra_table``)."""
    marked, with_va, prepared, pseudo = tables
    if row.extra == "own":  # the row's own stage 3: its gates never stop the run
        return stage3(with_va, pseudo, row.method, gates, frozenset(), row.stage3_steps)[0]
    return prepared if row.extra == "prepared" else marked


@pipeline(enable_cache=True, execution_mode=ExecutionMode.FAIL_FAST)
def dcjt_pipeline(config: PipelineConfig) -> None:
    p, method, gates = config.paths, config.method, config.gates
    run_plan = plan.plan_run(config)
    used = run_plan.gates
    parent = open_tracking(config=config)
    target, extra, t_cache, e_cache, gx, leakage = screened_data(config, parent)
    checkpoints, curve = local_folder(p, "checkpoint_root"), config.evaluation.test_curve
    setup = dict(network=config.network, checkpoint_root=checkpoints, test_curve=curve)
    # Stages 1-3 (M_A is the stage-1 selector and keeps its own settings).
    m_a, m_a_metrics, _ = train_classifier(
        target, t_cache, TrainingSetup(role="M_A", train_cfg=config.train_config("m_a"), **setup), parent, id="train_m_a"
    )
    marked, subset = select_extra_subset(
        m_a,
        m_a_metrics,
        extra,
        e_cache,
        extra_fraction=method.extra_fraction,
        seed=config.seed,
        check=StageCheck(gates=gates, applies="subset" in used),
    )
    m_b_setup = TrainingSetup(role="M_B", train_cfg=config.train_config("m_b"), **{**setup, "test_curve": False})
    m_b, m_b_metrics, _ = train_m_b(marked, e_cache, method.pseudo_from, config.val_fraction, m_b_setup, parent)
    on_pseudo = StageCheck(gates=gates, applies="pseudo" in used)
    pseudo, pseudo_report = pseudo_label_target(
        m_b, m_b_metrics, m_a, target, t_cache, marked, pseudo_from=method.pseudo_from, check=on_pseudo
    )
    # extras without V/A: M_B's, like A; every row of B too where a row relabels on M_B's V/A
    every_row = any(r.method.relabel_va == "predicted" for r in run_plan.rows)
    with_va, extras_pseudo = pseudo_label_extras(m_b, marked, e_cache, every_row=every_row)
    prepared, mapping, relabeled = stage3(with_va, pseudo, method, gates, used)
    stages = summarise_stage_reports(subset, pseudo_report, mapping, relabeled, extras_pseudo, pseudo, marked, prepared)
    log_stages(parent, stages, pseudo, marked, prepared)
    # Stage 4 and every row reported beside it: one recipe and budget, one evaluation step.
    row_setup = dict(**setup, train_cfg=config.train_config("dcn"), budget=config.budget)
    warmup = None
    if run_plan.warmup:  # once per seed; every run of a selection at this seed finds it in the cache
        # DCJT as published; a race's rung (budget.rung) stops the rows after the warm-up, never the warm-up itself
        warm = {**row_setup, "budget": config.budget.model_copy(update={"rung": None})}
        warm_setup = RowSetup(role="DCN warm-up", method=MethodConfig(), **warm)
        warmup = train_warmup(pseudo, marked, t_cache, warm_setup, parent, id=plan.WARMUP_STEP)
    models, rows = {}, []
    for row in run_plan.rows:
        row_extra = extra_for_row(row, (marked, with_va, prepared, pseudo), gates)
        row_train = RowSetup(role="DCN" if row.id == "dcjt" else row.id, method=row.method, **row_setup)
        row_warmup = warmup if row.shares_warmup else None
        model, metrics, _ = train_row(
            pseudo, row_extra, marked, t_cache, e_cache, row_train, parent, warmup=row_warmup, id=row.train_step
        )
        scoring = RowScoring(row=row.id, variant=row.label, joint=row.joint, min_b_passes=config.budget.min_b_passes, gates=gates)
        rows.append(evaluate_model(model, target, t_cache, metrics, scoring, id=row.evaluate_step))
        models[row.id] = model
    promotion = None
    if config.register_model:  # after every row's evaluation: a row that fails its gate stops the run first
        registration = Registration.of(config)
        promotion = register_and_promote(models["dcjt"], rows, target, t_cache, prepared, stages, registration, parent)
    report_run(parent, rows, stages, gx, leakage, comparison_path=f"{p.outputs}/comparison.csv", promotion=promotion)
