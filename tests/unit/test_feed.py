"""How batches reach the device: batched augmentation, the prefetch thread, and CUDA's code path
(bf16 autocast, channels_last, torch.compile, out-of-memory handling) run on the CPU."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dcjt.config import TrainConfig
from dcjt.models.inference import normalise
from dcjt.models.nets import build_model
from dcjt.train.batches import AUGMENT_DRAWS, Samples, augment, augment_rowwise
from dcjt.train.feed import Feed, device_batch, host_batches, prefetched
from dcjt.train.loop import LoopState, Stepper, TrainingError, forward_backward, set_seed, train
from helpers.training import toy_samples

CPU = torch.device("cpu")


def feed_cfg(**kw) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 16, "lr": 3e-3, "scheduler": "none", "lam": 1.0, "erase_p": 0.5}
    return TrainConfig(**{**base, **kw})


# --- batched augmentation ------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 24),
    size=st.sampled_from([8, 17, 32, 224]),
    erase_p=st.sampled_from([0.0, 0.5, 1.0]),
    flip=st.booleans(),
)
def test_batched_augmentation_equals_the_row_loop(seed, n, size, erase_p, flip):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)
    draws = torch.rand(n, AUGMENT_DRAWS, generator=g)
    cfg = feed_cfg(erase_p=erase_p, flip=flip, erase_scale=(0.02, 0.6))
    assert torch.equal(augment(images, cfg, draws), augment_rowwise(normalise(images), cfg, draws))


def test_augmentation_erases_boxes_and_flips_rows():
    images = torch.arange(1, 2 * 4 * 4 * 3 + 1, dtype=torch.uint8).view(2, 4, 4, 3)
    draws = torch.tensor([[0.1, 1, 0, 0, 0, 0], [0.9, 1, 0, 0, 0, 0]])
    out = augment(images, feed_cfg(erase_p=0.0), draws)
    assert torch.equal(out[0], normalise(images)[0].flip(-1)) and torch.equal(out[1], normalise(images)[1])
    # erase_scale (0.25, 0.25) on 4x4, ratio draw -> ratio 1 -> a 2x2 box at top 1 (0.5 * 3), left 0
    cfg = feed_cfg(erase_p=1.0, flip=False, erase_scale=(0.25, 0.25))
    ratio_one = (0 - np.log(0.3)) / (np.log(3.3) - np.log(0.3))
    out = augment(images, cfg, torch.tensor([[0.9, 0.0, 0.5, ratio_one, 0.5, 0.0]] * 2), channels_last=True)
    assert (out[:, :, 1:3, 0:2] == 0).all() and int((out == 0).sum()) == 2 * 3 * 4
    assert out.is_contiguous(memory_format=torch.channels_last)


# --- gathering and the prefetch thread ----------------------------------------------------------------
def test_gather_into_a_given_buffer_over_several_caches():
    rng = np.random.default_rng(0)
    caches = [rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8) for n in (7, 5)]
    source = np.array([0, 1, 1, 0, 1, 0])
    positions = np.array([6, 0, 4, 2, 3, 0])
    s = Samples(caches, positions, np.zeros(6, np.int64), np.zeros((6, 2), np.float32), source)
    buf = np.full((4, 4, 4, 3), 255, np.uint8)
    out, order = s.gather(np.array([4, 0, 1, 5]), out=buf)
    assert out is buf and order.tolist() == [5, 0, 1, 4]  # storage order: cache 0 by position, then cache 1
    expect = np.stack([caches[source[i]][positions[i]] for i in order])
    assert np.array_equal(buf, expect)


def test_host_batches_follow_the_plan_and_draw_for_every_row():
    data = toy_samples(40)
    plan = [("A", np.array([5, 3, 9, 7])), ("A", np.array([1, 8, 11])), ("A", np.array([6, 0, 2, 4]))]
    batches = list(host_batches(plan, {"A": data}, torch.Generator().manual_seed(1), rank=1, world=2))
    draws = torch.rand(11, AUGMENT_DRAWS, generator=torch.Generator().manual_seed(1))
    assert [b.number for b in batches] == [0, 2]  # fewer than 2 rows per process: skipped, draws still made
    first, last = batches
    assert first.rows.tolist() == [3, 5, 7, 9] and first.labels.tolist() == data.labels[[7, 9]].tolist()
    assert torch.equal(first.draws, draws[2:4]) and torch.equal(last.draws, draws[9:11])
    assert torch.equal(last.images, torch.from_numpy(data.images[0][[4, 6]]))


def test_prefetch_raises_the_producers_error_and_stops_its_thread_on_early_exit():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone at item 3")

    with prefetched(items(), 2) as ready:
        got = []
        with pytest.raises(OSError, match="disk gone at item 3"):
            for item in ready:
                got.append(item)
    assert got == [1, 2]
    before = threading.active_count()
    with prefetched(iter(range(10_000)), 2) as ready:
        assert next(iter(ready)) == 0  # leave with the producer blocked on a full queue
    assert threading.active_count() == before


def test_prefetch_changes_no_number():
    weights = []
    for depth in (0, 3):
        set_seed(2)
        r = train(build_model("tiny", "linear", 32), toy_samples(64), cfg=feed_cfg(prefetch=depth), extra=toy_samples(40, seed=5))
        weights.append(torch.cat([p.detach().flatten() for p in r.model.parameters()]))
    assert torch.equal(weights[0], weights[1])


# --- CUDA's code path on the CPU ----------------------------------------------------------------------
def test_cuda_feed_path_on_cpu_bf16_autocast_and_channels_last():
    set_seed(0)
    model = build_model("tiny", "linear", 32)
    seen = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(
        lambda m, inp, out: seen.append((inp[0].is_contiguous(memory_format=torch.channels_last), out.dtype))
    )
    feed = Feed(CPU, amp=True, channels_last=True, pin=False, prefetch=2)
    result = train(model, toy_samples(64), cfg=feed_cfg(), val=toy_samples(32, seed=1), feed=feed)
    assert seen and all(layout for layout, _ in seen[:4])
    assert {dtype for _, dtype in seen[:4]} == {torch.bfloat16}
    assert model.fc.weight.dtype == torch.float32  # autocast, not a bf16 model
    assert np.isfinite(result.history["A_loss"]).all() and "val_accuracy" in result.history


def test_device_batch_is_normalised_float_in_the_feeds_layout():
    data = toy_samples(8)
    (batch,) = host_batches([("A", np.arange(8))], {"A": data}, torch.Generator().manual_seed(0))
    x, y, va = device_batch(batch, Feed(CPU, channels_last=True), feed_cfg(erase_p=0.0, flip=False))
    assert x.dtype == torch.float32 and x.shape == (8, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    assert y.dtype == torch.int64 and va.shape == (8, 2)
    assert abs(float(x.mean())) < 3


# --- out of memory ------------------------------------------------------------------------------------
class RunsOutOfMemory(torch.nn.Module):
    """Stands in for a GPU that cannot hold more than ``fits`` rows (no CUDA here)."""

    def __init__(self, fits: int) -> None:
        super().__init__()
        self.inner, self.fits = build_model("tiny", "linear", 32), fits
        self.image_size = 32

    def forward(self, x):
        if len(x) > self.fits:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate for {len(x)} rows")
        return self.inner(x)


def test_out_of_memory_names_the_batch_size_and_what_to_do():
    with pytest.raises(TrainingError, match=r"out of memory on cpu at epoch 1, batch 1 \(A\) with train.batch_size 16") as e:
        train(RunsOutOfMemory(fits=8), toy_samples(48), cfg=feed_cfg(), feed=Feed(CPU))
    assert "train.oom_split: true" in str(e.value)


def test_oom_split_halves_batches_until_they_fit(caplog):
    with caplog.at_level(logging.WARNING):
        result = train(RunsOutOfMemory(fits=5), toy_samples(48), cfg=feed_cfg(oom_split=True), feed=Feed(CPU))
    assert np.isfinite(result.history["A_loss"]).all() and result.history["steps"].tolist() == [3, 3]
    assert "batches now run in 4 pieces" in caplog.text


def test_pieces_add_up_to_the_batch_gradient():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 9))  # no BatchNorm: exact
    data = toy_samples(12)
    (batch,) = host_batches([("A", np.arange(12))], {"A": data}, torch.Generator().manual_seed(0))
    cfg = feed_cfg(erase_p=0.0, flip=False)
    x, y, va = device_batch(batch, Feed(CPU), cfg)
    grads, losses = [], []
    for pieces in (1, 4):
        net.zero_grad()
        stepper = Stepper(net, None, None, cfg, Feed(CPU), "pieces", None)
        losses.append(forward_backward(stepper, x, y, va, batch, 1, pieces)[0])
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(losses[0], losses[1])
    assert LoopState().pieces == 1
