"""One training loop for M_A (classifier), M_B / DCN (multi-task) and the DCJT joint schedule.

Loss: CE + lambda x MSE on (valence, arousal) (Eqs. 4-6); rows with NaN valence/arousal add
no MSE; lambda = 0 trains a plain classifier. Joint schedule (Algorithm 3): warm-up epochs on
A only; afterwards, on epochs with ``epoch % joint_frequency == 0`` B is trained on too, either
one B batch after each A batch (``joint_mode="batch"``, the paper) or a full class-balanced pass
over B after the A pass (``"epoch"``, the official code).

The loop sees training and validation rows only: the epoch is selected by validation accuracy
and the test split is scored once, afterwards, by the evaluation step. ``epoch_metrics`` is an
opt-in hook (e.g. a per-epoch test curve for comparison with papers); it never selects.

Every epoch's shuffles and augmentations come from generators seeded by (seed, epoch), and a
checkpoint is written atomically after each epoch, so a killed run resumes to the same result.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dcjt.config import TrainConfig
from dcjt.data.labels import NUM_CLASSES
from dcjt.train import scn
from dcjt.train.batches import Samples, epoch_plan
from dcjt.train.checkpoint import fingerprint, latest, latest_epoch, load_checkpoint, save_checkpoint_file
from dcjt.train.feed import Feed, HostBatch, check_on_device, device_batch, device_default, feed_for, host_batches, prefetched
from dcjt.train.optim import make_optimizer, make_scheduler, steps_schedule
from dcjt.train.predict import evaluate
from dcjt.train.stopping import patience_spent

log = logging.getLogger(__name__)

EpochHook = Callable[[int, dict], None]
EpochMetrics = Callable[[torch.nn.Module], dict]


@dataclass(frozen=True)
class Reporting:
    """How a training reports itself: its name (progress bars, messages, checkpoints), a callback
    after each epoch with that epoch's row (MLflow logging; a test's kill), and extra numbers per
    check (a test curve, never used for selection)."""

    desc: str = "train"
    on_epoch_end: EpochHook | None = None
    epoch_metrics: EpochMetrics | None = None


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, bad input); names the epoch and batch."""


@dataclass
class TrainResult:
    model: torch.nn.Module  # weights of the validation-selected epoch
    history: pd.DataFrame
    selected_epoch: int
    metrics: dict = field(default_factory=dict)
    checks: pd.DataFrame = field(default_factory=pd.DataFrame)  # every validation check: epoch, step, val_*


@dataclass
class LoopState:
    """What a checkpoint restores: where to start, the history, the validation checks, the best
    check so far and the optimiser steps taken (counted on every rank, so step budgets agree)."""

    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": -1, "step": 0, "val": -math.inf, "state": None})
    steps_done: int = 0
    pieces: int = 1  # each batch runs in this many pieces (> 1 after an out-of-memory with oom_split)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # SCN: the training labels as relabeled so far


def dist_context() -> tuple[int, int]:
    """(rank, world size) of a DistributedDataParallel run; (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def loss_fn(
    out: torch.Tensor,
    y: torch.Tensor,
    va: torch.Tensor,
    lam: float,
    *,
    n_total: int | None = None,
    known_total: int | None = None,
    world: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CE + lam x MSE; rows with NaN valence/arousal contribute no MSE. ``y``: class ids, or (N, 7)
    class targets (stage 3b's soft targets; an all-zero row adds no CE).

    Computed as sums over this process's rows divided by the whole batch's counts (``n_total``
    rows, ``known_total`` with valence/arousal) and multiplied by ``world``: DDP's gradient
    average then equals the single-process gradient of the batch means exactly.
    """
    out = out.float()
    n_total = len(y) if n_total is None else n_total
    known = ~torch.isnan(va).any(dim=1)
    known_total = int(known.sum()) if known_total is None else known_total
    ce = F.cross_entropy(out[:, :NUM_CLASSES], y, reduction="sum") / n_total  # class ids or class probabilities
    if lam > 0 and known_total > 0:
        mse = ((out[known, NUM_CLASSES:] - va[known]) ** 2).sum() / (2 * known_total)
    else:
        mse = out.new_zeros(())
    return (ce + lam * mse) * world, ce.detach(), mse.detach()


# --- the parts of the loop ---------------------------------------------------------------------------
def check_inputs(model: torch.nn.Module, train_a: Samples, **others: Samples | None) -> None:
    expected = getattr(model, "image_size", train_a.image_size)
    for name, s in (("train", train_a), *others.items()):
        if s is not None and s.image_size != expected:
            raise ValueError(f"{name} images are {s.image_size}px but the network expects {expected}px")
    if len(train_a) < 2:
        raise ValueError(f"training needs at least 2 rows, got {len(train_a)}")


