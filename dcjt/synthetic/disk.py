"""Write the synthetic world to disk in the real releases' layouts (``run.py synth``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from dcjt.synthetic import layouts
from dcjt.synthetic.render import render_stream
from dcjt.synthetic.world import WorldSpec, generate_world, world_tables


def write_world(out: Path, layout_names, *, n_target: int, n_extra: int, size: int, seed: int) -> list[str]:
    """Target set as RAF-DB, extra set as AffectNet (CSV or npy release); truth kept beside them.

    Images are rendered by every core a chunk at a time and written as they come, so the
    world's size is bounded by the disk, not the memory (100,000 faces at 224 px)."""
    out = Path(out)
    world = world_tables(WorldSpec(n_target=n_target, n_extra=n_extra), seed)
    lines, truth = [], []
    if "rafdb" in layout_names:
        table, lat = world["target"]
        paths = layouts.write_rafdb(out / "rafdb", render_stream(lat, seed, size, "target"), table["label"], table["split"])
        truth.append(table.assign(image=[str(p) for p in paths]))
        lines.append(f"target set in RAF-DB layout: {out / 'rafdb'} ({len(table)} images)")
    for name in ("affectnet", "affectnet-npy"):
        if name not in layout_names:
            continue
        table, lat = world["extra"]
        root = out / name
        images = render_stream(lat, seed, size, "extra")
        args = (root, images, table["label"], (table["valence"], table["arousal"]), table["split"])
        if name == "affectnet":
            layouts.write_affectnet_csv(*args)
            paths = [root / "Manually_Annotated_Images" / f"{i // 1000:03d}/{i:07d}.jpg" for i in range(len(table))]
        else:
            layouts.write_affectnet_npy(*args)
            paths = [
                root / ("train_set" if s == "train" else "val_set") / "images" / f"{i}.jpg" for i, s in enumerate(table["split"])
            ]
        truth.append(table.assign(image=[str(p) for p in paths]))
        lines.append(f"extra set in AffectNet layout ({name}): {root} ({len(table)} images)")
    if truth:
        cols = ["dataset", "image", "label", "truth_label", "truth_intensity", "truth_valence", "truth_arousal"]
        pd.concat([t[cols] for t in truth], ignore_index=True).to_parquet(out / "truth.parquet", index=False)
        lines.append(f"hidden truth (never read by training): {out / 'truth.parquet'}")
    return lines


def write_world_pngs(spec: WorldSpec, size: int, seed: int, data_dir: str | Path) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Generate the world and write each image once as PNG under ``data_dir``.

    Returns per role the table (``image`` = absolute PNG paths) and the images in row order.
    """
    out = {}
    for role, (table, images) in generate_world(spec, size, seed).items():
        paths = []
        for name, img in zip(table["image"], images):
            path = Path(data_dir) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                cv2.imwrite(str(path), img[:, :, ::-1])
            paths.append(str(path))
        out[role] = (table.assign(image=pd.array(paths, dtype="string")), images)
    return out
