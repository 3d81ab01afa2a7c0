"""What a team reads in MLflow: the parent run's description, a registry version's page and tags,
the per-emotion counts on dataset inputs (pure functions; the pipeline tests read them back)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.models.emotions import EMOTIONS
from dcjt.registry.card import quality_tags, version_description
from dcjt.registry.lifecycle import PromotionOutcome
from dcjt.registry.run_page import comparison_table, run_description
from dcjt.train.metrics import classification_report, confusion_matrix
from dcjt.train.scoring import RowEvaluation, SplitScores
from dcjt.utils.markdown import markdown_table
from dcjt.utils.mlflow_io import class_counts


def _scores(truth, pred, split="test") -> SplitScores:
    truth, pred = np.asarray(truth), np.asarray(pred)
    return SplitScores(
        split=split,
        n=len(truth),
        **classification_report(truth, pred),
        confusion=confusion_matrix(truth, pred).tolist(),
        correct=(truth == pred).astype(int).tolist(),
    )


def _row(row: str, truth, pred) -> RowEvaluation:
    return RowEvaluation(row=row, variant=row, val=_scores(truth, pred, "val"), test=_scores(truth, pred), images_seen=10)


TRUTH = [0, 0, 3, 3, 5, 5]


def test_version_page_names_the_emotions_it_never_gets_right_and_its_own_baselines():
    dcjt = _row("dcjt", TRUTH, [0, 0, 3, 3, 0, 3])  # anger never right
    baseline = _row("target_only", TRUTH, [0, 0, 3, 3, 5, 5])  # perfect
    sources = {"target (A)": "/data/rafdb", "extra (B)": "/data/affectnet"}
    text = version_description(dcjt, [baseline], sources, "#/experiments/1/runs/r/artifactPath/model_card.md")
    assert text.startswith("DCJT row `dcjt` on /data/rafdb (A) + /data/affectnet (B)")
    assert "[model_card.md](#/experiments/1/runs/r/artifactPath/model_card.md)" in text
    assert "**Never right on test:** anger (recall 0)." in text
    assert "| **dcjt** (this version) | 0.6667 | 0.6667 |" in text and "| target_only | 1.0000 | 1.0000 | 1.0000 |" in text
    assert "| anger | 0.000 | 0.000 | 0.000 | 2 |" in text
    fine_tuned = version_description(baseline, [], {"target (A)": "/a", "extra (B)": ""}, "#x")
    assert "on /a (A): validation" in fine_tuned and "Never right" not in fine_tuned


def test_quality_tags_cover_every_emotion_and_agree_with_the_report():
    row = _row("dcjt", TRUTH, [0, 3, 3, 3, 0, 3])
    tags = quality_tags(row)
    assert {f"test.{m}.{e}" for e in EMOTIONS for m in ("precision", "recall", "f1")} <= set(tags)
    assert tags["test.macro_f1"] == f"{row.test.macro_f1:.4f}" and tags["test.never_right"] == "anger"
    assert tags["test.recall.surprise"] == "0.5000" and tags["test.precision.happiness"] == "0.5000"
    assert tags["test.recall.fear"] == "0.0000"  # absent from truth: recall 0, but not "never right"


def test_run_description_is_the_comparison_table_with_the_verdict():
    rows = [_row("dcjt", TRUTH, [0, 0, 3, 3, 0, 3]), _row("target_only", TRUTH, [0, 0, 0, 0, 0, 0])]
    promotion = PromotionOutcome(
        model_name="fer", version="3", model_uri="m", promoted=False, verdict="lost", reason="b", accuracy=0.6,
        gate_metric_challenger=0.6,
    )  # fmt: skip
    text = run_description(comparison_table(rows), promotion, ["row dcjt: too few passes"])
    assert "| dcjt | 66.67 | 66.67 | 10 |" in text
    assert "- `target_only`: no better than the majority class" in text
    assert "`fer` version 3: **lost** (b)" in text and "Gates: failed (warned): row dcjt: too few passes." in text
    assert "Registry: nothing registered." in run_description(comparison_table(rows), None, [])


def test_class_counts_tag_every_emotion_even_when_absent():
    tags = class_counts(pd.DataFrame({"label": [0, 0, 6]}), EMOTIONS)
    assert tags == {**{f"rows.{e}": "0" for e in EMOTIONS}, "rows.surprise": "2", "rows.neutral": "1", "rows": "3"}
    assert class_counts(pd.DataFrame({"image": ["a"]}), EMOTIONS) == {}


def test_markdown_table_blanks_missing_values():
    text = markdown_table(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x", "y"]}, index=["r1", "r2"]), digits=2)
    assert text.splitlines() == ["|  | a | b |", "|---|---|---|", "| r1 | 1.23 | x |", "| r2 |  | y |"]


def test_the_stage_summary_carries_the_criteria_audits_through_its_artifact():
    """The stage reports travel as one artifact: the criteria audits inside it come back as the
    same tables after a JSON round trip (NaN for a class B - subB lacks included)."""
    from dcjt.method.gaussian import criteria_audit, matrix_record
    from dcjt.method.reports import MappingReport, PseudoReport, RelabelReport, StageSummary, SubsetReport

    rng = np.random.default_rng(0)

    def rows(n, classes):
        return pd.DataFrame({"label": rng.choice(classes, n), "valence": rng.normal(size=n), "arousal": rng.normal(size=n)})

    audits = {
        "before": criteria_audit(rows(200, range(7)), rows(300, range(6))),
        "after": criteria_audit(rows(200, range(7)), rows(90, range(7))),
    }
    assert audits["before"]["w2"].isna().any()  # neutral is missing from B - subB before
    counts = {e: 1 for e in EMOTIONS}
    subset = SubsetReport(
        n_rows=7,
        n_kept=7,
        kept_fraction=1.0,
        kept_per_class=counts,
        total_per_class=counts,
        agreement=matrix_record(np.eye(7, dtype=int), "extra label", "M_A prediction"),
    )
    summary = StageSummary(
        subset=subset,
        pseudo=PseudoReport(),
        mapping=MappingReport(mode="emotion"),
        relabel=RelabelReport(mode="nearest"),
        criteria={when: a.reset_index().to_dict("records") for when, a in audits.items()},
    )
    back = StageSummary.model_validate_json(summary.model_dump_json()).criteria_tables()
    for when, audit in audits.items():
        pd.testing.assert_frame_equal(back[when], audit)