def prepare_model(model: torch.nn.Module, cfg: TrainConfig, feed: Feed, world: int) -> torch.nn.Module:
    """Move to the device (channels_last when the feed says so), wrap for DDP / torch.compile;
    returns the stepped model."""
    device = feed.device
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics of the global batch
    model.to(device)
    if feed.channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(step_model) if cfg.compile else step_model


def fingerprint_of(cfg: TrainConfig, model: torch.nn.Module, train_a: Samples, extra: Samples | None) -> dict:
    """The fingerprint a training's checkpoints carry (its recipe, network and data sizes)."""
    return fingerprint(cfg, model, (len(train_a), len(extra) if extra else 0))


def uncut_folder(ckpt_dir: Path | None, cfg: TrainConfig) -> Path | None:
    """The checkpoint folder, or None for a run cut short (``stop_after_epochs``) whose folder holds
    a later checkpoint of its recipe (the whole recipe ran first): going on from it would skip the
    cut, and writing over it would lose the later one, so the cut-short run trains without it."""
    if ckpt_dir is None or cfg.stop_after_epochs is None:
        return ckpt_dir
    epoch = latest_epoch(ckpt_dir)
    return None if epoch is not None and epoch + 1 > cfg.stop_after_epochs else ckpt_dir


def resume(ckpt_dir: Path | None, expected: dict, model, opt, sched, device: torch.device, desc: str) -> LoopState:
    """The state to continue from: the last checkpoint of this training, or a fresh start."""
    if ckpt_dir is None:
        return LoopState()
    ck = load_checkpoint(ckpt_dir, expected, device)
    if ck is None:
        return LoopState()
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng"])
    log.info("%s: resumed from %s at epoch %d", desc, latest(ckpt_dir), ck["epoch"] + 1)
    labels = {k: v.numpy() for k, v in ck.get("labels", {}).items()}
    steps = int(ck.get("steps_done", sum(r["steps"] for r in ck["history"])))
    checks = ck.get("checks", [])
    return LoopState(
        start_epoch=ck["epoch"] + 1, history=ck["history"], checks=checks, best=ck["best"], steps_done=steps, labels=labels
    )


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


def out_of_memory(desc: str, epoch: int, batch: HostBatch, cfg: TrainConfig, feed: Feed, pieces: int) -> str:
    """What an out-of-memory error tells the user: where, the batch size, the memory seen, what to do."""
    seen = ""
    if feed.device.type == "cuda":
        free, total = torch.cuda.mem_get_info(feed.device)
        peak = torch.cuda.max_memory_allocated(feed.device)
        seen = f"; peak allocated {peak / 2**30:.2f} GiB, {free / 2**30:.2f} of {total / 2**30:.2f} GiB free"
    return (
        f"{desc}: out of memory on {feed.device} at epoch {epoch + 1}, batch {batch.number + 1} ({batch.source}) with "
        f"train.batch_size {cfg.batch_size} ({len(batch.images)} rows in this process, {pieces} piece(s)){seen}. "
        "Lower train.batch_size, or set train.oom_split: true to split batches that do not fit (one process only)"
    )


