"""Pipeline configuration: YAML files in ``configs/``, ``extends`` for shared parts, and
``--set a.b=value`` overrides from the command line. Validated before anything runs."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from dcjt.labelmaths import B_STATS_SOURCES, MAPPING_MODES
from dcjt.training import TrainConfig
from models.nets import BACKBONES, HEADS

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
DATASETS = ("rafdb", "affectnet", "caers", "ferplus")


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message names the key."""


def state_home() -> Path:
    """Where ZenML, MLflow, image caches and checkpoints live (``DCJT_HOME``, default ./state)."""
    return Path(os.environ.get("DCJT_HOME", REPO_ROOT / "state")).resolve()


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _read(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"config {name_or_path!r} not found (looked for {path}); known: {known}")
    data = yaml.safe_load(path.read_text()) or {}
    parent = data.pop("extends", None)
    return _merge(_read(parent), data) if parent else data


def apply_override(cfg: dict, assignment: str) -> dict:
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.path=value")
    key, raw = assignment.split("=", 1)
    node = cfg
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {assignment!r}: {p!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)
    return cfg


def load_config(name_or_path: str = "demo", overrides: list[str] | tuple = ()) -> dict:
    cfg = _read(name_or_path)
    for o in overrides:
        apply_override(cfg, o)
    validate(cfg)
    home = state_home()
    paths = {"home": str(home), "cache_dir": str(home / "cache"), "data_dir": str(home / "data"),
             "checkpoint_root": str(home / "checkpoints"), "outputs": str(home / "outputs")}  # fmt: skip
    cfg["paths"] = {**paths, **cfg.get("paths", {})}
    return cfg


def validate(cfg: dict) -> None:
    for key in ("name", "experiment", "model_name", "image_size", "seed", "data", "network", "m_a", "m_b", "dcn", "method"):
        if key not in cfg:
            raise ConfigError(f"config is missing '{key}'")
    for stage in ("m_a", "m_b", "dcn"):
        try:
            TrainConfig(**cfg[stage])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{stage}: {exc}") from exc
    net = cfg["network"]
    if net.get("backbone") not in BACKBONES:
        raise ConfigError(f"network.backbone must be one of {BACKBONES}, got {net.get('backbone')!r}")
    if net.get("head", "linear") not in HEADS:
        raise ConfigError(f"network.head must be one of {HEADS}, got {net.get('head')!r}")
    if net.get("weights") and not Path(net["weights"]).is_file():
        raise ConfigError(f"network.weights: file not found: {net['weights']}")
    m = cfg["method"]
    if m.get("mapping") not in MAPPING_MODES:
        raise ConfigError(f"method.mapping must be one of {MAPPING_MODES}, got {m.get('mapping')!r}")
    if m.get("b_stats_from", "all") not in B_STATS_SOURCES:
        raise ConfigError(f"method.b_stats_from must be one of {B_STATS_SOURCES}")
    if m.get("pseudo_from", "subset") not in ("subset", "all"):
        raise ConfigError("method.pseudo_from must be 'subset' or 'all'")
    if not isinstance(cfg["image_size"], int) or cfg["image_size"] % 32:
        raise ConfigError(f"image_size must be a multiple of 32, got {cfg['image_size']!r}")
    data = cfg["data"]
    if data.get("kind") == "synthetic":
        return
    if data.get("kind") != "files":
        raise ConfigError(f"data.kind must be 'synthetic' or 'files', got {data.get('kind')!r}")
    for role in ("target", "extra"):
        spec = data.get(role) or {}
        if spec.get("dataset") not in DATASETS:
            raise ConfigError(f"data.{role}.dataset must be one of {DATASETS}, got {spec.get('dataset')!r}")
        if not spec.get("root"):
            raise ConfigError(f"data.{role}.root is not set: pass --{role}-root DIR or --set data.{role}.root=DIR")
        if not Path(spec["root"]).is_dir():
            raise ConfigError(f"data.{role}.root: folder not found: {spec['root']}")
    if data["extra"]["dataset"] != "affectnet":
        raise ConfigError("data.extra must be a dataset with valence/arousal labels (affectnet)")


def fingerprint(root: str) -> str:
    """Cheap identity of a dataset folder: paths, sizes and modification times of its files."""
    import hashlib

    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]
