"""Ingest and cache steps: datasets (or the synthetic world) -> validated label tables + image caches."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import step

from dcjt.config import DatasetSpec
from dcjt.data.cache import build_cache, open_cache, write_cache
from dcjt.data.labels import stratified_val_split
from dcjt.data.readers import ingest
from dcjt.data.validation import assert_valid
from dcjt.synthetic.disk import write_world_pngs
from dcjt.synthetic.world import WorldSpec
from steps.common import core_cache_policy
from steps.handoff import CacheRef, folder_or_scratch


def _gx_summary(report, name: str) -> dict:
    return {"table": name, "success": report.success, "failures": report.failures, "result": report.result_json}


@step(cache_policy=core_cache_policy())
def ingest_synthetic(
    world: WorldSpec, image_size: int, val_fraction: float, seed: int, data_dir: str, cache_dir: str
) -> tuple[Annotated[pd.DataFrame, "target_table"], Annotated[pd.DataFrame, "extra_table"], Annotated[dict, "ingest_gx"]]:
    """Generate the synthetic world: PNG files, label tables and their image caches."""
    tables, gx = {}, {}
    for role, (table, images) in write_world_pngs(world, image_size, seed, data_dir).items():
        if role == "target":  # B's validation is carved from M_B's subset in stage 2, where it is used
            table = stratified_val_split(table, val_fraction, seed)
        gx[role] = _gx_summary(assert_valid(table, name=f"synthetic {role}"), role)
        gx[role]["validation_rows"] = int((table["split"] == "val").sum())
        if cache_dir and open_cache(table, image_size, cache_dir) is None:  # no cache_dir: caches in the build step
            write_cache(table, image_size, cache_dir, images)
        tables[role] = table
    return tables["target"], tables["extra"], gx


@step(cache_policy=core_cache_policy())
def ingest_dataset(
    spec: DatasetSpec, val_fraction: float, seed: int, max_bad_fraction: float = 0.0
) -> tuple[Annotated[pd.DataFrame, "table"], Annotated[dict, "ingest_report"]]:
    """Read a dataset root in its release layout into a validated label table.

    ``spec.fingerprint`` (file list, sizes, times) is part of the parameters only so that
    changed files on disk change the cache key.
    """
    table, report = ingest(spec.dataset, spec.root, val_fraction=val_fraction, seed=seed, max_bad_fraction=max_bad_fraction)
    gx = _gx_summary(assert_valid(table, name=f"{spec.dataset} at {spec.root}"), spec.dataset)
    return table, {
        "dataset": spec.dataset,
        "excluded": report.excluded,
        "skipped_images": report.skipped_images,
        "notes": report.notes,
        "gx": gx,
        "fingerprint": spec.fingerprint,
    }


@step(cache_policy=core_cache_policy())
def build_image_cache(
    table: pd.DataFrame, image_size: int, cache_dir: str, handoff: str = "shared_disk"
) -> Annotated[CacheRef, "image_cache"]:
    """Decode and resize every image once into the memory-mapped cache (reused when present);
    handed to later steps by path or through the artifact store (``steps.handoff``). No
    ``cache_dir``: this pod's scratch folder."""
    return CacheRef(str(build_cache(table, image_size, folder_or_scratch(cache_dir, "cache")).path), handoff)


@step(enable_cache=False)
def merge_reports(target_report: dict, extra_report: dict) -> Annotated[dict, "ingest_gx"]:
    return {"target": target_report, "extra": extra_report}
