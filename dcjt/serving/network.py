"""The torch side of a registered DCN: the files it is logged with (spec, weights, ONNX graph), the
network read back from the registry (fine-tuning, champion scoring), and a scorer that runs the
torch network as the served model runs its ONNX graph (parity, benchmarks)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch

from dcjt.models.inference import forward_uint8
from dcjt.models.nets import build_model
from dcjt.serving.onnx_runtime import SPEC_FILE

WEIGHTS_FILE = "weights.pt"


class TorchScorer:
    """The torch network as a scorer (``dcjt.serving.inputs.Scorer``): float32 on the CPU unless
    it sits on CUDA (then as in training, bf16 autocast)."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.image_size = model.eval(), model.image_size

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return forward_uint8(self.model, images)


def save_model_files(model: torch.nn.Module, folder: Path, min_side: int | None = None) -> dict[str, str]:
    """Write the spec and weights of ``model``; returns the pyfunc's ``artifacts`` mapping (the ONNX
    graph is added by ``dcjt.serving.export``). ``min_side``: images smaller than this are refused
    (default: a quarter of the input size)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**model.spec(), "min_side": min_side or max(1, model.image_size // 4)}
    (folder / SPEC_FILE).write_text(json.dumps(spec))
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS_FILE)
    return {"spec": str(folder / SPEC_FILE), "weights": str(folder / WEIGHTS_FILE)}


def model_artifacts(model_uri: str, folder: Path) -> dict[str, Path]:
    """Download a registered DCN into ``folder``; its pyfunc artifacts by name (spec, weights, onnx)."""
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(folder)))
    flavor = mlflow.models.Model.load(str(local)).flavors.get("python_function", {})
    named = {name: local / entry["path"] for name, entry in (flavor.get("artifacts") or {}).items()}
    if "spec" not in named or "weights" not in named:
        raise TypeError(f"{model_uri} is not a DCJT model (no spec and weights among its artifacts)")
    return named


def network_from(files: dict[str, Path]) -> torch.nn.Module:
    """The torch network of a downloaded DCN (``model_artifacts``): built from its spec, its weights loaded."""
    spec = json.loads(files["spec"].read_text())
    model = build_model(spec["backbone"], spec["head"], spec["image_size"], bool(spec.get("scn")))
    model.load_state_dict(torch.load(files["weights"], map_location="cpu", weights_only=True))
    return model.eval()


def load_network(model_uri: str) -> torch.nn.Module:
    """The torch network inside a registered DCN (``models:/NAME@alias``, ``models:/NAME/3``, ...),
    read from its weights (any version: those served with torch before ONNX, and those since)."""
    with tempfile.TemporaryDirectory() as tmp:
        return network_from(model_artifacts(model_uri, Path(tmp)))
