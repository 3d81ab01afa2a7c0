"""Thin ZenML steps over the core package (``dcjt``, ``models``): one per DCJT stage."""
