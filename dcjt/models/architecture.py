"""Names of the networks the project builds (one source for the config and the builder).

Kept apart from ``dcjt.config`` so the served model's code imports no configuration machinery.
"""

BACKBONES = ("resnet18", "tiny")
HEADS = ("linear", "arm")
