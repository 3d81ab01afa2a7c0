"""Ingest and cache steps: datasets (or the synthetic world) -> validated label tables + image caches."""

from __future__ import annotations

from typing import Annotated

import mlflow
import numpy as np
import pandas as pd

from dcjt.config import DatasetSpec, LeakageConfig
from dcjt.data.audit import read_audit
from dcjt.data.cache import build_cache, load_cache, open_cache, write_cache
from dcjt.data.identity import split_seed
from dcjt.data.labels import AUDIT_COLUMN, check_validation_rows, stratified_val_split
from dcjt.data.leakage import pairs_figure, screen
from dcjt.data.readers import ingest
from dcjt.method.extras import check_class_overlap
from dcjt.synthetic.disk import write_world_pngs
from dcjt.synthetic.world import WorldSpec, with_audit
from dcjt.utils.mlflow_io import child_run, log_frame, log_json
from steps.common import dcjt_step
from steps.handoff import CacheRef, folder_or_scratch, world_folder
from steps.visuals import validated


@dcjt_step()
def ingest_synthetic(
    world: WorldSpec, image_size: int, val_fraction: float, seed: int, data_dir: str, cache_dir: str, min_val_rows: int = 1
) -> tuple[Annotated[pd.DataFrame, "target_table"], Annotated[pd.DataFrame, "extra_table"], Annotated[dict, "ingest_gx"]]:
    """Generate the synthetic world (drawn from ``seed``): PNG files, label tables and their image
    caches. The extra populations (``extra`` and, when the world has one, the discrete-only
    ``extra2``) form one table of extras, told apart by their ``dataset`` column. A's validation
    rows are carved with a seed fixed by the world's table, as for a dataset on disk. No
    ``data_dir`` (steps that share no disk): the files go to the artifact store's folder."""
    world_out = write_world_pngs(world, image_size, seed, str(world_folder(data_dir)))
    target, t_images = world_out.pop("target")
    target = stratified_val_split(target, val_fraction, split_seed(target))
    check_validation_rows(target, val_fraction, min_val_rows, "synthetic target")
    parts = {"target": (target, t_images)}
    # B's validation is carved from M_B's subset in stage 2, where it is used
    extra = pd.concat([t for t, _ in world_out.values()], ignore_index=True)
    if world.audit_rows:  # rows of B a team re-annotated under A's criteria (the truth here)
        extra = with_audit(extra, world.audit_rows, seed)
    parts["extra"] = (extra, np.concatenate([i for _, i in world_out.values()]))
    tables, gx = {}, {}
    for role, (table, images) in parts.items():
        summary = validated(table, f"synthetic {role}", require_all_classes=True)
        gx[role] = {"gx": summary.model_dump(mode="json"), "validation_rows": int((table["split"] == "val").sum())}
        if cache_dir and open_cache(table, image_size, cache_dir) is None:  # no cache_dir: caches in the build step
            write_cache(table, image_size, cache_dir, images)
        tables[role] = table
    return tables["target"], tables["extra"], gx


@dcjt_step()
def ingest_dataset(
    spec: DatasetSpec, val_fraction: float, max_bad_fraction: float = 0.0, min_val_rows: int = 1
) -> tuple[Annotated[pd.DataFrame, "table"], Annotated[dict, "ingest_report"]]:
    """Read a dataset root in its release layout into a validated label table (the validation
    split is carved with a seed fixed by the dataset, not by the run: ``dcjt.data.identity``).

    ``spec.fingerprint`` (file list, sizes, times) is part of the parameters only so that
    changed files on disk change the cache key.
    """
    table, report = read_dataset(spec, val_fraction, max_bad_fraction)
    check_validation_rows(table, val_fraction, min_val_rows, f"data.target ({spec.label} at {spec.root})")
    return table, report  # a tuple literal: ZenML reads two outputs from it


def read_dataset(spec: DatasetSpec, val_fraction: float, max_bad_fraction: float) -> tuple[pd.DataFrame, dict]:
    table, report = ingest(spec.dataset, spec.root, val_fraction=val_fraction, max_bad_fraction=max_bad_fraction)
    table["dataset"] = pd.Series([spec.label] * len(table), dtype="string")
    gx = validated(table, f"{spec.label} at {spec.root}", require_all_classes=True).model_dump(mode="json")
    return table, {
        "dataset": spec.dataset,
        "name": spec.label,
        "rows": len(table),
        "excluded": report.excluded,
        "skipped_images": report.skipped_images,
        "notes": report.notes,
        "gx": gx,
        "fingerprint": spec.fingerprint,
    }


