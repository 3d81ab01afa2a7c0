"""Training rows on their decoded-image caches, one epoch's batch plan, and augmentation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dcjt.config import TrainConfig
from dcjt.data.cache import read_rows, row_keys
from dcjt.data.labels import NUM_CLASSES, SOFT_COLUMNS
from dcjt.models.inference import normalise


@dataclass
class Samples:
    """Rows of one or more tables on their decoded-image caches.

    ``images`` is one array (M, S, S, 3) or a list of them (one per cache); ``source`` says
    which array each row's image lives in (all zeros for a single array).
    """

    images: np.ndarray | list[np.ndarray]
    positions: np.ndarray  # row -> index into its array
    labels: np.ndarray  # int64
    va: np.ndarray  # (N, 2) float32, NaN where unknown
    source: np.ndarray | None = None
    groups: np.ndarray | None = None  # dataset of each row (codes), for balancing over several extras
    # (N, 7) float32 class targets, or None: hard labels. A row's target is its one-hot label, a
    # stage-3b posterior (soft) or all zeros (its discrete term is dropped).
    targets: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, list):
            self.images = [self.images]
        if self.source is None:
            self.source = np.zeros(len(self.positions), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    def balance_keys(self, how: str = "union") -> np.ndarray:
        """What a class-balanced pass balances: the class (``union``), or the (dataset, class)
        pair (``each``: every dataset an equal share, classes balanced within it)."""
        if how == "union" or self.groups is None:
            return self.labels
        return self.groups * NUM_CLASSES + self.labels

    @property
    def image_size(self) -> int:
        return int(self.images[0].shape[1])

    def sort_rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` in storage order (array, then position): sequential memmap reads."""
        key = self.source[idx] * (1 << 40) + self.positions[idx]
        return idx[np.argsort(key, kind="stable")]

    def gather(self, idx: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images of rows ``idx`` and the row order they come back in (sorted reads).

        Rows are sorted by (array, position), so each array's rows are one contiguous slice of
        the output, read straight into ``out`` (e.g. pinned memory): no temporary copy per batch.
        """
        idx = self.sort_rows(idx)
        if out is None:
            out = np.empty((len(idx), *self.images[0].shape[1:]), dtype=np.uint8)
        src = self.source[idx]
        bounds = np.flatnonzero(np.diff(src)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(idx)]):
            if hi > lo:
                read_rows(self.images[src[lo]], self.positions[idx[lo:hi]], out[lo:hi])
        return out, idx


def samples_from(table: pd.DataFrame, *caches) -> Samples:
    """Samples for ``table`` whose images live in any of ``caches`` (first match wins)."""
    positions = np.full(len(table), -1, dtype=np.int64)
    source = np.zeros(len(table), dtype=np.int64)
    for i, cache in enumerate(caches):
        todo = positions < 0
        if not todo.any():
            break
        found = cache.keys.get_indexer(row_keys(table)[todo])
        hit = np.flatnonzero(todo)[found >= 0]
        positions[hit], source[hit] = found[found >= 0], i
    if (positions < 0).any():
        missing = table.loc[positions < 0, "image"].head(5).tolist()
        raise KeyError(f"{int((positions < 0).sum())} images are in no image cache, e.g. {missing}")
    labels = table["label"].to_numpy(dtype=np.int64)
    return Samples(
        images=[c.images for c in caches],
        positions=positions,
        labels=labels,
        va=table[["valence", "arousal"]].to_numpy(dtype=np.float32),
        source=source,
        groups=pd.factorize(table["dataset"])[0].astype(np.int64) if "dataset" in table else None,
        targets=class_targets(table, labels),
    )


def class_targets(table: pd.DataFrame, labels: np.ndarray) -> np.ndarray | None:
    """(N, 7) targets when any row of ``table`` has a soft target (``SOFT_COLUMNS``): those rows'
    soft targets, one-hot labels elsewhere; None when every row trains on its label."""
    if not all(c in table for c in SOFT_COLUMNS):
        return None
    soft = table[list(SOFT_COLUMNS)].to_numpy(dtype=np.float32)
    has = ~np.isnan(soft).any(axis=1)
    if not has.any():
        return None
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    targets[has] = soft[has]
    return targets


AUGMENT_DRAWS = 6  # per row: flip, erase?, erase scale, erase ratio, erase top, erase left
_LOG_RATIO = (math.log(0.3), math.log(3.3))  # torchvision RandomErasing's aspect-ratio range


def augment(images: torch.Tensor, cfg: TrainConfig, draws: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC ``images`` -> normalised float NCHW with random horizontal flip and
    RandomErasing (value 0, scale ``erase_scale``), the whole batch at once on its device.

    ``draws`` holds ``AUGMENT_DRAWS`` uniform numbers per row, drawn for the whole batch, so a row
    gets the same augmentation whichever process (DDP rank) handles it. The result equals
    ``augment_rowwise`` on the normalised batch: flipping commutes with the per-channel
    normalisation, so it runs on uint8 (a quarter of the bytes); erased boxes are computed from
    the draws in float64 exactly as there and applied as one mask, in place, with no Python loop
    over rows and no host sync.
    """
    d = draws.to(images.device, torch.float64)
    if cfg.flip:
        images = torch.where((d[:, 0] < 0.5).view(-1, 1, 1, 1), images.flip(2), images)
    x = normalise(images, channels_last)
    if cfg.erase_p > 0:
        n, _, h, w = x.shape
        lo, hi = cfg.erase_scale
        area = (lo + (hi - lo) * d[:, 2]) * h * w
        ratio = torch.exp(_LOG_RATIO[0] + (_LOG_RATIO[1] - _LOG_RATIO[0]) * d[:, 3])
        eh, ew = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
        on = (d[:, 1] < cfg.erase_p) & (eh > 0) & (eh < h) & (ew > 0) & (ew < w)
        top, left = torch.floor(d[:, 4] * (h - eh + 1)), torch.floor(d[:, 5] * (w - ew + 1))
        ys = torch.arange(h, device=x.device, dtype=torch.float64).view(1, h, 1)
        xs = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, w)
        rows = (ys >= top.view(n, 1, 1)) & (ys < (top + eh).view(n, 1, 1)) & on.view(n, 1, 1)
        cols = (xs >= left.view(n, 1, 1)) & (xs < (left + ew).view(n, 1, 1))
        x.masked_fill_((rows & cols).unsqueeze(1), 0)
    return x


