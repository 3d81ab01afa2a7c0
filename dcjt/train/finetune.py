"""Fine-tuning (paper Table 7): a registered DCJT model or a checkpoint of this project as the
starting point of a run on another target's train split, scored on its test split.

The source's trunk initialises the network (``network.weights``: ``dcjt.train.weights`` loads it and
checks every tensor's shape); the head starts fresh, as the classes of the new target are trained
anew. Before any step runs, ``check_source`` says plainly when the source cannot fit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dcjt.config import PipelineConfig
from dcjt.models.nets import OUTPUTS


class FinetuneError(ValueError):
    """The fine-tuning source does not fit the run (backbone, outputs, image size); names both."""


def _file_state(path: Path) -> dict:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FinetuneError(f"--from {path}: not a readable torch checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    state = data.get("model", data) if isinstance(data, dict) else {}
    return state if isinstance(state, dict) else {}


def source_facts(source: str) -> dict:
    """What the source says of itself: its outputs and (for a registered model) backbone, head and
    image size. A checkpoint file carries no image size."""
    if source.startswith("models:/"):
        from dcjt.serving.network import load_network

        try:
            net = load_network(source)
        except Exception as exc:
            raise FinetuneError(
                f"--from {source}: cannot load the registered model ({type(exc).__name__}: {str(exc)[:300]})"
            ) from None
        return {**net.spec(), "outputs": int(net.fc.out_features)}
    path = Path(source)
    if not path.is_file():
        raise FinetuneError(f"--from {source}: not models:/NAME@alias and no such file")
    state = _file_state(path)
    fc = state.get("fc.weight")
    return {"outputs": int(fc.shape[0])} if fc is not None else {}


def check_source(source: str, cfg: PipelineConfig) -> dict:
    """Stop before any step when ``source`` cannot start this run; returns its facts."""
    facts = source_facts(source)
    outputs = facts.get("outputs")
    if outputs is not None and outputs != OUTPUTS:
        raise FinetuneError(
            f"--from {source}: the source predicts {outputs} outputs; this project's networks predict the 7 classes in "
            f"the canonical order + valence/arousal ({OUTPUTS}): it was not trained by this project (or for other classes)"
        )
    size = facts.get("image_size")
    if size is not None and size != cfg.network.image_size:
        raise FinetuneError(
            f"--from {source}: the source was trained on {size} px images, config {cfg.name!r} uses {cfg.network.image_size} "
            f"px: run with --set network.image_size={size} (its features were learnt at that scale)"
        )
    backbone = facts.get("backbone")
    if backbone is not None and backbone != cfg.network.backbone:
        raise FinetuneError(
            f"--from {source}: the source's backbone is {backbone}, config {cfg.name!r} builds {cfg.network.backbone}: "
            f"run with --set network.backbone={backbone}"
        )
    return facts