@dataclass
class Stepper:
    """What every optimiser step of one training uses: the stepped model (DDP / compiled wrapper),
    its optimiser and schedule, the recipe, the feed, its name and checkpoint folder."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    cfg: TrainConfig
    feed: Feed
    desc: str
    ckpt_dir: Path | None


def forward_backward(stepper: Stepper, x, y, va, batch: HostBatch, world: int, pieces: int, relabels: list | None = None):
    """Loss of the batch, gradients accumulated over ``pieces`` pieces of it.

    ``loss_fn`` divides by the whole batch's row counts, so the pieces' gradients add up to the
    batch gradient (BatchNorm statistics are then per piece). SCN (``cfg.scn.enabled``) adds the
    rank regularisation of each piece and, when ``relabels`` is a list, appends each piece's
    (positions in the batch, labels after SCN's relabeling rule)."""
    step_model, cfg, feed = stepper.model, stepper.cfg, stepper.feed
    total = [x.new_zeros((), dtype=torch.float32) for _ in range(3)]
    for part in torch.arange(len(x), device=x.device).tensor_split(pieces):
        with feed.autocast():
            out = step_model(x[part])
        check_on_device(feed.device, step_model, x, y, va, out, where=f"training batch {batch.number + 1}")
        if cfg.scn.enabled:
            out, alpha = scn.split_attention(out)
        loss, ce, mse = loss_fn(
            out, y[part], va[part], cfg.lam, n_total=len(batch.rows), known_total=batch.known_total, world=world
        )
        if cfg.scn.enabled:
            loss = loss + scn.rank_regularisation(alpha, cfg.scn.top_share, cfg.scn.rank_margin) * world / pieces
            if relabels is not None:
                relabels.append(
                    (part.cpu(), scn.relabeled(out[:, :NUM_CLASSES].detach(), y[part], alpha.detach(), cfg.scn).cpu())
                )
        loss.backward()
        for t, v in zip(total, (loss.detach(), ce, mse)):
            t += v
    return total


def train_step(stepper: Stepper, batch: HostBatch, world: int, state: LoopState, epoch: int, relabels: list | None = None):
    """One optimiser step on ``batch``; an out-of-memory error splits the batch (``oom_split``)
    or stops with the batch size and the memory seen."""
    cfg, feed, opt = stepper.cfg, stepper.feed, stepper.opt
    x, y, va = device_batch(batch, feed, cfg)
    while True:
        opt.zero_grad(set_to_none=True)
        if relabels is not None:
            relabels.clear()
        try:
            return forward_backward(stepper, x, y, va, batch, world, state.pieces, relabels)
        except torch.OutOfMemoryError as error:
            message = out_of_memory(stepper.desc, epoch, batch, cfg, feed, state.pieces)
            if not cfg.oom_split or world > 1 or state.pieces >= len(x):
                raise TrainingError(message) from error
        opt.zero_grad(set_to_none=True)
        if feed.device.type == "cuda":
            torch.cuda.empty_cache()
        state.pieces *= 2
        log.warning("%s; train.oom_split: batches now run in %d pieces", message, state.pieces)


def check_due(steps_done: int, cfg: TrainConfig) -> bool:
    """Step budgets: a validation check every ``check_every_steps`` steps and at the last step."""
    every = cfg.check_every_steps
    return every is not None and (steps_done % every == 0 or steps_done == cfg.max_steps)


def run_epoch(
    epoch: int,
    stepper: Stepper,
    train_a: Samples,
    extra: Samples | None,
    state: LoopState,
    on_check: Callable[[int], None] | None = None,
) -> dict:
    """One pass of the epoch plan (until ``cfg.max_steps`` optimiser steps are spent); returns the
    epoch's mean losses per source (A, B), its optimiser steps and images seen. On a step budget
    the schedule advances per step and ``on_check(epoch)`` runs whenever a check is due."""
    cfg, feed, desc, opt = stepper.cfg, stepper.feed, stepper.desc, stepper.opt
    step_model = stepper.model
    rank, world = dist_context()
    step_model.train()
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    keys = extra.balance_keys(cfg.extra_balance) if extra is not None else None
    plan = epoch_plan(epoch, cfg, len(train_a), keys, train_a.labels if cfg.balanced else None)
    totals = {"A": [0.0, 0.0, 0.0, 0], "B": [0.0, 0.0, 0.0, 0]}
    sources = {"A": train_a, "B": extra}
    relabels = [] if cfg.scn.enabled and epoch >= cfg.scn.relabel_epoch else None
    n_relabeled = 0
    batches = host_batches(plan, sources, g, pin=feed.pin, rank=rank, world=world, in_flight=feed.prefetch + 2)
    steps = 0
    per_step = steps_schedule(cfg)
    with prefetched(batches, feed.prefetch) as ready:
        bar = tqdm(
            ready, total=len(plan), desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", disable=not sys.stderr.isatty(), leave=False
        )
        for batch in bar:
            if cfg.max_steps is not None and state.steps_done >= cfg.max_steps:
                break
            loss, ce, mse = train_step(stepper, batch, world, state, epoch, relabels)
            if not _all_finite(loss, world):
                last = latest(stepper.ckpt_dir) if stepper.ckpt_dir else None
                where = f"last good checkpoint: {last}" if last else "no checkpoint yet"
                raise TrainingError(
                    f"{desc}: non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {batch.number + 1} "
                    f"({batch.source}); {where}"
                )
            opt.step()
            steps += 1
            state.steps_done += 1
            if per_step:
                stepper.sched.step()
            for part, new in relabels or ():  # SCN: the rows keep their new labels in later epochs
                rows, labels = batch.rows[part.numpy()], sources[batch.source].labels
                n_relabeled += int((labels[rows] != new.numpy()).sum())
                labels[rows] = new.numpy()
            n = len(batch.rows)
            t = totals[batch.source]
            t[0] += loss.item() / world * n
            t[1] += ce.item() * n
            t[2] += mse.item() * n
            t[3] += n
            bar.set_postfix(loss=f"{loss.item() / world:.3f}")
            if on_check is not None and check_due(state.steps_done, cfg):
                on_check(epoch)
                step_model.train()
    if world > 1:
        totals = _reduce_totals(totals, feed.device)
    row = {
        "epoch": epoch,
        "lr": opt.param_groups[0]["lr"],
        "joint": totals["B"][3] > 0,
        "steps": steps,
        "images_seen": int(totals["A"][3] + totals["B"][3]),
    }
    if cfg.scn.enabled:
        row["scn_relabeled"] = n_relabeled
    for source, (loss_sum, ce_sum, mse_sum, n) in totals.items():
        if n:
            row.update({f"{source}_loss": loss_sum / n, f"{source}_ce": ce_sum / n, f"{source}_mse": mse_sum / n})
    return row


def evaluate_epoch(model: torch.nn.Module, val: Samples | None, cfg: TrainConfig, epoch_metrics: EpochMetrics | None) -> dict:
    """Validation metrics (``val_*``) and whatever the opt-in hook adds."""
    row = {f"val_{k}": v for k, v in evaluate(model, val, cfg.eval_batch_size).items()}
    if epoch_metrics is not None:
        row.update(epoch_metrics(model))
    return row


def select(state: LoopState, check: dict, model: torch.nn.Module) -> None:
    """Keep the check with the best validation accuracy (lowest training loss without validation)."""
    score = check.get("val_accuracy", -check.get("A_loss", 0.0))
    if score > state.best["val"]:
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state.best = {"epoch": check["epoch"], "step": check["step"], "val": score, "state": weights}


def should_stop(state: LoopState, epoch: int, cfg: TrainConfig) -> str | None:
    """Why training ends after ``epoch`` (step budget spent, or patience: ``dcjt.train.stopping``), or None."""
    if cfg.max_steps is not None and state.steps_done >= cfg.max_steps:
        return f"step budget of {cfg.max_steps} spent"
    if cfg.patience is not None and patience_spent(
        state.best["epoch"],
        epoch,
        patience=cfg.patience,
        warmup_epochs=cfg.warmup_epochs,
        joint_frequency=cfg.joint_frequency,
        stop_every=cfg.stop_every,
        min_epochs=cfg.min_epochs,
    ):
        unit = "epochs" if cfg.stop_every == 1 else f"cycles of {cfg.stop_every} epochs"
        return f"no better validation accuracy for {cfg.patience} {unit}"
    return None


def agree(flag: bool, device: torch.device, world: int) -> bool:
    """Rank 0's decision, on every rank: all processes stop together (none waits on the others)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def save_checkpoint(folder: Path, epoch: int, model, opt, sched, state: LoopState, fp: dict) -> None:
    """Everything a resumed run needs, as tensors and plain types (loadable with weights_only)."""
    payload = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": torch.get_rng_state(),
        "history": json.loads(json.dumps(state.history, default=float)),
        "best": state.best,
        "checks": json.loads(json.dumps(state.checks, default=float)),
        "steps_done": state.steps_done,
        "labels": {k: torch.from_numpy(v.copy()) for k, v in state.labels.items()},
    }
    save_checkpoint_file(folder, epoch, payload, fp)


def result(model: torch.nn.Module, state: LoopState, stop_reason: str | None = None) -> TrainResult:
    """The validation-selected weights, the history, the checks and the summary metrics."""
    hist = pd.DataFrame(state.history)
    final = copy.deepcopy(model).cpu()
    if state.best["state"] is not None:
        final.load_state_dict(state.best["state"])
    final.eval()
    metrics = {"selected_epoch": int(state.best["epoch"]), "selected_step": int(state.best["step"]), "epochs_run": len(hist)}
    if "images_seen" in hist:
        metrics["images_seen"] = int(hist["images_seen"].sum())
        metrics["steps"] = int(hist["steps"].sum())
        metrics["b_passes"] = int(hist["joint"].sum())
        # passes over B up to the selected check's epoch: 0 in a joint run = its model never trained on B
        metrics["b_passes_selected"] = int(hist.loc[hist["epoch"] <= state.best["epoch"], "joint"].sum())
    chosen = next((c for c in state.checks if (c["epoch"], c["step"]) == (state.best["epoch"], state.best["step"])), {})
    metrics.update({f"{k}_selected": float(v) for k, v in chosen.items() if k.startswith("val_")})
    if "test_accuracy" in hist:
        metrics["best_test_accuracy_over_epochs_for_comparison_only"] = float(hist["test_accuracy"].max())
    metrics["stop_reason"] = stop_reason or f"all {len(hist)} epochs run"
    checks = pd.DataFrame(state.checks)
    return TrainResult(model=final, history=hist, selected_epoch=int(state.best["epoch"]), metrics=metrics, checks=checks)


# --- the loop ---------------------------------------------------------------------------------------
def train(
    model: torch.nn.Module,
    train_a: Samples,
    *,
    cfg: TrainConfig,
    extra: Samples | None = None,
    val: Samples | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    report: Reporting | None = None,
    feed: Feed | None = None,
) -> TrainResult:
    """Train ``model`` on A (and B on joint epochs); select the check by validation accuracy.

    Checks come at epoch ends, or on a step budget every ``check_every_steps`` steps. Only rank 0
    evaluates, selects and writes checkpoints; its stop decision is broadcast to every rank.
    ``feed``: how batches reach which device (default: the GPU when there is one; tests run CUDA's
    path on the CPU with it)."""
    feed = feed or feed_for(device_default(), cfg)
    report = report or Reporting()
    desc, on_epoch_end, epoch_metrics = report.desc, report.on_epoch_end, report.epoch_metrics
    device = feed.device
    check_inputs(model, train_a, extra=extra, val=val)
    rank, world = dist_context()
    step_model = prepare_model(model, cfg, feed, world)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    ckpt_dir = uncut_folder(Path(checkpoint_dir) if checkpoint_dir else None, cfg)
    fp = fingerprint_of(cfg, model, train_a, extra)
    state = resume(ckpt_dir, fp, model, opt, sched, device, desc)
    if cfg.scn.enabled:  # SCN rewrites its training labels as it goes: its own copies, restored on resume
        for name, samples in (("A", train_a), ("B", extra)):
            if samples is not None:
                samples.labels = state.labels[name].copy() if name in state.labels else samples.labels.copy()
                state.labels[name] = samples.labels
    mid_epoch = cfg.check_every_steps is not None and val is not None
    stepper = Stepper(step_model, opt, sched, cfg, feed, desc, ckpt_dir)

    def check(epoch: int) -> dict:
        row = {"epoch": epoch, "step": state.steps_done, **evaluate_epoch(model, val, cfg, epoch_metrics)}
        state.checks.append(row)
        return row

    def on_check(epoch: int) -> None:
        if rank == 0:
            select(state, check(epoch), model)

    reason = should_stop(state, state.start_epoch - 1, cfg) if state.history else None
    stopped = agree(reason is not None, device, world)  # resumed after the stopping epoch
    last = cfg.epochs if cfg.stop_after_epochs is None else min(cfg.epochs, cfg.stop_after_epochs)
    for epoch in range(state.start_epoch, last):
        if stopped:
            break
        row = run_epoch(epoch, stepper, train_a, extra, state, on_check if mid_epoch else None)
        if not steps_schedule(cfg):
            sched.step()
        reason = None
        if rank == 0:  # only the first process evaluates, selects and writes checkpoints
            if mid_epoch:
                row.update({k: v for k, v in (state.checks[-1] if state.checks else {}).items() if k not in ("epoch", "step")})
            else:
                found = check(epoch)
                row.update({k: v for k, v in found.items() if k not in ("epoch", "step")})
                select(state, {**found, "A_loss": row.get("A_loss", 0.0)}, model)
            state.history.append(row)
            reason = should_stop(state, epoch, cfg)
            if ckpt_dir is not None:
                save_checkpoint(ckpt_dir, epoch, model, opt, sched, state, fp)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            if sys.stderr.isatty():
                tqdm.write(
                    f"{desc} epoch {epoch + 1}/{cfg.epochs}: "
                    + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
                )
        stopped = agree(reason is not None, device, world)
    # the last step is checked; in a run cut short (``stop_after_epochs``) that check comes after its last
    # checkpoint was written, so the runs that go on from the checkpoint never see it (as an uncut run)
    if rank == 0 and mid_epoch and (not state.checks or state.checks[-1]["step"] != state.steps_done):
        on_check(state.history[-1]["epoch"] if state.history else 0)  # the last step is always checked
    return result(model, state, reason)
