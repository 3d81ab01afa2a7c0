"""Ingest and cache steps: datasets (or the synthetic world) -> validated label tables + image caches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Tuple

import cv2
import pandas as pd
from zenml import step

from dcjt.cache import build_cache, open_cache, write_cache
from dcjt.labels import stratified_val_split
from dcjt.readers import ingest
from dcjt.synth import ExtraCriteria, WorldConfig, generate_world
from dcjt.validation import assert_valid
from steps.common import core_cache_policy


def _gx_summary(report, name: str) -> dict:
    return {"table": name, "success": report.success, "failures": report.failures, "result": report.result_json}


@step(cache_policy=core_cache_policy())
def ingest_synthetic(
    world: dict, image_size: int, val_fraction: float, seed: int, data_dir: str, cache_dir: str
) -> Tuple[
    Annotated[pd.DataFrame, "target_table"],
    Annotated[pd.DataFrame, "extra_table"],
    Annotated[dict, "ingest_gx"],
]:
    """Generate the synthetic world: PNG files, label tables and their image caches."""
    cfg = WorldConfig(**{k: v for k, v in world.items() if k != "extra"}, size=image_size, seed=seed,
                      extra=ExtraCriteria(**world.get("extra", {})))  # fmt: skip
    tables, gx = {}, {}
    for role, (table, images) in generate_world(cfg).items():
        if role == "third":
            continue
        folder = Path(data_dir)
        paths = []
        for name, img in zip(table["image"], images):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                cv2.imwrite(str(path), img[:, :, ::-1])
            paths.append(str(path))
        table = table.assign(image=pd.array(paths, dtype="string"))
        if role == "target":
            table = stratified_val_split(table, val_fraction, seed)
        gx[role] = _gx_summary(assert_valid(table, name=f"synthetic {role}"), role)
        if open_cache(table, image_size, cache_dir) is None:
            write_cache(table, image_size, cache_dir, images)
        tables[role] = table
    return tables["target"], tables["extra"], gx


@step(cache_policy=core_cache_policy())
def ingest_dataset(
    dataset: str, root: str, fingerprint: str, val_fraction: float, seed: int, max_bad_fraction: float = 0.0
) -> Tuple[Annotated[pd.DataFrame, "table"], Annotated[dict, "ingest_report"]]:
    """Read a dataset root in its release layout into a validated label table.

    ``fingerprint`` (file list, sizes, times) is a parameter only so that changed files on disk
    change the cache key.
    """
    table, report = ingest(dataset, root, val_fraction=val_fraction, seed=seed, max_bad_fraction=max_bad_fraction)
    gx = _gx_summary(assert_valid(table, name=f"{dataset} at {root}"), dataset)
    return table, {"dataset": dataset, "excluded": report.excluded, "skipped_images": report.skipped_images,
                   "notes": report.notes, "gx": gx, "fingerprint": fingerprint}  # fmt: skip


@step(cache_policy=core_cache_policy())
def build_image_cache(table: pd.DataFrame, image_size: int, cache_dir: str) -> Annotated[str, "image_cache"]:
    """Decode and resize every image once into the memory-mapped cache (reused when present)."""
    return str(build_cache(table, image_size, cache_dir).path)


@step(enable_cache=False)
def merge_reports(target_report: dict, extra_report: dict) -> Annotated[dict, "ingest_gx"]:
    return {"target": target_report, "extra": extra_report}
