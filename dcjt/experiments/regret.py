"""Cross-world summaries: how much each fixed choice of row, and the rule that chooses on
validation (``run.py select``), loses against the best row of each world and seed.

Regret of a row on (world, seed) = the best candidate's test accuracy there minus the row's own
(points; 0 for the best row). The best is taken per seed, so even the row that is best on average
has a positive mean regret: seed noise is part of what a team pays. Two selection rules are
scored like a row:

- ``select (per seed)``: at each (world, seed), the row with the best validation accuracy;
- ``select (seeds pooled)``: per world, the row with the best mean validation accuracy over the
  seeds (what ``run.py select --seeds ...`` registers), scored at each seed.

Intervals: a two-level bootstrap, worlds then seeds within each world (``two_level_regret``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SELECT_SEED = "select (per seed)"
SELECT_POOLED = "select (seeds pooled)"
RULES = (SELECT_SEED, SELECT_POOLED)


def regret_table(records: pd.DataFrame, candidates: list[str] | None = None) -> pd.DataFrame:
    """Long table (world, seed, row, accuracy, val_accuracy, regret, best) over the candidate
    rows plus the two selection rules; accuracies in points. ``records`` needs the columns world,
    seed, row, accuracy and val_accuracy (fractions, as a study writes them)."""
    rec = records if candidates is None else records[records["row"].isin(candidates)]
    rec = rec[["world", "seed", "row", "accuracy", "val_accuracy"]].copy()
    rec[["accuracy", "val_accuracy"]] *= 100
    missing = rec.groupby(["world", "seed"])["row"].nunique()
    n_rows = rec["row"].nunique()
    if (missing != n_rows).any():
        bad = missing[missing != n_rows].index.tolist()
        raise ValueError(f"regret needs every row on every (world, seed); incomplete: {bad[:5]}")
    best = rec.groupby(["world", "seed"])["accuracy"].transform("max")
    rec["regret"] = best - rec["accuracy"]
    rec["best"] = rec["accuracy"] == best
    picks = []
    # select per seed: the best validation score at that seed (ties: the first row in table order)
    order = {r: i for i, r in enumerate(dict.fromkeys(rec["row"]))}
    ranked = rec.assign(_order=rec["row"].map(order)).sort_values(
        ["world", "seed", "val_accuracy", "_order"], ascending=[True, True, False, True]
    )
    chosen = ranked.groupby(["world", "seed"], sort=False).head(1)
    picks.append(chosen.drop(columns="_order").assign(chosen=chosen["row"], row=SELECT_SEED))
    # select with the seeds pooled: per world the best mean validation score, scored at every seed
    means = rec.groupby(["world", "row"], sort=False)["val_accuracy"].mean().reset_index()
    means["_order"] = means["row"].map(order)
    winner = means.sort_values(["world", "val_accuracy", "_order"], ascending=[True, False, True]).groupby("world").head(1)
    pooled = rec.merge(winner[["world", "row"]], on=["world", "row"])
    picks.append(pooled.assign(chosen=pooled["row"], row=SELECT_POOLED))
    return pd.concat([rec.assign(chosen=rec["row"]), *picks], ignore_index=True)


def two_level_regret(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of a row's mean regret: resample worlds, then seeds within each world."""
    rng = np.random.default_rng(seed)
    by_world = [g["regret"].to_numpy() for _, g in table.groupby("world")]
    if len(by_world) < 2 and all(len(v) < 2 for v in by_world):
        return float("nan"), float("nan")
    means = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(0, len(by_world), len(by_world))
        means[b] = np.mean([rng.choice(by_world[i], len(by_world[i])).mean() for i in picked])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def regret_summary(long: pd.DataFrame) -> pd.DataFrame:
    """One line per row and rule: mean test accuracy, mean rank among the candidates, mean regret
    with its two-level interval, the worst regret and where, and the share of (world, seed) where
    it was the best row."""
    rows = long[~long["row"].isin(RULES)]
    ranks = rows.assign(rank=rows.groupby(["world", "seed"])["accuracy"].rank(ascending=False, method="average"))
    lines = []
    for name, g in long.groupby("row", sort=False):
        lo, hi = two_level_regret(g)
        worst = g.loc[g["regret"].idxmax()]
        r = ranks[ranks["row"] == name]["rank"] if name not in RULES else None
        lines.append(
            {
                "row": name,
                "accuracy_mean": g["accuracy"].mean(),
                "rank_mean": float(r.mean()) if r is not None else float("nan"),
                "regret_mean": g["regret"].mean(),
                "regret_lo": lo,
                "regret_hi": hi,
                "regret_worst": float(worst["regret"]),
                "worst_at": f"{worst['world']} seed {int(worst['seed'])}",
                "best_share": float(g["best"].mean()),
                "worlds": g["world"].nunique(),
                "seeds": int(g.groupby("world")["seed"].nunique().min()),
            }
        )
    return pd.DataFrame(lines)


def regret_by_world(long: pd.DataFrame) -> pd.DataFrame:
    """Mean regret per row (lines) and world (columns), points."""
    table = long.pivot_table(index="row", columns="world", values="regret", aggfunc="mean", sort=False)
    return table.reindex(list(dict.fromkeys(long["row"])))


def chosen_rows(long: pd.DataFrame) -> pd.DataFrame:
    """Which row each selection rule picked per world (seeds pooled) and how often per seed."""
    pooled = long[long["row"] == SELECT_POOLED].groupby("world")["chosen"].first()
    per_seed = long[long["row"] == SELECT_SEED].groupby("world")["chosen"].agg(lambda s: ", ".join(s))
    return pd.DataFrame({"seeds pooled": pooled, "per seed": per_seed})


def select_regret(long: pd.DataFrame, rule: str = SELECT_POOLED) -> float:
    """The headline: mean over worlds and seeds of the best row's test accuracy minus the selected
    row's (``rule``: seeds pooled, as ``run.py select`` chooses)."""
    return float(long[long["row"] == rule]["regret"].mean())
