"""Where a network's starting weights come from (``network.weights``).

- ``none``: random initialisation (the CPU demo).
- ``imagenet``: torchvision's ResNet-18 ImageNet weights, read from torchvision's own weight
  cache (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``). On a machine with a network the
  pre-flight check lets torchvision download them there, exactly as torchvision users expect;
  offline (or with ``DCJT_OFFLINE=1``) a missing file stops the run before any training with a
  message saying where to put it (``python run.py weights import FILE``).
- a local file: ImageNet-format or MS-Celeb ResNet-18 checkpoints (trunk only), or a checkpoint
  written by this project's trainer (the trunk of a DCJT model).
- ``models:/NAME@alias`` or ``models:/NAME/VERSION``: the trunk of a registered DCJT model
  (fine-tuning); the pre-flight check pins an alias to its version, so cached steps notice a
  new champion.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from dcjt.utils.files import file_sha256, replace_atomic

IMAGENET = "imagenet"
NONE = "none"
TRUNK_NAMES = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]


class WeightsError(ValueError):
    """Weights cannot be found or do not fit the network; the message says which and why."""


def _imagenet_url() -> str:
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.IMAGENET1K_V1.url


def imagenet_file() -> Path:
    """Where torchvision keeps (and looks for) the ResNet-18 ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_imagenet_url())


def offline() -> bool:
    return os.environ.get("DCJT_OFFLINE", "").lower() in ("1", "true", "yes")


def missing_imagenet_message(why: str) -> str:
    path = imagenet_file()
    return (
        f"ResNet-18 ImageNet weights are not in torchvision's cache ({why}). torchvision expects the file "
        f"{path.name} at {path} (TORCH_HOME={os.environ.get('TORCH_HOME', '<unset: ~/.cache/torch>')}). "
        f"Download {_imagenet_url()} on a machine with a network and install it with: "
        f"python run.py weights import /path/to/{path.name}   (or set network.weights: none)"
    )


def ensure_imagenet(download: bool) -> Path:
    """The cached ImageNet file; fetched by torchvision when ``download`` and not offline."""
    path = imagenet_file()
    if path.is_file():
        return path
    if not download or offline():
        raise WeightsError(missing_imagenet_message("offline" if offline() else "not downloaded"))
    from torchvision.models import ResNet18_Weights

    try:
        ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # no network, proxy, disk: one message that says what to do
        raise WeightsError(missing_imagenet_message(f"download failed: {type(exc).__name__}: {exc}")) from None
    return path


def _fit_report(source: str, own: dict, given: dict) -> str | None:
    missing = sorted(set(own) - set(given))
    wrong = sorted(k for k in set(own) & set(given) if own[k].shape != given[k].shape)
    if not missing and not wrong:
        return None
    return (
        f"{source}: does not fit the network: {len(missing)} missing keys (e.g. {missing[:3]}), "
        f"{len(wrong)} with wrong shapes (e.g. {[(k, tuple(given[k].shape), tuple(own[k].shape)) for k in wrong[:3]]}); "
        f"keys given start {list(given)[:3]}"
    )


def resnet_trunk_state(state: dict) -> dict:
    """A torchvision-style ResNet state dict (ImageNet, MS-Celeb ``module.``/``features.`` prefixes)
    renamed to the trunk's ``nn.Sequential`` keys; other keys (``fc.*``) are dropped."""
    state = {k.removeprefix("module.").removeprefix("features."): v for k, v in state.items()}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in TRUNK_NAMES:
            out[f"{TRUNK_NAMES.index(head)}.{rest}"] = value
    return out


def _read(path: Path) -> dict:
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a PyTorch weights file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def trunk_state_from_file(path: Path) -> dict:
    """Trunk weights in a file: this project's checkpoint (``model`` = a DCNet state dict), or a
    ResNet-18 state dict (ImageNet, or MS-Celeb with ``state_dict`` and ``module.`` prefixes)."""
    state = _read(path)
    if isinstance(state.get("model"), dict) and any(str(k).startswith("trunk.") for k in state["model"]):
        return {k.removeprefix("trunk."): v for k, v in state["model"].items() if k.startswith("trunk.")}
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return resnet_trunk_state(state)


