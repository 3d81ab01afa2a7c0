"""The training budget of a reported row: like for like across DCJT and its baselines.

Equal epochs are not equal work: the straight merge sees A + B every epoch, the DCN sees B only
on joint epochs. Every row uses the DCN's recipe (optimiser, schedule, augmentation, batch size,
validation selection); the budget decides how long:

- ``converged``: until validation accuracy has not improved for ``patience`` checks (one per joint
  cycle from the first joint epoch, never before ``min_share`` of the epochs: ``dcjt.train.stopping``),
  at most ``epochs``;
- ``steps``: the same number of optimiser steps for every row (default: the DCJT row's steps at
  its configured epochs). The learning-rate schedule and the validation checks are fractions of
  that step budget, so every row gets the same schedule however many epochs its steps make.

``budget.rung`` (``run.py select``'s race) then cuts each row short after a share of its epochs
(``cut``); the full budget later goes on from the row's checkpoint.
"""

from __future__ import annotations

import math

import numpy as np

from dcjt.config import BudgetConfig, MethodConfig, TrainConfig
from dcjt.train.batches import epoch_plan, epochs_for_steps, steps_per_epoch


class BudgetError(ValueError):
    """A budget that cannot give a row what it needs (e.g. its passes over B); names the key."""


def reference_steps(cfg: TrainConfig, n_a: int, extra_labels: np.ndarray | None) -> int:
    """Optimiser steps of the DCJT row (A plus all of B, joint schedule) at ``cfg.epochs``."""
    return sum(steps_per_epoch(cfg, n_a, extra_labels, cfg.epochs))


def b_passes_within(cfg: TrainConfig, n_a: int, extra_labels: np.ndarray | None, steps: int) -> int:
    """Epochs that reach at least one batch of B within the first ``steps`` optimiser steps."""
    passes, left, epoch = 0, steps, 0
    cfg = cfg.model_copy(update={"balanced": False})
    while left > 0 and extra_labels is not None:
        plan = epoch_plan(epoch, cfg, n_a, extra_labels)
        passes += any(source == "B" for source, _ in plan[:left])
        left -= len(plan)
        epoch += 1
    return passes


def row_recipe(
    cfg: TrainConfig, budget: BudgetConfig, method: MethodConfig, n_a: int, extra_labels: np.ndarray | None, reference: int
) -> TrainConfig:
    """The DCN recipe for one row: lambda 0 without continuous labels, and the budget applied."""
    joint = method.uses_joint_passes and extra_labels is not None
    update: dict = {
        "lam": cfg.lam if method.continuous else 0.0,
        "scn": cfg.scn.model_copy(update={"enabled": method.scn}),
        "balanced": method.balanced,
    }
    if budget.mode == "converged":
        update["patience"] = budget.patience
        update["stop_every"] = cfg.joint_frequency if budget.patience_unit == "cycles" else 1
        update["min_epochs"] = math.ceil(budget.min_share * cfg.epochs)
        return cut(cfg.model_copy(update=update), budget.rung, joint)
    steps = budget.steps or reference
    epochs = epochs_for_steps(cfg, n_a, extra_labels, steps)
    warmup = min(cfg.warmup_epochs, epochs - 1)
    passes = b_passes_within(cfg.model_copy(update={"warmup_epochs": warmup}), n_a, extra_labels, steps)
    if method.uses_joint_passes and extra_labels is not None and passes < budget.min_b_passes:
        raise BudgetError(
            f"budget.steps: {steps} optimiser steps make {epochs} epochs, {passes} of them with a pass over B, fewer "
            f"than budget.min_b_passes = {budget.min_b_passes}; raise budget.steps (the DCJT row's own: {reference})"
        )
    update.update(
        max_steps=steps,
        epochs=epochs,
        warmup_epochs=warmup,
        schedule_steps=steps,
        schedule_epochs=cfg.epochs,
        check_every_steps=math.ceil(steps / budget.checks),
    )
    return cut(cfg.model_copy(update=update), budget.rung, joint)


def cut(cfg: TrainConfig, rung: float | None, joint: bool = False) -> TrainConfig:
    """The recipe stopped at a race's rung (``budget.rung``): that share of its epochs, rounded, at
    least one (the whole recipe, uncut, where that is all of it). A ``joint`` row (A alone for its
    warm-up, then passes over B every ``joint_frequency`` epochs) is cut after its first joint epoch
    and at the point of the joint cycle where its full budget ends (the A epochs after a pass over B
    included), so a rung compares every row where its schedule stands as at its end, not just after
    a pass over B. Only a joint row has a warm-up to get past: a merged row sees B from its first
    epoch (its ``warmup_epochs`` train nothing apart), so a floor there would race it on a larger
    share of its budget than the others (the straight merges on 3 of their 6 epochs, the others on
    a third)."""
    if rung is None:
        return cfg
    epochs = max(1, round(rung * cfg.epochs))
    if joint:
        freq, last = cfg.joint_frequency, cfg.epochs - 1
        first_joint = cfg.warmup_epochs + (-cfg.warmup_epochs) % freq
        epochs = max(epochs, first_joint + 1)
        while epochs < cfg.epochs and (epochs - 1) % freq != last % freq:
            epochs += 1
    return cfg if epochs >= cfg.epochs else cfg.model_copy(update={"stop_after_epochs": epochs})
