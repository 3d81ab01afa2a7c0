"""How DCJT and its comparison rows assemble training data from label tables (no ZenML).

The ZenML steps and the benchmark both call these functions, so a variant means the same
thing everywhere. Variants (paper Tables 1-4):

- ``target_only``: A's discrete labels (M_A itself).
- ``straight``: A and B merged as they are, discrete labels only.
- ``dcjt``: A with pseudo valence/arousal; B's subset as labelled; B - subB mapped
  (``mapping`` none/global/emotion/emotion_ot) and, if ``relabel``, relabeled; joint schedule.
- ``oracle`` (synthetic world only): like ``dcjt`` but B's discrete labels replaced by the hidden
  true emotion: the ceiling of relabeling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dcjt.labelmaths import criteria_audit, map_continuous, relabel_nearest
from dcjt.labels import SUBSET_COLUMN


@dataclass(frozen=True)
class Variant:
    mapping: str = "emotion"
    relabel: bool = True
    pseudo_from: str = "subset"  # M_B trained on the selected subset of B, or on "all" of B
    b_stats_from: str = "all"

    @property
    def name(self) -> str:
        """Stable name of a DCJT variant, e.g. ``dcjt-emotion-relabel``."""
        parts = [f"dcjt-{self.mapping}", "relabel" if self.relabel else "norelabel"]
        if self.pseudo_from != "subset":
            parts.append(f"pseudo-{self.pseudo_from}")
        return "-".join(parts)


def train_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["split"] == "train"].reset_index(drop=True)


def with_pseudo_va(table: pd.DataFrame, va: np.ndarray) -> pd.DataFrame:
    """A's table carrying M_B's predictions as pseudo valence/arousal (clipped to [-1, 1])."""
    out = table.copy()
    va = np.clip(np.asarray(va, dtype=float), -1, 1)
    out["valence"], out["arousal"] = va[:, 0], va[:, 1]
    out["va_origin"] = "pseudo"
    return out


def prepare_extra(extra_marked: pd.DataFrame, target_pseudo: pd.DataFrame, variant: Variant) -> tuple[pd.DataFrame, dict]:
    """Stage 3 for one variant: map (and relabel) B - subB against A's pseudo labels."""
    target_train = train_rows(target_pseudo)
    stats: dict = {"audit_before": criteria_audit(target_train, extra_marked).reset_index().to_dict("records")}
    mapped, stats["mapping"] = map_continuous(extra_marked, target_train, variant.mapping, b_stats_from=variant.b_stats_from)
    if variant.relabel:
        mapped, stats["relabel"] = relabel_nearest(mapped, target_train)
    stats["audit_after"] = criteria_audit(target_train, mapped).reset_index().to_dict("records")
    return mapped, stats


def oracle_extra(extra_prepared: pd.DataFrame) -> pd.DataFrame:
    """B with its discrete labels replaced by the hidden truth (synthetic world only)."""
    if "truth_label" not in extra_prepared:
        raise ValueError("the oracle needs the synthetic world's truth_label column")
    out = extra_prepared.copy()
    changed = out["label"].to_numpy() != out["truth_label"].to_numpy()
    out["label"] = out["truth_label"].astype("int64")
    out.loc[changed, "label_origin"] = "relabeled"
    return out


def straight_combination(target: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """A and B merged as they are, discrete labels only (the paper's 'combination straightly')."""
    b = extra.copy()
    b["valence"], b["arousal"], b["va_origin"] = np.nan, np.nan, "none"
    cols = [c for c in target.columns if c in b.columns]
    return pd.concat([target[cols], b[cols]], ignore_index=True)


def relabel_truth_report(extra_before: pd.DataFrame, extra_after: pd.DataFrame) -> dict:
    """With the synthetic world's truth: how many relabeled labels are right, before vs after."""
    if "truth_label" not in extra_after:
        return {}
    rest = ~extra_after.get(SUBSET_COLUMN, pd.Series(False, index=extra_after.index)).to_numpy(dtype=bool)
    truth = extra_after["truth_label"].to_numpy()
    changed = extra_after["label"].to_numpy() != extra_before["label"].to_numpy()
    return {
        "remaining_correct_before": float((extra_before["label"].to_numpy()[rest] == truth[rest]).mean()) if rest.any() else float("nan"),
        "remaining_correct_after": float((extra_after["label"].to_numpy()[rest] == truth[rest]).mean()) if rest.any() else float("nan"),
        "relabeled_share_correct": float((extra_after["label"].to_numpy()[changed] == truth[changed]).mean()) if changed.any() else float("nan"),
        "n_relabeled": int(changed.sum()),
        "subset_purity": float((extra_after["label"].to_numpy()[~rest] == truth[~rest]).mean()) if (~rest).any() else float("nan"),
    }
