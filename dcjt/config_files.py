"""Reading a run's configuration: a YAML file in ``configs/`` (or a path) merged over the file it
``extends``, ``--set key.path=value`` overrides and typed values, a world preset, then validation
against the schema (``dcjt.config``) with errors that name the key path (``dcn.lam: ...``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dcjt.config import PipelineConfig
from dcjt.utils.mappings import deep_merge as _merge
from dcjt.utils.state import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message names the key."""


def _read(name_or_path: str, chain: tuple[Path, ...] = ()) -> dict:
    """A config file as a mapping, merged over the config it ``extends`` (a chain of files)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("remote"))
        raise ConfigError(f"config {name_or_path!r} not found (looked for {path}); known: {known}")
    if path.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain, path.resolve()))
        raise ConfigError(f"config {path}: 'extends' makes a cycle ({cycle})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ConfigError(f"config {path}:{at}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: cannot read it ({exc})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: must be a mapping of sections (key: value), got a {type(data).__name__}")
    parent = data.pop("extends", None)
    return _merge(_read(str(parent), (*chain, path.resolve())), data) if parent else data


def set_value(raw: dict, key: str, value: Any) -> dict:
    """Set ``a.b.c`` in the raw (not yet validated) config to ``value``."""
    node = raw
    parts = key.strip().split(".")
    for p, nxt in zip(parts[:-1], parts[1:]):
        if isinstance(node, list):
            node = _list_item(node, p, key)
            continue
        node = node.setdefault(p, [] if nxt.isdigit() else {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"{key}: {p!r} is not a section")
    if isinstance(node, list):
        index = int(_list_index(node, parts[-1], key))
        node[index] = _merge(node[index], value) if isinstance(value, dict) and isinstance(node[index], dict) else value
    else:
        current = node.get(parts[-1])
        # a mapping merges into the section it names (``m_a={epochs: 1}`` keeps the other m_a values)
        node[parts[-1]] = _merge(current, value) if isinstance(value, dict) and isinstance(current, dict) else value
    return raw


def _list_index(items: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) > len(items):
        raise ConfigError(f"{key}: {part!r} is not an index of a list of {len(items)} (use 0..{len(items)})")
    if int(part) == len(items):
        items.append({})
    return int(part)


def _list_item(items: list, part: str, key: str):
    item = items[_list_index(items, part, key)]
    if not isinstance(item, dict):
        raise ConfigError(f"{key}: item {part} is not a section")
    return item


def parse_assignment(assignment: str) -> tuple[str, Any]:
    """``key.path=value`` (value read as YAML: numbers, booleans, lists, mappings)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.path=value")
    key, text = assignment.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {assignment!r}: the value is not valid YAML ({getattr(exc, 'problem', None) or exc})"
        ) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(
            f"{where}: {msg}"
            + (f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else "")
        )
    return "; ".join(lines)


def validate_config(raw: dict) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_config(
    name_or_path: str = "demo", overrides: list[str] | tuple = (), values: dict[str, Any] | None = None
) -> PipelineConfig:
    """Read a config, apply ``key=value`` overrides and typed ``values``, validate."""
    raw = _read(name_or_path)
    file_world = copy.deepcopy((raw.get("data") or {}).get("world") or {})
    assignments = [parse_assignment(a) for a in overrides] + list((values or {}).items())
    for key, value in assignments:
        set_value(raw, key, value)
    _apply_world_preset(raw, file_world, assignments)
    data = raw.get("data") or {}
    if data.get("kind", "synthetic") == "synthetic":
        specs = [("target", data.get("target")), ("extra", data.get("extra"))]
        specs += [(f"extras.{k}", spec) for k, spec in enumerate(data.get("extras") or [])]
        for role, spec in specs:
            root = (spec or {}).get("root") if isinstance(spec, dict) else None
            if root:
                raise ConfigError(
                    f"--{role}-root / data.{role}.root ({root}) is set, but config {name_or_path!r} trains on the synthetic "
                    "world (data.kind: synthetic) and would ignore it; use --config rafdb or --config caers"
                )
    return validate_config(raw)


def _apply_world_preset(raw: dict, file_world: dict, assignments: list[tuple[str, Any]]) -> None:
    """A world preset (``data.world.preset``, ``--world``) is the whole world: the config file's
    world keys apply over it only when the file names the preset itself, ``--set data.world.*``
    keys always do."""
    world = (raw.get("data") or {}).get("world")
    name = world.get("preset") if isinstance(world, dict) else None
    if not isinstance(name, str):
        return  # no preset (a wrong type is the schema's to refuse)
    from dcjt.synthetic.suite import UnknownWorld, preset_values

    try:
        merged = preset_values(name)
    except UnknownWorld as exc:
        raise ConfigError(f"data.world.preset: {exc}") from None
    if (raw.get("data") or {}).get("kind") == "files":
        raise ConfigError(
            f"data.world.preset ({name}) is a synthetic world, but data.kind is 'files' (datasets on disk); "
            "drop --world / data.world.preset, or use a synthetic config such as demo"
        )
    if file_world.get("preset") == name:
        merged = _merge(merged, file_world)
    for key, value in assignments:
        if key.startswith("data.world.") and key != "data.world.preset":
            set_value({"data": {"world": merged}}, key, value)
        elif key == "data.world" and isinstance(value, dict):
            merged = _merge(merged, value)
    raw["data"]["world"] = merged
