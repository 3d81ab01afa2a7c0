"""The DCJT pipeline: ingest -> cache -> screening (class overlap, leakage guard) -> M_A -> subset
-> M_B -> pseudo labels -> mapping -> relabeling -> DCN -> evaluation -> registry, with the
paper's baselines as config switches. One or more extra datasets travel as one table of extras
(``dataset`` tells them apart); each stage treats them dataset by dataset (``dcjt.method.extras``).

Variants of an ablation share M_A, the subset and M_B through ZenML's cache: only the steps whose
parameters differ (mapping, relabeling, DCN) run again. Every reported row (DCJT and the
baselines: target only, straight, the oracle) trains with the DCN's recipe and budget in
``train_dcn`` and is scored by the same ``evaluate_model`` step on A's test split.
"""

from __future__ import annotations

from zenml import pipeline
from zenml.enums import ExecutionMode

from dcjt.config import PipelineConfig
from dcjt.method.health import stages_used
from steps.data import build_image_cache, ingest_dataset, ingest_extras, ingest_synthetic, merge_reports, screen_datasets
from steps.evaluation import evaluate_model
from steps.registry import register_and_promote
from steps.stages import map_extra_continuous, pseudo_label_extras, pseudo_label_target, relabel_extra, select_extra_subset
from steps.tracking import open_tracking, report_run
from steps.training import train_dcn, train_m_a, train_m_b

# Steps that train or run a network over a dataset: on a cluster they get the GPU image and GPUs.
GPU_STEPS = (
    "train_m_a",
    "select_extra_subset",
    "train_m_b",
    "pseudo_label_target",
    "train_dcn",
    "pseudo_label_extras",
    "train_target_only",
    "train_straight",
    "train_straight_balanced",
    "train_scn",
    "train_scn_target",
    "train_extra_only",
    "train_oracle",
)


def local_folder(paths, key: str) -> str:
    """A configured folder when every step sees the same disk, else "": each pod's scratch
    folder, resolved in the step (``steps.handoff.folder_or_scratch``)."""
    return getattr(paths, key) if paths.handoff == "shared_disk" else ""


def stages_in_use(config: PipelineConfig) -> frozenset[str]:
    """The stages 1-3 that the run's rows train on (DCJT's method and every baseline): only their
    gates can stop the run."""
    return frozenset().union(*(stages_used(config.method_for(r)) for r in ("dcjt", *config.baselines)))


