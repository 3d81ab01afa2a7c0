"""Stage 4 data (paper 3.5) and the comparison rows' training data, from label tables.

- DCJT: A with pseudo valence/arousal, plus B (subset as labelled, B - subB mapped/relabeled),
  trained with the joint schedule of ``dcjt.train.loop``.
- ``straight_combination``: A and B merged as they are, discrete labels only.
- ``oracle_extra`` (synthetic world only): B's discrete labels replaced by the hidden truth,
  the ceiling of relabeling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def straight_combination(target: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """A and B merged as they are, discrete labels only (the paper's 'combination straightly')."""
    b = extra.copy()
    b["valence"], b["arousal"], b["va_origin"] = np.nan, np.nan, "none"
    cols = [c for c in target.columns if c in b.columns]
    return pd.concat([target[cols], b[cols]], ignore_index=True)


def oracle_extra(extra_prepared: pd.DataFrame) -> pd.DataFrame:
    """B with its discrete labels replaced by the hidden truth (synthetic world only)."""
    if "truth_label" not in extra_prepared:
        raise ValueError("the oracle needs the synthetic world's truth_label column")
    out = extra_prepared.copy()
    changed = out["label"].to_numpy() != out["truth_label"].to_numpy()
    out["label"] = out["truth_label"].astype("int64")
    out["label_origin"] = out["label_origin"].mask(changed, "relabeled")
    return out
