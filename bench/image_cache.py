"""Images/s served to a training loop: decoded-image cache vs decoding JPEG files each epoch.

Both sides serve the same shuffled batches of the same table (RAF-DB-sized 100x100 JPEGs
resized to 64) as float tensors, single process, side by side. Last line: the ratio.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dcjt.data.cache import build_cache
from dcjt.data.readers import ingest
from dcjt.models.images import load_preprocessed
from dcjt.synthetic.layouts import write_rafdb

N, SIZE, BATCH = 3000, 64, 128


def epoch(get_batch, order):
    start = time.perf_counter()
    seen = 0
    for i in range(0, len(order), BATCH):
        x = get_batch(order[i : i + BATCH])
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255)
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        imgs = [rng.integers(0, 256, (100, 100, 3), dtype=np.uint8) for _ in range(N)]
        write_rafdb(Path(tmp) / "raf", imgs, rng.integers(0, 7, N), ["train"] * (N - 100) + ["test"] * 100)
        table, _ = ingest("rafdb", Path(tmp) / "raf", val_fraction=0.0, check=False)
        t0 = time.perf_counter()
        cache = build_cache(table, SIZE, Path(tmp) / "cache", workers=1)
        build_s = time.perf_counter() - t0
        pos = cache.positions(table)
        paths = table["image"].tolist()
        order = rng.permutation(N)
        from_files = lambda idx: np.stack([load_preprocessed(paths[i], SIZE) for i in idx])  # noqa: E731
        from_cache = lambda idx: cache.images[np.sort(pos[idx])]  # noqa: E731
        files, cached = [], []
        for _ in range(3):
            files.append(epoch(from_files, order))
            cached.append(epoch(from_cache, order))
        f, c = float(np.median(files)), float(np.median(cached))
        print(f"images: {N} JPEG 100x100 -> {SIZE}x{SIZE}, batch {BATCH}, one process")
        print(f"cache build (one-off): {build_s:.2f} s ({N / build_s:.0f} images/s)")
        print(f"decode files each epoch: {f:,.0f} images/s (median of 3 epochs)")
        print(f"decoded-image cache:     {c:,.0f} images/s (median of 3 epochs)")
        print(f"image_cache_speedup: {c / f:.1f}")


if __name__ == "__main__":
    main()
