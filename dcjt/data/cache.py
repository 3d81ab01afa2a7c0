"""Decoded-image cache: every image of a table decoded and resized once into a memory-mapped
uint8 array, so training never decodes a JPEG per epoch and 280k images need not fit in RAM.

The cache is keyed by what determines the pixels (image paths, face boxes, landmarks, size,
preprocessing version), not by labels, so relabeled or subset tables reuse it. It is built in a
hidden file, a chunk at a time, and renamed into place when complete: a failed build leaves
nothing behind, a killed one resumes from its finished chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from dcjt.data.labels import BOX_COLUMNS, LANDMARK_COLUMN, user_file_mode
from dcjt.models.images import load_preprocessed
from dcjt.utils.files import folder_lock, replace_atomic
from dcjt.utils.procs import spawned_pool
from dcjt.utils.runtime import workers as runtime_workers

log = logging.getLogger(__name__)

PREPROCESS_VERSION = 1
KEY_ROWS = 20_000


class CacheError(RuntimeError):
    """An image cache on disk is damaged (cut short, rows not matching its keys) or gone; names the file."""


def cache_gone(path: str | os.PathLike) -> CacheError:
    """A cache file that is not there although the step that built it ran (and ZenML cached it)."""
    path = Path(path)
    return CacheError(
        f"image cache {path} is gone: its folder {path.parent} was removed or moved after ZenML cached the step that "
        "built it; rerun with --no-cache to rebuild it (or, on a stack whose steps share no disk, "
        "--set paths.handoff=artifact_store)"
    )


def cache_key(table: pd.DataFrame, size: int) -> str:
    """Hash of the pixel-determining columns of ``table`` and the output size."""
    h = hashlib.sha256(f"v{PREPROCESS_VERSION}|{size}|".encode())
    cols = ["dataset", "image"] + [c for c in BOX_COLUMNS if c in table]
    slices = range(0, len(table), KEY_ROWS)  # the digest of the whole table, a slice at a time (bounded memory)
    for lo in slices:
        h.update(pd.util.hash_pandas_object(table[cols].iloc[lo : lo + KEY_ROWS].astype(str), index=False).values.tobytes())
    for lo in slices if LANDMARK_COLUMN in table else ():
        marks = map(str, table[LANDMARK_COLUMN].iloc[lo : lo + KEY_ROWS].tolist())
        h.update(("|" if lo else "").encode() + "|".join(marks).encode())
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
                    f"{int(positions[hi - 1])} not fully on disk): rerun with --no-cache to rebuild it"
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
    """Open the cache for ``table`` at ``size`` if it exists, else ``None`` (CacheError if damaged)."""
    return _open_at(Path(cache_dir) / cache_key(table, size))


def _open_at(base: Path) -> ImageCache | None:
    """The cache ``base``.npy / .json if both exist (the key already computed: hashing a large
    table takes a while)."""
    data = base.with_suffix(".npy")
    return load_cache(data) if data.exists() and data.with_suffix(".json").exists() else None


def load_cache(path: str | os.PathLike) -> ImageCache:
    """Open a cache by the path of its ``.npy`` file (as returned by ``build_cache``).

    The file must hold exactly the rows its keys name: a file cut short (a full disk, a copy
    that stopped) or keys that no longer match is a ``CacheError`` naming the file.
    """
    data = Path(path)
    meta = data.with_suffix(".json")
    if not (data.exists() and meta.exists()):
        raise cache_gone(data)
    keys = pd.Index(json.loads(meta.read_text())["keys"])
    try:
        images = np.load(data, mmap_mode="r")
    except ValueError as error:  # numpy: "mmap length is greater than file size"
        raise CacheError(f"image cache {data} is damaged ({error}): rerun with --no-cache to rebuild it") from error
    expected = images.offset + images.nbytes
    if data.stat().st_size != expected:
        raise CacheError(
            f"image cache {data} has {data.stat().st_size} bytes, its header says {expected}: rerun with --no-cache to rebuild it"
        )
    if images.ndim != 4 or len(images) != len(keys):
        raise CacheError(
            f"image cache {data} holds {images.shape[0]} images but {meta} names {len(keys)}: rerun with --no-cache to rebuild it"
        )
    return ImageCache(path=data, images=images, keys=keys)


CHUNK_BYTES = 32 << 20  # decoded rows written (and, when building, recorded as done) at a time


def chunk_rows(size: int) -> int:
    return max(1, CHUNK_BYTES // (size * size * 3))


def building(cache_dir: Path):
    """One builder per cache folder at a time (a second waits, then finds the finished cache)."""
    return folder_lock(cache_dir)


def _partial_paths(base: Path) -> tuple[Path, Path]:
    """The cache being built and its record of finished chunks (hidden names: never opened as a cache)."""
    return base.with_name(f".partial-{base.name}.npy"), base.with_name(f".partial-{base.name}.json")


def _start_partial(path: Path, record: Path, n: int, size: int, rows: int) -> tuple[int, set[int]]:
    """(data offset, finished chunks): resume the file a killed build left, or start one."""
    want = {"n": n, "size": size, "chunk_rows": rows}
    if path.exists() and record.exists():
        try:  # a record or header the kill cut short: start over
            done = json.loads(record.read_text())
            arr = np.load(path, mmap_mode="r")
        except (ValueError, OSError):
            done, arr = {}, None
        if {k: done.get(k) for k in want} == want and arr is not None:
            if arr.shape == (n, size, size, 3) and path.stat().st_size == arr.offset + arr.nbytes:
                return int(arr.offset), set(done["done"])
    record.unlink(missing_ok=True)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))  # sparse file
    offset = int(arr.offset)
    del arr
    os.chmod(path, user_file_mode())
    return offset, set()


def _write_chunk(fd: int, offset: int, start: int, images: np.ndarray) -> None:
    data = memoryview(np.ascontiguousarray(images).reshape(-1))
    pos = offset + start * (data.nbytes // len(images))
    while data:
        written = os.pwrite(fd, data, pos)
        data, pos = data[written:], pos + written


def _write_meta(path: Path, table: pd.DataFrame, size: int) -> None:
    """``{"size", "n", "keys"}`` written a slice of keys at a time (no string of every key at once)."""
    with open(path, "w") as f:
        f.write(f'{{"size": {size}, "n": {len(table)}, "keys": [')
        for lo in range(0, len(table), KEY_ROWS):
            f.write(("," if lo else "") + json.dumps(row_keys(table.iloc[lo : lo + KEY_ROWS]).tolist())[1:-1])
        f.write("]}")


def _finish(path: Path, base: Path, table: pd.DataFrame, size: int) -> None:
    """Keys first, data last: a cache is visible only once both are complete."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    replace_atomic(lambda tmp: _write_meta(tmp, table, size), base.with_suffix(".json"))
    os.replace(path, base.with_suffix(".npy"))


