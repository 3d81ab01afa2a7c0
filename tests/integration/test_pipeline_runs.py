"""Whole pipeline runs that share nothing with the tiny run of ``test_pipeline_e2e.py`` (a module
of their own, so pytest-xdist runs them beside it): the schedule and its crontab line, a table
failing its expectations, two runs at once, steps without a shared disk, the validation carve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from helpers import ROOT
from helpers.pipeline import SMALLEST, set_args

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_schedule_on_local_stack_explains_and_prints_crontab():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "demo", "--schedule", "0 3 * * 0", "--set", "network.image_size=32"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "cannot schedule" in proc.stderr
    assert "0 3 * * 0 cd " in proc.stderr and "run.py demo --set network.image_size=32" in proc.stderr


@pytest.mark.slow
def test_the_printed_crontab_line_runs_the_pipeline_from_cron_s_bare_environment(tmp_path):
    """The local stack cannot schedule, so the CLI prints a crontab line; its command, run as cron
    runs it (``/bin/sh -c`` with cron's nearly empty environment, no cron daemon), finishes a
    pipeline run on the same stores. A schedule cron cannot read is refused before anything."""
    settings = ["register_model=false", *SMALLEST]
    cmd = [sys.executable, str(ROOT / "run.py"), "pipeline", "--config", "tiny", *set_args(settings)]
    bad = subprocess.run([*cmd, "--schedule", "0 3 * *"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "not a cron expression" in bad.stderr and "crontab" not in bad.stderr.lower()
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    printed = subprocess.run([*cmd, "--schedule", "*/15 2 * * 1-5"], capture_output=True, text=True, timeout=300)
    assert printed.returncode == 2 and "cannot schedule" in printed.stderr
    line = printed.stderr.strip().splitlines()[-1]
    fields = line.split(" ", 5)
    assert fields[:5] == ["*/15", "2", "*", "*", "1-5"], line
    body = fields[5].replace("\\%", "%")  # cron unescapes \% before handing the line to the shell
    assert f"DCJT_HOME={os.environ['DCJT_HOME']}" in body and "--schedule" not in body
    from zenml.client import Client

    before = {r.id for r in Client().list_pipeline_runs(size=100)}
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh", "LOGNAME": "cron"}
    ran = subprocess.run(["/bin/sh", "-c", body], env=cron_env, capture_output=True, text=True, timeout=900)
    log = (Path(os.environ["DCJT_HOME"]) / "logs" / "cron.log").read_text()
    assert ran.returncode == 0, log[-3000:]
    assert "pipeline wall time" in log
    new = [r for r in Client().list_pipeline_runs(size=100) if r.id not in before]
    assert len(new) == 1 and str(new[0].status) == "completed" and new[0].name.startswith("tiny-")


def test_a_table_failing_its_expectations_leaves_why_on_the_failed_step():
    """A world too small to give every emotion a training row: Great Expectations stops the ingest
    step, and the failed step's metadata (the dashboard's metadata tab) names the failed
    expectation and the missing emotions, as the console does."""
    from zenml.client import Client

    settings = ["data.world.n_target=14", "val_fraction=0.5", "gates.min_val_rows=1", "register_model=false"]
    cmd = [sys.executable, str(ROOT / "run.py"), "pipeline", "--config", "tiny", *set_args(settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "synthetic target: 1 expectation(s) failed" in proc.stderr, proc.stderr[-2000:]
    run = Client().list_pipeline_runs(sort_by="desc:created", size=1)[0]
    step = run.steps["ingest_synthetic"]
    assert str(run.status) == "failed" and str(step.status) == "failed"
    result = step.run_metadata["gx synthetic target"]
    assert result["success"] is False and result["rows"] == 14
    assert result["failed"][0]["expectation"] == "expect_column_distinct_values_to_contain_set"
    assert "the train split has no row of" in result["failed"][0]["detail"]


def test_two_runs_at_once_on_a_fresh_state_folder(tmp_path):
    """Both initialise the stores under a lock, both finish, each registers its own version."""
    env = {
        **os.environ,
        "DCJT_HOME": str(tmp_path),
        "ZENML_CONFIG_PATH": str(tmp_path / "zenml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    cmd = [sys.executable, str(ROOT / "run.py"), "pipeline", "--config", "tiny", "--threads", "1", *set_args(SMALLEST)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "promotion gate:" in out and "comparison:" in out
        assert "this run in the UI: http://127.0.0.1:5000/#/experiments/" in out  # the runs view, not GenAI's
        assert "ZenML runs: ZENML_CONFIG_PATH=" in out and "zenml login" not in out + err  # no hint that fails here
        for chatter in (
            "Skipping registering",
            "ephemeral docs site",
            "FutureWarning",
            "Downloading artifacts",
            "Successfully reg",
        ):
            assert chatter not in out + err, chatter  # third-party chatter goes to the log, not the console
    log = (tmp_path / "logs" / "third-party.log").read_text()
    assert "Skipping registering function" in log and "Successfully registered model" in log
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    versions = sorted(int(v.version) for v in client.search_model_versions("name='dcjt-synthetic'"))
    assert versions == [1, 2]


def test_a_stack_whose_steps_share_no_disk_is_stopped_at_submission():
    import yaml

    from app.preflight import PreflightError, check_handoff
    from dcjt.config_files import load_config

    k8s = yaml.safe_load((ROOT / "configs/remote-kubernetes.yaml").read_text())
    cfg = load_config("demo")
    check_handoff("local", cfg, None)
    with pytest.raises(PreflightError, match="kubeflow orchestrator gives each step its own disk.*paths.handoff=artifact_store"):
        check_handoff("kubeflow", cfg, None)
    check_handoff("kubeflow", load_config("demo", ["paths.handoff=artifact_store"]), None)
    with pytest.raises(
        PreflightError, match=r"paths.cache_dir = .* is on no volume that the run configuration mounts \(\['/data'\]\)"
    ):
        check_handoff("kubernetes", cfg, k8s)
    on_volume = load_config("demo", ["paths.cache_dir=/data/cache", "paths.checkpoint_root=/data/checkpoints"])
    check_handoff("kubernetes", on_volume, k8s)


def test_pipeline_carves_validation_only_where_it_is_used(tmp_path, monkeypatch):
    """A's validation selects epochs; B's is carved from M_B's subset in stage 2, not at ingestion."""
    import pipelines.dcjt as graph
    from dcjt.config_files import load_config

    calls = []
    monkeypatch.setattr(graph, "ingest_dataset", lambda **kw: calls.append(kw) or (None, None))  # records the wiring
    monkeypatch.setattr(graph, "ingest_extras", lambda **kw: calls.append(kw) or (None, None))
    monkeypatch.setattr(graph, "merge_reports", lambda *reports: None)
    (tmp_path / "b").mkdir()
    cfg = load_config("rafdb", [f"data.target.root={tmp_path}", f"data.extra.root={tmp_path / 'b'}"])
    graph.ingest(cfg)
    assert [(c.get("id"), c.get("val_fraction")) for c in calls] == [("ingest_target", cfg.val_fraction), (None, None)]
    assert [s.root for s in calls[1]["specs"]] == [str(tmp_path / "b")]  # extras carve no validation at ingestion


