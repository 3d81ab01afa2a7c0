"""The joint schedule's arithmetic (paper Algorithm 3): which epochs pass over B. A leaf, so the
configuration's checks, the stop rule and the study tables share one definition."""

from __future__ import annotations

import math


def first_joint_epoch(warmup_epochs: int, joint_frequency: int) -> int:
    """The first epoch of the joint schedule (Algorithm 3: ``epoch >= warm-up`` and divisible)."""
    return math.ceil(warmup_epochs / joint_frequency) * joint_frequency


def joint_epochs(epochs: int, warmup_epochs: int, joint_frequency: int) -> int:
    """How many epochs of ``epochs`` pass over B under the joint schedule."""
    anchor = first_joint_epoch(warmup_epochs, joint_frequency)
    return 0 if anchor >= epochs else (epochs - 1 - anchor) // joint_frequency + 1
