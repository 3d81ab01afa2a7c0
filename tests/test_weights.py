"""Starting weights: torchvision's cache under TORCH_HOME, `run.py weights import`, the offline
message, and the pre-flight check that stops a run before any step. Nothing is downloaded: the
session sets DCJT_OFFLINE=1 and a temporary TORCH_HOME (conftest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from dcjt.config import ConfigError, load_config
from dcjt.nets import build_model
from dcjt.weights import WeightsError, imagenet_file, resolve_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_imagenet_weights_load_from_torchvisions_cache(torch_home):
    torch.manual_seed(1)
    reference = resnet18(weights=None)
    assert imagenet_file() == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    imagenet_file().parent.mkdir(parents=True)
    torch.save(reference.state_dict(), imagenet_file())
    net = build_model("resnet18", "arm", 224, weights="imagenet")
    torch.testing.assert_close(net.trunk[0].weight, reference.conv1.weight)
    torch.testing.assert_close(net.trunk[7][1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert resolve_weights("imagenet") == "imagenet"


def test_missing_imagenet_weights_say_where_and_how(torch_home):
    with pytest.raises(WeightsError) as info:
        resolve_weights("imagenet")
    message = str(info.value)
    assert str(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "python run.py weights import" in message and "download.pytorch.org" in message


def test_run_stops_before_any_step_without_the_weights(torch_home):
    from pipelines.runner import PreflightError, run_pipeline

    cfg = load_config("demo", ["network.backbone=resnet18", "network.weights=imagenet", "image_size=32"])
    with pytest.raises(PreflightError, match=r"network.weights: .*resnet18-f37072fd.pth"):
        run_pipeline(cfg)


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


def test_weights_setting_is_checked_at_load(tmp_path):
    with pytest.raises(ConfigError, match="network.weights"):
        load_config("demo", ["network.weights=/no/such/file.pth"])
    with pytest.raises(ConfigError, match="imagenet weights are for the resnet18 backbone"):
        load_config("demo", ["network.weights=imagenet"])  # the demo's backbone is tiny
    (tmp_path / "extra").mkdir()
    roots = [f"data.target.root={tmp_path}", f"data.extra.root={tmp_path / 'extra'}"]
    assert load_config("rafdb", roots).network.weights == "imagenet"
    assert load_config("caers", roots).network.weights == "imagenet"
    assert load_config("demo").network.weights == "none"
