"""The ONNX graph the registered model is served by: it answers as the torch network does (every
network, any batch size), a graph that does not is never registered, a version from before exports
is refused by the serving commands and gets one from ``run.py export-onnx``, and ``run.py score``
turns a folder of faces into a table."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from PIL import Image

from dcjt.models.nets import build_model
from dcjt.serving.export import ServingExportError, export_onnx, parity
from dcjt.serving.network import TorchScorer
from dcjt.serving.onnx_runtime import OnnxScorer
from helpers import ROOT
from helpers.data import random_images
from helpers.registry import always, promote_as_run

pytestmark = pytest.mark.e2e


def tamper(path: Path, scale: float = 3.0) -> None:
    """Scale the classifier's weights inside an ONNX file (what a corrupted or swapped file does)."""
    graph = onnx.load(str(path))
    for init in graph.graph.initializer:
        if init.name.endswith("fc.weight"):
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init) * np.float32(scale), init.name))
    onnx.save(graph, str(path))


@pytest.mark.slow
@pytest.mark.parametrize("spec", [("tiny", "linear", 32), ("resnet18", "linear", 64), ("resnet18", "arm", 96)])
def test_the_onnx_graph_answers_as_the_torch_network_for_any_batch(tmp_path, spec):
    net = build_model(*spec).eval()
    exported = export_onnx(net, tmp_path / "model.onnx")
    assert exported.opset == 18 and exported.size_bytes == (tmp_path / "model.onnx").stat().st_size
    images = random_images(5, spec[2])
    onnx_scorer, torch_scorer = OnnxScorer(exported.path), TorchScorer(net)
    for batch in (images[:1], images):  # the batch axis is dynamic
        (p, va), (tp, tva) = onnx_scorer(batch), torch_scorer(batch)
        np.testing.assert_allclose(p, tp, atol=1e-5)
        np.testing.assert_allclose(va, np.clip(tva, -1, 1), atol=1e-4)
    assert net.training is False and next(net.parameters()).dtype.is_floating_point  # the caller's model untouched


@pytest.mark.parametrize("spec", [("tiny", "linear", 32), ("resnet18", "arm", 96)])
def test_a_shape_traced_once_gives_the_next_network_the_file_a_fresh_trace_gives(tmp_path, spec, monkeypatch):
    """The second export of a network shape writes its weights into the graph traced for the first:
    byte for byte the file a fresh trace writes; a weight the graph has no place for is refused."""
    from collections import OrderedDict

    import dcjt.serving.export as export

    first, second = build_model(*spec).eval(), build_model(*spec).eval()  # other weights
    for bn in (m for m in second.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 1.5)  # as after training
    export_onnx(first, tmp_path / "first.onnx")
    reused = export_onnx(second, tmp_path / "reused.onnx").path.read_bytes()
    monkeypatch.setattr(export, "_traced", OrderedDict())  # nothing traced: a fresh trace
    assert export_onnx(second, tmp_path / "fresh.onnx").path.read_bytes() == reused
    assert (tmp_path / "first.onnx").read_bytes() != reused
    graph = onnx.load(str(tmp_path / "fresh.onnx"))
    with pytest.raises(ValueError, match=r"no initializer for \['net.extra.weight'\]"):
        export._write_weights(graph, {"net.extra.weight": torch.zeros(2)})


def test_a_tampered_graph_fails_parity_naming_the_worst_image(tmp_path):
    net = build_model("tiny", "linear", 32).eval()  # fresh weights: its answer depends on the image
    path = export_onnx(net, tmp_path / "model.onnx").path
    images, names = random_images(8, 32), [f"face-{i}.png" for i in range(8)]
    assert parity(net, path, images, names).passed
    tamper(path)
    result = parity(net, path, images, names)
    assert not result.passed and result.worst in names
    assert result.problem().startswith("ONNX parity: ") and result.worst in result.problem() and "\n" not in result.problem()


