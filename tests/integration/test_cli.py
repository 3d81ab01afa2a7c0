"""The command line as a user runs it (subprocesses): bad options and datasets end in one line,
the synth / ingest / weights commands write and check real files, a run stops before any step
when its weights are missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torchvision.models import resnet18

from app.preflight import PreflightError
from dcjt.config_files import ConfigError, load_config
from dcjt.data.readers import read_affectnet, read_rafdb
from dcjt.train.weights import imagenet_file
from helpers import ROOT

pytestmark = pytest.mark.e2e


def test_dataset_roots_with_the_synthetic_config_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"--target-root / data.target.root .* config 'demo' trains on the synthetic world"):
        load_config("demo", values={"data.target.root": str(tmp_path)})
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "demo", "--target-root", str(tmp_path), "--extra-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "use --config rafdb or --config caers" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_refuses_bad_fraction_and_missing_dataset_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "ingest",
            "--dataset",
            "rafdb",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "t.parquet"),
            "--max-bad-fraction",
            "1.5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "1.5 is not in the range 0<=x<=1" in proc.stderr
    env = {**os.environ, "DCJT_HOME": str(tmp_path / "state")}
    (tmp_path / "extra").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "pipeline",
            "--config",
            "rafdb",
            "--target-root",
            str(tmp_path),
            "--extra-root",
            str(tmp_path / "extra"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 1 and "holds no rafdb dataset" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "state" / "zenml").exists() and not (tmp_path / "state" / "mlflow.db").exists()  # no stores made


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["pipeline", "--config", "rafdb", "--target-root", "{tmp}/a", "--extra-root", "{tmp}/b"],
            "data.target: {tmp}/a holds no rafdb",
        ),
        (["select", "--candidate", "no_such_row"], "unknown row(s) ['no_such_row'] in table relabel"),
        (["select", "--parallel", "100000"], "--parallel 100000 with 1 thread(s) a run needs 100000 cores"),
    ],
)
def test_bad_roots_and_select_requests_are_refused_before_torch_zenml_or_a_store_loads(tmp_path, args, message):
    """What needs no model or store is checked first: one line in about a second, no state folder's
    stores made (the rest of the command's imports would take ten)."""
    env = {**os.environ, "DCJT_HOME": str(tmp_path / "state")}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()  # folders without a dataset's layout
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(ROOT / "run.py"), *argv], capture_output=True, text=True, env=env
    )
    errors = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("import time:")]
    assert proc.returncode == 1 and len(errors) == 1 and message.replace("{tmp}", str(tmp_path)) in errors[0], errors
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "zenml", "mlflow", "great_expectations"}, sorted(imported & {"torch", "zenml", "mlflow"})
    assert not (tmp_path / "state" / "zenml").exists() and not (tmp_path / "state" / "mlflow.db").exists()


def test_synth_cli_writes_real_layouts_that_the_readers_read(tmp_path):
    out = tmp_path / "world"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "synth",
            "--out",
            str(out),
            "--layout",
            "rafdb",
            "--layout",
            "affectnet",
            "--layout",
            "affectnet-npy",
            "--n-target",
            "60",
            "--n-extra",
            "50",
            "--size",
            "48",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    truth = pd.read_parquet(out / "truth.parquet").set_index("image")
    raf, _ = read_rafdb(out / "rafdb")
    assert (raf["label"].to_numpy() == truth.loc[raf["image"], "label"].to_numpy()).all()
    for release in ("affectnet", "affectnet-npy"):
        an, _ = read_affectnet(out / release)
        assert len(an) == 50
        assert (an["label"].to_numpy() == truth.loc[an["image"], "label"].to_numpy()).all()


def test_ingest_cli_prints_counts_and_leaves_no_table_on_error(rafdb_root, tmp_path):
    root, labels, _ = rafdb_root
    out = tmp_path / "t.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "ingest",
            "--dataset",
            "rafdb",
            "--root",
            str(root),
            "--out",
            str(out),
            "--val-fraction",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "happiness" in proc.stdout and "train" in proc.stdout and out.exists()
    assert len(pd.read_parquet(out)) == len(labels)
    listing = root / "EmoLabel" / "list_patition_label.txt"
    listing.write_text(listing.read_text().replace(" 4\n", " 8\n", 1))
    bad = tmp_path / "bad.parquet"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "ingest", "--dataset", "rafdb", "--root", str(root), "--out", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "label 8 outside 1..7" in proc.stderr
    assert not bad.exists()


