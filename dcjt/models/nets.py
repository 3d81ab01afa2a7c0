"""Networks: backbones (ResNet-18, a tiny CPU ResNet) and heads (linear, ARM), 7 logits + (V, A).

Starting weights (ImageNet, a local file, a registered model) are loaded by ``dcjt.train.weights``
on the training side; this module only builds networks (it is part of the served model's code).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18

from dcjt.models.architecture import BACKBONES, HEADS
from dcjt.models.emotions import NUM_CLASSES

OUTPUTS = NUM_CLASSES + 2  # 7 logits + valence + arousal


def _resnet18_trunk() -> nn.Sequential:
    net = resnet18(weights=None)
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


def _block(cin: int, cout: int, stride: int) -> nn.Module:
    from torchvision.models.resnet import BasicBlock

    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return BasicBlock(cin, cout, stride, down)


def _tiny_trunk() -> nn.Sequential:
    """A 4-stage residual net (32-256 channels, stride 32) for CPU demos at 64x64."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        _block(32, 32, 1),
        _block(32, 64, 2),
        _block(64, 128, 2),
        _block(128, 256, 2),
    )


class ARMHead(nn.Module):
    """De-albino + affinity (ARM), made batch-independent at inference.

    The official code adds ``alpha`` times the mean over the *batch* to each sample, so a
    test prediction depends on its batch. Here that batch mean is tracked as a running average
    during training (like BatchNorm) and the running value is used in eval mode.
    """

    def __init__(self, image_size: int, momentum: float = 0.1):
        super().__init__()
        self.shuffle = nn.PixelShuffle(16)
        self.de_albino = nn.Conv2d(1, 1, kernel_size=32, stride=8, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.alpha = nn.Parameter(torch.tensor([1.0]))
        self.momentum = momentum
        side = image_size // 32 * 16  # trunk stride 32, then PixelShuffle(16)
        out = (side - 32) // 8 + 1
        if side < 32 or out < 2:
            raise ValueError(f"ARM needs images of at least 96 px (got {image_size}); use the linear head")
        self.features = out * out
        self.register_buffer("running_mean", torch.zeros(out, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shuffle(x)  # (N, 2, H, W)
        n, c, h, w = x.shape
        x = self.de_albino(x.reshape(n * c, 1, h, w)).reshape(n, c, *self.running_mean.shape)
        x = self.bn(x)
        if self.training:
            batch_mean = x.mean(dim=(0, 1))
            with torch.no_grad():
                self.running_mean.lerp_(batch_mean.detach().float(), self.momentum)
        else:
            batch_mean = self.running_mean.to(x.dtype)
        return (x.mean(dim=1) + self.alpha * batch_mean).flatten(1)


class DCNet(nn.Module):
    """Discrete-Continuous Net: a trunk and a head giving 7 logits + (valence, arousal)."""

    def __init__(self, backbone: str = "resnet18", head: str = "linear", image_size: int = 224, scn: bool = False):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose from {BACKBONES}")
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose from {HEADS}")
        if image_size < 32 or image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 and >= 32, got {image_size}")
        self.backbone_name, self.head_name, self.image_size = backbone, head, image_size
        self.trunk = _resnet18_trunk() if backbone == "resnet18" else _tiny_trunk()
        channels = 512 if backbone == "resnet18" else 256
        if head == "arm":
            if backbone != "resnet18":
                raise ValueError("the ARM head needs the resnet18 backbone (512 channels)")
            self.head = ARMHead(image_size)
            self.fc = nn.Linear(self.head.features, OUTPUTS)
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.fc = nn.Linear(channels, OUTPUTS)
        # Self-Cure Network (dcjt.train.scn): an attention weight per image from the same features.
        self.attention = nn.Linear(self.fc.in_features, 1) if scn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"network expects {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}")
        features = self.head(self.trunk(x))
        out = self.fc(features)
        if self.attention is not None and self.training:  # SCN: logits scaled by alpha, alpha last
            alpha = torch.sigmoid(self.attention(features))
            return torch.cat([out[:, :NUM_CLASSES] * alpha, out[:, NUM_CLASSES:], alpha], dim=1)
        return out

    def spec(self) -> dict:
        spec = {"backbone": self.backbone_name, "head": self.head_name, "image_size": self.image_size}
        return spec | ({"scn": True} if self.attention is not None else {})


def build_model(backbone: str = "resnet18", head: str = "linear", image_size: int = 224, scn: bool = False) -> DCNet:
    """A DCNet with freshly initialised weights (starting weights are the training side's:
    ``dcjt.train.weights.apply_weights``); ``scn`` adds SCN's attention."""
    return DCNet(backbone, head, image_size, scn)