def augment_rowwise(x: torch.Tensor, cfg: TrainConfig, draws: torch.Tensor) -> torch.Tensor:
    """The specification ``augment`` is tested and benchmarked against: the same draws applied
    row by row in Python to a normalised float NCHW batch, in place (the loop's augmentation
    before it was batched)."""
    n, _, h, w = x.shape
    if cfg.flip:
        flip = (draws[:, 0] < 0.5).to(x.device)
        x[flip] = x[flip].flip(-1)
    if cfg.erase_p > 0:
        lo, hi = cfg.erase_scale
        for i, (p, s, r, u, v) in enumerate(draws[:, 1:].tolist()):
            if p >= cfg.erase_p:
                continue
            area = (lo + (hi - lo) * s) * h * w
            ratio = math.exp(_LOG_RATIO[0] + (_LOG_RATIO[1] - _LOG_RATIO[0]) * r)
            eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < eh < h and 0 < ew < w:
                top, left = int(u * (h - eh + 1)), int(v * (w - ew + 1))
                x[i, :, top : top + eh, left : left + ew] = 0
    return x


def is_joint_epoch(epoch: int, cfg: TrainConfig) -> bool:
    """Algorithm 3: after the warm-up, every ``joint_frequency``-th epoch also trains on B."""
    return epoch >= cfg.warmup_epochs and epoch % cfg.joint_frequency == 0


def balanced_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``len(labels)`` rows drawn with replacement, each class (or (dataset, class) key from
    ``Samples.balance_keys("each")``: each dataset an equal share) equally likely."""
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(float)
    weights = 1.0 / counts[labels]
    if labels.max() >= NUM_CLASSES:  # (dataset, class) keys: each dataset an equal share
        strata = np.bincount(np.unique(labels) // NUM_CLASSES)
        weights /= strata[labels // NUM_CLASSES]
    return rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())


def epoch_plan(
    epoch: int, cfg: TrainConfig, n_a: int, extra_labels: np.ndarray | None, a_labels: np.ndarray | None = None
) -> list[tuple[str, np.ndarray]]:
    """The ordered batches of one epoch: ("A", rows) and, on joint epochs, ("B", rows).
    ``a_labels`` (needed with ``cfg.balanced``): the main pass is drawn class-balanced."""
    rng = np.random.default_rng([cfg.seed, epoch])
    bs = cfg.batch_size

    def chunks(order):
        out = [order[i : i + bs] for i in range(0, len(order), bs)]
        return [c for c in out if len(c) > 1]  # BatchNorm needs two samples

    if cfg.balanced:
        if a_labels is None or len(a_labels) != n_a:
            raise ValueError("a class-balanced main pass needs the labels of its rows")
        a_batches = chunks(balanced_order(a_labels, rng))
    else:
        a_batches = chunks(rng.permutation(n_a))
    if extra_labels is None or len(extra_labels) < 2 or not is_joint_epoch(epoch, cfg):
        return [("A", b) for b in a_batches]
    n_b = len(extra_labels)
    if cfg.joint_mode == "batch":
        b_order = rng.permutation(n_b)
        plan = []
        for i, a in enumerate(a_batches):
            plan.append(("A", a))
            start = (i * bs) % n_b
            plan.append(("B", np.take(b_order, np.arange(start, start + bs), mode="wrap")))
        return plan
    b_order = balanced_order(extra_labels, rng) if cfg.balanced_extra else rng.permutation(n_b)
    return [("A", b) for b in a_batches] + [("B", b) for b in chunks(b_order)]


def steps_per_epoch(cfg: TrainConfig, n_a: int, extra_labels: np.ndarray | None, epochs: int) -> list[int]:
    """Optimiser steps of each of ``epochs`` epochs under ``cfg``'s schedule (joint epochs have more)."""
    cfg = cfg.model_copy(update={"balanced": False})  # a balanced main pass has as many batches as a shuffled one
    return [len(epoch_plan(e, cfg, n_a, extra_labels)) for e in range(epochs)]


def epochs_for_steps(cfg: TrainConfig, n_a: int, extra_labels: np.ndarray | None, steps: int, limit: int = 100_000) -> int:
    """The fewest epochs whose plans hold at least ``steps`` optimiser steps."""
    total = 0
    cfg = cfg.model_copy(update={"balanced": False})  # a balanced main pass has as many batches as a shuffled one
    for e in range(limit):
        total += len(epoch_plan(e, cfg, n_a, extra_labels))
        if total >= steps:
            return e + 1
    raise ValueError(f"{steps} steps need more than {limit} epochs")
