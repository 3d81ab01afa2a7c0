"""Stage 4 data (paper 3.5): the rows and labels the final network trains on, for every row of
the paper's tables, from A's table (with pseudo V/A) and B's prepared table.

``MethodConfig`` says which: ``extra_use`` (no B, B's subset, or all of B), ``target_use`` (A's
train rows, or none: the extras alone), ``continuous``
(valence/arousal targets or discrete labels only) and ``combine`` (the joint schedule, with B as
the extra set, or A and B pooled as one set every epoch: the straight combination).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import SUBSET_COLUMN, split_rows


def _discrete_only(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out["valence"], out["arousal"], out["va_origin"] = np.nan, np.nan, "none"
    return out


def training_rows(target_pseudo: pd.DataFrame, extra_prepared: pd.DataFrame, method) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(A's training rows, B's training rows or None) for ``method`` (a ``MethodConfig``)."""
    a = split_rows(target_pseudo, "train")
    if not method.target_use:  # the extras alone (merged, checked by MethodConfig): A keeps val and test only
        a = a.iloc[:0]
    b = None
    if method.extra_use != "none":
        b = split_rows(extra_prepared, "train")
        if method.extra_use == "subset":
            b = b[b[SUBSET_COLUMN].to_numpy(dtype=bool)].reset_index(drop=True)
    if not method.continuous:
        a = _discrete_only(a)
        b = None if b is None else _discrete_only(b)
    if method.combine == "merged" and b is not None:
        cols = [c for c in a.columns if c in b.columns]
        return pd.concat([a[cols], b[cols]], ignore_index=True), None
    return a, b
