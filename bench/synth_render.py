"""Synthetic-world generation speed: images/s of one process at 64x64 (goal: >= 1,000), beside
the cost of only writing the same images as PNG files (what a disk-based world would add).
Last line: images/s."""

from __future__ import annotations

import tempfile
import time

import cv2
import numpy as np

from dcjt.synthetic.render import render_many
from dcjt.synthetic.world import sample_latents

N = 3000


def main() -> None:
    lat = sample_latents(N, np.random.default_rng(0))
    render_many(lat.iloc[:100], 0, 64, "warm")
    runs = []
    for r in range(3):
        t0 = time.perf_counter()
        imgs = render_many(lat, r, 64, "bench")
        runs.append(N / (time.perf_counter() - t0))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        for i, img in enumerate(imgs):
            cv2.imwrite(f"{tmp}/{i}.png", img)
        png = N / (time.perf_counter() - t0)
    print(f"{N} faces at 64x64, one process, median of 3: {np.median(runs):,.0f} images/s rendered")
    print(f"writing them as PNG files alone: {png:,.0f} images/s")
    print(f"synth_images_per_s: {np.median(runs):.0f}")


if __name__ == "__main__":
    main()