def test_weights_import_checks_and_installs_the_file(torch_home, tmp_path):
    torch.manual_seed(2)
    good = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), good)
    bad = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, bad)

    def cli(*args):
        env = {"PATH": "/usr/bin:/bin", "TORCH_HOME": str(torch_home), "HOME": str(tmp_path)}
        return subprocess.run([sys.executable, "run.py", "weights", *args], capture_output=True, text=True, cwd=ROOT, env=env)

    wrong = cli("import", str(bad))
    assert wrong.returncode == 1 and "missing keys" in wrong.stderr and "wrong shapes" in wrong.stderr
    other_hash = cli("import", str(good))
    assert other_hash.returncode == 1 and "not the published file" in other_hash.stderr
    assert not imagenet_file().exists()
    installed = cli("import", str(good), "--any-hash")
    assert installed.returncode == 0, installed.stderr
    assert imagenet_file().read_bytes() == good.read_bytes()
    assert cli("where").stdout.strip().endswith("present")


def test_run_stops_before_any_step_without_the_weights(torch_home):
    from app.runner import run_pipeline

    cfg = load_config("demo", ["network.backbone=resnet18", "network.weights=imagenet", "network.image_size=32"])
    with pytest.raises(PreflightError, match=r"network.weights: .*resnet18-f37072fd.pth"):
        run_pipeline(cfg)


def test_a_moved_or_copied_state_folder_stops_every_command_in_one_line(tmp_path):
    """The stores hold absolute paths into the folder they were made in: a copy would write into
    its original. Every command says so in one line, and where it came from; a file is refused."""
    import shutil

    from app.environment import check_home_location

    home = tmp_path / "state"
    check_home_location(home)  # made, and it knows where
    copy = tmp_path / "copy of state"
    shutil.copytree(home, copy)
    with pytest.raises(PreflightError, match=rf"DCJT_HOME {copy} was moved or copied from {home}: .*set DCJT_HOME={home}"):
        check_home_location(copy)
    check_home_location(home)  # the original still works
    (tmp_path / "file").write_text("x")
    for where, message in ((copy, "was moved or copied from"), (tmp_path / "file", "is a file, not a folder")):
        env = {**os.environ, "DCJT_HOME": str(where)}
        proc = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "weights", "where"], capture_output=True, text=True, timeout=120, env=env
        )
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_broken_stores_stop_before_zenml_or_mlflow_open_them(tmp_path):
    """A garbage MLflow database, a garbage ZenML config or ZenML database: one line naming the
    file and the fix, before either library reads it (they would stop with a traceback)."""
    from app.preflight import check_tracking_store, check_zenml_store

    db = tmp_path / "mlflow.db"
    db.write_text("garbage")
    with pytest.raises(PreflightError, match=rf"MLflow tracking store {db}: not an SQLite database .* move it away"):
        check_tracking_store(f"sqlite:///{db}")
    zen = tmp_path / "zenml"
    store = zen / "local_stores" / "default_zen_store"
    store.mkdir(parents=True)
    (store / "zenml.db").write_bytes(b"\x00" * 100)
    env = {**os.environ, "DCJT_HOME": str(tmp_path), "ZENML_CONFIG_PATH": str(zen), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    os.environ["ZENML_CONFIG_PATH"], saved = str(zen), os.environ["ZENML_CONFIG_PATH"]
    try:
        with pytest.raises(PreflightError, match=rf"ZenML store {store / 'zenml.db'}: not an SQLite database .* move the folder"):
            check_zenml_store()
        (zen / "config.yaml").write_text("garbage: [\n")
        with pytest.raises(PreflightError, match=rf"ZenML config {zen / 'config.yaml'}: not a ZenML configuration"):
            check_zenml_store()
    finally:
        os.environ["ZENML_CONFIG_PATH"] = saved
    db.unlink()  # the ZenML config is what stops the command now
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "pipeline", "--config", "tiny"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "ZenML config" in lines[0], proc.stderr[-2000:]


def test_worlds_lists_the_suite_and_world_reaches_every_run_command():
    from click.testing import CliRunner

    import run
    from dcjt.synthetic.suite import WORLDS

    out = CliRunner().invoke(run.cli, ["worlds"]).output
    assert all(line.split()[0] in WORLDS for line in out.splitlines()[: len(WORLDS)]) and f"{len(WORLDS)} worlds" in out
    for command in ("demo", "pipeline", "study", "select"):
        assert "--world NAME" in CliRunner().invoke(run.cli, [command, "--help"]).output, command
    bad = CliRunner().invoke(run.cli, ["pipeline", "--world", "atlantis"])
    assert bad.exit_code != 0 and "unknown world 'atlantis'; worlds: demo" in bad.output
