"""A model registry on a temporary SQLite store with a label table whose accuracies are known
before any model runs: models that always predict one class, registered as a run would."""

from __future__ import annotations

from pathlib import Path

import mlflow
import torch
from PIL import Image

from dcjt.config import PromotionConfig
from dcjt.data.cache import build_cache, load_cache
from dcjt.data.labels import make_table
from dcjt.models.nets import build_model
from dcjt.registry.card import RunData
from dcjt.registry.lifecycle import current_champion
from dcjt.registry.promote import Challenger, Registration, promote
from dcjt.train.scoring import row_evaluation
from helpers.data import random_images

# val: 11 x class 0, 9 x class 3; test: 6 x class 0, 4 x class 3.
VAL = [0] * 11 + [3] * 9
TEST = [0] * 6 + [3] * 4


def make_registry(tmp_path, monkeypatch):
    """The ``registry`` fixture's body: a store, an experiment, 2 train / 20 val / 10 test faces."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("registry-test", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment("registry-test")
    labels = [1, 2] + VAL + TEST
    splits = ["train"] * 2 + ["val"] * len(VAL) + ["test"] * len(TEST)
    paths = []
    for k, image in enumerate(random_images(len(labels), 32)):
        paths.append(str(tmp_path / "faces" / f"{k}.png"))
        Path(paths[-1]).parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(paths[-1])
    table = make_table("faces", splits, paths, labels)
    cache = str(build_cache(table, 32, tmp_path / "cache").path)
    yield {"table": table, "cache": cache, "tmp": tmp_path}
    mlflow.set_tracking_uri(None)


def always(k: int, size: int = 32) -> torch.nn.Module:
    """A tiny DCNet that predicts class ``k`` for every image."""
    torch.manual_seed(k)  # the same trunk for the same class: fine-tuning tests compare weights
    net = build_model("tiny", "linear", size)
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.bias.zero_()
        net.fc.bias[k] = 10.0
    return net.eval()


def evaluation_of(model, table, cache: str, run_id: str):
    """A run's evaluation of ``model`` (the row the gate compares), trained in run ``run_id``."""
    return row_evaluation(model, table, load_cache(cache), row="dcjt", variant="t", training={"mlflow_run_id": run_id})


def promote_as_run(registry, model, mirror=None, table=None, cache=None, **settings):
    """Register ``model`` as a run would; the gate's bootstrap is off unless asked for (20 rows
    cannot show a 0.10 win), the default's own test is ``test_bootstrap_is_the_default``."""
    settings = {"bootstrap": False, **settings}
    table, cache = registry["table"] if table is None else table, cache or registry["cache"]
    with mlflow.start_run(run_name="pipeline") as parent:
        pass
    with mlflow.start_run(run_name="DCN") as trained:
        pass
    registration = Registration(model_name="fer", promotion=PromotionConfig(**settings), recipe={"lr": 0.1})
    challenger = Challenger(model, evaluation_of(model, table, cache, trained.info.run_id))
    data = RunData(table, cache, table, {"subset kept fraction": 0.5})
    return promote(challenger, data, registration, parent.info.run_id, mirror=mirror).model_dump()


def champion_of(client) -> str:
    return str(current_champion(client, "fer").version)
