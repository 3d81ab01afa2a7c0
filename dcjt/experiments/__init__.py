"""Experiments: the paper's tables as study rows, their statistics, and the figures runs log."""
