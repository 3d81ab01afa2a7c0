"""Fine-tuning as a pipeline: ingest the target -> cache -> leakage guard -> train from the
source's trunk (``network.weights``) on A's train split, select on its validation split ->
evaluate on its test split -> register and promote like any run (paper Table 7)."""

from __future__ import annotations

from zenml import pipeline
from zenml.enums import ExecutionMode

from dcjt.config import PipelineConfig
from dcjt.registry.promote import Registration
from pipelines.dcjt import local_folder, screened_data
from steps.evaluation import RowScoring, evaluate_model
from steps.registry import register_finetuned
from steps.tracking import close_finetune, open_tracking
from steps.training import TrainingSetup, train_classifier

# The one step that trains: on a cluster it gets the GPU image and a GPU (configs/remote-*.yaml).
GPU_STEPS = ("train_finetune",)


@pipeline(enable_cache=True, execution_mode=ExecutionMode.FAIL_FAST)
def finetune_pipeline(config: PipelineConfig) -> None:
    p = config.paths
    parent = open_tracking(config=config)
    target, _, t_cache, _, _, leakage = screened_data(config, parent)  # extras: screened, unused
    setup = TrainingSetup(
        role="finetune",
        network=config.network,
        train_cfg=config.train_config("finetune"),
        checkpoint_root=local_folder(p, "checkpoint_root"),
        test_curve=config.evaluation.test_curve,
    )
    model, metrics, _ = train_classifier(target, t_cache, setup, parent, id="train_finetune")
    scoring = RowScoring(row="finetune", variant="finetune", gates=config.gates)
    evaluation = evaluate_model(model, target, t_cache, metrics, scoring, id="evaluate_finetune")
    promotion = None
    if config.register_model:
        promotion = register_finetuned(model, evaluation, target, t_cache, Registration.of(config, "finetune"), parent)
    close_finetune(parent, evaluation, leakage, promotion)
