"""Fine-tuning as a pipeline: ingest the target -> cache -> leakage guard -> train from the
source's trunk (``network.weights``) on A's train split, select on its validation split ->
evaluate on its test split -> register and promote like any run (paper Table 7)."""

from __future__ import annotations

from zenml import pipeline
from zenml.enums import ExecutionMode

from dcjt.config import PipelineConfig
from pipelines.dcjt import local_folder, screened_data
from steps.evaluation import evaluate_model
from steps.registry import register_finetuned
from steps.tracking import close_finetune, open_tracking
from steps.training import train_m_a

# The one step that trains: on a cluster it gets the GPU image and a GPU (configs/remote-*.yaml).
GPU_STEPS = ("train_finetune",)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.FAIL_FAST)
def finetune_pipeline(config: PipelineConfig) -> None:
    p, size = config.paths, config.image_size
    parent = open_tracking(config=config)
    target, _, t_cache, _, _, leakage = screened_data(config, parent)  # extras: screened, unused
    model, metrics, _ = train_m_a(
        target,
        network=config.network,
        train_cfg=config.train_config("finetune"),
        image_size=size,
        target_cache=t_cache,
        checkpoint_root=local_folder(p, "checkpoint_root"),
        test_curve=config.evaluation.test_curve,
        parent_run_id=parent,
        role="finetune",
        id="train_finetune",
    )
    evaluation = evaluate_model(model, target, t_cache, variant="finetune", training=metrics, id="evaluate_finetune")
    promotion = None
    if config.register_model:
        promotion = register_finetuned(
            model,
            evaluation,
            metrics,
            target,
            t_cache,
            recipe=config.recipe("finetune"),
            model_name=config.model_name,
            promotion=config.promotion,
            seed=config.seed,
            parent_run_id=parent,
            min_image_side=config.min_image_side,
        )
    close_finetune(parent, evaluation, leakage, promotion)
