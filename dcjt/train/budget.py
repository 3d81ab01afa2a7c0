"""The training budget of a reported row: like for like across DCJT and its baselines.

Equal epochs are not equal work: the straight merge sees A + B every epoch, the DCN sees B only
on joint epochs. Every row uses the DCN's recipe (optimiser, schedule, augmentation, batch size,
validation selection); the budget decides how long:

- ``converged``: until validation accuracy has not improved for ``patience`` epochs (at most
  ``epochs``);
- ``steps``: the same number of optimiser steps for every row (default: the DCJT row's steps at
  its configured epochs); the row's epoch count, and with it the schedule, follow from it.
"""

from __future__ import annotations

import numpy as np

from dcjt.config import BudgetConfig, MethodConfig, TrainConfig
from dcjt.train.batches import epochs_for_steps, steps_per_epoch


def reference_steps(cfg: TrainConfig, n_a: int, extra_labels: np.ndarray | None) -> int:
    """Optimiser steps of the DCJT row (A plus all of B, joint schedule) at ``cfg.epochs``."""
    return sum(steps_per_epoch(cfg, n_a, extra_labels, cfg.epochs))


def row_recipe(
    cfg: TrainConfig, budget: BudgetConfig, method: MethodConfig, n_a: int, extra_labels: np.ndarray | None, reference: int
) -> TrainConfig:
    """The DCN recipe for one row: lambda 0 without continuous labels, and the budget applied."""
    update: dict = {"lam": cfg.lam if method.continuous else 0.0, "scn": cfg.scn.model_copy(update={"enabled": method.scn})}
    if budget.mode == "converged":
        update["patience"] = budget.patience
    else:
        steps = budget.steps or reference
        update["max_steps"] = steps
        update["epochs"] = epochs_for_steps(cfg, n_a, extra_labels, steps)
        update["warmup_epochs"] = min(cfg.warmup_epochs, update["epochs"] - 1)
    return cfg.model_copy(update=update)
