"""More than one extra dataset: stages 1-3 dataset by dataset (their criteria differ from A's and
from one another's), over one table of extras told apart by its ``dataset`` column.

- Extras that publish valence/arousal (AffectNet) train M_B (on their subsets) and are mapped onto
  A's Gaussians with their own statistics, then relabeled.
- Extras with discrete labels only (CAER-S, FERPlus, RAF-DB as an extra) get M_B's pseudo
  valence/arousal, which are on A's scale already: no mapping; their rows outside the subset are
  relabeled by A's nearest class centre.

With one extra every function returns exactly what the single-extra stage returns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, SUBSET_COLUMN, split_rows
from dcjt.method.gaussian import label_confusion, matrix_record
from dcjt.method.mapping import map_continuous
from dcjt.method.relabel import relabel
from dcjt.method.reports import MappingReport, RelabelReport, SubsetReport
from dcjt.method.subset import select_subset
from dcjt.modes import RelabelRule


class ExtraDatasetError(ValueError):
    """An extra dataset cannot help A (no class in common); the message names it."""


def datasets(extra: pd.DataFrame) -> list[str]:
    """The extra datasets of the table, in order of appearance."""
    return [str(d) for d in pd.unique(extra["dataset"].astype(str))]


def va_datasets(extra: pd.DataFrame) -> list[str]:
    """The extras whose annotators published valence/arousal (rows with ``va_origin`` human)."""
    human = extra["va_origin"].astype(str) == "human"
    return [d for d in datasets(extra) if human[extra["dataset"].astype(str) == d].any()]


def _rows_of(extra: pd.DataFrame, dataset: str) -> np.ndarray:
    return (extra["dataset"].astype(str) == dataset).to_numpy()


def check_class_overlap(target: pd.DataFrame, extra: pd.DataFrame) -> dict:
    """Each extra must share classes with A's training rows; returns what each one lacks."""
    a_classes = set(np.unique(split_rows(target, "train")["label"]).tolist())
    report = {}
    for d in datasets(extra):
        rows = extra[_rows_of(extra, d) & (extra["split"] != "test").to_numpy()]
        own = set(np.unique(rows["label"]).tolist())
        if not own & a_classes:
            raise ExtraDatasetError(
                f"extra dataset {d!r}: its training rows hold classes {sorted(EMOTIONS[c] for c in own) or 'none'}, "
                f"none of which is in the target's training rows ({sorted(EMOTIONS[c] for c in a_classes)}): "
                "it cannot help the target; remove it from data.extras"
            )
        report[d] = {"missing_target_classes": [EMOTIONS[c] for c in sorted(a_classes - own)], "rows": len(rows)}
    return report


def subset_by_dataset(extra: pd.DataFrame, probs) -> dict[str, SubsetReport]:
    """Stage 1's statistics of each extra on its own (only when there are several)."""
    names = datasets(extra)
    if len(names) < 2:
        return {}
    probs = np.asarray(probs)
    out = {}
    for d in names:
        rows = _rows_of(extra, d)
        _, stats = select_subset(extra[rows].reset_index(drop=True), probs[rows])
        out[d] = stats
    return out


def map_by_dataset(
    extra: pd.DataFrame, target: pd.DataFrame, mode: str, *, b_stats_from: str = "all"
) -> tuple[pd.DataFrame, MappingReport]:
    """Stage 3a for every extra with published valence/arousal, each with its own statistics;
    the other extras (pseudo valence/arousal, already on A's scale) pass through."""
    names = va_datasets(extra)
    if datasets(extra) == names and len(names) == 1:
        return map_continuous(extra, target, mode, b_stats_from=b_stats_from)
    out = extra.copy()
    per: dict[str, MappingReport] = {}
    for d in names:
        rows = _rows_of(extra, d)
        mapped, per[d] = map_continuous(extra[rows], target, mode, b_stats_from=b_stats_from)
        for col in ("valence", "arousal", "va_origin"):
            out.loc[rows, col] = mapped[col].to_numpy()
    report = MappingReport(
        mode=mode,
        b_stats_from=b_stats_from,
        n_mapped=sum(r.n_mapped for r in per.values()),
        n_clipped=sum(r.n_clipped for r in per.values()),
        fallbacks=[dict(f, dataset=d) for d, r in per.items() for f in r.fallbacks],
        per_dataset=per,
    )
    return out, report


def relabel_by_dataset(
    extra: pd.DataFrame, target: pd.DataFrame, rule: RelabelRule, *, validation: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, RelabelReport]:
    """Stage 3b (a rule per row, so the labels are those of one pass over every extra) with each
    extra's own statistics and transition matrix beside the overall ones."""
    out, report = relabel(extra, target, rule, validation=validation)
    names = datasets(extra)
    if len(names) > 1 and rule.mode != "none":
        report.per_dataset = {d: relabel(extra[_rows_of(extra, d)], target, rule, validation=validation)[1] for d in names}
    return out, report


def contributions(extra_marked: pd.DataFrame, extra_prepared: pd.DataFrame) -> pd.DataFrame:
    """What each extra brought to training: rows, subset share, valence/arousal source, mapped and
    relabeled rows (its transition matrix: ``transitions``), over its training rows."""
    marked, prepared = split_rows(extra_marked, "train"), split_rows(extra_prepared, "train")
    published = va_datasets(extra_marked)
    lines = []
    for d in datasets(marked):
        m, p = marked[_rows_of(marked, d)], prepared[_rows_of(prepared, d)]
        subset = m[SUBSET_COLUMN].to_numpy(dtype=bool) if SUBSET_COLUMN in m else np.zeros(len(m), bool)
        old, new = m["label"].to_numpy(), p["label"].to_numpy()
        origins = p["va_origin"].astype(str).value_counts()
        line = {
            "dataset": d,
            "train_rows": len(m),
            "subset_rows": int(subset.sum()),
            "subset_share": float(subset.mean()) if len(m) else 0.0,
            "va": "published" if d in published else "pseudo (M_B)",
            "mapped_rows": int(origins.get("mapped", 0)),
            "relabeled_rows": int((old != new).sum()) if len(old) == len(new) else 0,
        }
        line["relabeled_share_of_rest"] = line["relabeled_rows"] / max(len(m) - line["subset_rows"], 1)
        lines.append(line)
    return pd.DataFrame(lines)


def transitions(extra_marked: pd.DataFrame, extra_prepared: pd.DataFrame) -> dict[str, dict]:
    """Each extra's relabel transition matrix (old label x new label) over its training rows."""
    marked, prepared = split_rows(extra_marked, "train"), split_rows(extra_prepared, "train")
    return {
        d: matrix_record(
            label_confusion(marked[_rows_of(marked, d)]["label"], prepared[_rows_of(prepared, d)]["label"]),
            "old label",
            "new label",
        )
        for d in datasets(marked)
    }