def write_cache(table: pd.DataFrame, size: int, cache_dir, images_iter) -> ImageCache:
    """Write images (an iterable of HxWx3 uint8 in table order) as the cache of ``table``.

    Written a chunk at a time with ``pwrite`` (memory stays at one chunk whatever the row
    count); any failure removes the unfinished file.
    """
    cache_dir = Path(cache_dir)
    base = cache_dir / cache_key(table, size)
    rows = chunk_rows(size)
    with building(cache_dir):
        path, record = _partial_paths(base)
        path.unlink(missing_ok=True)
        offset, _ = _start_partial(path, record, len(table), size, rows)
        try:
            with open(path, "rb+", buffering=0) as f:
                it, start = iter(images_iter), 0
                while chunk := list(islice(it, rows)):
                    _write_chunk(f.fileno(), offset, start, np.stack(chunk))
                    start += len(chunk)
            if start != len(table):
                raise ValueError(f"{start} images for a table of {len(table)} rows")
            _finish(path, base, table, size)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return load_cache(base.with_suffix(".npy"))


def _build_chunk(path: str, offset: int, start: int, rows: list, size: int) -> tuple[int, int]:
    """Decode rows ``start...`` into one buffer and write it in place; (start, rows) when done.
    Runs in a worker process: nothing but the chunk's position travels back."""
    buf = np.empty((len(rows), size, size, 3), np.uint8)
    for i, (image, box, lm) in enumerate(rows):
        buf[i] = load_preprocessed(image, size, box, lm)
    with open(path, "rb+", buffering=0) as f:
        _write_chunk(f.fileno(), offset, start, buf)
    return start, len(rows)


