"""Identities that do not depend on where a dataset lies or on the run's seed.

- ``split_seed``: the seed of a carved validation split, from the dataset itself (its train rows'
  images, relative to their folder, and labels). Every run on the same dataset, whatever its seed,
  carves the same validation rows, so a model from one run is never scored on rows it trained on
  in another (the promotion gate compares models from different runs on those rows).
- ``row_keys``: one 64-bit key per row (dataset name, the images' folder name, the path below
  it): what a registered model records of its training rows, and what the promotion gate checks
  the evaluation rows against.
- ``fingerprint``: a dataset folder's paths, sizes and modification times: changed files change
  ZenML's cache key (the runner sets it on every dataset spec).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd


def _relative_names(images: pd.Series) -> list[str]:
    """Image paths below their common folder, prefixed with that folder's name."""
    paths = images.astype(str).tolist()
    if not paths:
        return []
    root = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    if root in paths:  # one file
        root = os.path.dirname(root)
    base = os.path.basename(root)
    return [f"{base}/{os.path.relpath(p, root)}" for p in paths]


def split_seed(table: pd.DataFrame) -> int:
    """A seed fixed by the dataset: a hash of its train rows (relative image names and labels)."""
    train = table[table["split"] == "train"]
    names = _relative_names(train["image"])
    lines = sorted(f"{n}\t{int(y)}" for n, y in zip(names, train["label"]))
    return int(hashlib.sha256("\n".join(lines).encode()).hexdigest()[:8], 16)


def row_keys(table: pd.DataFrame, reference: pd.DataFrame | None = None) -> np.ndarray:
    """Sorted unique 64-bit keys of ``table``'s rows. Each dataset's paths are taken relative to the
    folder that holds all of that dataset's images in ``reference`` (default ``table``: pass the
    whole label table when ``table`` is one split of it), so the same dataset gives the same keys
    wherever it lies."""
    ref = table if reference is None else reference
    if not len(table):
        return np.zeros(0, dtype=np.uint64)
    parts = []
    for dataset, rows in table.groupby(table["dataset"].astype(str), sort=False):
        known = ref[ref["dataset"].astype(str) == dataset]["image"]
        names = _relative_names(pd.concat([known, rows["image"]], ignore_index=True))[len(known) :]
        parts.append(pd.Series([f"{dataset}:{n}" for n in names]))
    keys = pd.util.hash_pandas_object(pd.concat(parts, ignore_index=True), index=False).to_numpy(dtype=np.uint64)
    return np.unique(keys)


def keys_digest(keys: np.ndarray) -> str:
    """A short digest of a set of row keys (named in the promotion gate's messages)."""
    return hashlib.sha256(np.asarray(keys, dtype=np.uint64).tobytes()).hexdigest()[:16]


def fingerprint(root: str) -> str:
    """Cheap identity of a dataset folder: paths, sizes and modification times of its files."""
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]
