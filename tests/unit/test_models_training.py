"""Networks, the training loop, the joint schedule, checkpoints/resume, metrics, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from dcjt.config import TrainConfig
from dcjt.models.nets import build_model
from dcjt.train import metrics
from dcjt.train.batches import epoch_plan
from dcjt.train.checkpoint import latest
from dcjt.train.loop import Reporting, TrainingError, loss_fn, set_seed, train
from dcjt.train.optim import make_optimizer
from dcjt.train.predict import evaluate, predict
from dcjt.train.weights import WeightsError, apply_weights
from helpers.training import small_cfg, toy_samples


# --- networks ------------------------------------------------------------------------------------------
def test_arm_eval_is_batch_independent():
    torch.manual_seed(0)
    net = build_model("resnet18", "arm", 96)
    net.train()
    for _ in range(3):  # populate the running batch-mean estimate
        net(torch.randn(4, 3, 96, 96))
    net.eval()
    batch = torch.randn(5, 3, 96, 96)
    with torch.no_grad():
        together = net(batch)
        alone = torch.cat([net(batch[i : i + 1]) for i in range(5)])
        other = net(torch.cat([batch[:1], torch.randn(7, 3, 96, 96)]))[:1]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(other, together[:1], rtol=1e-5, atol=1e-5)
    assert net.head.running_mean.abs().sum() > 0


def test_outputs_and_shapes():
    for backbone, head, size in (("resnet18", "linear", 64), ("tiny", "linear", 64), ("resnet18", "arm", 224)):
        net = build_model(backbone, head, size).eval()
        with torch.no_grad():
            assert net(torch.zeros(2, 3, size, size)).shape == (2, 9)


def test_weights_from_local_files(tmp_path):
    ref = resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "imagenet.pth")
    net = apply_weights(build_model("resnet18", "linear", 64), str(tmp_path / "imagenet.pth"))
    torch.testing.assert_close(net.trunk[0].weight, ref.conv1.weight)
    celeb = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items() if not k.startswith("fc.")}}
    torch.save(celeb, tmp_path / "msceleb.pth.tar")
    net2 = apply_weights(build_model("resnet18", "linear", 64), str(tmp_path / "msceleb.pth.tar"))
    torch.testing.assert_close(net2.trunk[7][1].conv2.weight, ref.layer4[1].conv2.weight)
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="missing keys"):
        apply_weights(build_model("resnet18", "linear", 64), str(tmp_path / "other.pth"))
    with pytest.raises(WeightsError, match="not found"):
        apply_weights(build_model("resnet18", "linear", 64), str(tmp_path / "nope.pth"))


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("vgg", "linear", 64)
    with pytest.raises(ValueError, match="at least 96"):
        build_model("resnet18", "arm", 64)
    net = build_model("tiny", "linear", 64)
    with pytest.raises(ValueError, match="expects 64x64"):
        net(torch.zeros(1, 3, 32, 32))


# --- loss and schedule ---------------------------------------------------------------------------------
def test_loss_masks_nan_valence_arousal():
    out = torch.tensor([[5.0, 0, 0, 0, 0, 0, 0, 0.5, 0.5], [0, 5.0, 0, 0, 0, 0, 0, 0.0, 0.0]])
    y = torch.tensor([0, 1])
    va = torch.tensor([[0.0, 0.0], [float("nan"), float("nan")]])
    loss, ce, mse = loss_fn(out, y, va, lam=2.0)
    assert mse.item() == pytest.approx(0.25)
    assert loss.item() == pytest.approx(ce.item() + 0.5)
    assert loss_fn(out, y, va, lam=0.0)[0].item() == pytest.approx(ce.item())


def test_joint_schedule_warmup_frequency_and_modes():
    cfg = TrainConfig(epochs=10, batch_size=4, warmup_epochs=3, joint_frequency=2, joint_mode="batch")
    extra = np.array([0] * 30 + [1] * 2)
    for epoch in range(10):
        plan = epoch_plan(epoch, cfg, 16, extra)
        has_b = any(s == "B" for s, _ in plan)
        assert has_b == (epoch >= 3 and epoch % 2 == 0)
        if has_b:
            assert [s for s, _ in plan] == ["A", "B"] * 4
            b_rows = np.concatenate([idx for s, idx in plan if s == "B"])
            assert len(set(b_rows.tolist())) == 16  # each B batch takes new rows of B, none repeated in an epoch
    every = TrainConfig(epochs=6, batch_size=4, warmup_epochs=2, joint_frequency=1)  # B from the first epoch after warm-up
    assert [e for e in range(6) if any(s == "B" for s, _ in epoch_plan(e, every, 16, extra))] == [2, 3, 4, 5]
    b4, b6 = ([tuple(idx) for s, idx in epoch_plan(e, cfg, 16, extra) if s == "B"] for e in (4, 6))
    assert b4 != b6  # and another order on the next joint epoch
    ep = TrainConfig(epochs=10, batch_size=4, warmup_epochs=3, joint_frequency=2, joint_mode="epoch")
    plan = epoch_plan(4, ep, 16, extra)
    b_rows = np.concatenate([idx for s, idx in plan if s == "B"])
    assert len(b_rows) == 32 and [s for s, _ in plan][:4] == ["A"] * 4
    share_rare = np.mean(extra[b_rows] == 1)
    assert share_rare > 0.25  # class-balanced: the 2 rare rows fill about half of the pass
    assert np.array_equal(np.concatenate([i for _, i in epoch_plan(4, ep, 16, extra)]), np.concatenate([i for _, i in plan]))


def test_config_errors():
    with pytest.raises(ValueError, match="lam"):
        TrainConfig(lam=-1)
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=5, warmup_epochs=5)
    with pytest.raises(ValueError, match="joint_mode"):
        TrainConfig(joint_mode="both")


def test_pipeline_config_errors_name_the_key_path():
    from dcjt.config_files import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"dcn\.lam: Input should be greater than or equal to 0 \(got -1\)"):
        load_config("demo", ["dcn.lam=-1"])
    with pytest.raises(ConfigError, match=r"method\.mapping: Input should be 'none', 'global', 'emotion' or 'emotion_ot'"):
        load_config("demo", ["method.mapping=nearest"])
    with pytest.raises(ConfigError, match=r"dcn\.lamda: Extra inputs are not permitted"):
        load_config("demo", ["dcn.lamda=2"])  # a typo is an error, not a silent default
    with pytest.raises(ConfigError, match=r"network.image_size: must be a multiple of 32"):
        load_config("demo", values={"network.image_size": 50})
    with pytest.raises(ConfigError, match=r"image_size is set under network: use network.image_size=64"):
        load_config("demo", values={"image_size": 64})
    with pytest.raises(ConfigError, match="data.target.root is not set"):
        load_config("rafdb")
    cfg = load_config("rafdb", ["data.kind=synthetic"], {"seed": 3})
    assert cfg.train_config("dcn").seed == 3 and cfg.dcn.lam == 15.0 and cfg.network.head == "arm"


def test_weight_decay_reaches_optimizer():
    opt = make_optimizer(build_model("tiny", "linear", 32), TrainConfig(weight_decay=1e-4, optimizer="adam"))
    assert opt.param_groups[0]["weight_decay"] == 1e-4


# --- training --------------------------------------------------------------------------------------------
def test_training_learns_selects_on_val_and_reports():
    set_seed(0)
    data, val, test = toy_samples(160, seed=0), toy_samples(48, seed=1), toy_samples(48, seed=2)
    curve = lambda model: {f"test_{k}": v for k, v in evaluate(model, test).items()}  # noqa: E731
    result = train(
        build_model("tiny", "linear", 32), data, cfg=small_cfg(epochs=4), val=val, report=Reporting(epoch_metrics=curve)
    )
    m = result.metrics
    assert evaluate(result.model, test)["accuracy"] > 0.5
    assert set(m) >= {"best_test_accuracy_over_epochs_for_comparison_only", "val_accuracy_selected", "images_seen"}
    assert m["images_seen"] == 4 * 160 and m["epochs_run"] == 4
    assert result.selected_epoch == int(result.history["val_accuracy"].idxmax())
    assert "test_accuracy" in result.history  # the opt-in curve is recorded, never used to select
    probs, va = predict(result.model, test)
    assert probs.shape == (48, 7) and np.allclose(probs.sum(1), 1, atol=1e-5) and va.shape == (48, 2)


def test_same_seed_same_weights_and_joint_runs():
    weights = []
    for _ in range(2):
        set_seed(1)
        r = train(
            build_model("tiny", "linear", 32),
            toy_samples(64),
            cfg=small_cfg(epochs=2, warmup_epochs=1, joint_frequency=1),
            extra=toy_samples(40, seed=5, va=True),
        )
        weights.append(r.model.fc.weight.detach().clone())
        assert r.history["joint"].tolist() == [False, True]
    assert torch.equal(weights[0], weights[1])


def test_wrong_image_size_is_refused():
    with pytest.raises(ValueError, match="32px but the network expects 64px"):
        train(build_model("tiny", "linear", 64), toy_samples(16), cfg=small_cfg())


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_checkpoint(tmp_path):
    set_seed(0)
    net = build_model("tiny", "linear", 32)

    def poison(epoch, row):
        with torch.no_grad():
            net.fc.weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match=r"epoch 2, batch 1") as err:
        train(net, toy_samples(48), cfg=small_cfg(), checkpoint_dir=tmp_path, report=Reporting(on_epoch_end=poison))
    assert "last good checkpoint" in str(err.value)
    ck = torch.load(latest(tmp_path), weights_only=True)
    assert ck["epoch"] == 0 and torch.isfinite(ck["model"]["fc.weight"]).all()


# --- metrics ---------------------------------------------------------------------------------------------
def test_classification_metrics_by_hand():
    y, p = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    report = metrics.classification_report(y, p)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["mean_class_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # F1: class0 tp1 fp1 fn1 -> .5; class1 tp2 fp1 fn0 -> .8; class2 tp1 fp0 fn1 -> 2/3
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    m = metrics.confusion_matrix(y, p)
    assert m.shape == (7, 7) and m[0, 1] == 1 and m.sum() == 6


def test_va_metrics_by_hand():
    y, p = np.array([0.5, -0.5, 0.2, -0.2]), np.array([0.4, -0.6, 0.2, 0.1])
    assert metrics.rmse(y, p) == pytest.approx(np.sqrt((0.01 + 0.01 + 0 + 0.09) / 4))
    assert metrics.sagr(y, p) == pytest.approx(0.75)
    assert metrics.ccc(y, y) == pytest.approx(1.0)
    # CCC with a constant offset: 2*cov / (var_y + var_p + d^2)
    shifted = y + 0.1
    var = y.var()
    assert metrics.ccc(y, shifted) == pytest.approx(2 * var / (2 * var + 0.01))
    assert metrics.pcc(y, 2 * y) == pytest.approx(1.0)
    assert metrics.rmse([0.0], [3.0]) == pytest.approx(1.0)  # predictions clipped to [-1, 1]