@dcjt_step()
def ingest_extras(
    specs: list[DatasetSpec], max_bad_fraction: float = 0.0
) -> tuple[Annotated[pd.DataFrame, "table"], Annotated[dict, "ingest_report"]]:
    """Every extra dataset, read and validated on its own, as one table of extras (told apart by
    ``dataset``). Their validation rows are carved from M_B's subset in stage 2, where they are used."""
    tables, reports = [], {}
    for spec in specs:
        table, report = read_dataset(spec, 0.0, max_bad_fraction)
        if spec.audit:  # the team's labels under A's criteria for some of its images
            table = read_audit(spec.audit, table, spec.label, spec.root)
            report["audited_rows"] = int((table[AUDIT_COLUMN] >= 0).sum())
        tables.append(table)
        reports[spec.label] = report
    out = pd.concat(tables, ignore_index=True)
    if AUDIT_COLUMN in out:  # extras without an audit: -1
        out[AUDIT_COLUMN] = out[AUDIT_COLUMN].fillna(-1).astype("int64")
    return out, reports


@dcjt_step()
def build_image_cache(
    table: pd.DataFrame, image_size: int, cache_dir: str, handoff: str = "shared_disk"
) -> Annotated[CacheRef, "image_cache"]:
    """Decode and resize every image once into the memory-mapped cache (reused when present);
    handed to later steps by path or through the artifact store (``steps.handoff``). No
    ``cache_dir``: this pod's scratch folder."""
    return CacheRef(str(build_cache(table, image_size, folder_or_scratch(cache_dir, "cache")).path), handoff)


@dcjt_step()
def screen_datasets(
    target_table: pd.DataFrame,
    extra_table: pd.DataFrame,
    target_cache: CacheRef,
    extra_cache: CacheRef,
    leakage: LeakageConfig,
    parent_run_id: str,
) -> tuple[Annotated[pd.DataFrame, "target_screened"], Annotated[pd.DataFrame, "extra_screened"], Annotated[dict, "leakage"]]:
    """Before any training: every extra shares classes with A, and no training image (A's train
    and validation rows, every extra's) is a near-duplicate of one of A's test images (the
    leakage guard: removed, counted per dataset, example pairs logged to MLflow)."""
    overlap = check_class_overlap(target_table, extra_table)
    if not leakage.enabled:
        return target_table, extra_table, {"enabled": False, "class_overlap": overlap}
    t_cache, e_cache = load_cache(target_cache.path), load_cache(extra_cache.path)
    target, extra, counts, pairs = screen(target_table, extra_table, t_cache, e_cache, leakage.max_distance)
    report = {"enabled": True, "class_overlap": overlap, **counts}
    with child_run(parent_run_id, "leakage guard"):
        mlflow.log_param("leakage.max_distance", leakage.max_distance)
        metrics = {f"leaked.{d}": v["leaked"] for d, v in counts["removed"].items()}
        metrics |= {f"within_dataset.{d}": v.get("duplicates", v.get("leaked", 0)) for d, v in counts["within_dataset"].items()}
        mlflow.log_metrics(metrics | {"leaked": counts["leaked"]})
        log_json(report, "leakage.json")
        if len(pairs):
            log_frame(pairs, "leakage_pairs.csv")
            shown = pairs.groupby("kind", sort=False).head(3)
            needed = set(shown["train_image"]) | set(shown["test_image"])
            images = {}
            for table, cache in ((target_table, t_cache), (extra_table, e_cache)):
                rows = table[table["image"].isin(needed)]  # only the images shown, not the whole cache
                images |= dict(zip(rows["image"], cache.images[cache.positions(rows)]))
            mlflow.log_figure(pairs_figure(shown, images), "leakage_pairs.png")
    return target, extra, report


@dcjt_step(cached=False)
def merge_reports(target_report: dict, extra_report: dict) -> Annotated[dict, "ingest_gx"]:
    return {"target": target_report, "extra": extra_report}
