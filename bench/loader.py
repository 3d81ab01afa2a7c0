"""Feeding the device at paper scale: 224 px, batch 128, uint8 images memory-mapped from disk.

Side by side in one run: the loop's path before the feed ("before": fancy indexing on the
memmap into a fresh array, in the training thread), the feed without prefetching (reused
buffers filled by ``preadv``, ``prefetch: 0``) and with it (``prefetch: 2``, the default):

(a) host-side delivery: uint8 batches gathered from the memory-mapped cache into (pinned, on
    CUDA) host memory, images/s, no training step;
(b) overlap: an emulated device step of 12.8 ms per batch (10,000 images/s; a sleep, which
    releases the GIL like a CUDA kernel launch does), the share of wall time the loop waits
    for data;
(c) augmentation: uint8 batch to normalised, flipped, erased float batch, the batched version
    against normalising and the per-row loop, time per batch.

``--device cuda`` runs (a)-(c) with the copy and augmentation on the GPU (scripts/gpu_check.sh).
Last line: the prefetch path's data-wait share in (b).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from dcjt.config import TrainConfig
from dcjt.models.inference import normalise
from dcjt.train.batches import AUGMENT_DRAWS, Samples, augment, augment_rowwise, epoch_plan
from dcjt.train.feed import Feed, device_batch, host_batches, prefetched

SIZE, BATCH, STEP_S = 224, 128, 0.0128


def make_cache(folder: Path, n: int) -> Samples:
    """A memory-mapped uint8 array like the decoded-image cache (random pixels), reopened from disk."""
    path = folder / "cache.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, SIZE, SIZE, 3))
    rng = np.random.default_rng(0)
    for lo in range(0, n, 256):
        arr[lo : lo + 256] = rng.integers(0, 256, (min(256, n - lo), SIZE, SIZE, 3), dtype=np.uint8)
    arr.flush()
    del arr
    images = np.load(path, mmap_mode="r")
    labels = rng.integers(0, 7, n).astype(np.int64)
    return Samples(images, np.arange(n), labels, rng.uniform(-1, 1, (n, 2)).astype(np.float32))


def before(plan, samples: Samples):
    """The loop's batches before the feed existed: fancy indexing on the memmap into a fresh
    array per batch, in the training thread (then ``.to(device)`` from unpinned memory)."""
    for _, idx in plan:
        rows = samples.sort_rows(idx)
        yield SimpleNamespace(images=torch.from_numpy(np.take(samples.images[0], samples.positions[rows], axis=0)))


def run(samples: Samples, feed: Feed, cfg: TrainConfig, epochs: int, step_s: float, old: bool = False) -> tuple[float, float]:
    """(images/s, share of wall time spent waiting for the next batch) over ``epochs`` epochs;
    ``old``: the loop's path before the feed, in the step's thread."""
    images, waited = 0, 0.0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        plan = epoch_plan(epoch, cfg, len(samples), None)
        g = torch.Generator().manual_seed(epoch)
        if old:
            batches = before(plan, samples)
        else:
            batches = host_batches(plan, {"A": samples}, g, pin=feed.pin, in_flight=feed.prefetch + 2)
        with prefetched(batches, 0 if old else feed.prefetch) as ready:
            it = iter(ready)
            while True:
                t = time.perf_counter()
                batch = next(it, None)
                if batch is None:
                    break
                waited += time.perf_counter() - t
                if step_s:
                    if feed.device.type == "cuda" and old:
                        batch.images.to(feed.device)  # unpinned: the copy blocks, as it did
                    elif feed.device.type == "cuda":
                        device_batch(batch, feed, cfg)  # the copy is queued on the device, like the step
                    time.sleep(step_s)
                images += len(batch.images)
    wall = time.perf_counter() - t0
    return images / wall, waited / wall


def augmentation_ratio(device: torch.device, cfg: TrainConfig, repeats: int = 7) -> tuple[float, float]:
    """Median seconds per batch, uint8 on the device to an augmented float batch: the batched
    ``augment`` against normalising and then the per-row loop (the loop's path before)."""
    images = torch.randint(0, 256, (BATCH, SIZE, SIZE, 3), dtype=torch.uint8, device=device)
    draws = torch.rand(BATCH, AUGMENT_DRAWS, generator=torch.Generator().manual_seed(0))
    variants = {
        "batched": lambda: augment(images, cfg, draws),
        "per-row": lambda: augment_rowwise(normalise(images), cfg, draws),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    return float(np.median(times["batched"])), float(np.median(times["per-row"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=BATCH * 24)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(2)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    cfg = TrainConfig(batch_size=BATCH, erase_p=0.5)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        samples = make_cache(Path(tmp), args.images)
        run(samples, Feed(device, pin=cuda), cfg, 1, 0.0)  # page cache warm, as for a cache read every epoch
        rows = {}
        for name, depth in (("before", None), ("prefetch 0", 0), ("prefetch 2", 2)):
            feed = Feed(device, pin=cuda and depth is not None, prefetch=depth or 0)
            delivery, _ = run(samples, feed, cfg, args.epochs, 0.0, old=depth is None)
            _, wait = run(samples, feed, cfg, args.epochs, STEP_S, old=depth is None)
            rows[name] = (delivery, wait)
    batched, rowwise = augmentation_ratio(device, cfg)
    print(f"{args.images} images of {SIZE}x{SIZE}, batch {BATCH}, {args.epochs} epochs, {device}, 2 threads")
    print(f"{'path':>12} | (a) delivery images/s | (b) data wait share, device step {STEP_S * 1000:.1f} ms")
    for name, (delivery, wait) in rows.items():
        print(f"{name:>12} | {delivery:21,.0f} | {wait:.3f}")
    old, pre = rows["before"], rows["prefetch 2"]
    print(f"(a) delivery, prefetch 2 / before: {pre[0] / old[0]:.2f}x")
    print(f"(b) data wait share, before / prefetch 2: {old[1] / max(pre[1], 1e-9):.1f}x")
    print(
        f"(c) normalise + augment per batch: batched {batched * 1000:.1f} ms, per-row loop {rowwise * 1000:.1f} ms "
        f"(batched / loop: {batched / rowwise:.2f})"
    )
    print(f"data_wait_share: {pre[1]:.3f}")


if __name__ == "__main__":
    main()
