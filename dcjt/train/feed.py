"""How training batches reach the device.

A background thread walks the epoch plan ahead of the training step: it draws each batch's
augmentation numbers, gathers the uint8 images from the memory-mapped caches straight into
(pinned, on CUDA) host memory and queues the batch. The step copies uint8 to the device with
``non_blocking`` and normalises and augments there, so the accelerator never waits for a gather
it could have overlapped, and four times fewer bytes cross the bus than float32 would.

Everything CUDA does differently is a field of ``Feed`` (autocast, channels_last, pinning,
prefetch depth), so tests can switch each one on for the CPU and run the same code path.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from dcjt.config import TrainConfig
from dcjt.train.batches import AUGMENT_DRAWS, Samples, augment


@dataclass(frozen=True)
class Feed:
    """Where batches go and how: bf16 autocast, channels_last, pinned host memory, prefetch depth."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False
    pin: bool = False
    prefetch: int = 0

    def autocast(self):
        """bf16 autocast on this device (CPU autocast in tests), or nothing."""
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


def device_default() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` under DDP) when CUDA is there, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


class DeviceCheckError(RuntimeError):
    """``DCJT_DEVICE_CHECK`` found work on another device than the one named."""


def check_on_device(device: torch.device, model: torch.nn.Module, *tensors: torch.Tensor, where: str) -> None:
    """With ``DCJT_DEVICE_CHECK=cuda`` (``scripts/gpu_check.sh``): the work runs on that device
    type, and every parameter, buffer and given tensor is on ``device``. Off by default (it walks
    every parameter); a tensor left on the CPU would otherwise only show as a slow run."""
    want = os.environ.get("DCJT_DEVICE_CHECK")
    if not want:
        return
    if device.type != want:
        raise DeviceCheckError(f"{where}: runs on {device}, DCJT_DEVICE_CHECK={want}")

    def off(t: torch.Tensor) -> bool:
        return t.device.type != device.type or (device.index is not None and t.device.index != device.index)

    named = [*model.named_parameters(), *model.named_buffers(), *((f"tensor {i}", t) for i, t in enumerate(tensors))]
    stray = [f"{name} ({t.device})" for name, t in named if off(t)]
    if stray:
        raise DeviceCheckError(f"{where}: {len(stray)} tensors not on {device}, e.g. {stray[:5]}")


def feed_for(device: torch.device, cfg: TrainConfig) -> Feed:
    """The feed training uses on ``device``: CUDA gets autocast, channels_last and pinned copies
    (as configured); every device gets the prefetch thread."""
    cuda = device.type == "cuda"
    return Feed(device, amp=cfg.amp and cuda, channels_last=cfg.channels_last and cuda, pin=cuda, prefetch=cfg.prefetch)


@dataclass
class HostBatch:
    """One batch of the plan as this process trains it, still in host memory."""

    number: int  # position in the epoch plan
    source: str  # "A" or "B"
    rows: np.ndarray  # every row of the batch (all processes), storage order
    images: torch.Tensor  # uint8 NHWC of this process's rows (pinned when feeding CUDA)
    labels: torch.Tensor
    va: torch.Tensor
    draws: torch.Tensor  # augmentation numbers of this process's rows
    known_total: int  # rows of the whole batch with valence/arousal
    targets: torch.Tensor | None = None  # (rows, 7) class targets when the source has soft ones
    copied: torch.cuda.Event | None = None  # set when the copy to the GPU is queued


class HostBuffers:
    """A ring of reused host buffers for the batches in flight.

    Allocating (and page-faulting) 19 MB per 224 px batch costs more than reading the images,
    and pinned allocations cost more still. A slot is reused ``len(slots)`` batches later, after
    the GPU copy recorded on its last batch has finished.
    """

    def __init__(self, slots: int, pin: bool) -> None:
        self.buffers: list[torch.Tensor | None] = [None] * slots
        self.owners: list[HostBatch | None] = [None] * slots
        self.pin, self.turn = pin, 0

    def take(self, rows: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, int]:
        slot = self.turn % len(self.buffers)
        self.turn += 1
        owner = self.owners[slot]
        if owner is not None and owner.copied is not None:
            owner.copied.synchronize()
        buf = self.buffers[slot]
        if buf is None or buf.shape[0] < rows or tuple(buf.shape[1:]) != shape:
            buf = self.buffers[slot] = torch.empty((rows, *shape), dtype=torch.uint8, pin_memory=self.pin)
        return buf[:rows], slot


def host_batches(
    plan: list[tuple[str, np.ndarray]],
    sources: dict[str, Samples | None],
    generator: torch.Generator,
    *,
    pin: bool = False,
    rank: int = 0,
    world: int = 1,
    in_flight: int = 2,
) -> Iterator[HostBatch]:
    """The plan's batches for process ``rank`` of ``world``, gathered in plan order.

    Augmentation numbers are drawn for every row of every batch in plan order (also for batches
    this process skips), so each row gets the same draws whatever the number of processes.
    Images land in a ring of ``in_flight`` reused buffers: a consumer may hold a batch's images
    until it takes the batch ``in_flight - 1`` places later (the prefetch depth + 2 is safe).
    """
    ring = HostBuffers(in_flight, pin)
    for number, (source, idx) in enumerate(plan):
        samples = sources[source]
        rows = samples.sort_rows(idx)
        draws = torch.rand(len(rows), AUGMENT_DRAWS, generator=generator)
        if world > 1 and len(rows) < 2 * world:
            continue  # too few rows to give every process two (BatchNorm)
        part = np.array_split(np.arange(len(rows)), world)[rank]
        mine = rows[part]  # a slice of sorted rows: gather keeps this order
        images, slot = ring.take(len(mine), tuple(samples.images[0].shape[1:]))
        samples.gather(mine, out=images.numpy())
        batch = ring.owners[slot] = HostBatch(
            number=number,
            source=source,
            rows=rows,
            images=images,
            labels=torch.from_numpy(samples.labels[mine]),
            va=torch.from_numpy(samples.va[mine]),
            draws=draws[torch.from_numpy(part)],
            known_total=int((~np.isnan(samples.va[idx]).any(axis=1)).sum()),
            targets=torch.from_numpy(samples.targets[mine]) if samples.targets is not None else None,
        )
        yield batch


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


@contextmanager
def prefetched(items: Iterator, depth: int):
    """``items`` produced by a background thread up to ``depth`` ahead of the consumer.

    The producer's error is raised in the consumer at the item where it happened; leaving the
    ``with`` block early (a step budget, an error in the step) stops and joins the thread.
    ``depth`` 0 iterates in the caller's thread.
    """
    if depth <= 0:
        yield items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failed(error))

    def consume() -> Iterator:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    thread = threading.Thread(target=produce, name="dcjt-prefetch", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


def device_batch(batch: HostBatch, feed: Feed, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images (normalised, augmented, float NCHW), class targets (labels, or (rows, 7) soft
    targets where the batch's source has them) and valence/arousal on ``feed.device``."""
    x = batch.images.to(feed.device, non_blocking=feed.pin)
    if feed.pin:
        batch.copied = torch.cuda.Event()
        batch.copied.record()
    x = augment(x, cfg, batch.draws, feed.channels_last)
    y = (batch.targets if batch.targets is not None else batch.labels).to(feed.device, non_blocking=feed.pin)
    va = batch.va.to(feed.device, non_blocking=feed.pin)
    return x, y, va
