"""The leakage guard: near-duplicates of the target's test images in the data a model trains on.

Web-scraped FER datasets overlap, and a target's own train and test splits can hold copies of
one photo; any of them in training inflates every number reported on the test split. Every
image is reduced to a 256-bit perceptual hash (``imagehash.phash`` with ``hash_size=16``: the
sign of the low-frequency DCT of a 64 x 64 grey image against its median, robust to resizing
and recompression) of the image and of its mirror image, so a flipped copy is found too. A
training row leaks when its hash is within ``max_distance`` bits (Hamming) of the hash of a test
image or of its mirror. The default 64-bit phash is too coarse for small, similar faces:
distinct synthetic faces came within 2 bits of each other, recompressed copies 4 bits away.

Hashes are computed once per image cache (from its decoded, resized images) and kept beside it
(``<cache>.phash-v1.npy``): the pipeline and ``run.py leakage`` share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from dcjt.data.cache import ImageCache
from dcjt.utils.files import replace_atomic

HASH_SIZE = 16  # phash's side: HASH_SIZE**2 bits
HASH_BITS = HASH_SIZE * HASH_SIZE
WORDS = HASH_BITS // 64
HASH_VERSION = 1  # bump when the hash changes: stored hashes are then recomputed


def phash_words(image: np.ndarray) -> np.ndarray:
    """The perceptual hash of one uint8 RGB image as ``WORDS`` uint64 words."""
    bits = imagehash.phash(Image.fromarray(np.ascontiguousarray(image)), hash_size=HASH_SIZE).hash.reshape(-1)
    return np.packbits(bits).view(">u8").astype(np.uint64)


def image_hashes(images: np.ndarray) -> np.ndarray:
    """(N, 2, WORDS) uint64: the hash of each image and of its mirror image."""
    out = np.empty((len(images), 2, WORDS), dtype=np.uint64)
    for i, img in enumerate(images):
        out[i, 0] = phash_words(img)
        out[i, 1] = phash_words(img[:, ::-1])
    return out


def cache_hashes(cache: ImageCache, chunk: int = 4096) -> np.ndarray:
    """The hashes of every image of ``cache`` (row order), computed once and stored beside it."""
    path = cache.path.with_suffix(f".phash-v{HASH_VERSION}.npy")
    if path.exists():
        stored = np.load(path)
        if stored.shape == (len(cache.keys), 2, WORDS):
            return stored
    parts = [image_hashes(cache.images[lo : lo + chunk]) for lo in range(0, len(cache.keys), chunk)]
    hashes = np.concatenate(parts) if parts else np.empty((0, 2, WORDS), np.uint64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, hashes)

    replace_atomic(write, path)
    return hashes


def nearest_test(train: np.ndarray, test: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """For every training hash (``train[:, 0]``): the smallest Hamming distance to a test image
    or its mirror (both hashes of ``test``), and that test row."""
    dist = np.full(len(train), HASH_BITS + 1, dtype=np.int64)
    where = np.full(len(train), -1, dtype=np.int64)
    if not len(test):
        return dist, where
    both = np.concatenate([test[:, 0], test[:, 1]])  # (2M, WORDS)
    for lo in range(0, len(train), chunk):
        x = train[lo : lo + chunk, 0, None, :] ^ both[None, :, :]
        d = np.bitwise_count(x).sum(axis=2, dtype=np.int64)
        arg = d.argmin(axis=1)
        dist[lo : lo + chunk] = d[np.arange(len(d)), arg]
        where[lo : lo + chunk] = arg % len(test)
    return dist, where


@dataclass
class Leaks:
    """Training rows of one dataset within ``max_distance`` of a test image."""

    dataset: str
    checked: int  # training rows compared
    rows: np.ndarray  # positions (in the checked rows' table) of the leaked rows
    test_rows: np.ndarray  # the test row each one duplicates
    distance: np.ndarray

    @property
    def count(self) -> int:
        return len(self.rows)


def find_leaks(train_hashes: np.ndarray, test_hashes: np.ndarray, max_distance: int, dataset: str) -> Leaks:
    """The training rows whose image is a near-duplicate (``<= max_distance`` bits) of a test image."""
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"leakage.max_distance must be in [0, {HASH_BITS}), got {max_distance}")
    dist, where = nearest_test(train_hashes, test_hashes)
    hit = np.flatnonzero(dist <= max_distance)
    return Leaks(dataset, len(train_hashes), hit, where[hit], dist[hit])


def leak_table(leaks: Leaks, train: pd.DataFrame, test: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One line per leaked row: the training image, the test image it duplicates, the distance."""
    return pd.DataFrame(
        {
            "kind": kind,
            "dataset": leaks.dataset,
            "train_image": train["image"].to_numpy()[leaks.rows],
            "test_image": test["image"].to_numpy()[leaks.test_rows],
            "distance": leaks.distance,
        }
    )