# Every gate before stage 3b opened: the smallest world's one-epoch models are weak on purpose.
OPEN_GATES = (
    "gates.m_a_min_kappa=-1",
    "gates.subset_min_class_share=0",
    "gates.subset_min_rows=0",
    "gates.subset_min_share=0",
    "gates.pseudo_min_spread_ratio=0",
    "gates.m_b_min_ccc=-1",
    "gates.max_clipped_share=1",
)


@pytest.mark.parametrize(
    "rule", [("posterior", "relabel_first", "published"), ("latent", "map_first", "predicted")], ids=["posterior", "latent"]
)
def test_a_posterior_rule_whose_relabel_gate_fails_stops_the_run_before_training(rule):
    """The relabel gate holds the posterior rules too: asked for a precision no rule reaches (1.0
    above A's majority-class rate), the run stops at stage 3b in one line naming the measure and
    its key, before any row trains. The latent rule runs after the map on M_B's predicted V/A
    (stage 2 predicts every row of B for it)."""
    from dcjt.method.health import GateError
    from helpers.pipeline import run_tiny

    settings = [*SMALLEST, *OPEN_GATES, "gates.mode=stop", "gates.relabel_min_lift=1.0", "register_model=false"]
    mode, order, va = rule
    settings += [
        f"method.relabel={mode}",
        f"method.stage3_order={order}",
        f"method.relabel_va={va}",
        "method.relabel_threshold=0.3",
    ]
    with pytest.raises(GateError) as stopped:
        run_tiny(*settings)
    line = str(stopped.value)
    assert "\n" not in line and line.startswith("stage 3b (relabeling) health gate failed: relabel precision on A's validation")
    assert "gates.relabel_min_lift" in line
    failed = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`failure.kind` = 'GateError'", output_format="list"
    )[0]
    assert failed.data.tags["failure.stage"] == "stage 3b (relabeling)"
    assert not [k for k in failed.data.metrics if k.startswith("dcjt.") or k.endswith("test_accuracy")]
