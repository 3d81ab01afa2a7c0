"""Tiny images and label lists in the canonical emotion order."""

from __future__ import annotations

import numpy as np

# Labels in canonical order covering every class, twice, so a wrong order mapping fails.
ALL_LABELS = [0, 1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1, 0]


def random_images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(n)]
