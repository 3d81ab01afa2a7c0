"""An audit of an extra dataset: some of its images labelled again by the team under the target's
criteria (a CSV file with the columns ``image`` and ``emotion``), so the posterior relabel rules
can choose and judge their threshold on rows of B - subB whose label under A's criteria is known
(``method.relabel_calibration: audit``). Emotion names follow the canonical order's spelling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dcjt.data.labels import AUDIT_COLUMN, EMOTIONS


class AuditError(ValueError):
    """An audit file that cannot be read or does not match its dataset: one line naming the file and row."""


def read_audit(path: str | Path, table: pd.DataFrame, dataset: str, root: str | None = None) -> pd.DataFrame:
    """``table`` with ``AUDIT_COLUMN`` set on the rows of ``dataset`` that the audit file at
    ``path`` labels (each ``image`` relative to the dataset's ``root``, as in its release's lists);
    -1 elsewhere. Every audited image must be a train row of that dataset, once, with a known emotion."""
    path = Path(path)
    try:
        audit = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise AuditError(f"audit file {path} (data.extras.K.audit): not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AuditError(f"audit file {path}: not a CSV file ({type(exc).__name__})") from None
    missing = [c for c in ("image", "emotion") if c not in audit.columns]
    if missing:
        raise AuditError(f"audit file {path}: no column {missing[0]!r} (columns: image, emotion)")
    known = {name: k for k, name in enumerate(EMOTIONS)}
    mine = (table["dataset"].astype(str) == dataset).to_numpy() & (table["split"] == "train").to_numpy()
    where = pd.Series(np.flatnonzero(mine), index=table["image"].astype(str).to_numpy()[mine])
    out = table.copy()
    if AUDIT_COLUMN not in out:
        out[AUDIT_COLUMN] = -1
    seen: set[str] = set()
    for i, (image, emotion) in enumerate(zip(audit["image"], audit["emotion"].str.strip().str.lower()), start=2):
        if emotion not in known:
            raise AuditError(f"audit file {path}, row {i}: unknown emotion {emotion!r} (one of {', '.join(EMOTIONS)})")
        key = str(Path(root) / image) if root and not Path(image).is_absolute() else image
        if key not in where.index:
            raise AuditError(f"audit file {path}, row {i}: image {image!r} is not a train image of {dataset}")
        if key in seen:
            raise AuditError(f"audit file {path}, row {i}: image {image!r} is audited twice")
        seen.add(key)
        out.iloc[where[key], out.columns.get_loc(AUDIT_COLUMN)] = known[emotion]
    out[AUDIT_COLUMN] = out[AUDIT_COLUMN].astype("int64")
    return out
