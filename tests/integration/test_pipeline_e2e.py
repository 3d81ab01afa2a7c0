"""The whole DCJT pipeline on tiny synthetic data in isolated ZenML and MLflow stores."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from dcjt.models.emotions import EMOTIONS
from helpers import ROOT  # noqa: E402
from helpers.pipeline import demo_registry, run_tiny, set_args
from helpers.servers import free_port, rest, server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def first_run():
    return run_tiny()


def test_pipeline_completes_and_tracks_everything(first_run):
    from zenml.client import Client

    run = Client().get_pipeline_run(first_run.run_name)
    assert str(run.status) == "completed"
    expected = {
        "open_tracking",
        "ingest_synthetic",
        "cache_target",
        "cache_extra",
        "train_m_a",
        "select_extra_subset",
        "train_m_b",
        "pseudo_label_target",
        "map_extra_continuous",
        "relabel_extra",
        "train_dcn",
        "evaluate_dcjt",
        "evaluate_target_only",
        "evaluate_straight",
        "register_and_promote",
        "log_stages",
        "train_straight",
        "train_straight_balanced",
        "train_target_only",
        "report_run",
    }
    assert expected <= set(run.steps)
    assert all(str(s.status) == "completed" for s in run.steps.values())
    assert set(first_run.comparison["variant"]) == {"target_only", "straight", "straight_balanced", "dcjt"}
    assert Path(first_run.comparison_path).read_text().startswith("variant,accuracy,val_accuracy")
    # the registry moves only after every row was scored (a row that fails its gate stops the run first)
    order = sorted(run.steps.values(), key=lambda s: s.start_time)
    names = [s.name for s in order]
    assert all(names.index("register_and_promote") > names.index(f"evaluate_{r}") for r in ("dcjt", "target_only", "straight"))
    parent = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`zenml.run_name` = '{first_run.run_name}'", output_format="list"
    )[0]
    assert parent.info.status == "FINISHED"
    kind = mlflow.get_experiment_by_name("dcjt-synthetic").tags.get("mlflow.experimentKind")
    assert kind == "custom_model_development"  # the UI opens on training runs, not the GenAI view
    assert {
        "final.test_accuracy",
        "test_accuracy.target_only",
        "test_accuracy.straight",
        "mapping.mapped",
        "subset.kept",
        "audit.w2_global_before",
        "audit.w2_global_after",
    } <= set(parent.data.metrics)
    assert parent.data.params["method.mapping"] == "emotion"
    files = {
        f.path
        for d in ("stats", "plots", "audit", "va_stats")
        for f in mlflow.MlflowClient().list_artifacts(parent.info.run_id, d)
    }
    assert {
        "stats/mapping.json",
        "stats/subset.json",
        "stats/relabel.json",
        "stats/gx.json",
        "plots/va_extra_before_after.png",
        "plots/confusion_dcn.png",
        "audit/criteria_before.csv",
        "va_stats/target_pseudo.csv",
    } <= files
    mapping = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="stats/mapping.json")).read_text()
    )
    assert mapping["mode"] == "emotion" and "transforms" in mapping
    children = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list"
    )
    stages = {c.data.tags["dcjt.stage"] for c in children}
    assert {"M_A", "M_B", "DCN", "straight", "target_only", "register"} <= stages
    dcn = next(c for c in children if c.data.tags["dcjt.stage"] == "DCN")
    client = mlflow.MlflowClient()
    history = client.get_metric_history(dcn.info.run_id, "A_loss")
    assert len(history) == 3  # one value per epoch


def test_runs_table_shows_the_rows_and_the_winner(first_run):
    """The MLflow runs table answers the run's question: readable names, the comparison as the
    parent's description, each row's accuracy under one key on the run that trained it, one series
    per total, datasets with their rows per emotion, B before and after stage 3 as two datasets."""
    from dcjt.config_files import load_config

    cfg = load_config("tiny")
    assert first_run.run_name.startswith(f"tiny-{cfg.method.variant_name}-s{cfg.seed}-")
    client = mlflow.MlflowClient()
    parent = client.get_run(first_run.summary.mlflow_run_id)
    note = parent.data.tags["mlflow.note.content"]
    assert "| dcjt |" in note and "| target_only |" in note and "Registry: `" in note
    children = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", output_format="list"
    )
    rows = {c.data.tags["dcjt.row"]: c for c in children if "dcjt.row" in c.data.tags}
    comparison = first_run.comparison.set_index("variant")
    assert set(rows) == set(comparison.index)
    for row, run in rows.items():
        assert run.data.metrics["row.test_accuracy"] == pytest.approx(comparison.loc[row, "accuracy"])
        assert run.data.metrics["row.val_accuracy"] == pytest.approx(comparison.loc[row, "val_accuracy"])
    dcn = rows["dcjt"]
    assert dcn.data.tags["dcjt.stage"] == "DCN"
    for total in ("images_seen", "steps"):  # the totals, one value each; the epochs' under epoch.*
        assert [m.value for m in client.get_metric_history(dcn.info.run_id, total)] == [comparison.loc["dcjt", total]]
        assert len(client.get_metric_history(dcn.info.run_id, f"epoch.{total}")) == dcn.data.metrics["epochs_run"]
    assert "val_accuracy_selected" in dcn.data.metrics
    inputs = {i.dataset.name: i for i in parent.inputs.dataset_inputs}
    published = next(i for n, i in inputs.items() if n.endswith("train (as published)"))
    relabeled = next(i for n, i in inputs.items() if n.endswith("train (relabeled)"))
    assert published.dataset.digest != relabeled.dataset.digest
    for i in parent.inputs.dataset_inputs:
        tags = {t.key: t.value for t in i.tags}
        assert sum(int(tags[f"rows.{e}"]) for e in EMOTIONS) == int(tags["rows"]) > 0, i.dataset.name


def test_dcn_trains_jointly_on_the_relabeled_and_mapped_rows(first_run):
    """The DCN ran joint epochs, on exactly the rows stage 3 produced (relabeled labels, mapped V/A)."""
    import numpy as np
    import pandas as pd
    from zenml.client import Client

    from dcjt.config_files import load_config
    from dcjt.method import training_rows

    run = Client().get_pipeline_run(first_run.run_name)
    out = lambda step, name: run.steps[step].outputs[name][0].load()  # noqa: E731
    mapped, prepared, pseudo = (
        out("map_extra_continuous", "extra_mapped"),
        out("relabel_extra", "extra_prepared"),
        out("pseudo_label_target", "target_pseudo"),
    )
    changed = int((prepared["label"] != mapped["label"]).sum())
    assert changed == out("relabel_extra", "relabel_report").n_changed > 0
    assert (prepared.loc[prepared["va_origin"] == "mapped", ["valence", "arousal"]].abs() <= 1).all().all()
    marked = out("select_extra_subset", "extra_marked").set_index("image")
    moved = prepared[prepared["va_origin"] == "mapped"].set_index("image")
    published = marked.loc[moved.index, ["valence", "arousal"]].to_numpy()
    assert len(moved) and not np.allclose(moved[["valence", "arousal"]].to_numpy(), published)  # V/A were mapped
    _, b_rows = training_rows(pseudo, prepared, load_config("tiny").method)
    dcn = next(
        r
        for r in mlflow.search_runs(
            search_all_experiments=True,
            filter_string=f"tags.`dcjt.stage` = 'DCN' and tags.mlflow.parentRunId = '{first_run.summary.mlflow_run_id}'",
            output_format="list",
        )
    )
    logged = {i.dataset.name: i.dataset.digest for i in dcn.inputs.dataset_inputs}
    expected = mlflow.data.from_pandas(b_rows.reset_index(drop=True), source="x", name="x").digest
    assert expected in logged.values(), (expected, logged)
    history = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=dcn.info.run_id, artifact_path="DCN_history.csv"))
    assert history["joint"].any() and history.loc[history["joint"], "B_loss"].notna().all()


def test_registered_model_loads_in_a_fresh_process(first_run, tmp_path):
    image = sorted((Path(os.environ["DCJT_HOME"]) / "data").rglob("*.png"))[0]
    code = (
        "import mlflow, pandas as pd; m = mlflow.pyfunc.load_model('models:/dcjt-synthetic@champion'); "
        f"out = m.predict(pd.DataFrame({{'image': [{str(image)!r}]}})); print(out.to_json(orient='records'))"
    )
    env = {**os.environ, "DCJT_SERVE_IMAGE_ROOTS": str(image.parent)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])[0]
    assert (
        0 <= row["label"] <= 6
        and -1 <= row["valence"] <= 1
        and abs(sum(v for k, v in row.items() if k.startswith("prob_")) - 1) < 1e-4
    )
    cli = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "predict", "--model", "models:/dcjt-synthetic@champion", str(image.parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert len([line for line in cli.stdout.splitlines() if "valence=" in line]) == len(list(image.parent.glob("*.png")))

    # --format json / csv: every class probability, V/A and error per image; strict JSON (null when refused)
    folder = tmp_path / "batch"
    folder.mkdir()
    shutil.copy(image, folder / "a.png")
    (folder / "broken.png").write_bytes(b"not an image")
    model = ["--model", "models:/dcjt-synthetic@champion"]
    as_json = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "predict", *model, "--format", "json", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert as_json.returncode == 1 and "1 of 2 images could not be classified" in as_json.stderr
    rows = {Path(r["image"]).name: r for r in json.loads(as_json.stdout, parse_constant=lambda c: pytest.fail(c))}
    assert rows["broken.png"]["valence"] is None and rows["broken.png"]["error"].startswith("unreadable")
    assert abs(sum(v for k, v in rows["a.png"].items() if k.startswith("prob_")) - 1) < 1e-4 and rows["a.png"]["error"] == ""
    as_csv = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "predict", *model, "--format", "csv", str(folder / "a.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    table = pd.read_csv(io.StringIO(as_csv.stdout))
    assert as_csv.returncode == 0 and list(table.columns[:3]) == ["image", "label", "emotion"] and len(table) == 1
    assert {"prob_anger", "valence", "arousal", "error"} <= set(table.columns)


def test_rerun_is_a_cache_hit_and_leaves_the_registry_alone(first_run):
    from zenml.client import Client

    _, versions_before, champion_before = demo_registry()
    again = run_tiny()
    run = Client().get_pipeline_run(again.run_name)
    work = {
        n: str(s.status) for n, s in run.steps.items() if n not in ("open_tracking", "log_stages", "report_run", "merge_reports")
    }
    assert set(work.values()) == {"cached"}, work
    _, versions_after, champion_after = demo_registry()
    assert versions_after == versions_before and champion_after.version == champion_before.version


def test_variant_reuses_shared_stages_and_promotion_follows_accuracy(first_run):
    from zenml.client import Client

    client, versions_before, champion_before = demo_registry()
    variant = run_tiny("method.mapping=global")
    run = Client().get_pipeline_run(variant.run_name)
    status = {n: str(s.status) for n, s in run.steps.items()}
    for shared in (
        "ingest_synthetic",
        "train_m_a",
        "select_extra_subset",
        "train_m_b",
        "pseudo_label_target",
        "train_straight",
        "train_target_only",
    ):
        assert status[shared] == "cached", (shared, status)
    for changed in ("map_extra_continuous", "train_dcn", "register_and_promote"):
        assert status[changed] == "completed", (changed, status)
    _, versions_after, champion_after = demo_registry()
    assert len(versions_after) == len(versions_before) + 1
    tags = client.get_model_version("dcjt-synthetic", variant.promotion.version).tags
    # the champion was scored again in this run, on the same validation rows as when it was registered
    assert tags["promotion.champion_val_accuracy"] == champion_before.tags["val_accuracy"]
    assert tags["promotion.val_digest"] == champion_before.tags["promotion.val_digest"]
    lo = float(tags["promotion.interval"].strip("[]").split(",")[0])  # the paired bootstrap gate is on by default
    wins = float(tags["promotion.challenger_val_accuracy"]) > float(tags["promotion.champion_val_accuracy"]) and lo > 0
    assert variant.promotion.promoted == wins
    assert str(champion_after.version) == (variant.promotion.version if wins else str(champion_before.version))
    zen = Client().get_model("dcjt-synthetic")
    assert len(Client().list_model_versions(model_name_or_id=zen.id)) == len(versions_after)
    # the Model Control Plane's version links the run that made it and the model artifact
    mirrored = Client().get_model_version("dcjt-synthetic", f"mlflow-v{variant.promotion.version}")
    assert variant.run_name in mirrored.pipeline_run_ids
    assert mirrored.run_metadata["mlflow_model_uri"] == f"models:/dcjt-synthetic/{variant.promotion.version}"
    links = Client().list_model_version_artifact_links(model_version_id=mirrored.id)
    assert [link.artifact_version.name for link in links] == ["model"]


def test_failing_step_leaves_registry_and_marks_run_failed(first_run):
    client, versions_before, champion_before = demo_registry()
    cache_dir = Path(os.environ["DCJT_HOME"]) / "cache"
    moved = cache_dir.with_name("cache-away")
    shutil.move(cache_dir, moved)  # a cleaned cache folder: the changed DCN step cannot read its images
    try:
        # the DCN changed, its shared stages from the cache; no baseline rows (the --no-cache rerun
        # then rebuilds the caches and trains M_A, M_B and the DCN only)
        cmd = [sys.executable, str(ROOT / "run.py"), "pipeline", "--config", "tiny", *set_args(["dcn.lam=2.0", "baselines=[]"])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]  # one line, not a traceback
        assert f"image cache {cache_dir}" in lines[0] and "is gone: its folder" in lines[0], lines
        assert "rerun with --no-cache to rebuild it" in lines[0]
        _, versions_after, champion_after = demo_registry()
        assert versions_after == versions_before and champion_after.version == champion_before.version
        failed = mlflow.search_runs(
            search_all_experiments=True, filter_string="attributes.status = 'FAILED'", output_format="list"
        )
        assert failed, "the parent run of the failed pipeline run is marked FAILED"
        parent = next(r for r in failed if "zenml.run_name" in r.data.tags)  # the UI says why, as the console did
        assert "is gone: its folder" in parent.data.tags["failure.reason"], parent.data.tags["failure.reason"]
        assert parent.data.tags["mlflow.note.content"].startswith("**This run stopped.** ")
        assert parent.data.params, "the failed run keeps its configuration"
        proc = subprocess.run([*cmd, "--no-cache"], capture_output=True, text=True, timeout=900)  # the fix it names
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert any(cache_dir.rglob("*.npy")), "the caches were built again"
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
        shutil.move(moved, cache_dir)


def test_zenml_dashboard_serves_the_run_with_rendered_reports_metadata_and_links_to_mlflow(first_run, tmp_path):
    """run.py dashboard: ZenML's server on the project's store. Through its API (what the dashboard
    reads): the run and its stage steps, the relabel report rendered as Markdown with its Great
    Expectations result, the stage page with its figures, headline numbers as step metadata, the
    run's link to its MLflow run and back. Ctrl-C (SIGINT) stops it; a taken port, a state folder
    without a store and a store of another ZenML version are refused in one line."""
    import mlflow
    from zenml.client import Client

    from app.dashboard import store_problem

    run = Client().get_pipeline_run(first_run.run_name)
    port = free_port()
    cmd = [sys.executable, str(ROOT / "run.py"), "dashboard", "--port", str(port)]
    # started as a script's background job would be, with SIGINT ignored: Ctrl-C must still stop it
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"ZenML dashboard: http://127.0.0.1:{port}"), line + proc.stderr.read()[-2000:]

        def api(path: str):
            return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=60).read())

        user = api("current-user")  # the dashboard opens on the runs, not on ZenML's sign-up survey
        assert user["body"]["email_opted_in"] is False and user["metadata"]["user_metadata"]["finished_onboarding_survey"]
        assert api(f"runs/{run.id}")["body"]["status"] == "completed"
        steps = {s["name"] for s in api(f"steps?pipeline_run_id={run.id}&size=100")["items"]}
        assert {"select_extra_subset", "pseudo_label_target", "map_extra_continuous", "relabel_extra", "train_dcn"} <= steps
        relabel = run.steps["relabel_extra"].outputs["relabel_report"][0]
        page = api(f"artifact_versions/{relabel.id}/visualize?index=0")
        assert page["type"] == "markdown" and "## RelabelReport" in page["value"]
        assert "Great Expectations on `extra after relabeling`: passed" in page["value"]
        assert "expect_column_values_to_be_between" in page["value"]  # every expectation that ran, by name
        figures = api(f"artifact_versions/{run.steps['log_stages'].outputs['stage_report'][0].id}/visualize?index=0")
        assert figures["type"] == "html" and figures["value"].count("<img") >= 3 and "relabel transition" in figures["value"]
        report = api(f"artifact_versions/{run.steps['report_run'].outputs['run_report'][0].id}/visualize?index=0")
        assert "Rows of this run" in report["value"] and "Great Expectations on `synthetic target`" in report["value"]
        assert "kept_fraction" in run.steps["select_extra_subset"].run_metadata
        assert "dcjt.test_accuracy" in run.steps["report_run"].run_metadata
        taken = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert taken.returncode == 1 and f"port {port} on 127.0.0.1 is taken" in taken.stderr
        assert len(taken.stderr.strip().splitlines()) == 1, taken.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "ZenML dashboard stopped" in out
    mlflow_run = mlflow.get_run(first_run.summary.mlflow_run_id)
    assert mlflow_run.data.tags["zenml.run_id"] == str(run.id)
    assert mlflow_run.data.tags["zenml.dashboard_url"] == f"http://127.0.0.1:8237/projects/default/runs/{run.id}"
    assert run.run_metadata["registered_model_version"] == f"dcjt-synthetic/mlflow-v{first_run.promotion.version}"
    url = run.run_metadata["mlflow_run_url"]
    assert url == f"http://127.0.0.1:5000/#/experiments/{mlflow_run.info.experiment_id}/runs/{mlflow_run.info.run_id}"
    bare = {k: v for k, v in os.environ.items() if k != "ZENML_CONFIG_PATH"} | {"DCJT_HOME": str(tmp_path / "none")}
    empty = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=bare)
    assert empty.returncode == 1 and "no ZenML store at" in empty.stderr and "Traceback" not in empty.stderr
    other = tmp_path / "other" / "local_stores" / "default_zen_store"
    other.mkdir(parents=True)
    with sqlite3.connect(other / "zenml.db") as con:
        con.execute("CREATE TABLE alembic_version (version_num TEXT)")
        con.execute("INSERT INTO alembic_version VALUES ('0.80.0')")
    assert "a store of ZenML 0.80.0, this environment has ZenML 0.98.0" in store_problem(tmp_path / "other")


def test_run_py_serve_answers_over_http_from_a_fresh_shell(first_run):
    image = sorted((Path(os.environ["DCJT_HOME"]) / "data").rglob("*.png"))[0]
    port = free_port()
    # As the serving how-to shows it, from a shell whose PATH lacks the virtual environment.
    bare_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent)
    cmd = [sys.executable, str(ROOT / "run.py"), "serve", "--model", "models:/dcjt-synthetic@champion", "--port", str(port)]
    with server(cmd, f"http://127.0.0.1:{port}/ping", env={**os.environ, "PATH": bare_path}):

        def ask(body: dict) -> dict:
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            body = urllib.request.urlopen(req, timeout=60).read()
            # strict, as JavaScript's JSON.parse: a bare NaN / Infinity anywhere fails the whole batch
            return json.loads(body, parse_constant=lambda c: pytest.fail(f"not JSON: {c} in {body[:300]!r}"))["predictions"][0]

        encoded = base64.b64encode(image.read_bytes()).decode()
        row = ask({"dataframe_split": {"columns": ["image_bytes"], "data": [[encoded]]}})
        assert row["emotion"] in ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"), row
        assert -1 <= row["arousal"] <= 1 and row["error"] == ""
        # A path is a file on the server: refused in one line, no stack trace, nothing read.
        for path in (str(image), "/etc/passwd", "../../../etc/shadow"):
            row = ask({"dataframe_split": {"columns": ["image"], "data": [[path]]}})
            assert row["label"] == -1 and row["error"].startswith("image paths are not read here"), row
            assert row["valence"] is None and row["prob_anger"] is None, row  # null, not NaN
            assert "Traceback" not in json.dumps(row) and "root:" not in json.dumps(row)


def test_finished_run_through_mlflows_rest_api(first_run):
    """What the MLflow UI shows, read over MLflow's REST API from ``mlflow server`` on loopback."""
    port = free_port()
    store = os.environ["MLFLOW_TRACKING_URI"]
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", "1"]  # MLflow's default starts four, each loading the server (about 3 s of CPU)
    with server(cmd, f"http://127.0.0.1:{port}/health"):
        experiment = rest(port, "experiments/get-by-name?experiment_name=dcjt-synthetic")["experiment"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        runs = rest(port, "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000})["runs"]
        by_id = {r["info"]["run_id"]: r for r in runs}
        parent = next(r for r in runs if {"key": "zenml.run_name", "value": first_run.run_name} in r["data"]["tags"])
        inputs = parent["inputs"]["dataset_inputs"]
        contexts = {t["value"] for i in inputs for t in i["tags"] if t["key"] == "mlflow.data.context"}
        assert {"train", "validation", "test"} <= contexts
        assert all(len(i["dataset"]["digest"]) >= 8 and i["dataset"]["source"] for i in inputs)
        promotion = first_run.promotion
        model = rest(port, f"registered-models/get?name={promotion.model_name}")["registered_model"]
        assert "champion" in model["description"]
        assert {a["alias"] for a in model["aliases"]} >= {"champion", "challenger"}
        version = rest(port, f"model-versions/get?name={promotion.model_name}&version={promotion.version}")
        version = version["model_version"]
        vtags = {t["key"]: t["value"] for t in version["tags"]}
        assert "test accuracy" in version["description"] and "Promotion:" in version["description"]
        assert {"promotion.verdict", "promotion.metric", "promotion.val_digest", "promotion.challenger_val_accuracy"} <= set(
            vtags
        )
        trained = by_id[version["run_id"]]  # the version links to the DCN's training run ...
        assert {"key": "dcjt.stage", "value": "DCN"} in trained["data"]["tags"]
        provenance = {t["key"]: t["value"] for t in trained["data"]["tags"] if t["key"].startswith("runtime.")}
        assert int(provenance["runtime.threads"]) >= 1 and provenance["runtime.cpu"] and provenance["runtime.torch"]
        assert {"runtime.cpu_capability", "runtime.numpy", "runtime.deterministic_algorithms"} <= set(provenance)
        assert any(i["dataset"]["digest"] for i in trained["inputs"]["dataset_inputs"])
        logged = rest(port, "logged-models/search", {"experiment_ids": [experiment["experiment_id"]]})["models"]
        linked = [m for m in logged if m["info"]["source_run_id"] == version["run_id"]]  # ... which shows its logged model
        assert linked and any(m["info"]["model_id"] in version["source"] for m in linked)


def test_killed_run_resumes_training_from_its_checkpoint(first_run):
    """SIGTERM the pipeline process during DCN training: it stops in one line; the re-run continues
    from the checkpoint."""
    import signal

    import torch

    from dcjt.train.checkpoint import latest

    # a DCN no earlier run has trained; no early stop; no baseline rows (they would train first)
    change = ["dcn.epochs=5", "dcn.lr=0.002", "budget.patience=10", "baselines=[]"]
    cmd = [sys.executable, str(ROOT / "run.py"), "pipeline", "--config", "tiny", *set_args(change)]
    stderr = open(Path(os.environ["DCJT_HOME"]) / "sigterm-stderr.txt", "w+")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    ckpt_root = Path(os.environ["DCJT_HOME"]) / "checkpoints"
    before = set(ckpt_root.glob("DCN-*"))
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            fresh = [p for p in set(ckpt_root.glob("DCN-*")) - before if latest(p)]
            if fresh and torch.load(latest(fresh[0]), weights_only=True)["epoch"] >= 1:
                proc.send_signal(signal.SIGTERM)  # as `kill PID` or a scheduler's stop does
                proc.wait(timeout=120)
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stderr.seek(0)
    lines = [line for line in stderr.read().splitlines() if line.strip()]
    assert proc.returncode == 1, (proc.returncode, lines[-20:])  # 0 would mean it finished before the signal
    assert len(lines) == 1 and lines[0].startswith("Error: interrupted (SIGTERM or Ctrl-C): the run stopped"), lines[-20:]
    killed_at = torch.load(latest(fresh[0]), weights_only=True)["epoch"]
    assert killed_at < 4
    resumed = run_tiny(*change)
    parent = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.`zenml.run_name` = '{resumed.run_name}'", output_format="list"
    )[0]
    dcn = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`dcjt.stage` = 'DCN'",
    )[0]
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(dcn.info.run_id, "A_loss")]
    assert sorted(steps) == list(range(5))  # every epoch in its history, those before the checkpoint logged from it
    assert dcn.data.metrics["resumed_epochs"] == killed_at + 1  # only the epochs after the checkpoint were trained
    assert torch.load(latest(fresh[0]), weights_only=True)["epoch"] == 4


