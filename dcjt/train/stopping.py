"""When a row's training may stop early: one rule for DCJT and every row reported beside it.

The joint schedule trains on B only after the warm-up and then every ``joint_frequency`` epochs,
so a patience counted in epochs from epoch 0 ends DCJT before its first pass over B (on RAF-DB's
schedule, warm-up 30 and frequency 10, before epoch 30 in every simulated run) and ends any row
that sits on an early majority-class plateau. Here patience is counted in *checks*:

- checks start at the first joint epoch (the first epoch ``>= warmup_epochs`` divisible by
  ``joint_frequency``) and come every ``stop_every`` epochs (a joint cycle: ``joint_frequency``);
- a row stops at a check once ``patience`` whole checks have passed since the check that closed
  the best epoch's cycle (improvements during the warm-up count as "before the first check"),
  and never before ``min_epochs`` epochs (a minimum share of the budget).

Rows without a B pass (target only, straight) use the same checks: like for like. A joint row
therefore makes at least ``patience`` passes over B before it can stop.
"""

from __future__ import annotations

import math

from dcjt.schedule import first_joint_epoch  # the schedule's arithmetic lives with its settings


def is_check(epoch: int, anchor: int, every: int) -> bool:
    """Whether ``epoch`` (0-based) closes a check period: the last epoch of a cycle from ``anchor``."""
    return epoch >= anchor + every - 1 and (epoch + 1 - anchor) % every == 0


def closing_check(epoch: int, anchor: int, every: int) -> int:
    """The check that closes ``epoch``'s period (``anchor - 1`` for epochs before the anchor)."""
    if epoch < anchor:
        return anchor - 1
    return anchor - 1 + math.ceil((epoch + 1 - anchor) / every) * every


def checks_without_improvement(best_epoch: int, epoch: int, anchor: int, every: int) -> int:
    """Whole checks after the one closing the best epoch's period, up to and including ``epoch``."""
    start = closing_check(best_epoch, anchor, every)
    if epoch <= start:
        return 0
    return (epoch - start) // every


def patience_spent(
    best_epoch: int,
    epoch: int,
    *,
    patience: int,
    warmup_epochs: int,
    joint_frequency: int,
    stop_every: int,
    min_epochs: int = 0,
) -> bool:
    """Whether training stops after ``epoch`` by patience (the rule in this module's docstring)."""
    anchor = first_joint_epoch(warmup_epochs, joint_frequency)
    if epoch + 1 < min_epochs or not is_check(epoch, anchor, stop_every):
        return False
    return checks_without_improvement(best_epoch, epoch, anchor, stop_every) >= patience
