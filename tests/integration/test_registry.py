"""The promotion gate against a real MLflow registry (SQLite store in a temp folder).

Models here are real DCNets whose output layer is set so they always predict one class: on a
table whose labels are known, each model's accuracy is known before it runs, so every branch
of the gate is tested deterministically.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dcjt.config import PromotionConfig
from dcjt.data.cache import build_cache
from dcjt.models.nets import build_model
from helpers.registry import VAL, always, champion_of, promote_as_run

pytestmark = pytest.mark.slow


def test_gate_scores_both_models_on_the_same_rows_and_moves_only_on_a_win(registry):
    client = mlflow.MlflowClient()
    first = promote_as_run(registry, always(3))  # val 9/20
    assert first["promoted"] and first["verdict"] == "first version" and champion_of(client) == first["version"]
    client.set_model_version_tag("fer", first["version"], "test_accuracy", "0.99")  # a stored number is never trusted
    better = promote_as_run(registry, always(0))  # val 11/20
    assert better["promoted"] and better["verdict"] == "promoted" and champion_of(client) == better["version"]
    tags = client.get_model_version("fer", better["version"]).tags
    assert tags["promotion.metric"] == "val_accuracy"
    assert tags["promotion.challenger_val_accuracy"] == "0.550000" and tags["promotion.champion_val_accuracy"] == "0.450000"
    assert tags["promotion.challenger_test_accuracy"] == "0.600000" and tags["promotion.champion_test_accuracy"] == "0.400000"
    assert tags["promotion.champion_version"] == first["version"]
    assert len(tags["promotion.val_digest"]) >= 8 and tags["promotion.val_digest"] != tags["promotion.test_digest"]

    worse = promote_as_run(registry, always(3))
    assert not worse["promoted"] and worse["verdict"] == "kept champion" and champion_of(client) == better["version"]
    assert str(client.get_model_version_by_alias("fer", "challenger").version) == worse["version"]
    tie = promote_as_run(registry, always(0))
    assert not tie["promoted"]  # a tie does not beat the champion
    # the same rows: the digests recorded for every version are equal
    digests = {client.get_model_version("fer", v["version"]).tags["promotion.val_digest"] for v in (better, worse, tie)}
    assert len(digests) == 1


def test_margin_bootstrap_and_test_metric(registry):
    client = mlflow.MlflowClient()
    promote_as_run(registry, always(3))
    kept = promote_as_run(registry, always(0), min_margin=0.15)  # leads by 0.10 only
    assert not kept["promoted"] and "margin 0.1500" in kept["reason"]
    doubtful = promote_as_run(registry, always(0), bootstrap=True)  # +0.10 on 20 images: the interval spans 0
    assert not doubtful["promoted"] and "paired bootstrap 95% interval" in doubtful["reason"]
    interval = client.get_model_version("fer", doubtful["version"]).tags["promotion.interval"]
    lo, hi = (float(x) for x in interval.strip("[]").split(","))
    assert lo < 0 < hi
    with pytest.raises(ValueError, match="selecting on the test split is not offered"):
        PromotionConfig(metric="test_accuracy")


def test_bootstrap_is_the_default(registry):
    assert PromotionConfig().bootstrap
    promote_as_run(registry, always(3))
    doubtful = promote_as_run(registry, always(0), bootstrap=True)
    assert not doubtful["promoted"] and doubtful["verdict"] == "kept champion"


def test_a_champion_that_trained_on_the_evaluation_rows_is_not_compared(registry):
    """A champion trained where this run validates (another split of the same images) cannot be
    scored fairly on them: the gate refuses, naming both digests, and the champion stays."""
    from dcjt.data.identity import keys_digest, row_keys
    from dcjt.registry.record import unrecorded_champion

    client = mlflow.MlflowClient()
    table = registry["table"]
    leaky = table.copy()
    leaky.loc[leaky.index[leaky["split"] == "val"][:5], "split"] = "train"  # 5 of our validation rows in its training rows
    first = promote_as_run(registry, always(3), table=leaky)
    champ_tags = client.get_model_version("fer", first["version"]).tags
    assert int(champ_tags["training_rows.count"]) == 2 + 5
    refused = promote_as_run(registry, always(0))
    assert not refused["promoted"] and refused["verdict"] == "not comparable" and champion_of(client) == first["version"]
    val_digest = keys_digest(row_keys(table[table["split"] == "val"], table))
    assert f"trained on 5 of the {len(VAL)} val rows" in refused["reason"]
    assert champ_tags["training_rows.digest"] in refused["reason"] and val_digest in refused["reason"]
    forced = promote_as_run(registry, always(0), force=True)
    assert forced["promoted"] and forced["verdict"] == "forced" and champion_of(client) == forced["version"]
    ok = promote_as_run(registry, always(3))  # the new champion trained on train rows only: compared as usual
    assert ok["verdict"] == "kept champion"
    # a champion registered before training rows were recorded: the run is refused before training
    client.delete_model_version_tag("fer", forced["version"], "training_rows.uri")
    problem = unrecorded_champion("fer")
    assert problem.startswith(f"promotion: champion version {forced['version']} of fer has no record of its training rows")
    assert "--force-promote" in problem
    from app.preflight import PreflightError, check_champion_record
    from dcjt.config_files import load_config

    with pytest.raises(PreflightError, match="has no record of its training rows"):
        check_champion_record(load_config("demo", values={"model_name": "fer"}))
    check_champion_record(load_config("demo", values={"model_name": "fer", "promotion.force": True}))  # replaced anyway


def test_unusable_champion_is_reported_and_replaced_only_when_forced(registry):
    client = mlflow.MlflowClient()
    first = promote_as_run(registry, always(3))
    other_size = build_model("tiny", "linear", 64)  # a champion trained at another input size
    cache64 = str(build_cache(registry["table"], 64, registry["tmp"] / "cache").path)
    big = promote_as_run(registry, other_size, cache=cache64, force=True)
    assert big["promoted"] and big["verdict"] == "forced" and "32 px images, this run 64 px" in big["reason"]
    refused = promote_as_run(registry, always(0))
    assert not refused["promoted"] and refused["verdict"] == "champion unusable" and "--force-promote" in refused["reason"]
    assert champion_of(client) == big["version"]
    # a champion whose files are gone: reported, kept, nothing deleted
    shutil.rmtree(registry["tmp"] / "artifacts")
    gone = promote_as_run(registry, always(0))
    assert gone["verdict"] == "champion unusable" and "cannot be loaded" in gone["reason"]
    assert champion_of(client) == big["version"]
    versions = {str(v.version) for v in client.search_model_versions("name='fer'")}
    assert {first["version"], big["version"], refused["version"], gone["version"]} <= versions


def test_failure_after_registration_leaves_registry_as_it_was(registry):
    client = mlflow.MlflowClient()
    first = promote_as_run(registry, always(3))
    models_before = len(mlflow.search_logged_models(output_format="list"))
    calls = []

    def broken_mirror(name, version, promoted, accuracy):
        calls.append((version, promoted))
        raise RuntimeError("mirror down")

    with pytest.raises(RuntimeError, match="mirror down"):
        promote_as_run(registry, always(0), mirror=broken_mirror)
    assert calls and calls[0][1] is True  # it had been about to promote
    assert [str(v.version) for v in client.search_model_versions("name='fer'")] == [first["version"]]
    assert champion_of(client) == first["version"]
    assert str(client.get_model_version_by_alias("fer", "challenger").version) == first["version"]
    assert len(mlflow.search_logged_models(output_format="list")) == models_before  # the logged model went too


def test_version_carries_description_card_and_linked_model(registry, monkeypatch):
    client = mlflow.MlflowClient()
    result = promote_as_run(registry, always(0))
    version = client.get_model_version("fer", result["version"])
    training_run = version.tags["mlflow_run_id"]
    assert version.run_id == training_run  # the registered version points at the run that trained it
    assert "validation accuracy 0.5500, test accuracy 0.6000" in version.description
    experiment = mlflow.get_run(training_run).info.experiment_id
    card_link = f"[model_card.md](#/experiments/{experiment}/runs/{training_run}/artifactPath/model_card.md)"
    assert card_link in version.description and version.description.startswith("**Promotion:**")
    # always class 0: surprise is found (precision 0.6, recall 1), happiness never (recall 0)
    assert "**Never right on test:** happiness" in version.description
    tags = version.tags
    assert (tags["test.recall.happiness"], tags["test.f1.surprise"], tags["test.macro_f1"]) == ("0.0000", "0.7500", "0.3750")
    assert tags["test.never_right"] == "happiness" and tags["test.precision.surprise"] == "0.6000"
    assert "champion" in client.get_registered_model("fer").description
    card = mlflow.artifacts.load_text(f"runs:/{training_run}/model_card.md")
    assert "## Intended use and limits" in card and "| anger |" not in card.split("## Data")[0]
    assert "| happiness |" in card and "first version" in card
    logged = mlflow.search_logged_models(output_format="list")
    assert any(m.source_run_id == training_run for m in logged)
    served = mlflow.pyfunc.load_model(f"models:/fer/{result['version']}")
    paths = registry["table"].loc[registry["table"]["split"] == "test", ["image"]]
    refused = served.predict(paths)  # by default a served model reads no file a client names
    assert (refused["label"] == -1).all() and refused["error"].str.contains("send image_bytes").all()
    monkeypatch.setenv("DCJT_SERVE_IMAGE_ROOTS", str(registry["tmp"] / "faces"))
    out = served.predict(paths)
    assert (out["label"] == 0).all()  # the registered model is the one that always says class 0
    assert np.isclose(out[[c for c in out if c.startswith("prob_")]].sum(axis=1), 1).all()


def test_the_registered_version_carries_its_onnx_graph_and_declares_no_torch(registry):
    """Each version is served by its ONNX graph: the version names it (opset, size, parity), the
    model's requirements hold onnxruntime and MLflow's skinny build, never torch."""
    result = promote_as_run(registry, always(3))
    tags = mlflow.MlflowClient().get_model_version("fer", result["version"]).tags
    assert tags["onnx.opset"] == "18" and int(tags["onnx.size_bytes"]) > 100_000
    assert "on 20 validation images" in tags["onnx.parity"]
    graph = Path(mlflow.artifacts.download_artifacts(artifact_uri=tags["onnx"], dst_path=str(registry["tmp"] / "onnx")))
    assert graph.name == "model.onnx" and graph.stat().st_size == int(tags["onnx.size_bytes"])  # the tag names the file
    lines = Path(mlflow.pyfunc.get_model_dependencies(f"models:/fer/{result['version']}")).read_text().splitlines()
    names = {line.split("==")[0] for line in lines if "==" in line}
    assert {"onnxruntime", "mlflow-skinny", "opencv-python-headless"} <= names and not names & {"torch", "torchvision", "mlflow"}


def test_fine_tune_from_a_registered_model_and_a_checkpoint(registry, tmp_path):
    from dcjt.train.weights import WeightsError, apply_weights, resolve_weights

    result = promote_as_run(registry, always(0))
    pinned = resolve_weights("models:/fer@champion")
    assert pinned == f"models:/fer/{result['version']}"
    source = always(0)
    net = apply_weights(build_model("tiny", "linear", 32), pinned)
    for mine, theirs in zip(net.trunk.state_dict().values(), source.trunk.state_dict().values()):
        assert torch.equal(mine, theirs) or mine.dtype == torch.long
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "last.pt")  # this project's checkpoint layout
    from_file = apply_weights(build_model("tiny", "linear", 32), str(tmp_path / "last.pt"))
    torch.testing.assert_close(from_file.trunk[0].weight, source.trunk[0].weight)
    with pytest.raises(WeightsError, match="missing keys"):  # a tiny trunk does not fit ResNet-18
        apply_weights(build_model("resnet18", "linear", 64), pinned)
    with pytest.raises(WeightsError, match="no such registered model or alias"):
        resolve_weights("models:/fer@nope")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60),
    st.floats(0, 0.5),
    st.booleans(),
)
def test_decision_properties(pairs, margin, bootstrap):
    from dcjt.config import PromotionConfig
    from dcjt.registry.gate import decide

    ours, theirs = (np.array(x, dtype=int) for x in zip(*pairs))
    gate = PromotionConfig(min_margin=margin, bootstrap=bootstrap, bootstrap_samples=200)
    d = decide(ours, theirs, gate)
    diff = ours.mean() - theirs.mean()
    assert d.promoted == (d.verdict == "promoted")
    if d.promoted:
        assert diff > margin and (not bootstrap or d.interval[0] > 0)
    elif not bootstrap:
        assert diff <= margin
    assert decide(ours, theirs, gate.model_copy(update={"force": True})).promoted
    assert decide(ours, None, gate).verdict == "first version"
    kept = decide(ours, None, gate, problem=("champion unusable", "cannot be loaded"))
    assert not kept.promoted and "--force-promote" in kept.reason


def test_served_valence_and_arousal_track_the_hidden_truth(registry):
    """A DCN trained on the synthetic world's B (human V/A), registered and served: its valence
    column follows A's true valence and its arousal column A's true arousal (not the swap)."""
    from dcjt.config import TrainConfig
    from dcjt.serving.inputs import encode_arrays
    from dcjt.synthetic.world import WorldSpec, generate_world
    from dcjt.train.batches import Samples
    from dcjt.train.loop import set_seed, train

    world = generate_world(WorldSpec(n_target=300, n_extra=1500), size=32, seed=0)
    (b, b_images), (a, a_images) = world["extra"], world["target"]
    rows = (b["split"] == "train").to_numpy()
    va = b[["valence", "arousal"]].to_numpy(np.float32)
    set_seed(0)
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, lam=10.0, optimizer="adam", scheduler="none", seed=0)
    samples = Samples(b_images[rows], np.arange(rows.sum()), b["label"].to_numpy()[rows], va[rows])
    model = train(build_model("tiny", "linear", 32), samples, cfg=cfg).model
    result = promote_as_run(registry, model)
    served = mlflow.pyfunc.load_model(f"models:/fer/{result['version']}")
    out = served.predict(encode_arrays(list(a_images)))
    corr = lambda x, y: float(np.corrcoef(x, y)[0, 1])  # noqa: E731
    valence, arousal = corr(out["valence"], a["truth_valence"]), corr(out["arousal"], a["truth_arousal"])
    crossed = max(corr(out["valence"], a["truth_arousal"]), corr(out["arousal"], a["truth_valence"]))
    assert valence > 0.6 and arousal > 0.6 and min(valence, arousal) > crossed + 0.2, (valence, arousal, crossed)


def test_a_win_against_a_champion_that_moved_meanwhile_is_not_promoted(registry):
    """Two runs gating at once: the second to register must not replace a champion it never met."""
    from dcjt.registry.gate import Decision
    from dcjt.registry.lifecycle import log_dcn, register_version
    from dcjt.registry.promote import parity_set

    client = mlflow.MlflowClient()
    first = promote_as_run(registry, always(3))
    with mlflow.start_run() as run:
        pass
    checked = parity_set(registry["table"], registry["cache"])
    info, _ = log_dcn(always(0), run_id=run.info.run_id, examples=[checked.images[0]], min_side=None, card="", parity_set=checked)
    won = Decision(True, "promoted", "val_accuracy 0.55 vs champion 0.45", 0.55, 0.45)
    late = register_version(
        info, "fer", decision=won, tags={"promotion.verdict": "promoted"}, description="d", gated_against=None
    )
    assert not late.promoted and late.verdict == "champion changed" and champion_of(client) == first["version"]
    assert client.get_model_version("fer", late.version).tags["promotion.verdict"] == "champion changed"