def test_a_graph_failing_parity_is_not_registered_and_the_training_run_is_kept(registry, monkeypatch):
    import dcjt.serving.export as export

    real = export.export_onnx

    def tampered_export(model, path):
        made = real(model, path)
        tamper(path)
        return made

    first = promote_as_run(registry, always(0))
    monkeypatch.setattr(export, "export_onnx", tampered_export)
    net = build_model("tiny", "linear", 32).eval()
    runs_before = len(mlflow.search_runs(search_all_experiments=True))
    with pytest.raises(ServingExportError, match=r"ONNX parity: .* at .*\.png"):
        promote_as_run(registry, net)
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='fer'")
    assert [str(v.version) for v in versions] == [first["version"]]  # nothing registered
    assert str(client.get_model_version_by_alias("fer", "champion").version) == first["version"]
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs_before + 2  # the runs stay
    assert len(mlflow.search_logged_models(output_format="list")) == 1  # the first version's model only


def register_without_onnx(registry) -> str:
    """A version as registered before exports: a pyfunc with the network's spec and weights only."""
    from dcjt.registry.packaging import MODEL_CODE
    from dcjt.serving.network import save_model_files

    with mlflow.start_run():
        artifacts = save_model_files(always(3), registry["tmp"] / "old")
        info = mlflow.pyfunc.log_model(name="model", python_model=str(MODEL_CODE), artifacts=artifacts)
    version = mlflow.register_model(info.model_uri, "fer").version
    mlflow.MlflowClient().set_registered_model_alias("fer", "champion", version)
    mlflow.MlflowClient().set_model_version_tag("fer", version, "variant", "dcjt")
    return str(version)


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_a_version_without_onnx_is_refused_by_name_and_export_onnx_adds_one(registry):
    from dcjt.serving.network import load_network

    old = register_without_onnx(registry)
    faces = str(registry["tmp"] / "faces")
    refused = cli("predict", "--model", "models:/fer@champion", faces)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "has no ONNX export" in refused.stderr and "run.py export-onnx --model models:/fer@champion" in refused.stderr
    added = cli("export-onnx", "--model", "models:/fer@champion", "--images", faces)
    assert added.returncode == 0, added.stderr[-2000:]
    assert "aliases moved to it: champion" in added.stdout
    client = mlflow.MlflowClient()
    new = client.get_model_version_by_alias("fer", "champion")
    assert new.version != old and new.tags["onnx.exported_from"] == old and new.tags["variant"] == "dcjt"
    assert "on 32 validation images" in new.tags["onnx.parity"]  # the folder's 32 faces
    again = cli("export-onnx", "--model", f"models:/fer/{new.version}")
    assert again.returncode == 1 and "already has an ONNX export" in again.stderr
    out = cli("predict", "--model", "models:/fer@champion", "--format", "csv", faces)
    assert out.returncode == 0, out.stderr[-2000:]
    assert set(pd.read_csv(io.StringIO(out.stdout))["label"]) == {3}
    for version in (old, new.version):  # both carry the same network for fine-tuning and the gate
        net = load_network(f"models:/fer/{version}")
        assert float(net.fc.bias[3]) == 10.0


def test_score_writes_one_row_per_face_with_bad_images_named_and_refuses_bad_inputs(registry, tmp_path):
    result = promote_as_run(registry, always(3))
    folder = tmp_path / "batch"
    for i, image in enumerate(random_images(1000, 32)):
        sub = folder / f"part{i // 500}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{i:04d}.png")
    (folder / "part0" / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "scores.parquet"
    done = cli("score", "--model", "models:/fer@champion", str(folder), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_parquet(out)
    assert len(table) == 1001 and table["image"].is_unique and table["image"].iloc[0] == "part0/0000.png"
    bad = table[table["error"] != ""]
    assert bad["image"].tolist() == ["part0/broken.jpg"] and "broken.jpg" in bad["error"].iloc[0]
    assert (table.loc[table["error"] == "", "label"] == 3).all()
    assert f"scored 1001 images with version {result['version']} (1 refused; 1 other files skipped)" in done.stdout
    run = mlflow.search_runs(experiment_names=["dcjt-scoring"], output_format="list")[0]
    assert run.data.params["model_version"] == result["version"] and run.data.metrics["refused"] == 1
    for args, message in [
        ((str(folder), "--out", str(out)), "exists; choose a new path"),
        ((str(folder / "notes.txt"), "--out", str(tmp_path / "n.parquet")), "a file, not a folder of images"),
        ((str(tmp_path / "cache"), "--out", str(tmp_path / "e.parquet")), "no images"),
        ((str(folder), "--out", str(tmp_path / "t.csv")), "name it *.parquet"),
    ]:
        proc = cli("score", "--model", "models:/fer@champion", *args)
        assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / "e.parquet").exists()
