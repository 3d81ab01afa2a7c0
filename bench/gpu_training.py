"""GPU throughput: ResNet-18 at 224x224, batch 128, bf16 autocast, channels_last, the project's
training step (dcjt.train.loop.train over an in-memory uint8 array). Prints images/s.

Needs CUDA; on a CPU-only machine it says so and exits 0.
"""

from __future__ import annotations

import time

import numpy as np


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        print("gpu_training_images_per_s: n/a (no CUDA device)")
        return
    from dcjt.config import TrainConfig
    from dcjt.nets import build_model
    from dcjt.train.batches import Samples
    from dcjt.train.loop import set_seed, train

    n, size = 128 * 40, 224
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    samples = Samples(imgs, np.arange(n), rng.integers(0, 7, n).astype(np.int64), rng.uniform(-1, 1, (n, 2)).astype(np.float32))
    set_seed(0)
    model = build_model("resnet18", "linear", size)
    cfg = TrainConfig(epochs=1, batch_size=128, lam=1.0, amp=True, channels_last=True, scheduler="none")
    train(model, Samples(imgs[:1024], np.arange(1024), samples.labels[:1024], samples.va[:1024]), cfg=cfg)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    train(model, samples, cfg=cfg)
    torch.cuda.synchronize()
    ips = n / (time.perf_counter() - t0)
    print(f"device: {torch.cuda.get_device_name()}, peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"gpu_training_images_per_s: {ips:.0f}")


if __name__ == "__main__":
    main()
