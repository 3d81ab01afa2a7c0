"""The Self-Cure Network training mode: its loss and relabel rule against hand-computed values,
its network, and the loop that relabels and keeps the new labels (also across a resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcjt.config import SCNConfig, TrainConfig
from dcjt.config_files import ConfigError, load_config
from dcjt.models.nets import build_model
from dcjt.train.scn import high_group, rank_regularisation, relabeled


def test_rank_regularisation_matches_hand_values():
    alpha = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    # top 70 % = 7 rows: mean 0.6; the rest: (0.2 + 0.1 + 0.05) / 3 = 0.11667; gap 0.48333
    assert rank_regularisation(alpha, 0.7, 0.15).item() == 0.0  # the gap already exceeds the margin
    assert rank_regularisation(alpha, 0.7, 0.6).item() == pytest.approx(0.6 - 0.48333, abs=1e-5)
    shuffled = alpha[torch.tensor([3, 9, 0, 5, 1, 8, 2, 7, 4, 6])]
    assert rank_regularisation(shuffled, 0.7, 0.6).item() == pytest.approx(0.11667, abs=1e-5)  # order does not matter
    flat = torch.full((10,), 0.5)
    assert rank_regularisation(flat, 0.7, 0.15).item() == pytest.approx(0.15)  # equal weights: the whole margin
    assert rank_regularisation(torch.tensor([0.4]), 0.7, 0.15).item() == 0.0  # one row: no low group


def test_relabel_rule_matches_hand_values():
    # Probabilities (softmax of log p): rows 0-1 confident in class 2, rows 2-3 unsure.
    p = torch.tensor(
        [
            [0.05, 0.05, 0.80, 0.025, 0.025, 0.025, 0.025],  # label 0: P_max - P_label = 0.75 > 0.2
            [0.05, 0.05, 0.80, 0.025, 0.025, 0.025, 0.025],  # same, but a high-attention row
            [0.20, 0.25, 0.15, 0.10, 0.10, 0.10, 0.10],  # label 0: 0.25 - 0.20 = 0.05 <= 0.2: kept
            [0.10, 0.10, 0.50, 0.10, 0.10, 0.05, 0.05],  # label 2 is already the top class
        ]
    )
    logits, labels = p.log(), torch.tensor([0, 0, 0, 2])
    alpha = torch.tensor([0.1, 0.9, 0.2, 0.8])  # top_share 0.5: rows 1 and 3 form the high group
    assert high_group(alpha, 0.5).tolist() == [False, True, False, True]
    low_only = relabeled(logits, labels, alpha, SCNConfig(top_share=0.5, relabel_margin=0.2))
    assert low_only.tolist() == [2, 0, 0, 2]
    any_row = relabeled(logits, labels, alpha, SCNConfig(top_share=0.5, relabel_margin=0.2, relabel_group="all"))
    assert any_row.tolist() == [2, 2, 0, 2]
    strict = relabeled(logits, labels, alpha, SCNConfig(top_share=0.5, relabel_margin=0.8))
    assert strict.tolist() == [0, 0, 0, 2]  # 0.75 is not above 0.8


def test_scn_network_scales_logits_by_attention_in_training_only():
    torch.manual_seed(0)
    net = build_model("tiny", "linear", 32, scn=True)
    x = torch.randn(4, 3, 32, 32)
    net.train()
    out = net(x)
    assert out.shape == (4, 10) and ((out[:, -1] > 0) & (out[:, -1] < 1)).all()
    net.eval()
    plain = net(x)
    assert plain.shape == (4, 9) and net.spec()["scn"] is True
    assert "scn" not in build_model("tiny", "linear", 32).spec()


def small_cfg(**kw) -> TrainConfig:
    scn = SCNConfig(enabled=True, relabel_epoch=1, relabel_margin=0.05)
    return TrainConfig(epochs=3, batch_size=16, lr=3e-3, scheduler="none", erase_p=0.0, amp=False, prefetch=0, scn=scn, **kw)


def test_scn_refuses_several_processes_and_is_a_baseline_row():
    with pytest.raises(ValueError, match="scn relabels its training rows as it goes"):
        TrainConfig(devices=2, scn=SCNConfig(enabled=True))
    cfg = load_config("demo", ["baselines=[scn, scn_target]"])
    scn, target = cfg.method_for("scn"), cfg.method_for("scn_target")
    assert scn.scn and scn.combine == "merged" and scn.extra_use == "all" and not scn.continuous
    assert target.scn and target.extra_use == "none"
    with pytest.raises(ConfigError, match="baselines"):
        load_config("demo", ["baselines=[self_cure]"])
    np.testing.assert_equal(cfg.dcn.scn.relabel_epoch, 3)
