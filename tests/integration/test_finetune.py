"""End to end: DCJT with two extras and the SCN rows, then fine-tuning its registered model on
another target (paper Table 7), and the fine-tuning sources that do not fit."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from app.preflight import PreflightError
from app.runner import run_finetune, run_pipeline
from dcjt.config_files import load_config
from dcjt.models.nets import build_model
from helpers import ROOT  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TWO_EXTRAS = ["data.world.n_extra2=400", "baselines=[scn]", "dcn.scn.relabel_epoch=1"]
FINETUNE = ["data.world.n_target=300", "finetune.epochs=2", "finetune.batch_size=32", "gates.mode=warn", "gates.min_val_rows=20"]


def test_two_extras_scn_and_finetuning_end_to_end(tmp_path):
    outcome = run_pipeline(load_config("tiny", TWO_EXTRAS))
    rows = set(outcome.comparison["variant"])
    assert rows == {"dcjt", "scn"}
    extras = {e["dataset"]: e for e in outcome.summary.extras}
    assert set(extras) == {"synth_extra", "synth_extra2"}
    assert extras["synth_extra2"]["va"] == "pseudo (M_B)" and extras["synth_extra2"]["relabeled_rows"] > 0
    assert extras["synth_extra"]["mapped_rows"] > 0 and outcome.summary.leaked == 0
    run_config = tmp_path / "run-config.yaml"  # as configs/remote-*.yaml do for a cluster: settings per step
    run_config.write_text("steps:\n  train_finetune:\n    extra: {placed_by: run-config}\n")
    named = FINETUNE + ["model_name=ft-t7-a-s0"]  # as scripts/table7.sh names its fine-tunings
    # this run's own DCN: in warn mode a run whose gates failed is registered, not promoted
    source = f"models:/{outcome.promotion.model_name}/{outcome.promotion.version}"
    tuned = run_finetune(load_config("demo-finetune", named), source, run_config=str(run_config))
    from zenml.client import Client

    assert Client().get_pipeline_run(tuned.run_name).steps["train_finetune"].config.extra == {"placed_by": "run-config"}
    assert 0 <= tuned.evaluation.test.accuracy <= 1 and tuned.promotion.version == "1"
    assert tuned.promotion.model_name == "ft-t7-a-s0"
    # scripts/table7_summary.py finds it by that name, with its per-image correctness for the intervals
    spec = importlib.util.spec_from_file_location("table7_summary", ROOT / "scripts" / "table7_summary.py")
    table7 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table7)
    records, correct = table7.finetuned({0})
    assert records[["row", "seed", "accuracy"]].to_dict("records") == [
        {"row": "t7-a", "seed": 0, "accuracy": tuned.evaluation.test.accuracy}
    ]
    assert correct[("t7-a", 0)].mean() == pytest.approx(tuned.evaluation.test.accuracy)
    assert table7.finetuned({1})[0].empty
    # Sources that do not fit stop before any step, naming what differs and the fix.
    with pytest.raises(
        PreflightError, match=r"trained on 32 px images, config 'demo-finetune' uses 64 px: run with --set network.image_size=32"
    ):
        run_finetune(load_config("demo-finetune", FINETUNE + ["network.image_size=64"]), source)
    other = tmp_path / "five_classes.pt"
    net = build_model("tiny", "linear", 32)
    net.fc = torch.nn.Linear(256, 5)
    torch.save(net.state_dict(), other)
    with pytest.raises(PreflightError, match=r"the source predicts 5 outputs"):
        run_finetune(load_config("demo-finetune", FINETUNE), str(other))
    with pytest.raises(PreflightError, match=r"the source's backbone is tiny, config 'demo-finetune' builds resnet18"):
        run_finetune(load_config("demo-finetune", FINETUNE + ["network.backbone=resnet18"]), source)
    with pytest.raises(PreflightError, match=r"no such file"):
        run_finetune(load_config("demo-finetune", FINETUNE), str(tmp_path / "missing.pt"))
