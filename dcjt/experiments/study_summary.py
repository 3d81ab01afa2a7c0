"""A study's table: test and validation accuracy over seeds, the difference of each row to the
reference with intervals that include the seed-to-seed variance (``dcjt.experiments.statistics``),
Holm-adjusted p-values, the budget each row spent, and the synthetic world's diagnostics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.experiments.statistics import holm, seed_differences, t_interval, two_level_bootstrap

DIAGNOSTICS = (
    "subset_purity",
    "pseudo_rmse",
    "w2_truth_mean_emotion_before",
    "w2_truth_mean_emotion_after",
    "relabel_precision",
    "relabel_confirmed_precision",
    "relabel_changed_share",
    "relabel_coverage",
    "remaining_correct_after",
    "relabel_threshold",
    "relabel_weight",
)


def stage3_diagnostic(key: str) -> bool:
    """Stage 3's columns (any ``relabel_*``, the ``*_after`` audits): blank for a row that never
    trains on B - subB (target only, the subset rows)."""
    return key.startswith("relabel_") or key.endswith("_after")


def flag_budget(records: pd.DataFrame, cfg) -> pd.DataFrame:
    """The ``not_converged`` flag per record (``cfg``: the study's ``PipelineConfig``): the row ran
    to its epoch cap (no early stop) and its selected check lies in the last patience window, so
    validation was still improving when the budget ran out. (``selected_before_b`` comes with each
    record from its row's evaluation: ``RowEvaluation.selected_before_b``.)"""
    out = records.copy()
    if not {"selected_epoch", "epochs_run", "stop_reason"} <= set(out):
        return out
    dcn, budget = cfg.dcn, cfg.budget
    window = budget.patience * (dcn.joint_frequency if budget.patience_unit == "cycles" else 1)
    at_cap = out["stop_reason"].astype(str).str.startswith("all ") & (out["epochs_run"] >= dcn.epochs)
    out["not_converged"] = at_cap & (out["selected_epoch"] >= dcn.epochs - window)
    return out


def _sd(values: pd.Series) -> float:
    """Standard deviation over seeds in points (0 for one seed)."""
    return 100 * float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarise(
    records: pd.DataFrame, correct: dict[tuple[str, int], np.ndarray], reference: str, *, shared_images: bool = False
) -> pd.DataFrame:
    """One line per row: test and validation accuracy (mean +- sd over seeds), budget spent, and
    against the reference: the per-seed differences' mean +- sd, a t-interval over seeds, a
    two-level bootstrap interval (seeds, then test images), and Holm-adjusted p-values across the
    table's rows (``dcjt.experiments.statistics``); the synthetic-world diagnostics (means)."""
    lines = []
    for name, group in records.groupby("row", sort=False):
        seeds = sorted(group["seed"])
        line = {
            "row": name,
            "seeds": len(seeds),
            "accuracy_mean": 100 * group["accuracy"].mean(),
            "accuracy_std": _sd(group["accuracy"]),
            "images_seen": group["images_seen"].mean(),
            "epochs_run": group["epochs_run"].mean(),
        }
        if "val_accuracy" in group:
            line.update(val_accuracy_mean=100 * group["val_accuracy"].mean(), val_accuracy_std=_sd(group["val_accuracy"]))
        for col in ("b_passes", "selected_epoch"):
            if col in group:
                line[col] = group[col].mean()
        for col in ("not_converged", "selected_before_b"):
            if col in group:
                line[col] = int(group[col].fillna(False).astype(bool).sum())
        if "degenerate" in group:
            line["degenerate_seeds"] = int(group["degenerate"].fillna(False).astype(bool).sum())
        if name != reference and all((reference, s) in correct for s in seeds):
            row_c, ref_c = [correct[(name, s)] for s in seeds], [correct[(reference, s)] for s in seeds]
            diffs = seed_differences(row_c, ref_c)
            mean, lo, hi, p = t_interval(diffs)
            _, blo, bhi = two_level_bootstrap(row_c, ref_c, shared_images=shared_images)
            line.update(
                diff=100 * mean,
                diff_std=100 * diffs.std(ddof=1) if len(diffs) > 1 else 0.0,
                diff_lo=100 * lo,
                diff_hi=100 * hi,
                boot_lo=100 * blo,
                boot_hi=100 * bhi,
                p=p,
            )
        for k in DIAGNOSTICS:
            if k in group and group[k].notna().any():
                line[k] = group[k].mean()
        lines.append(line)
    out = pd.DataFrame(lines)
    if "p" in out:
        out["p_holm"] = holm(out["p"].tolist())
    return out


def best_on_validation(summary: pd.DataFrame, bounds: tuple[str, ...] = ()) -> str | None:
    """The row with the highest mean validation accuracy (what "best" means in a study); rows in
    ``bounds`` (upper bounds from the hidden truth, such as the oracle) are never best."""
    rows = summary[~summary["row"].isin(bounds)] if "row" in summary else summary
    if "val_accuracy_mean" not in rows or rows["val_accuracy_mean"].isna().all():
        return None
    return str(rows.loc[rows["val_accuracy_mean"].idxmax(), "row"])


def _interval(lo, hi) -> str:
    return f"[{lo:+.2f}, {hi:+.2f}]" if pd.notna(lo) and pd.notna(hi) else ""


def _flags(r) -> str:
    """The budget flags of a row's seeds, e.g. "not converged 2/5"."""
    seeds = int(r["seeds"])
    parts = [(k, r.get(col)) for k, col in (("not converged", "not_converged"), ("selected before B", "selected_before_b"))]
    return "; ".join(f"{k} {int(n)}/{seeds}" for k, n in parts if pd.notna(n) and n > 0)


def markdown(summary: pd.DataFrame, reference: str, title: str, bounds: tuple[str, ...] = ()) -> str:
    """The study as a markdown table: test and validation accuracy, the difference to the
    reference with both intervals and Holm's p, the budget, the diagnostics; then which row is
    best on validation and which rows were no better than the majority class."""
    head = [
        "row",
        "test % (mean ± sd)",
        "val % (mean ± sd)",
        f"Δ test vs {reference} (mean ± sd)",
        "95 % t-interval",
        "95 % two-level bootstrap",
        "Holm p",
        "images seen",
        "epochs",
        "passes over B",
        "selected epoch",
        "flags",
    ]
    diag = [k for k in DIAGNOSTICS if k in summary]
    line = lambda cells: "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"  # noqa: E731
    lines = [f"### {title}", "", line(head + diag), "|" + "---|" * (len(head) + len(diag))]
    for _, r in summary.iterrows():
        is_ref = r["row"] == reference
        has = pd.notna(r.get("diff"))
        cells = [
            r["row"],
            f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}",
            f"{r['val_accuracy_mean']:.2f} ± {r['val_accuracy_std']:.2f}" if pd.notna(r.get("val_accuracy_mean")) else "",
            "reference" if is_ref else (f"{r['diff']:+.2f} ± {r['diff_std']:.2f}" if has else ""),
            "" if is_ref else _interval(r.get("diff_lo"), r.get("diff_hi")),
            "" if is_ref else _interval(r.get("boot_lo"), r.get("boot_hi")),
            f"{r['p_holm']:.3f}" if not is_ref and pd.notna(r.get("p_holm")) else "",
            f"{r['images_seen']:,.0f}",
            f"{r['epochs_run']:.1f}",
            f"{r['b_passes']:.1f}" if pd.notna(r.get("b_passes")) else "",
            f"{r['selected_epoch']:.1f}" if pd.notna(r.get("selected_epoch")) else "",
            _flags(r),
        ]
        cells += [f"{r[k]:.3f}" if pd.notna(r.get(k)) else "" for k in diag]
        lines.append(line(cells))
    text = "\n".join(lines) + "\n"
    best = best_on_validation(summary, bounds)
    if best is not None:
        text += f"\nBest on validation (what this table calls best; the test split never chooses): **{best}**"
        shown = [b for b in bounds if b in set(summary["row"])]
        text += f" ({', '.join(shown)}: an upper bound from the hidden truth, not a candidate).\n" if shown else ".\n"
    if summary.get("not_converged", pd.Series(dtype=float)).fillna(0).gt(0).any():
        text += (
            "\n*not converged*: the row ran all its epochs and its selected check lies in the last patience window "
            "(validation still improving when the budget ended); compare such rows with care.\n"
        )
    if summary.get("selected_before_b", pd.Series(dtype=float)).fillna(0).gt(0).any():
        text += "\n*selected before B*: the selected check precedes the first pass over B: that model never trained on B.\n"
    if "degenerate_seeds" in summary:
        flat = summary[summary["degenerate_seeds"] > 0]
        for _, r in flat.iterrows():
            text += (
                f"\n- {r['row']}: {int(r['degenerate_seeds'])} of {int(r['seeds'])} seeds no better than always "
                "predicting the majority class (validation)\n"
            )
    return text
