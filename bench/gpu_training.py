"""GPU training throughput: ResNet-18 at 224x224, batch 128, bf16 autocast, channels_last, the
project's loop (dcjt.train.loop.train) over a memory-mapped uint8 cache, with the linear head
and with the ARM head, each without and with ``torch.compile``. Prints images/s and peak GPU
memory per variant; last line: the linear head's images/s without compile.

``--dry-run`` runs the variants without compile on the CPU at 96 px (the smallest the ARM head
takes) with CUDA's code path (bf16 autocast, channels_last, prefetch); the test suite does, so
the script is known to work before a GPU is at hand (tests/test_feed.py compiles on the CPU).
Without CUDA and without ``--dry-run`` it says so and exits 0.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def cache(folder: Path, n: int, size: int):
    """Random uint8 images in a memory-mapped file, as the decoded-image cache holds them."""
    from dcjt.train.batches import Samples

    path = folder / "cache.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    rng = np.random.default_rng(0)
    for lo in range(0, n, 512):
        arr[lo : lo + 512] = rng.integers(0, 256, (min(512, n - lo), size, size, 3), dtype=np.uint8)
    del arr
    labels = rng.integers(0, 7, n).astype(np.int64)
    return Samples(np.load(path, mmap_mode="r"), np.arange(n), labels, rng.uniform(-1, 1, (n, 2)).astype(np.float32))


def variant(samples, head: str, compile_: bool, size: int, batch: int, device, feed) -> tuple[float, float]:
    """(images/s of the second epoch, peak GPU memory in GiB) for one network."""
    import torch

    print(f"torch {torch.__version__} cuda {torch.version.cuda} devices {torch.cuda.device_count()}")
    from dcjt.config import TrainConfig
    from dcjt.models.nets import build_model
    from dcjt.train.loop import Reporting, set_seed, train

    set_seed(0)
    model = build_model("resnet18", head, size)
    cfg = TrainConfig(epochs=2, batch_size=batch, lam=1.0, scheduler="none", compile=compile_)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    tick = Reporting(on_epoch_end=lambda e, row: times.append(time.perf_counter()))
    train(model, samples, cfg=cfg, feed=feed, report=tick)
    ips = len(samples) / (times[1] - times[0])  # epoch 2: after compilation and warm-up
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return ips, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the variants without compile, on the CPU at 96 px")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__} cuda {torch.version.cuda} devices {torch.cuda.device_count()}")
    from dcjt.config import TrainConfig
    from dcjt.train.feed import Feed, feed_for

    if args.dry_run:
        device, size, batch, n = torch.device("cpu"), 96, 8, 16
        feed = Feed(device, amp=True, channels_last=True, prefetch=2)  # CUDA's path on the CPU
    elif torch.cuda.is_available():
        device, size, batch, n = torch.device("cuda"), 224, 128, 128 * 40
        feed = feed_for(device, TrainConfig())
    else:
        print("gpu_training_images_per_s: n/a (no CUDA device; --dry-run runs it on the CPU)")
        return
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU dry run"
    print(f"{name}: ResNet-18, {size} px, batch {batch}, {n} images, bf16 autocast, channels_last, prefetch 2")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        samples = cache(Path(tmp), n, size)
        for head in ("linear", "arm"):
            for compile_ in (False,) if args.dry_run else (False, True):
                ips, peak = variant(samples, head, compile_, size, batch, device, feed)
                results[head, compile_] = ips
                print(f"gpu_training {head:>6} compile={compile_!s:5}: {ips:8.0f} images/s, peak {peak:.2f} GiB")
    for head in ("linear", "arm"):
        if (head, True) in results:
            print(f"torch.compile speed-up, {head} head: {results[head, True] / results[head, False]:.2f}x")
    print(f"gpu_training_images_per_s: {results['linear', False]:.0f}")


if __name__ == "__main__":
    main()
