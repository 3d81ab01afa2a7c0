"""``run.py leakage``: the pipeline's leakage guard on dataset folders, without training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dcjt.config import DATASETS, LeakageConfig
from dcjt.data.cache import build_cache
from dcjt.data.leakage import screen
from dcjt.data.readers import ingest
from dcjt.utils.state import state_home


class LeakageInputError(ValueError):
    """A ``DATASET=ROOT`` argument that does not name a known dataset and an existing folder."""


def parse_spec(text: str, seen: dict[str, str]) -> tuple[str, str]:
    if "=" not in text:
        raise LeakageInputError(f"{text!r}: expected DATASET=ROOT, e.g. rafdb=/data/RAF-DB")
    dataset, root = text.split("=", 1)
    if dataset not in DATASETS:
        raise LeakageInputError(f"{text!r}: unknown dataset {dataset!r}; choose from {list(DATASETS)}")
    if not Path(root).is_dir():
        raise LeakageInputError(f"{text!r}: folder not found: {root}")
    real = str(Path(root).resolve())
    if real in seen:
        raise LeakageInputError(f"{text!r}: the same folder as {seen[real]!r}: its images would be counted twice")
    seen[real] = text
    return dataset, root


def _read(dataset: str, root: str, name: str) -> pd.DataFrame:
    table, _ = ingest(dataset, root, val_fraction=0.0)
    return table.assign(dataset=pd.Series([name] * len(table), dtype="string"))


def check_leakage(
    target: str, extras: list[str], *, max_distance: int | None = None, image_size: int = 224
) -> tuple[list[str], int]:
    """(report lines, number of training images that duplicate a test image of the target)."""
    seen: dict[str, str] = {}
    t_dataset, t_root = parse_spec(target, seen)
    names = {t_dataset: 1}
    parts = []
    for text in extras:
        dataset, root = parse_spec(text, seen)
        names[dataset] = names.get(dataset, 0) + 1
        parts.append(_read(dataset, root, dataset if names[dataset] == 1 else f"{dataset}-{names[dataset]}"))
    target_table = _read(t_dataset, t_root, t_dataset)
    extra_table = pd.concat(parts, ignore_index=True) if parts else target_table.iloc[:0]
    distance = LeakageConfig().max_distance if max_distance is None else max_distance
    folder = state_home() / "cache"
    t_cache = build_cache(target_table, image_size, folder)
    e_cache = build_cache(extra_table, image_size, folder) if len(extra_table) else t_cache
    _, _, counts, _ = screen(target_table, extra_table, t_cache, e_cache, distance)
    lines = [f"max distance: {distance} of 256 bits; test images of {t_dataset}: {int((target_table['split'] == 'test').sum())}"]
    for dataset, c in counts["removed"].items():
        lines.append(f"{dataset}: {c['leaked']} of {c['checked']} training images duplicate a test image of {t_dataset}")
    for dataset, c in counts["within_dataset"].items():
        if "duplicates" in c:
            lines.append(f"{dataset}: {c['duplicates']} of {c['checked']} training images duplicate its own test images")
    return lines, counts["leaked"]
