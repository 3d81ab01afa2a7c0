"""The run plan: which rows a configuration runs, the stage-3 table each trains on, the gates that
apply and the step names (``dcjt.plan``), from the configuration alone."""

from __future__ import annotations

import pytest

from dcjt.config import BASELINES
from dcjt.config_files import load_config
from dcjt.method.health import stages_used
from dcjt.plan import GPU_STEPS, ROWS, STAGE_NETWORK_STEPS, WARMUP_STEP, extra_table, plan_run, train_step

EVERY_ROW = f"baselines=[{', '.join(BASELINES)}]"


def test_the_plan_has_dcjt_then_the_configured_baselines_with_their_steps():
    config = load_config("demo")
    run = plan_run(config)
    assert [r.id for r in run.rows] == ["dcjt", *config.baselines]
    dcjt = run.rows[0]
    assert dcjt.label == config.method.variant_name and dcjt.train_step == "train_dcn" and dcjt.joint
    assert [r.evaluate_step for r in run.rows] == [f"evaluate_{r}" for r in ["dcjt", *config.baselines]]
    assert [r.train_step for r in run.rows[1:]] == [f"train_{r}" for r in config.baselines]
    assert all(r.label == r.id and not r.joint for r in run.rows[1:])  # the demo's baselines merge or use A alone


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], {"dcjt": "prepared", "target_only": "published", "straight": "published", "oracle": "own"}),
        # the oracle shares DCJT's stage-3 settings but not its relabel rule: its own table, always
        (["method.mapping=none"], {"dcjt": "prepared", "oracle": "own", "extra_only": "published"}),
    ],
)
def test_each_row_trains_on_the_stage_3_table_its_settings_call_for(overrides, expected):
    run = plan_run(load_config("demo", [*overrides, EVERY_ROW]))
    tables = {r.id: r.extra for r in run.rows}
    assert {k: tables[k] for k in expected} == expected
    assert set(tables) == set(ROWS)
    assert run.rows[-1].stage3_steps == (f"map_{run.rows[-1].id}", f"relabel_{run.rows[-1].id}")


def test_a_row_with_dcjts_stage_3_settings_shares_its_table():
    config = load_config("demo")
    same = config.method.model_copy(update={"continuous": False})  # a loss setting, not a stage-3 one
    assert extra_table("variant", same, config.method) == "prepared"
    other = config.method.model_copy(update={"relabel": "gated"})
    assert extra_table("variant", other, config.method) == "own"


def test_the_gates_that_apply_are_the_union_of_the_rows_stages():
    for overrides in ([], ["baselines=[]"], ["method.extra_use=none", "baselines=[target_only]"], [EVERY_ROW]):
        config = load_config("demo", overrides)
        run = plan_run(config)
        expected = frozenset().union(*(stages_used(config.method_for(r)) for r in ("dcjt", *config.baselines)))
        assert run.gates == expected and all(r.gates == stages_used(r.method) for r in run.rows)
    assert plan_run(load_config("demo", ["method.extra_use=none", "method.continuous=false", "baselines=[]"])).gates == set()


def test_every_step_that_trains_a_row_or_runs_a_stage_network_gets_a_gpu():
    every = plan_run(load_config("demo", [EVERY_ROW]))
    assert set(GPU_STEPS) == set(STAGE_NETWORK_STEPS) | {r.train_step for r in every.rows} | {WARMUP_STEP}
    assert train_step("dcjt") == "train_dcn" and len(set(GPU_STEPS)) == len(GPU_STEPS)


def test_the_warm_up_is_shared_where_asked_for_by_the_rows_that_warm_up_as_dcjt():
    every = plan_run(load_config("demo", [EVERY_ROW, "runtime.share_warmup=true"]))
    sharing = {r.id for r in every.rows if r.shares_warmup}
    assert every.warmup and "dcjt" in sharing and "oracle" in sharing  # V/A targets on A, the joint schedule
    assert not sharing & {"target_only", "straight", "straight_balanced", "scn"}  # DL only, merged, balanced, SCN
    assert not plan_run(load_config("demo", [EVERY_ROW])).warmup  # off unless asked (studies and select ask)
    no_warmup = ["runtime.share_warmup=true", "dcn.warmup_epochs=0"]
    assert not plan_run(load_config("demo", no_warmup)).warmup
