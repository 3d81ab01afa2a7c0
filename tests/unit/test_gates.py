"""Stage health gates: limits relative to the data, gates only for stages the rows use, one line per stop."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from dcjt.config import BASELINES, GatesConfig, MethodConfig
from dcjt.config_files import ConfigError, load_config
from dcjt.data.labels import M_A_COLUMN, make_table
from dcjt.method import relabel
from dcjt.method.health import (
    GateError,
    failed_gates,
    gate_report,
    mapping_gates,
    pseudo_gates,
    relabel_gates,
    relabel_health,
    row_gates,
    stages_used,
    subset_gates,
    trusted_rows,
)
from dcjt.method.relabel import RELABEL_READS
from dcjt.method.reports import MappingReport
from dcjt.modes import RELABEL_MODES, RelabelRule
from dcjt.train.metrics import kappa, majority_rate
from helpers.data import ALL_LABELS

CFG = GatesConfig()


def test_kappa_and_majority_rate_by_hand():
    truth = [3] * 6 + [0] * 4
    assert majority_rate(truth) == 0.6
    assert kappa(truth, [3] * 10) == 0.0  # always the majority class: 60 % right, no agreement beyond chance
    assert kappa(truth, truth) == 1.0
    # 8 of 10 right; chance agreement 0.6 * 0.6 + 0.4 * 0.4 = 0.52 -> (0.8 - 0.52) / 0.48
    assert kappa(truth, [3] * 5 + [0] + [0] * 3 + [3]) == pytest.approx(0.28 / 0.48)


def test_a_majority_class_m_a_fails_its_gate_whatever_the_class_share():
    from dcjt.method.gaussian import matrix_record
    from dcjt.method.reports import SubsetReport

    every = {e: 50 for e in ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")}
    agreement = matrix_record(np.zeros((7, 7), int), "extra label", "M_A prediction")
    stats = SubsetReport(
        n_rows=350, n_kept=350, kept_fraction=1.0, kept_per_class=every, total_per_class=every, agreement=agreement
    )
    flat = {"val_kappa_selected": 0.0, "val_accuracy_selected": 0.389, "val_majority_rate_selected": 0.389}
    with pytest.raises(GateError) as err:
        gate_report("stage 1 (M_A, subset)", subset_gates(flat, stats, CFG), "stop")
    message = str(err.value)
    assert (
        "M_A's agreement with A's validation labels (kappa) = 0 (must be >= 0.2; accuracy 0.389 vs majority class 0.389)"
        in message
    )
    assert message.endswith("To continue anyway: --set gates.m_a_min_kappa=VALUE or --set gates.mode=warn")
    assert "\n" not in message
    good = {"val_kappa_selected": 0.45}
    assert gate_report("stage 1", subset_gates(good, stats, CFG), "stop").passed


def _pseudo(valence, arousal):
    n = len(valence)
    return make_table("a", "train", [f"a{k}" for k in range(n)], (ALL_LABELS * 3)[:n], valence, arousal)


def test_a_collapsed_arousal_fails_even_when_valence_is_spread():
    rng = np.random.default_rng(0)
    published = _pseudo(rng.uniform(-1, 1, 40), rng.uniform(-0.6, 0.6, 40))
    collapsed = _pseudo(rng.uniform(-1, 1, 40), np.full(40, 0.1) + rng.normal(0, 0.005, 40))
    failed = [g.name for g in pseudo_gates(collapsed, published, {}, CFG) if not g.passed]
    assert failed == ["spread of A's pseudo arousal"]
    assert all(g.passed for g in pseudo_gates(published, published, {}, CFG))
    weak_m_b = {"val_valence_ccc_selected": 0.6, "val_arousal_ccc_selected": 0.05}
    failed = [g for g in pseudo_gates(published, published, weak_m_b, CFG) if not g.passed]
    assert [g.name for g in failed] == ["M_B's arousal CCC on held-out subset rows"] and failed[0].key == "gates.m_b_min_ccc"


def test_relabel_health_on_trusted_rows_by_hand():
    """A's validation rows: surprise at (0, 1), happiness at (1, 0), neutral at (0, 0); centres from
    A's train rows at the same points. Nearest-centre relabeling recovers every label."""
    train = make_table("a", "train", [f"t{k}" for k in range(6)], [0, 0, 3, 3, 6, 6], [0, 0, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0])
    val = make_table("a", "val", ["v0", "v1", "v2", "v3"], [0, 3, 6, 6], [0.05, 0.9, 0.0, 0.55], [0.95, 0.0, 0.05, 0.4])
    val[M_A_COLUMN] = [0, 3, 6, 6]
    target = __import__("pandas").concat([train, val], ignore_index=True)
    trusted = trusted_rows(target)
    assert len(trusted) == 4 * 6 and set(trusted["trusted_label"]) == {0, 3, 6}
    assert (trusted["label"] != trusted["trusted_label"]).all()
    health = relabel_health(trusted, relabel(trusted, train, RelabelRule("nearest"))[0])
    # rows v0-v2 land on their own centre (18 changes right); v3 (neutral) lies nearer happiness's centre
    # (0.55^2 + 0.4^2 < 0.45^2 + 0.4^2 ... squared 0.3625 vs 0.4625): 5 of its 6 wrong labels become happiness
    assert health["majority_rate"] == 0.5 and health["rows"] == 4
    assert health["precision"] == pytest.approx(18 / (18 + 5)) and health["coverage"] == pytest.approx(23 / 24)
    assert relabel_gates(health, CFG)[0].passed
    gated = relabel_health(trusted, relabel(trusted, train, RelabelRule("gated", gate_ratio=0.8))[0])
    assert gated["precision"] == 1.0 and gated["coverage"] == pytest.approx(18 / 24)  # M_A (neutral) vetoes v3's changes
    bad = dict(health, precision=0.4)
    gate = relabel_gates(bad, CFG)[0]
    assert not gate.passed and gate.key == "gates.relabel_min_lift" and "majority-class rate 0.500" in gate.line()


