"""Self-Cure Network (Wang et al., CVPR 2020) as a training mode of the one loop.

The network (``DCNet(scn=True)``) adds an attention weight per image, ``alpha = sigmoid(FC(f))``;
in training it returns the logits scaled by ``alpha`` and ``alpha`` as a last column (in eval
mode the plain outputs: ``alpha > 0`` never changes the predicted class). The loss adds the rank
regularisation of each batch's weights, and from ``relabel_epoch`` on the low-weight samples whose
top probability beats their label's by more than ``relabel_margin`` take the top class as label
(the official code relabels any sample of the batch: ``relabel_group: all``).
"""

from __future__ import annotations

import torch

from dcjt.config import SCNConfig


def split_attention(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs without the attention column, the attention weights) of an SCN training forward."""
    return out[:, :-1], out[:, -1].float()


def high_group(alpha: torch.Tensor, top_share: float) -> torch.Tensor:
    """Mask of the batch's ``int(top_share x n)`` largest attention weights (the official rule)."""
    k = int(top_share * len(alpha))
    mask = torch.zeros(len(alpha), dtype=torch.bool, device=alpha.device)
    if k:
        mask[torch.topk(alpha, k).indices] = True
    return mask


def rank_regularisation(alpha: torch.Tensor, top_share: float, margin: float) -> torch.Tensor:
    """max(0, margin - (mean weight of the high group - mean weight of the rest))."""
    high = high_group(alpha, top_share)
    if high.all() or not high.any():
        return alpha.new_zeros(())
    return torch.clamp(margin - (alpha[high].mean() - alpha[~high].mean()), min=0)


def relabeled(logits: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor, cfg: SCNConfig) -> torch.Tensor:
    """The batch's labels after SCN's relabeling rule (unchanged where the rule does not fire)."""
    probs = torch.softmax(logits.float(), dim=1)
    p_max, top = probs.max(dim=1)
    p_label = probs.gather(1, labels.view(-1, 1)).squeeze(1)
    fire = (p_max - p_label) > cfg.relabel_margin
    if cfg.relabel_group == "low":
        fire &= ~high_group(alpha, cfg.top_share)
    return torch.where(fire, top, labels)
