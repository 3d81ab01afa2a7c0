"""Markdown tables for the pages a team reads in MLflow: run descriptions, version descriptions,
model cards (MLflow renders them; no extra dependency)."""

from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame, digits: int = 3, index: bool = True) -> str:
    """``frame`` as a pipe table; floats to ``digits`` decimals, missing values blank."""
    cols = [str(c) for c in frame.columns]
    head = ([""] if index else []) + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, *row in frame.itertuples(name=None):  # per-column types (iterrows makes ints floats)
        cells = ["" if pd.isna(v) else f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(([str(idx)] if index else []) + cells) + " |")
    return "\n".join(lines)
