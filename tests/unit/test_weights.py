"""Starting weights: torchvision's cache under TORCH_HOME, `run.py weights import`, the offline
message, and the pre-flight check that stops a run before any step. Nothing is downloaded: the
session sets DCJT_OFFLINE=1 and a temporary TORCH_HOME (conftest)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from dcjt.config_files import ConfigError, load_config
from dcjt.models.nets import build_model
from dcjt.train.weights import WeightsError, apply_weights, imagenet_file, resolve_weights


def test_imagenet_weights_load_from_torchvisions_cache(torch_home):
    torch.manual_seed(1)
    reference = resnet18(weights=None)
    assert imagenet_file() == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    imagenet_file().parent.mkdir(parents=True)
    torch.save(reference.state_dict(), imagenet_file())
    net = apply_weights(build_model("resnet18", "arm", 224), "imagenet")
    torch.testing.assert_close(net.trunk[0].weight, reference.conv1.weight)
    torch.testing.assert_close(net.trunk[7][1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert resolve_weights("imagenet") == "imagenet"


def test_missing_imagenet_weights_say_where_and_how(torch_home):
    with pytest.raises(WeightsError) as info:
        resolve_weights("imagenet")
    message = str(info.value)
    assert str(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "python run.py weights import" in message and "download.pytorch.org" in message


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
