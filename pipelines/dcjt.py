"""The DCJT pipeline: ingest -> cache -> M_A -> subset -> M_B -> pseudo labels -> mapping ->
relabeling -> DCN -> evaluation -> registry, with the paper's baselines as config switches.

Variants of an ablation share M_A, the subset and M_B through ZenML's cache: only the steps whose
parameters differ (mapping, relabeling, DCN) run again.
"""

from __future__ import annotations

from zenml import pipeline
from zenml.enums import ExecutionMode

from dcjt.method import Variant
from steps.data import build_image_cache, ingest_dataset, ingest_synthetic, merge_reports
from steps.evaluation import evaluate_model
from steps.labels import map_extra_continuous, pseudo_label_target, relabel_extra, select_extra_subset
from steps.registry import register_and_promote
from steps.tracking import open_tracking, report_run
from steps.training import train_dcn, train_m_a, train_m_b, train_straight


# Steps that train or run a network over a dataset: on a cluster they get the GPU image and GPUs.
GPU_STEPS = ("train_m_a", "select_extra_subset", "train_m_b", "pseudo_label_target", "train_dcn", "train_straight")


@pipeline(enable_cache=True, execution_mode=ExecutionMode.FAIL_FAST)
def dcjt_pipeline(config: dict) -> None:
    p, size, seed = config["paths"], config["image_size"], config["seed"]
    net, method, data = config["network"], config["method"], config["data"]
    parent = open_tracking(config=config, experiment=config["experiment"])
    if data["kind"] == "synthetic":
        target, extra, gx = ingest_synthetic(world=data["world"], image_size=size, val_fraction=config["val_fraction"],
                                             seed=seed, data_dir=p["data_dir"], cache_dir=p["cache_dir"])  # fmt: skip
    else:
        reads = {}
        for role in ("target", "extra"):
            spec = data[role]
            reads[role] = ingest_dataset(id=f"ingest_{role}", dataset=spec["dataset"], root=spec["root"],
                                         fingerprint=spec.get("fingerprint", ""), val_fraction=config["val_fraction"],
                                         seed=seed, max_bad_fraction=data.get("max_bad_fraction", 0.0))  # fmt: skip
        (target, t_report), (extra, e_report) = reads["target"], reads["extra"]
        gx = merge_reports(t_report, e_report)
    t_cache = build_image_cache(table=target, image_size=size, cache_dir=p["cache_dir"], id="cache_target")
    e_cache = build_image_cache(table=extra, image_size=size, cache_dir=p["cache_dir"], id="cache_extra")
    common = dict(network=net, image_size=size, checkpoint_root=p["checkpoint_root"], parent_run_id=parent)
    with_seed = lambda stage: dict(config[stage], seed=seed)  # noqa: E731
    m_a, m_a_metrics, _ = train_m_a(target, train_cfg=with_seed("m_a"), target_cache=t_cache, **common)
    marked, subset_stats = select_extra_subset(m_a, extra, e_cache)
    m_b, _, _ = train_m_b(marked, pseudo_from=method.get("pseudo_from", "subset"), val_fraction=config["val_fraction"],
                          train_cfg=with_seed("m_b"), extra_cache=e_cache, **common)  # fmt: skip
    pseudo, pseudo_stats = pseudo_label_target(m_b, target, t_cache)
    mapped, mapping_stats = map_extra_continuous(marked, pseudo, mapping=method["mapping"], b_stats_from=method.get("b_stats_from", "all"))
    prepared, relabel_stats = relabel_extra(mapped, pseudo, enabled=bool(method.get("relabel", True)))
    dcn, _, _ = train_dcn(pseudo, prepared, role="DCN", train_cfg=with_seed("dcn"), target_cache=t_cache, extra_cache=e_cache, **common)
    variant = Variant(method["mapping"], bool(method.get("relabel", True)), method.get("pseudo_from", "subset"))
    evaluation = evaluate_model(dcn, target, t_cache, variant=variant.name)
    promotion = register_and_promote(dcn, evaluation, target, model_name=config["model_name"], parent_run_id=parent)
    straight = None
    if "straight" in config.get("baselines", []):
        _, straight, _ = train_straight(target, extra, train_cfg=with_seed("m_a"), target_cache=t_cache, extra_cache=e_cache, **common)
    report_run(parent, m_a_metrics, evaluation, gx, subset_stats, pseudo_stats, mapping_stats, relabel_stats, pseudo, marked,
               prepared, promotion, comparison_path=f"{p['outputs']}/comparison.csv", straight_metrics=straight)  # fmt: skip
