"""Promotion rules against a real MLflow registry (SQLite store in a temp folder)."""

from __future__ import annotations

import mlflow
import pytest
from conftest import random_images
from PIL import Image

from dcjt.nets import build_model
from steps.registry import current_champion, register_version


@pytest.fixture
def registry(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("registry-test", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment("registry-test")
    Image.fromarray(random_images(1, 64)[0]).save(tmp_path / "face.png")
    yield str(tmp_path / "face.png")
    mlflow.set_tracking_uri(None)


def _register(accuracy, image, mirror=None):
    with mlflow.start_run():
        return register_version(
            build_model("tiny", "linear", 64), accuracy, "fer", variant="t", example_images=[image], mirror=mirror
        )


def test_champion_moves_only_on_a_better_run(registry):
    client = mlflow.MlflowClient()
    first = _register(0.5, registry)
    assert first["promoted"] and str(current_champion(client, "fer").version) == first["version"]
    better = _register(0.7, registry)
    assert better["promoted"] and str(current_champion(client, "fer").version) == better["version"]
    worse = _register(0.6, registry)
    assert not worse["promoted"]
    assert str(current_champion(client, "fer").version) == better["version"]
    assert str(client.get_model_version_by_alias("fer", "challenger").version) == worse["version"]
    tags = client.get_model_version("fer", worse["version"]).tags
    assert tags["promotion"] == "kept champion" and tags["champion_accuracy_before"] == "0.700000"
    equal = _register(0.7, registry)
    assert not equal["promoted"]  # a tie does not beat the champion


def test_failure_after_registration_leaves_registry_as_it_was(registry):
    client = mlflow.MlflowClient()
    first = _register(0.5, registry)
    calls = []

    def broken_mirror(name, version, promoted, accuracy):
        calls.append((version, promoted))
        raise RuntimeError("mirror down")

    with pytest.raises(RuntimeError, match="mirror down"):
        _register(0.9, registry, mirror=broken_mirror)
    assert calls and calls[0][1] is True  # it had been about to promote
    versions = [str(v.version) for v in client.search_model_versions("name='fer'")]
    assert versions == [first["version"]]
    assert str(current_champion(client, "fer").version) == first["version"]
    assert str(client.get_model_version_by_alias("fer", "challenger").version) == first["version"]