def screen(
    target: pd.DataFrame,
    extra: pd.DataFrame,
    target_cache: ImageCache,
    extra_cache: ImageCache,
    max_distance: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame]:
    """Remove from A's train/val rows and from every extra's non-test rows the near-duplicates of
    A's test images; report (not remove) each extra's own train rows that duplicate its test rows.

    Returns (target, extra, counts, pairs): the cleaned tables, the counts per dataset, and one
    line per duplicate found (``kind``: ``removed`` or ``within-dataset``)."""
    stored = {id(c): cache_hashes(c) for c in (target_cache, extra_cache)}  # each file read once

    def hashes(rows: pd.DataFrame, cache: ImageCache) -> np.ndarray:
        return stored[id(cache)][cache.positions(rows)]

    a_test = target[target["split"] == "test"]
    a_test_h = hashes(a_test, target_cache)
    counts: dict = {"max_distance": max_distance, "removed": {}, "within_dataset": {}}
    pairs = []
    cleaned = {}
    for name, table, cache in (("target", target, target_cache), ("extra", extra, extra_cache)):
        keep = np.ones(len(table), dtype=bool)
        for dataset, rows in table.groupby("dataset", sort=False):
            use = rows[rows["split"] != "test"]
            h = hashes(use, cache)
            leaks = find_leaks(h, a_test_h, max_distance, str(dataset))
            keep[table.index.get_indexer(use.index[leaks.rows])] = False
            counts["removed"][str(dataset)] = {"checked": leaks.checked, "leaked": leaks.count}
            pairs.append(leak_table(leaks, use, a_test, "removed"))
            if name == "extra":  # an extra's own test split trains nothing: reported, not removed
                own = rows[rows["split"] == "test"]
                inner = find_leaks(h, hashes(own, cache), max_distance, str(dataset))
                counts["within_dataset"][str(dataset)] = {"checked": inner.checked, "duplicates": inner.count}
                pairs.append(leak_table(inner, use, own, "within-dataset"))
        if name == "target":  # A's train vs A's test: the within-dataset case of A, removed
            a_name = str(table["dataset"].iloc[0])
            counts["within_dataset"][a_name] = dict(counts["removed"][a_name], removed=True)
        cleaned[name] = table[keep].reset_index(drop=True)
    counts["leaked"] = int(sum(v["leaked"] for v in counts["removed"].values()))
    return cleaned["target"], cleaned["extra"], counts, pd.concat(pairs, ignore_index=True)


def pairs_figure(pairs: pd.DataFrame, images: dict[str, np.ndarray], limit: int = 6):
    """A few duplicate pairs side by side (training image | test image) for MLflow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = pairs.head(limit)
    fig, axes = plt.subplots(max(len(shown), 1), 2, figsize=(4, 2 * max(len(shown), 1)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, r in enumerate(shown.itertuples()):
        axes[i, 0].imshow(images[r.train_image])
        axes[i, 0].set_title(f"{r.dataset} ({r.kind})", fontsize=7)
        axes[i, 1].imshow(images[r.test_image])
        axes[i, 1].set_title(f"test, {r.distance} bits", fontsize=7)
    fig.tight_layout()
    return fig
