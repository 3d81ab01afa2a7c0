"""The label table: one row per image, the contract between every DCJT stage.

Columns (required): dataset, split, image, label, valence, arousal, label_origin, va_origin.
Optional: face box (face_x, face_y, face_w, face_h), landmarks (flat x,y list), and hidden
truth columns prefixed ``truth_`` that only the synthetic world fills and training never reads.

This module is the single source of truth for the column contract; the emotion order is
``dcjt.models.emotions`` (the network's output order), re-exported here for table code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from dcjt.models.emotions import EMOTIONS, NUM_CLASSES  # the class order of every table (one source)

SPLITS = ("train", "val", "test")
# relabeled: stage 3b gave the row a new label; soft: it trains on a class posterior
# (``SOFT_COLUMNS``); ignored: its discrete term is dropped (soft columns all 0).
LABEL_ORIGINS = ("human", "relabeled", "soft", "ignored")
VA_ORIGINS = ("human", "pseudo", "mapped", "none")

REQUIRED_COLUMNS = ("dataset", "split", "image", "label", "valence", "arousal", "label_origin", "va_origin")
BOX_COLUMNS = ("face_x", "face_y", "face_w", "face_h")
LANDMARK_COLUMN = "landmarks"
SUBSET_COLUMN = "in_subset"  # set by stage 1: rows of B that M_A agrees with
M_A_COLUMN = "m_a_label"  # set by stage 1: M_A's predicted class for each row of B
# A label under A's criteria that an audit gave a row of B (-1: not audited): the rows on which the
# posterior relabel rules can be calibrated (``method.relabel_calibration: audit``).
AUDIT_COLUMN = "audit_label"
M_B_VA_COLUMNS = ("m_b_valence", "m_b_arousal")  # set by stage 2: M_B's predicted V/A for each row of B
M_A_PROB_COLUMNS = tuple(f"m_a_p_{e}" for e in EMOTIONS)  # set by stage 1: M_A's class probabilities
SOFT_COLUMNS = tuple(f"soft_{e}" for e in EMOTIONS)  # set by stage 3b: a soft target (NaN: the label)


class LabelTableError(ValueError):
    """A label table breaks the contract; the message names the rows and values."""


def make_table(
    dataset: str,
    split,
    image,
    label,
    valence=None,
    arousal=None,
    *,
    va_origin: str | None = None,
    extra: dict | None = None,
) -> pd.DataFrame:
    """Build a label table with the canonical dtypes from column-like inputs."""
    n = len(image)
    val = np.full(n, np.nan) if valence is None else np.asarray(valence, dtype="float64")
    aro = np.full(n, np.nan) if arousal is None else np.asarray(arousal, dtype="float64")
    if va_origin is None:
        va_origin = "none" if valence is None else "human"
    df = pd.DataFrame(
        {
            "dataset": pd.Series([dataset] * n, dtype="string"),
            "split": pd.Series(np.asarray(split, dtype=object) if not isinstance(split, str) else [split] * n, dtype="string"),
            "image": pd.Series(np.asarray(image, dtype=object), dtype="string"),
            "label": np.asarray(label, dtype="int64"),
            "valence": val,
            "arousal": aro,
            "label_origin": pd.Series(["human"] * n, dtype="string"),
            "va_origin": pd.Series(np.where(np.isnan(val) | np.isnan(aro), "none", va_origin).astype(object), dtype="string"),
        }
    )
    for key, values in (extra or {}).items():
        df[key] = values
    return df


def check_table(df: pd.DataFrame, name: str = "table") -> None:
    """Fast structural checks (columns, dtypes, label range) that need no GX.

    The GX suite (``dcjt.data.validation``) checks the full contract; this is the cheap guard used
    on every read and write so that a broken table never travels silently.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise LabelTableError(f"{name}: missing columns {missing}; have {list(df.columns)}")
    if not pd.api.types.is_integer_dtype(df["label"]):
        raise LabelTableError(f"{name}: column 'label' must be integer, got {df['label'].dtype}")
    bad = df.index[(df["label"] < 0) | (df["label"] >= NUM_CLASSES)]
    if len(bad):
        rows = df.loc[bad[:5], ["image", "label"]].to_dict("records")
        raise LabelTableError(f"{name}: {len(bad)} labels outside 0..{NUM_CLASSES - 1}, e.g. {rows}")


def user_file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Check the structure, then write parquet atomically (temp file + rename): no half-written
    table. ``dcjt.data.validation.write_valid_table`` runs the full GX suite first."""
    path = Path(path)
    check_table(df, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, user_file_mode())  # mkstemp makes 0600; the table gets the user's normal mode
    try:
        df.reset_index(drop=True).to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a label table and run the cheap structural checks."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"label table not found: {path}")
    df = pd.read_parquet(path)
    check_table(df, str(path))
    return df


def split_rows(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split, re-indexed from 0."""
    return table[table["split"] == split].reset_index(drop=True)


def counts_by_split_and_class(df: pd.DataFrame) -> pd.DataFrame:
    """Counts per split (rows) and emotion (columns), for CLI reports and logs."""
    table = pd.crosstab(df["split"], df["label"]).reindex(columns=range(NUM_CLASSES), fill_value=0)
    table.columns = list(EMOTIONS)
    table["total"] = table.sum(axis=1)
    return table


def stratified_val_split(df: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Move a stratified, seeded fraction of each class of ``train`` into ``val``.

    Used where a dataset publishes no validation split; ``test`` is never touched.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    out = df.copy()
    if fraction == 0.0 or (out["split"] == "val").any():
        return out
    rng = np.random.default_rng(seed)
    train_idx = out.index[out["split"] == "train"]
    chosen = []
    for _, idx in out.loc[train_idx].groupby("label").groups.items():
        idx = np.asarray(idx)
        k = int(round(len(idx) * fraction))
        if k and len(idx) > 1:
            chosen.append(rng.choice(idx, size=min(k, len(idx) - 1), replace=False))
    if chosen:
        out.loc[np.concatenate(chosen), "split"] = "val"
    return out


def check_validation_rows(table: pd.DataFrame, val_fraction: float, min_rows: int, name: str) -> None:
    """A's validation split selects every model: too few rows and the choice is noise."""
    n = int((table["split"] == "val").sum())
    if n < min_rows:
        raise ValidationSplitError(
            f"{name}: the validation split holds {n} rows, fewer than gates.min_val_rows = {min_rows}: too few to select "
            f"a model on; raise val_fraction (now {val_fraction:g}) or lower gates.min_val_rows"
        )


class ValidationSplitError(ValueError):
    """A's validation split is too small to select a model on; names the keys that size it."""


def stratified_sample(df: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A seeded share ``fraction`` of each class's rows (at least one row per class present)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for _, idx in df.groupby("label").groups.items():
        idx = np.asarray(idx)
        k = max(1, int(round(len(idx) * fraction)))
        chosen.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    return df.loc[np.sort(np.concatenate(chosen))] if chosen else df.iloc[:0]


def majority_rate(y_true) -> float:
    """Accuracy of always predicting the most frequent true class: the floor a model must beat."""
    counts = np.bincount(np.asarray(y_true, int), minlength=NUM_CLASSES)
    return float(counts.max() / counts.sum()) if counts.sum() else float("nan")
