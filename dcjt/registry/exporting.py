"""ONNX for a registered version that has none (registered before exports existed): a new version
of the same network, served by its ONNX graph, with the old version's tags, description and card.

The old version is left as it was; the aliases that pointed at it (``champion``, ``challenger``)
move to the new one, which holds the same weights and has passed the same parity check, so
``models:/NAME@champion`` is served with ONNX Runtime from then on.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from dcjt.models.images import IMAGE_SUFFIXES, decode, preprocess
from dcjt.registry.lifecycle import ParitySet, log_dcn
from dcjt.registry.promote import PARITY_IMAGES
from dcjt.registry.served import ExportInputError, without_onnx
from dcjt.serving.network import model_artifacts, network_from


def parity_images(folder: Path | None, size: int, seed: int = 0) -> ParitySet:
    """The first ``PARITY_IMAGES`` images of ``folder`` (sorted, preprocessed as served), or as
    many seeded random images when no folder is given."""
    if folder is None:
        images = np.random.default_rng(seed).integers(0, 256, (PARITY_IMAGES, size, size, 3), dtype=np.uint8)
        return ParitySet(images, [f"random image {i} (seed {seed})" for i in range(PARITY_IMAGES)])
    if not folder.is_dir():
        raise ExportInputError(f"--images {folder}: not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:PARITY_IMAGES]
    if not paths:
        raise ExportInputError(f"--images {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return ParitySet(np.stack([preprocess(decode(p), size) for p in paths]), [str(p) for p in paths])


def add_onnx(model_uri: str, images: Path | None = None, source=None) -> tuple[str, str, list[str]]:
    """Register the network of ``model_uri`` again with its ONNX graph; (name, new version, moved
    aliases). Refused when the version already has one (``source``: the version ``without_onnx``
    already returned for it, as the command checks before torch loads)."""
    source = source or without_onnx(model_uri)
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        files = model_artifacts(model_uri, Path(tmp))  # downloaded once: the network, its spec and card
        network = network_from(files)
        card = files["model_card"].read_text() if "model_card" in files else ""
        checked = parity_images(images, network.image_size)
        info, tags = log_dcn(
            network,
            run_id=source.run_id,
            examples=list(checked.images[:2]),
            min_side=json.loads(files["spec"].read_text()).get("min_side"),
            card=card,
            parity_set=checked,
        )
    version = mlflow.register_model(info.model_uri, source.name)
    try:
        client.update_model_version(source.name, version.version, description=source.description or "")
        for key, value in {**source.tags, **tags, "onnx.exported_from": str(source.version)}.items():
            client.set_model_version_tag(source.name, version.version, key, value)
        moved = list(source.aliases)
        for alias in moved:
            client.set_registered_model_alias(source.name, alias, version.version)
    except BaseException:
        client.delete_model_version(source.name, version.version)
        for alias in source.aliases:
            client.set_registered_model_alias(source.name, alias, source.version)
        raise
    return source.name, str(version.version), moved
