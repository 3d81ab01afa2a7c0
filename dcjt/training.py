"""One training loop for M_A (classifier), M_B / DCN (multi-task) and the DCJT joint schedule.

Loss: CE + lambda x MSE on (valence, arousal) (Eqs. 4-6); rows with NaN valence/arousal add
no MSE; lambda = 0 trains a plain classifier. Joint schedule (Algorithm 3): warm-up epochs on
A only; afterwards, on epochs with ``epoch % joint_frequency == 0`` B is trained on too, either
one B batch after each A batch (``joint_mode="batch"``, the paper) or a full class-balanced pass
over B after the A pass (``"epoch"``, the official code).

Every epoch's shuffles and augmentations come from generators seeded by (seed, epoch), and a
checkpoint (model, optimiser, scheduler, RNG, history) is written atomically after each epoch,
so a killed run resumes to the same result as an uninterrupted one on CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dcjt.cache import row_keys
from dcjt.labels import NUM_CLASSES
from dcjt.metrics import classification_report, va_report

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("step", "exponential", "cosine", "none")
JOINT_MODES = ("batch", "epoch")


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, bad input); names the epoch and batch."""


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "step"
    step_size: int = 40
    gamma: float = 0.5
    lam: float = 0.0
    warmup_epochs: int = 0
    joint_frequency: int = 1
    joint_mode: str = "epoch"
    balanced_extra: bool = True
    seed: int = 0
    flip: bool = True
    erase_p: float = 0.5
    erase_scale: tuple[float, float] = (0.02, 0.25)
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 256
    devices: int = 1  # > 1: DistributedDataParallel over this many processes (GPUs)

    def __post_init__(self) -> None:
        self.erase_scale = tuple(self.erase_scale)
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            problems.append(f"batch_size must be >= 2, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.lam < 0:
            problems.append(f"lambda (lam) must be >= 0, got {self.lam}")
        if not 0 <= self.warmup_epochs < self.epochs:
            problems.append(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        if self.joint_frequency < 1:
            problems.append(f"joint_frequency must be >= 1, got {self.joint_frequency}")
        if self.joint_mode not in JOINT_MODES:
            problems.append(f"joint_mode must be one of {JOINT_MODES}, got {self.joint_mode!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.devices < 1:
            problems.append(f"devices must be >= 1, got {self.devices}")
        if not 0 <= self.erase_p <= 1:
            problems.append(f"erase_p must be in [0, 1], got {self.erase_p}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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

    def __post_init__(self) -> None:
        if not isinstance(self.images, list):
            self.images = [self.images]
        if self.source is None:
            self.source = np.zeros(len(self.positions), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def image_size(self) -> int:
        return int(self.images[0].shape[1])

    def sort_rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` in storage order (array, then position): sequential memmap reads."""
        key = self.source[idx] * (1 << 40) + self.positions[idx]
        return idx[np.argsort(key, kind="stable")]

    def gather(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images of rows ``idx`` and the row order they come back in (sorted reads)."""
        idx = self.sort_rows(idx)
        out = np.empty((len(idx), *self.images[0].shape[1:]), dtype=np.uint8)
        for src in np.unique(self.source[idx]):
            sel = self.source[idx] == src
            out[sel] = self.images[src][self.positions[idx[sel]]]
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
    return Samples(
        images=[c.images for c in caches],
        positions=positions,
        labels=table["label"].to_numpy(dtype=np.int64),
        va=table[["valence", "arousal"]].to_numpy(dtype=np.float32),
        source=source,
    )


@dataclass
class TrainResult:
    model: torch.nn.Module  # weights of the validation-selected epoch
    history: pd.DataFrame
    selected_epoch: int
    metrics: dict = field(default_factory=dict)


def dist_context() -> tuple[int, int]:
    """(rank, world size) of a DistributedDataParallel run; (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def device_default() -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def _all_finite(loss: torch.Tensor, world: int) -> bool:
    """Whether the loss is finite in every process (all stop together, none hangs)."""
    bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(bad)
    return bad.item() == 0


def _reduce_totals(totals: dict, device: torch.device) -> dict:
    """Sum the per-process loss sums of an epoch (row counts are the same everywhere)."""
    import torch.distributed as dist

    keys = sorted(totals)
    t = torch.tensor([totals[k][j] for k in keys for j in range(3)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    vals = t.tolist()
    return {k: [*vals[3 * i : 3 * i + 3], totals[k][3]] for i, k in enumerate(keys)}


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


# --- batches and augmentation ---------------------------------------------------------------------
def load_batch(samples: Samples, idx: np.ndarray, device: torch.device, channels_last: bool = False):
    """Images (normalised float NCHW), labels and valence/arousal for rows ``idx``.

    Rows come back in storage order (sequential memmap reads); labels follow the same order.
    """
    imgs, idx = samples.gather(idx)
    x = torch.from_numpy(imgs).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(samples.labels[idx]).to(device)
    va = torch.from_numpy(samples.va[idx]).to(device)
    return x, y, va, idx


AUGMENT_DRAWS = 6  # per row: flip, erase?, erase scale, erase ratio, erase top, erase left


def augment(x: torch.Tensor, cfg: TrainConfig, draws: torch.Tensor) -> torch.Tensor:
    """Random horizontal flip and RandomErasing (value 0, scale ``erase_scale``), in place.

    ``draws`` holds ``AUGMENT_DRAWS`` uniform numbers per row, drawn for the whole batch, so a row
    gets the same augmentation whichever process (DDP rank) handles it.
    """
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
            ratio = math.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * r)
            eh, ew = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < eh < h and 0 < ew < w:
                top, left = int(u * (h - eh + 1)), int(v * (w - ew + 1))
                x[i, :, top : top + eh, left : left + ew] = 0
    return x


def epoch_plan(epoch: int, cfg: TrainConfig, n_a: int, extra_labels: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    """The ordered batches of one epoch: ("A", rows) and, on joint epochs, ("B", rows)."""
    rng = np.random.default_rng([cfg.seed, epoch])
    bs = cfg.batch_size

    def chunks(order):
        out = [order[i : i + bs] for i in range(0, len(order), bs)]
        return [c for c in out if len(c) > 1]  # BatchNorm needs two samples

    a_batches = chunks(rng.permutation(n_a))
    joint = extra_labels is not None and len(extra_labels) > 1 and epoch >= cfg.warmup_epochs and epoch % cfg.joint_frequency == 0
    if not joint:
        return [("A", b) for b in a_batches]
    n_b = len(extra_labels)
    if cfg.joint_mode == "batch":
        b_order = rng.permutation(n_b)
        plan = []
        for i, a in enumerate(a_batches):
            plan.append(("A", a))
            start = (i * bs) % n_b
            b = np.take(b_order, np.arange(start, start + bs), mode="wrap")
            plan.append(("B", b))
        return plan
    if cfg.balanced_extra:
        counts = np.bincount(extra_labels, minlength=NUM_CLASSES).astype(float)
        weights = 1.0 / counts[extra_labels]
        b_order = rng.choice(n_b, size=n_b, replace=True, p=weights / weights.sum())
    else:
        b_order = rng.permutation(n_b)
    return [("A", b) for b in a_batches] + [("B", b) for b in chunks(b_order)]


# --- model, optimiser, schedule -------------------------------------------------------------------
def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def loss_fn(out: torch.Tensor, y: torch.Tensor, va: torch.Tensor, lam: float, *, n_total: int | None = None,
            known_total: int | None = None, world: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """CE + lam x MSE; rows with NaN valence/arousal contribute no MSE.

    Computed as sums over this process's rows divided by the whole batch's counts (``n_total``
    rows, ``known_total`` with valence/arousal) and multiplied by ``world``: DDP's gradient
    average then equals the single-process gradient of the batch means exactly.
    """
    out = out.float()
    n_total = len(y) if n_total is None else n_total
    known = ~torch.isnan(va).any(dim=1)
    known_total = int(known.sum()) if known_total is None else known_total
    ce = F.cross_entropy(out[:, :NUM_CLASSES], y, reduction="sum") / n_total
    if lam > 0 and known_total > 0:
        mse = ((out[known, NUM_CLASSES:] - va[known]) ** 2).sum() / (2 * known_total)
    else:
        mse = out.new_zeros(())
    return (ce + lam * mse) * world, ce.detach(), mse.detach()


def _autocast(device: torch.device, cfg: TrainConfig):
    enabled = cfg.amp and device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


# --- prediction -------------------------------------------------------------------------------------
@torch.no_grad()
def predict(model: torch.nn.Module, samples: Samples, batch_size: int = 256, device: torch.device | None = None,
            amp: bool = True) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Class probabilities (N, 7) and valence/arousal (N, 2) for every row, in row order."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs, vas = np.zeros((len(samples), NUM_CLASSES), np.float32), np.zeros((len(samples), 2), np.float32)
    cl = device.type == "cuda"
    for start in range(0, len(samples), batch_size):
        x, _, _, rows = load_batch(samples, np.arange(start, min(start + batch_size, len(samples))), device, channels_last=cl)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp and cl):
            out = model(x).float()
        probs[rows] = torch.softmax(out[:, :NUM_CLASSES], dim=1).cpu().numpy()
        vas[rows] = out[:, NUM_CLASSES:].cpu().numpy()
    model.train(was_training)
    return probs, vas


def evaluate(model, samples: Samples | None, batch_size: int = 256) -> dict:
    if samples is None or len(samples) == 0:
        return {}
    probs, va = predict(model, samples, batch_size)
    out = classification_report(samples.labels, probs.argmax(1))
    out.update(va_report(samples.va, va))
    return out


# --- checkpoints ------------------------------------------------------------------------------------
def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _fingerprint(cfg: TrainConfig, model: torch.nn.Module, sizes: tuple) -> dict:
    spec = model.spec() if hasattr(model, "spec") else {}
    return {"config": cfg.to_dict(), "model": spec, "sizes": list(sizes)}


# --- the loop ---------------------------------------------------------------------------------------
def train(
    model: torch.nn.Module,
    train_a: Samples,
    *,
    cfg: TrainConfig,
    extra: Samples | None = None,
    val: Samples | None = None,
    test: Samples | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    device: torch.device | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` on A (and B on joint epochs); select the epoch by validation accuracy."""
    device = device or device_default()
    expected = getattr(model, "image_size", train_a.image_size)
    for name, s in (("train", train_a), ("extra", extra), ("val", val), ("test", test)):
        if s is not None and s.image_size != expected:
            raise ValueError(f"{name} images are {s.image_size}px but the network expects {expected}px")
    if len(train_a) < 2:
        raise ValueError(f"training needs at least 2 rows, got {len(train_a)}")
    rank, world = dist_context()
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics of the global batch
    model.to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = model
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    history: list[dict] = []
    best = {"epoch": -1, "val": -math.inf, "state": None}
    start_epoch = 0
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    fingerprint = _fingerprint(cfg, model, (len(train_a), len(extra) if extra else 0))
    if ckpt_path is not None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if ckpt_path.exists():
            ck = torch.load(ckpt_path, map_location=device, weights_only=False)
            if ck["fingerprint"] != fingerprint:
                raise ValueError(f"checkpoint {ckpt_path} belongs to another training (config or data differ); use a new folder")
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            torch.set_rng_state(ck["rng"])
            history, best, start_epoch = ck["history"], ck["best"], ck["epoch"] + 1
            log.info("%s: resumed from %s at epoch %d", desc, ckpt_path, start_epoch)
    quiet = not sys.stderr.isatty()
    extra_labels = extra.labels if extra is not None else None
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        plan = epoch_plan(epoch, cfg, len(train_a), extra_labels)
        totals = {"A": [0.0, 0.0, 0.0, 0], "B": [0.0, 0.0, 0.0, 0]}
        bar = tqdm(plan, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", disable=quiet, leave=False)
        for b, (source, idx) in enumerate(bar):
            samples = train_a if source == "A" else extra
            rows = samples.sort_rows(idx)
            draws = torch.rand(len(rows), AUGMENT_DRAWS, generator=g)
            if world > 1 and len(rows) < 2 * world:
                continue  # too few rows to give every process two (BatchNorm)
            mine = np.array_split(np.arange(len(rows)), world)[rank]
            x, y, va, _ = load_batch(samples, rows[mine], device, channels_last)
            x = augment(x, cfg, draws[mine])
            known_total = int((~np.isnan(samples.va[idx]).any(axis=1)).sum())
            with _autocast(device, cfg):
                out = step_model(x)
            loss, ce, mse = loss_fn(out, y, va, cfg.lam, n_total=len(rows), known_total=known_total, world=world)
            if not _all_finite(loss, world):
                where = f"last good checkpoint: {ckpt_path}" if ckpt_path and ckpt_path.exists() else "no checkpoint yet"
                raise TrainingError(f"{desc}: non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {b + 1} ({source}); {where}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t = totals[source]
            t[0] += loss.item() / world * len(idx)
            t[1] += ce.item() * len(idx)
            t[2] += mse.item() * len(idx)
            t[3] += len(idx)
            bar.set_postfix(loss=f"{loss.item() / world:.3f}")
        sched.step()
        if world > 1:
            totals = _reduce_totals(totals, device)
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "joint": totals["B"][3] > 0}
        for source, (l, c, m, n) in totals.items():
            if n:
                row.update({f"{source}_loss": l / n, f"{source}_ce": c / n, f"{source}_mse": m / n})
        if rank != 0:  # only the first process evaluates, selects and writes checkpoints
            continue
        for split, s in (("val", val), ("test", test)):
            for k, v in evaluate(model, s, cfg.eval_batch_size).items():
                row[f"{split}_{k}"] = v
        history.append(row)
        score = row.get("val_accuracy", -row.get("A_loss", 0.0))
        if score > best["val"]:
            best = {"epoch": epoch, "val": score, "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        if ckpt_path is not None:
            _save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "rng": torch.get_rng_state(), "epoch": epoch, "history": history, "best": best,
                          "fingerprint": fingerprint}, ckpt_path)  # fmt: skip
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if not quiet:
            tqdm.write(f"{desc} epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
    hist = pd.DataFrame(history)
    final = copy.deepcopy(model).cpu()
    if best["state"] is not None:
        final.load_state_dict(best["state"])
    final.eval()
    metrics = {"selected_epoch": int(best["epoch"])}
    if "test_accuracy" in hist:
        metrics["test_accuracy_selected"] = float(hist.loc[hist["epoch"] == best["epoch"], "test_accuracy"].iloc[0])
        metrics["test_accuracy_last"] = float(hist["test_accuracy"].iloc[-1])
        metrics["best_test_accuracy_over_epochs_for_comparison_only"] = float(hist["test_accuracy"].max())
    if "val_accuracy" in hist:
        metrics["val_accuracy_selected"] = float(best["val"])
    return TrainResult(model=final, history=hist, selected_epoch=int(best["epoch"]), metrics=metrics)
