"""The DCN's warm-up on A, trained once and branched from (issue #34).

Rows of a study or ``run.py select`` that train the same recipe on the same A (DCJT as published,
the relabel rules, the latent rows: everything with V/A targets, A's rows and the joint schedule)
spend their first ``warmup_epochs`` epochs identically: the warm-up's plans are A's batches alone,
seeded per seed and epoch, so B's table (which is all they differ in) enters only after it. The
pipeline trains that warm-up once per seed (``train_warmup``; ZenML's cache shares it across the
runs of a selection) and hands on its last checkpoint; a row whose key agrees writes it into its own
checkpoint folder under its own fingerprint, and the loop resumes from it as after an interruption
(a resumed training equals an uninterrupted one on the same machine and thread count: tests).

Under a step budget the rows' epoch counts and step budgets differ with B's size while their
schedule is the same (``schedule_steps``): the key leaves ``epochs`` and ``max_steps`` out there,
and only there. A row whose key differs trains from the start, as without a warm-up.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from dcjt.config import TrainConfig
from dcjt.plan import warmup_shareable
from dcjt.train.checkpoint import latest, save_checkpoint_file
from dcjt.train.optim import steps_schedule

KEY = "warmup_key"  # the payload's entry that says which recipe the warm-up is the start of


def warmup_recipe(cfg: TrainConfig) -> TrainConfig | None:
    """The row recipe ``cfg`` stopped after its warm-up epochs; None where there is nothing to
    share (no warm-up; SCN rows, whose network differs; several processes)."""
    if not warmup_shareable(cfg):
        return None
    return cfg.model_copy(update={"stop_after_epochs": cfg.warmup_epochs})


def warmup_key(cfg: TrainConfig, *identity) -> str:
    """What must agree for a row to go on from a warm-up: its recipe through the warm-up, and
    ``identity`` (the network, digests of A's training and validation rows, the test curve)."""
    recipe = cfg.identity()
    if steps_schedule(cfg):
        del recipe["epochs"], recipe["max_steps"]
    return hashlib.sha256(json.dumps([recipe, *identity], sort_keys=True, default=str).encode()).hexdigest()


def seal(checkpoint: bytes, key: str) -> bytes:
    """The warm-up's last checkpoint file with its key inside."""
    payload = torch.load(io.BytesIO(checkpoint), weights_only=True)
    buffer = io.BytesIO()
    torch.save({**payload, KEY: key}, buffer)
    return buffer.getvalue()


def shares(warmup: bytes, key: str) -> bool:
    """Whether a row with ``key`` starts from this warm-up: its recipe trains the warm-up's epochs
    exactly (so they are the seed's, counted once, wherever this run's own start came from)."""
    return torch.load(io.BytesIO(warmup), weights_only=True).get(KEY) == key


def branch(folder: str | Path, warmup: bytes, key: str, fingerprint: dict) -> bool:
    """Start the row training in ``folder`` from the warm-up when the keys agree and the row has no
    checkpoint of its own (an interrupted row resumes from its own); whether it did."""
    if latest(Path(folder)) is not None:
        return False
    payload = torch.load(io.BytesIO(warmup), weights_only=True)
    if payload.pop(KEY, None) != key:
        return False
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_checkpoint_file(Path(folder), int(payload.pop("epoch")), payload, fingerprint)
    return True
