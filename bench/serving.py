"""Serving latency and throughput: the torch network against its ONNX graph under ONNX Runtime,
side by side in one run, on the CPU.

For the demo's network (tiny ResNet, 32 px) and ResNet-18 at 224 px (the paper's; fresh weights:
the time does not depend on them): the latency of one image (p50 / p95 over repeated calls) and
the throughput of a batch of 64, each through what the served model runs per batch: uint8 NHWC in,
normalisation, the network, softmax (torch: ``TorchScorer``, as the model was served before ONNX;
ONNX Runtime: ``OnnxScorer``, as it is served now). Decoding and resizing are the same code on both
sides and not timed. Both use ``--threads`` threads (default 2).

Not measured: a dynamically quantised (int8) graph; its accuracy would need a trained model scored
on the test split beside the float one, which this script does not train.

Last line: ``onnx_speedup: X``, torch p50 / ONNX Runtime p50 for one image on the demo's network.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dcjt.models.nets import build_model
from dcjt.serving.export import export_onnx
from dcjt.serving.network import TorchScorer
from dcjt.serving.onnx_runtime import OnnxScorer

DEMO = "demo (tiny, 32 px)"
NETWORKS = {DEMO: ("tiny", "linear", 32), "ResNet-18 (224 px)": ("resnet18", "linear", 224)}
BATCH = 64


def latencies(scorer, image: np.ndarray, seconds: float) -> np.ndarray:
    """Per-call wall times (ms) of ``scorer`` on one image, for about ``seconds`` after a warm-up."""
    for _ in range(5):
        scorer(image)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 20:
        t = time.perf_counter()
        scorer(image)
        times.append((time.perf_counter() - t) * 1000)
    return np.asarray(times)


def throughput(scorer, batch: np.ndarray, seconds: float) -> float:
    """Images per second on ``batch``, repeated for about ``seconds`` after one warm-up call."""
    scorer(batch)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        scorer(batch)
        calls += 1
    return calls * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    speedups = {}
    print(f"threads: {args.threads}; {args.seconds:.0f} s per measurement; batch {BATCH}")
    print(f"{'network':<20} {'runtime':<13} {'p50 ms':>8} {'p95 ms':>8} {'batch images/s':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in NETWORKS.items():
            net = build_model(*spec).eval()
            path = export_onnx(net, Path(tmp) / f"{spec[0]}-{spec[2]}.onnx").path
            size = spec[2]
            one = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
            batch = rng.integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
            p50 = {}
            for runtime, scorer in (("torch", TorchScorer(net)), ("ONNX Runtime", OnnxScorer(path, threads=args.threads))):
                ms = latencies(scorer, one, args.seconds)
                rate = throughput(scorer, batch, args.seconds)
                p50[runtime] = float(np.percentile(ms, 50))
                print(f"{name:<20} {runtime:<13} {p50[runtime]:8.2f} {np.percentile(ms, 95):8.2f} {rate:15.0f}")
            speedups[name] = p50["torch"] / p50["ONNX Runtime"]
            print(f"{name:<20} one-image speedup (torch p50 / ONNX Runtime p50): {speedups[name]:.2f}")
    print(f"onnx_speedup: {speedups[DEMO]:.2f}")


if __name__ == "__main__":
    main()