def _one_thread_each() -> None:
    cv2.setNumThreads(1)  # the processes are the parallelism


def _chunk_executor(workers: int, chunks: int):
    """Worker processes (``dcjt.utils.procs``) for a build of several chunks per worker (decoding holds
    the GIL for part of each image, so threads gain little); threads for small builds, where
    starting processes would cost more than it saves."""
    if workers > 1 and chunks >= 2 * workers:
        return spawned_pool(workers, initializer=_one_thread_each)
    return ThreadPoolExecutor(workers)


def build_cache(
    table: pd.DataFrame, size: int, cache_dir, *, workers: int | None = None, rows_per_chunk: int | None = None
) -> ImageCache:
    """Open the cache of ``table`` or decode every image once to build it.

    Chunks of rows are decoded by ``workers`` processes, each writing its chunk in place with
    ``pwrite``; the parent records finished chunks. Memory stays at a few chunks for any row
    count, and a build killed midway resumes without redoing finished chunks. An unreadable
    image stops the build with its path and removes the unfinished file (ingestion has already
    dropped the images it allowed to skip); an interrupt keeps it for the next build. A damaged
    cache (cut short, keys not matching) is reported and rebuilt.
    """
    cache_dir = Path(cache_dir)
    base = cache_dir / cache_key(table, size)
    try:
        found = _open_at(base)
    except CacheError as error:
        log.warning("%s; rebuilding it", error)
        found = None
        base.with_suffix(".npy").unlink(missing_ok=True)
        base.with_suffix(".json").unlink(missing_ok=True)
    if found is not None:
        return found
    workers = workers or runtime_workers(limit=8)
    rows = rows_per_chunk or chunk_rows(size)
    with building(cache_dir):
        found = _open_at(base)  # another builder finished it while we waited
        if found is not None:
            return found
        path, record = _partial_paths(base)
        offset, done = _start_partial(path, record, len(table), size, rows)
        todo = [c for c in range(0, len(table), rows) if c // rows not in done]
        if done:
            log.info("image cache %s: resuming, %d of %d chunks already built", base.name, len(done), len(done) + len(todo))
        built = len(table) - sum(min(rows, len(table) - c) for c in todo)
        bar = tqdm(total=len(table), initial=built, desc=f"image cache {base.name}", disable=not sys.stderr.isatty(), leave=False)
        try:
            with _chunk_executor(workers, len(todo)) as pool:
                queued, running = iter(todo), set()
                while True:
                    for c in islice(queued, 2 * workers - len(running)):
                        rows_of_chunk = list(_row_args(table.iloc[c : c + rows]))  # per chunk: no list of every row
                        running.add(pool.submit(_build_chunk, str(path), offset, c, rows_of_chunk, size))
                    if not running:
                        break
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        start, n = future.result()
                        done.add(start // rows)
                        bar.update(n)
                    state = {"n": len(table), "size": size, "chunk_rows": rows, "done": sorted(done)}
                    replace_atomic(lambda tmp, state=state: tmp.write_text(json.dumps(state)), record)
            _finish(path, base, table, size)
            record.unlink(missing_ok=True)
        except (KeyboardInterrupt, SystemExit):
            raise  # an interrupt is like a kill: the finished chunks stay for the next build
        except BaseException:
            path.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
    return load_cache(base.with_suffix(".npy"))
