"""Training images/s: the project's loop (dcjt.train.loop.train) vs a bare PyTorch loop.

Same model (tiny backbone, 64x64), same data (a uint8 array standing in for the image cache),
same batch size and augmentation (horizontal flip), one epoch each, alternated in separate
processes (A B A B ...) so peak memory is measured per variant. Last line: overhead ratio.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N, SIZE, BATCH, ROUNDS = 1536, 64, 64, 3


def data():
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8),
        rng.integers(0, 7, N),
        rng.uniform(-1, 1, (N, 2)).astype(np.float32),
    )


def run_project(erase: bool) -> float:
    from dcjt.config import TrainConfig
    from dcjt.models.nets import build_model
    from dcjt.train.batches import Samples
    from dcjt.train.loop import set_seed, train

    imgs, labels, va = data()
    set_seed(0)
    model = build_model("tiny", "linear", SIZE)
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lam=1.0, erase_p=0.5 if erase else 0.0, scheduler="none")
    t0 = time.perf_counter()
    train(model, Samples(imgs, np.arange(N), labels.astype(np.int64), va), cfg=cfg)
    return N / (time.perf_counter() - t0)


def run_bare() -> float:
    import torch
    import torch.nn.functional as F

    from dcjt.models.nets import build_model

    imgs, labels, va = data()
    torch.manual_seed(0)
    model = build_model("tiny", "linear", SIZE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x_all, y_all, va_all = torch.from_numpy(imgs), torch.from_numpy(labels), torch.from_numpy(va)
    model.train()
    t0 = time.perf_counter()
    for idx in torch.randperm(N).split(BATCH):
        x = (x_all[idx].permute(0, 3, 1, 2).float() / 255 - mean) / std
        flip = torch.rand(len(idx)) < 0.5
        x[flip] = x[flip].flip(-1)
        out = model(x)
        loss = F.cross_entropy(out[:, :7], y_all[idx]) + F.mse_loss(out[:, 7:], va_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return N / (time.perf_counter() - t0)


def child(variant: str) -> None:
    ips = {"bare": run_bare, "project": lambda: run_project(False), "project+erasing": lambda: run_project(True)}[variant]()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"ips": ips, "peak_mb": peak_mb}))


def main() -> None:
    results: dict[str, list[dict]] = {"bare": [], "project": [], "project+erasing": []}
    for _ in range(ROUNDS):
        for variant in results:
            out = subprocess.run([sys.executable, __file__, "--child", variant], capture_output=True, text=True, check=True)
            results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: float(np.median([r["ips"] for r in v])) for k, v in results.items()}
    peak = {k: float(np.max([r["peak_mb"] for r in v])) for k, v in results.items()}
    print(f"tiny backbone, {SIZE}x{SIZE}, batch {BATCH}, {N} images, CPU, median of {ROUNDS} alternated runs")
    for k in results:
        print(f"{k:>16}: {med[k]:7.1f} images/s, peak RSS {peak[k]:.0f} MB")
    print(f"with RandomErasing the project loop runs at {med['project+erasing'] / med['bare']:.2f} x the bare loop")
    print(f"training_overhead_ratio: {med['bare'] / med['project']:.3f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
