"""Optimiser and learning-rate schedule from a training recipe."""

from __future__ import annotations

import math

import torch

from dcjt.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def schedule_factor(cfg: TrainConfig, fraction: float) -> float:
    """The learning-rate multiplier at ``fraction`` of a step budget: the recipe's schedule written
    for ``schedule_epochs`` epochs, read at the same fraction (so every row of a step budget gets
    the same schedule, whatever its epoch length)."""
    epochs = (cfg.schedule_epochs or cfg.epochs) * min(max(fraction, 0.0), 1.0)
    if cfg.scheduler == "step":
        return cfg.gamma ** math.floor(epochs / cfg.step_size)
    if cfg.scheduler == "exponential":
        return cfg.gamma**epochs
    if cfg.scheduler == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
    return 1.0


def steps_schedule(cfg: TrainConfig) -> bool:
    """Whether the schedule advances per optimiser step (a step budget) rather than per epoch."""
    return cfg.schedule_steps is not None


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    if steps_schedule(cfg):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule_factor(cfg, step / cfg.schedule_steps))
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
