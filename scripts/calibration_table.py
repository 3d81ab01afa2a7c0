"""The relabel rules' calibration, per world and rule, from finished studies (``study.csv`` of
``run.py study --table relabel --worlds ...``): the precision at the threshold on A's validation
rows (A's validation rows, or B's audited rows) judged in-sample and held out (cross-fitted), the
held-out ECE, the same against the synthetic world's truth on B - subB (rows no audit saw), the gap
between held-out and true precision, and the test gain over target only.

    python scripts/calibration_table.py STATE/outputs/studies/calibration-*    # markdown on stdout

Last line: ``calibration_gap: X`` (the largest gap between held-out and true precision shown).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = {  # study column -> table header ("calibration rows": A's validation rows, or B's audited rows)
    "relabel_threshold": "threshold",
    "relabel_insample_precision": "precision, in-sample",
    "relabel_heldout_precision": "precision, held out",
    "relabel_heldout_ece": "ECE, held out",
    "relabel_truth_precision": "precision vs truth",
    "relabel_truth_coverage": "coverage vs truth",
    "relabel_truth_ece": "ECE vs truth",
}
GAP = "gap (abs)"


def table(folders: list[Path]) -> pd.DataFrame:
    """One row per (world, rule, seed); a study folder is ``NAME-WORLD`` (a name without "-"); the
    gain is against the target-only row of the same world and seed in any of the folders."""
    study = pd.concat([pd.read_csv(f / "study.csv").assign(world=f.name.split("-", 1)[1]) for f in folders], ignore_index=True)
    base = study[study["row_id"] == "target_only"].groupby(["world", "seed"])["accuracy"].mean()
    records = []
    for _, r in study[study["row_id"] != "target_only"].iterrows():
        rec = {"world": r["world"], "rule": r["row"], "seed": int(r["seed"])}
        rec |= {name: r.get(col, np.nan) for col, name in COLUMNS.items()}
        rec[GAP] = abs(rec["precision, held out"] - rec["precision vs truth"])
        rec["test %"] = 100 * r["accuracy"]
        rec["gain over target only"] = 100 * (r["accuracy"] - base.get((r["world"], r["seed"]), np.nan))
        records.append(rec)
    return pd.DataFrame(records).sort_values(["rule", "world", "seed"]).reset_index(drop=True)


def over_seeds(out: pd.DataFrame) -> pd.DataFrame:
    """Per world and rule over seeds: how many seeds relabeled anything, the mean held-out and true
    precision of those, the mean and largest gap, the lowest true precision."""
    relabeled = out[out["precision vs truth"].notna()]
    g = relabeled.groupby(["world", "rule"])
    table = pd.DataFrame(
        {
            "seeds relabeling": g.size(),
            "held out (mean)": g["precision, held out"].mean(),
            "vs truth (mean)": g["precision vs truth"].mean(),
            "vs truth (lowest)": g["precision vs truth"].min(),
            "gap (mean)": g[GAP].mean(),
            "gap (largest)": g[GAP].max(),
        }
    )
    seeds = out.groupby(["world", "rule"]).size().rename("seeds")
    return table.join(seeds, how="right").fillna({"seeds relabeling": 0}).reset_index()


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python scripts/calibration_table.py STUDY_FOLDER [STUDY_FOLDER ...]")
    out = table([Path(a) for a in argv])
    print(out.to_markdown(index=False, floatfmt=".3f"))
    if out["seed"].nunique() > 1:
        print()
        print(over_seeds(out).to_markdown(index=False, floatfmt=".3f"))
    print(f"calibration_gap: {out[GAP].max():.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