def trunk_state_from_registry(uri: str) -> dict:
    from dcjt.serving.network import load_network

    try:
        network = load_network(uri)
    except Exception as exc:
        raise WeightsError(f"{uri}: cannot load the registered model ({type(exc).__name__}: {str(exc)[:300]})") from None
    return {k: v.detach().clone() for k, v in network.trunk.state_dict().items()}


def load_trunk(trunk: nn.Module, state: dict, source: str) -> None:
    problem = _fit_report(source, trunk.state_dict(), state)
    if problem:
        raise WeightsError(problem)
    trunk.load_state_dict({k: state[k] for k in trunk.state_dict()})


def apply_weights(net: nn.Module, weights: str | None) -> nn.Module:
    """Load ``weights`` (see the module docstring) into ``net.trunk``; returns ``net``. A step on a
    machine whose cache lacks the ImageNet file (a fresh pod) lets torchvision fetch it, unless offline."""
    if weights in (None, "", NONE):
        return net
    if weights == IMAGENET:
        if getattr(net, "backbone_name", "resnet18") != "resnet18":
            raise WeightsError(f"ImageNet weights are for resnet18, not {net.backbone_name}")
        path = ensure_imagenet(download=True)
        load_trunk(net.trunk, resnet_trunk_state(_read(path)), str(path))
    elif weights.startswith("models:/"):
        load_trunk(net.trunk, trunk_state_from_registry(weights), weights)
    else:
        load_trunk(net.trunk, trunk_state_from_file(Path(weights)), weights)
    return net


def resolve_weights(weights: str | None) -> str | None:
    """Pre-flight: make ``weights`` available and pin it. ImageNet is fetched into torchvision's
    cache if missing (unless offline); ``models:/NAME@alias`` becomes ``models:/NAME/VERSION``;
    a file must exist. Raises ``WeightsError`` with what to do."""
    if weights in (None, "", NONE):
        return NONE
    if weights == IMAGENET:
        ensure_imagenet(download=True)
        return IMAGENET
    if weights.startswith("models:/"):
        import mlflow

        name, sep, alias = weights.removeprefix("models:/").partition("@")
        if not sep:
            return weights
        try:
            version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
        except mlflow.exceptions.MlflowException as exc:
            raise WeightsError(f"network.weights {weights}: no such registered model or alias ({exc.message[:200]})") from None
        return f"models:/{name}/{version}"
    if not Path(weights).is_file():
        raise WeightsError(f"network.weights: file not found: {weights}")
    return weights


def import_imagenet(path: Path, *, any_hash: bool = False) -> Path:
    """Check that ``path`` is a ResNet-18 ImageNet state dict (keys and shapes of torchvision's
    ResNet-18, fc included) and install it where torchvision looks. torchvision names the file
    with the first 8 hex digits of its SHA-256; a file with another hash is refused unless
    ``any_hash`` (e.g. weights converted from another source that fit the same shapes)."""
    from torchvision.models import resnet18

    path = Path(path)
    state = _read(path)
    problem = _fit_report(str(path), resnet18(weights=None).state_dict(), state)
    if problem:
        raise WeightsError(problem)
    target = imagenet_file()
    expected = target.stem.rsplit("-", 1)[-1]
    digest = file_sha256(path)
    if not digest.startswith(expected) and not any_hash:
        raise WeightsError(
            f"{path}: SHA-256 starts {digest[:8]}, torchvision's {target.name} starts {expected}: not the published file "
            "(pass --any-hash to install it anyway)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(lambda tmp: shutil.copyfile(path, tmp), target)
    return target
