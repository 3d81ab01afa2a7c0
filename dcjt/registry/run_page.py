"""The run's page: the comparison of its rows and the parent run's description in the MLflow UI
(pure functions over typed results; ``steps.tracking`` logs them)."""

from __future__ import annotations

import pandas as pd

from dcjt.registry.lifecycle import PromotionOutcome
from dcjt.train.scoring import RowEvaluation
from dcjt.utils.markdown import markdown_table

COMPARISON_COLUMNS = ["variant", "accuracy", "val_accuracy", "images_seen", "epochs_run", "steps", "b_passes", "flag"]


def comparison_table(rows: list[RowEvaluation]) -> pd.DataFrame:
    """One line per reported row: test and validation accuracy, the training budget it had, and a
    flag for a row no better than always predicting A's majority class (on validation)."""
    lines = [
        {
            "variant": r.row,
            "accuracy": r.test.accuracy,
            "val_accuracy": r.val.accuracy,
            **{c: getattr(r, c) for c in COMPARISON_COLUMNS[3:7]},
            "flag": "no better than the majority class" if r.degenerate else "",
        }
        for r in rows
    ]
    return pd.DataFrame(lines, columns=COMPARISON_COLUMNS)


def run_description(comparison: pd.DataFrame, promotion: PromotionOutcome | None, failed: list[str]) -> str:
    """The parent run's description in the MLflow UI: the comparison table (the answer of the run),
    the registry's verdict and the gates."""
    table = comparison.set_index("variant").drop(columns=["flag"]).rename(columns=lambda c: c.replace("_", " "))
    table[["accuracy", "val accuracy"]] *= 100
    flags = [f"- `{r.variant}`: {r.flag}" for r in comparison.itertuples() if r.flag]
    verdict = (
        f"`{promotion.model_name}` version {promotion.version}: **{promotion.verdict}** ({promotion.reason})"
        if promotion
        else "nothing registered"
    )
    return "\n\n".join(
        [
            "**Rows of this run** (accuracy in % on A's test split, the epoch selected on validation; same recipe and budget):",
            markdown_table(table, digits=2),
            *(["Flags:\n" + "\n".join(flags)] if flags else []),
            f"Registry: {verdict}.",
            f"Gates: {'failed (warned): ' + '; '.join(failed) if failed else 'passed'}.",
        ]
    )
