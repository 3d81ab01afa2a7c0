"""Decoded-image cache: every image of a table decoded and resized once into a memory-mapped
uint8 array, so training never decodes a JPEG per epoch and 280k images need not fit in RAM.

The cache is keyed by what determines the pixels (image paths, face boxes, landmarks, size,
preprocessing version), not by labels, so relabeled or subset tables reuse it. It is written to
a temporary file and renamed into place: a failed build leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dcjt.data.images import load_preprocessed
from dcjt.data.labels import BOX_COLUMNS, LANDMARK_COLUMN, user_file_mode

PREPROCESS_VERSION = 1


class CacheError(RuntimeError):
    """An image cache on disk is damaged (cut short, rows not matching its keys); names the file."""


def cache_key(table: pd.DataFrame, size: int) -> str:
    """Hash of the pixel-determining columns of ``table`` and the output size."""
    h = hashlib.sha256(f"v{PREPROCESS_VERSION}|{size}|".encode())
    cols = ["dataset", "image"] + [c for c in BOX_COLUMNS if c in table]
    h.update(pd.util.hash_pandas_object(table[cols].astype(str), index=False).values.tobytes())
    if LANDMARK_COLUMN in table:
        h.update("|".join(map(str, table[LANDMARK_COLUMN].tolist())).encode())
    return h.hexdigest()[:24]


@dataclass
class ImageCache:
    """An opened cache: ``images[i]`` is the preprocessed image of key ``keys[i]``."""

    path: Path
    images: np.ndarray  # (N, S, S, 3) uint8 memmap
    keys: pd.Index  # "dataset/image" per row of ``images``

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def positions(self, table: pd.DataFrame) -> np.ndarray:
        """Row positions in the cache of each row of ``table`` (error names missing images)."""
        pos = self.keys.get_indexer(row_keys(table))
        if (pos < 0).any():
            missing = table.loc[pos < 0, "image"].head(5).tolist()
            raise KeyError(f"{int((pos < 0).sum())} images of the table are not in cache {self.path}, e.g. {missing}")
        return pos


def read_rows(images: np.ndarray, positions: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``images[positions]`` into ``out`` (C-contiguous); ``positions`` ascending.

    A memory-mapped cache is read with one ``preadv`` per run of consecutive rows instead of
    through the mapping: no page fault per 4 KiB, the GIL released for the whole read (about
    twice the rate of fancy indexing on the memmap). A short read (a cache file cut short after
    it was opened) is an error that names the file.
    """
    filename = getattr(images, "filename", None)
    whole_mapping = isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap)  # not a view of one
    if not whole_mapping or filename is None or len(positions) == 0 or not images.flags.c_contiguous:
        return np.take(images, positions, axis=0, out=out)
    row = int(np.prod(images.shape[1:]))
    flat = memoryview(out.reshape(-1))
    starts = np.r_[0, np.flatnonzero(np.diff(positions) != 1) + 1]
    ends = np.r_[starts[1:], len(positions)]
    with open(filename, "rb", buffering=0) as f:
        for lo, hi in zip(starts.tolist(), ends.tolist()):
            want = (hi - lo) * row
            got = os.preadv(f.fileno(), [flat[lo * row : hi * row]], images.offset + int(positions[lo]) * row)
            if got != want:
                raise CacheError(
                    f"image cache {filename} is shorter than its header says (rows {int(positions[lo])}..."
                    f"{int(positions[hi - 1])} not fully on disk): delete it to rebuild"
                )
    return out


def row_keys(table: pd.DataFrame) -> pd.Index:
    """The key of each row's image in a cache: ``dataset/image``."""
    return pd.Index(table["dataset"].astype(str) + "/" + table["image"].astype(str))


def _row_args(table: pd.DataFrame):
    boxes = table[list(BOX_COLUMNS)].to_numpy(dtype="float64") if all(c in table for c in BOX_COLUMNS) else None
    marks = table[LANDMARK_COLUMN].tolist() if LANDMARK_COLUMN in table else None
    for i, path in enumerate(table["image"].tolist()):
        box = None if boxes is None else tuple(boxes[i])
        lm = None if marks is None or marks[i] is None else np.asarray(marks[i], dtype=np.float32)
        yield path, box, lm


def open_cache(table: pd.DataFrame, size: int, cache_dir: str | os.PathLike) -> ImageCache | None:
    """Open the cache for ``table`` at ``size`` if it exists, else ``None``."""
    data = (Path(cache_dir) / cache_key(table, size)).with_suffix(".npy")
    return load_cache(data) if data.exists() and data.with_suffix(".json").exists() else None


def load_cache(path: str | os.PathLike) -> ImageCache:
    """Open a cache by the path of its ``.npy`` file (as returned by ``build_cache``)."""
    data = Path(path)
    meta = data.with_suffix(".json")
    if not (data.exists() and meta.exists()):
        raise FileNotFoundError(f"image cache not found: {data} (was the cache folder moved or cleaned?)")
    return ImageCache(path=data, images=np.load(data, mmap_mode="r"), keys=pd.Index(json.loads(meta.read_text())["keys"]))


def write_cache(table: pd.DataFrame, size: int, cache_dir, images_iter) -> ImageCache:
    """Write images (an iterable of HxWx3 uint8 in table order) as the cache of ``table``."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = cache_dir / cache_key(table, size)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".cache.", suffix=".npy")
    os.chmod(tmp, user_file_mode())  # not mkstemp's 0600
    os.close(fd)
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(table), size, size, 3))
        for i, img in enumerate(images_iter):
            arr[i] = img
        arr.flush()
        del arr
        meta_tmp = Path(tmp).with_suffix(".json")
        meta_tmp.write_text(json.dumps({"size": size, "n": len(table), "keys": row_keys(table).tolist()}))
        os.replace(meta_tmp, base.with_suffix(".json"))
        os.replace(tmp, base.with_suffix(".npy"))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp).with_suffix(".json").unlink(missing_ok=True)
        raise
    opened = open_cache(table, size, cache_dir)
    assert opened is not None
    return opened


def build_cache(table: pd.DataFrame, size: int, cache_dir, *, workers: int | None = None, progress=None) -> ImageCache:
    """Open the cache of ``table`` or decode every image once to build it.

    Decoding runs in threads (PIL and OpenCV release the GIL). An unreadable image stops the
    build with its path; ingestion has already dropped the ones it allowed to skip.
    """
    found = open_cache(table, size, cache_dir)
    if found is not None:
        return found
    workers = workers or min(8, os.cpu_count() or 1)

    def load(args):
        path, box, lm = args
        return load_preprocessed(path, size, box, lm)

    with ThreadPoolExecutor(workers) as pool:
        images = pool.map(load, _row_args(table), chunksize=64) if workers > 1 else map(load, _row_args(table))
        if progress is not None:
            images = progress(images, total=len(table))
        return write_cache(table, size, cache_dir, images)