def _evaluation(accuracy: float, majority: float, b_passes: int):
    from dcjt.train.scoring import RowEvaluation, SplitScores

    def scores(split):
        return SplitScores(
            split=split, n=100, accuracy=accuracy, mean_class_accuracy=accuracy, macro_f1=accuracy, kappa=0.0,
            majority_rate=majority, confusion=[[0] * 7] * 7, correct=[],
        )  # fmt: skip

    return RowEvaluation(row="dcjt", variant="v", val=scores("val"), test=scores("test"), b_passes=b_passes)


def test_rows_no_better_than_the_majority_class_and_missing_passes_fail():
    flat = _evaluation(0.389, 0.389, 0)
    gates = row_gates("dcjt", flat, joint=True, min_b_passes=1)
    assert [g.passed for g in gates] == [False, False] and gates[1].key == "budget.min_b_passes"
    assert flat.degenerate
    ok = _evaluation(0.62, 0.389, 4)
    assert all(g.passed for g in row_gates("dcjt", ok, joint=True, min_b_passes=1)) and not ok.degenerate
    assert len(row_gates("target_only", ok, joint=False, min_b_passes=1)) == 1  # no B: no passes to count


def test_gates_apply_only_to_the_stages_a_row_uses():
    assert stages_used(MethodConfig()) == {"subset", "pseudo", "mapping", "relabel"}
    assert stages_used(MethodConfig(**BASELINES["target_only"])) == frozenset()
    assert stages_used(MethodConfig(**BASELINES["straight"])) == frozenset()
    assert stages_used(MethodConfig(extra_use="none", pseudo_from="subset")) == {"pseudo", "subset"}  # Table 1: A / DL & CLS
    assert stages_used(MethodConfig(extra_use="none", pseudo_from="all")) == {"pseudo"}  # A / DL & CLE: no subset
    assert stages_used(MethodConfig(relabel="none", mapping="none", continuous=False)) == frozenset()
    assert stages_used(MethodConfig(relabel="oracle", mapping="none")) == {"pseudo", "subset"}
    clipped = MappingReport(mode="global", n_mapped=10, n_clipped=9)
    unused = gate_report("stage 3a (mapping)", mapping_gates(clipped, CFG), "stop", applies=False)
    assert unused.mode == "not used" and not unused.passed
    assert failed_gates([unused]) == []  # a gate of an unused stage is recorded, never counted
    warned = gate_report("stage 3a (mapping)", mapping_gates(clipped, CFG), "warn")
    assert failed_gates([warned]) == ["stage 3a (mapping): share of mapped V/A clipped = 0.9 (must be <= 0.25)"]


def test_a_validation_split_too_small_to_select_on_is_refused_before_training(tmp_path):
    from dcjt.data.labels import ValidationSplitError, check_validation_rows

    table = make_table("a", ["train"] * 40 + ["val"] * 12, [f"i{k}" for k in range(52)], ([0, 3] * 26))
    too_few = r"A \(x\): the validation split holds 12 rows, fewer than gates.min_val_rows = 30"
    with pytest.raises(ValidationSplitError, match=too_few):
        check_validation_rows(table, 0.2, 30, "A (x)")
    check_validation_rows(table, 0.2, 12, "A (x)")


@pytest.mark.parametrize("mode", RELABEL_MODES)
def test_every_relabel_rule_that_reads_a_stage_has_its_gate(mode):
    """A rule that relabels from stages 1-2 puts the relabel gate (and those stages' gates) on;
    every mode of ``dcjt.modes.RELABEL_MODES`` (the config's choices) says what it reads in
    ``RELABEL_READS``, so a mode added without its gates fails here."""
    assert set(typing.get_args(MethodConfig.model_fields["relabel"].annotation)) == set(RELABEL_READS)
    order = {"stage3_order": "relabel_first"} if mode == "latent" else {}
    used = stages_used(MethodConfig(relabel=mode, mapping="none", **order))
    if mode in ("none", "oracle"):
        assert "relabel" not in used
    else:
        assert {"relabel", "pseudo"} <= used and RELABEL_READS[mode] <= used


def test_a_mode_missing_from_the_gate_list_fails(monkeypatch):
    """A new mode added without saying what it reads has no gate entry: stages_used refuses it."""

    class NewMode:
        extra_use, mapping, relabel, continuous, pseudo_from = "all", "none", "learned", True, "subset"

    with pytest.raises(KeyError, match="learned"):
        stages_used(NewMode())


@pytest.mark.parametrize("order", ["map_first", "relabel_first"])
@pytest.mark.parametrize("mode", RELABEL_MODES)
def test_every_relabel_and_order_pair_runs_or_is_refused_by_key(mode, order):
    if mode == "latent" and order == "map_first":
        with pytest.raises(ConfigError, match=r"method.relabel: latent needs method.stage3_order: relabel_first"):
            load_config("demo", [f"method.relabel={mode}", f"method.stage3_order={order}"])
        return
    cfg = load_config("demo", [f"method.relabel={mode}", f"method.stage3_order={order}"])
    assert cfg.method.relabel == mode and cfg.method.stage3_order == order