def test_predict_cli_reports_bad_files_and_predicts_the_rest(first_run, tmp_path):
    from PIL import Image

    good = sorted((Path(os.environ["DCJT_HOME"]) / "data").rglob("*.png"))[0]
    shutil.copy(good, tmp_path / "good.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    model = ["--model", "models:/dcjt-synthetic@champion"]
    cmd = [sys.executable, "-X", "importtime", str(ROOT / "run.py"), "predict", *model, str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert [line.split("\t")[0] for line in proc.stdout.splitlines() if "valence=" in line] == [str(tmp_path / "good.png")]
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert "dot.png\terror: too small: 1x1 px" in proc.stderr and "broken.jpg\terror: unreadable" in proc.stderr
    assert "2 of 3 images could not be classified" in errors[-1] and "Traceback" not in proc.stderr
    # Serving is ONNX Runtime's: the command loads neither torch nor the training side (a few seconds, not ten)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "torchvision", "zenml", "great_expectations"}, sorted(imported)[:20]


def test_weak_m_a_stops_at_its_gate_in_one_line_and_leaves_the_registry(first_run):
    """An M_A that cannot learn: the run stops at stage 1's gate with one line naming the measure,
    its value, its limit and the --set that overrides it; no traceback; the registry is as it was."""
    _, versions_before, champion_before = demo_registry()
    # the warn run below trains DCJT alone, briefly, on the shared run's world (its champion compares)
    settings = ["gates.mode=stop", "m_a.lr=1e-9", "m_a.epochs=1", "m_b.epochs=1", "dcn.epochs=2", "baselines=[]"]
    cmd = [sys.executable, str(ROOT / "run.py"), "pipeline", "--config", "tiny", *set_args(settings)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("Error: stage 1 (M_A, subset) health gate failed: M_A's agreement with A's validation labels")
    assert "--set gates.m_a_min_kappa=VALUE" in lines[0] and "--set gates.mode=warn" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr and "health gate" not in proc.stdout
    log = Path(lines[0].rsplit("(traceback: ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "GateError" in log.read_text()
    _, versions_after, champion_after = demo_registry()
    assert versions_after == versions_before and champion_after.version == champion_before.version
    # The failed MLflow run says the same: the gate's stage, measure, value, limit and fix as tags
    # (columns of the runs table), every gate of the stage as metrics, the datasets it had read.
    failed = mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`failure.kind` = 'GateError'", output_format="list"
    )[0]
    tags = failed.data.tags
    assert failed.info.status == "FAILED" and tags["failure.stage"] == "stage 1 (M_A, subset)"
    assert tags["failure.measure"].startswith("M_A's agreement with A's validation labels")
    assert float(tags["failure.value"]) < float(tags["failure.limit"].split()[-1])
    assert tags["failure.fix"] == "--set gates.m_a_min_kappa=VALUE or --set gates.mode=warn"
    assert tags["mlflow.note.content"].startswith("**This run stopped.** stage 1 (M_A, subset) health gate failed")
    assert any(k.startswith("gate.") and k.endswith(".observed") for k in failed.data.metrics)
    contexts = {t.value for i in failed.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert {"train", "validation", "test"} <= contexts
    assert failed.data.params["m_a.lr"] == "1e-09"
    # In warn mode the run goes on, says which gates failed with their numbers, and registers
    # without promoting (the same M_A comes from ZenML's cache).
    warn = [a.replace("gates.mode=stop", "gates.mode=warn") for a in cmd] + ["--set", "promotion.despite_failed_gates=false"]
    proc = subprocess.run(warn, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "health gate(s) failed (gates.mode=warn)" in proc.stdout
    assert "warning:   stage 1 (M_A, subset): M_A's agreement with A's validation labels" in proc.stdout
    client, versions_warned, champion_warned = demo_registry()
    assert len(versions_warned) == len(versions_before) + 1 and champion_warned.version == champion_before.version
    newest = client.get_model_version("dcjt-synthetic", str(max(versions_warned)))
    assert newest.tags["promotion.verdict"] in ("gates failed", "kept champion", "loses to a baseline"), newest.tags


def test_steps_that_share_no_disk_hand_caches_through_the_artifact_store(first_run, monkeypatch, tmp_path):
    """Every step gets its own scratch folder and the earlier ones vanish, as on pods without a
    shared volume: a cache or checkpoint handed on by path would be missing, so any hidden path
    sharing fails the run. The numbers equal the shared-disk run's."""
    from zenml.client import Client

    monkeypatch.setenv("DCJT_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("DCJT_SCRATCH_PER_STEP", "1")
    configured = {"cache_dir": tmp_path / "configured-cache", "checkpoint_root": tmp_path / "configured-checkpoints"}
    out = run_tiny(
        "paths.handoff=artifact_store",
        *(f"paths.{k}={v}" for k, v in configured.items()),
        "baselines=[]",
        "model_name=dcjt-handoff",
        "experiment=dcjt-handoff",
    )
    assert not any(folder.exists() for folder in configured.values())  # nothing built where a shared disk would be
    steps = [p.name for p in (tmp_path / "scratch").iterdir()]
    assert len(steps) == 1, steps  # only the last step's disk is left
    run = Client().get_pipeline_run(out.run_name)
    stored = run.steps["cache_target"].outputs["image_cache"][0].uri
    assert Path(stored, "cache.npy").is_file() and Path(stored, "cache.json").is_file()
    dcjt = out.comparison.set_index("variant").loc["dcjt", "accuracy"]
    assert dcjt == first_run.comparison.set_index("variant").loc["dcjt", "accuracy"]