def ingest(config: PipelineConfig):
    """Label tables of A and B (validated) and the ingest report."""
    data, paths, min_val = config.data, config.paths, config.gates.min_val_rows
    if data.kind == "synthetic":
        return ingest_synthetic(
            world=data.world,
            image_size=config.image_size,
            val_fraction=config.val_fraction,
            seed=config.seed,
            data_dir=paths.data_dir,
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
    caches = dict(image_size=config.image_size, cache_dir=local_folder(p, "cache_dir"), handoff=p.handoff)
    t_cache = build_image_cache(table=target, **caches, id="cache_target")
    e_cache = build_image_cache(table=extra, **caches, id="cache_extra")
    target, extra, leakage = screen_datasets(target, extra, t_cache, e_cache, leakage=config.leakage, parent_run_id=parent)
    return target, extra, t_cache, e_cache, gx, leakage


@pipeline(enable_cache=True, execution_mode=ExecutionMode.FAIL_FAST)
def dcjt_pipeline(config: PipelineConfig) -> None:
    p, size, method, gates = config.paths, config.image_size, config.method, config.gates
    used = stages_in_use(config)
    parent = open_tracking(config=config)
    target, extra, t_cache, e_cache, gx, leakage = screened_data(config, parent)
    checkpoints = local_folder(p, "checkpoint_root")
    common = dict(network=config.network, image_size=size, checkpoint_root=checkpoints, parent_run_id=parent)
    curve = config.evaluation.test_curve
    # Stages 1-3 (M_A is the stage-1 selector and keeps its own settings).
    m_a, m_a_metrics, _ = train_m_a(
        target, train_cfg=config.train_config("m_a"), target_cache=t_cache, test_curve=curve, **common
    )
    marked, subset_stats = select_extra_subset(
        m_a,
        m_a_metrics,
        extra,
        e_cache,
        extra_fraction=method.extra_fraction,
        seed=config.seed,
        gates=gates,
        applies="subset" in used,
    )
    m_b, m_b_metrics, _ = train_m_b(
        marked,
        pseudo_from=method.pseudo_from,
        val_fraction=config.val_fraction,
        train_cfg=config.train_config("m_b"),
        extra_cache=e_cache,
        **common,
    )
    pseudo, pseudo_stats = pseudo_label_target(
        m_b, m_b_metrics, m_a, target, t_cache, marked, pseudo_from=method.pseudo_from, gates=gates, applies="pseudo" in used
    )
    with_va, extra_pseudo_stats = pseudo_label_extras(m_b, marked, e_cache)  # extras without V/A: M_B's, like A
    mapped, mapping_stats = map_extra_continuous(with_va, pseudo, method=method, gates=gates, applies="mapping" in used)
    prepared, relabel_stats = relabel_extra(mapped, pseudo, method=method, gates=gates, applies="relabel" in used)
    # Stage 4 and the rows reported beside it: one recipe and budget, one evaluation step.
    dcn_common = dict(
        budget=config.budget,
        train_cfg=config.train_config("dcn"),
        target_cache=t_cache,
        extra_cache=e_cache,
        test_curve=curve,
        **common,
    )
    scoring = dict(min_b_passes=config.budget.min_b_passes, gates=gates)
    dcn, dcn_metrics, _ = train_dcn(pseudo, prepared, marked, role="DCN", method=method, **dcn_common)
    dcjt = evaluate_model(
        dcn,
        target,
        t_cache,
        variant=method.variant_name,
        training=dcn_metrics,
        row="dcjt",
        joint=method.uses_joint_passes,
        **scoring,
        id="evaluate_dcjt",
    )
    baselines = {}
    for row in config.baselines:
        row_method = config.method_for(row)
        if row_method.extra_use == "none" or (row_method.mapping, row_method.relabel) == ("none", "none"):
            row_extra = marked  # B as published (or not used): shared by every variant, so cached
        elif row_method.relabel == method.relabel:
            row_extra = prepared
        else:
            row_extra, _ = relabel_extra(mapped, pseudo, method=row_method, gates=gates, applies=False, id=f"relabel_{row}")
        model, metrics, _ = train_dcn(pseudo, row_extra, marked, role=row, method=row_method, id=f"train_{row}", **dcn_common)
        baselines[row] = evaluate_model(
            model,
            target,
            t_cache,
            variant=row,
            training=metrics,
            row=row,
            joint=row_method.uses_joint_passes,
            **scoring,
            id=f"evaluate_{row}",
        )
    promotion = None
    if config.register_model:  # after every row's evaluation: a row that fails its gate stops the run first
        promotion = register_and_promote(
            dcn,
            dcjt,
            dcn_metrics,
            target,
            t_cache,
            pseudo,
            marked,
            prepared,
            subset_stats,
            mapping_stats,
            relabel_stats,
            recipe=config.recipe(),
            model_name=config.model_name,
            promotion=config.promotion,
            seed=config.seed,
            parent_run_id=parent,
            min_image_side=config.min_image_side,
            after=[f"evaluate_{r}" for r in config.baselines],
        )
    report_run(
        parent,
        dcjt,
        gx,
        subset_stats,
        pseudo_stats,
        mapping_stats,
        relabel_stats,
        pseudo,
        marked,
        prepared,
        comparison_path=f"{p.outputs}/comparison.csv",
        m_a_metrics=m_a_metrics,
        promotion=promotion,
        target_only_evaluation=baselines.get("target_only"),
        straight_evaluation=baselines.get("straight"),
        straight_balanced_evaluation=baselines.get("straight_balanced"),
        oracle_evaluation=baselines.get("oracle"),
        scn_evaluation=baselines.get("scn"),
        scn_target_evaluation=baselines.get("scn_target"),
        extra_only_evaluation=baselines.get("extra_only"),
        leakage=leakage,
        extra_pseudo_stats=extra_pseudo_stats,
    )
