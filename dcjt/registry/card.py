"""The model card of a registered DCN: a markdown page stored with the model and its run.

Built from numbers the pipeline already has (label tables, stage statistics, the evaluation,
the training recipe, the promotion decision); nothing here is estimated separately.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, counts_by_split_and_class
from dcjt.train.scoring import RowEvaluation
from dcjt.utils.markdown import markdown_table

INTENDED_USE = """\
## Intended use and limits
- Classifies a face crop into one of 7 basic emotions (RAF-DB order: surprise, fear, disgust,
  happiness, sadness, anger, neutral) and estimates valence and arousal in [-1, 1].
- The label follows the *target* dataset's annotation criteria; valence/arousal follow the extra
  dataset's scale as mapped onto the target's emotions (DCJT stage 3). Neither is a measurement
  of what a person feels.
- Inputs must be face crops like the training data (aligned, roughly frontal). Images smaller
  than the model's minimum side are refused with an error, not guessed.
- Accuracy is measured on the target's test split only; expect lower accuracy on other
  populations, poses, lighting and cameras. Not for decisions about individuals (hiring,
  policing, health) without an independent evaluation on that population.
"""


def per_class_table(confusion: list[list[int]]) -> pd.DataFrame:
    """Precision, recall, F1 and support per emotion from a confusion matrix (rows: truth)."""
    m = np.asarray(confusion, dtype=float)
    support = m.sum(axis=1)
    predicted = m.sum(axis=0)
    hits = np.diag(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}, index=list(EMOTIONS)
    )


def _selection_section(selection) -> list[str]:
    """How the variant was chosen (``run.py select``): each candidate's scores over the seeds."""
    table = pd.DataFrame(
        [
            {
                "seeds": len(c.seeds) or len(selection.seeds),
                "val % (ranked)": c.val_mean,
                "val % (held out)": c.heldout_mean,
                "test % mean": c.test_mean,
                "test % sd": c.test_sd,
                "stopped after seed": c.dropped_after,
                **(
                    {"full budget: val % (held out)": c.full_heldout, "full budget: test %": c.full_test}
                    if selection.rung is not None
                    else {}
                ),
            }
            for c in selection.candidates
        ],
        index=[c.row for c in selection.candidates],
    )
    lines = ["## How this variant was chosen", selection.summary() + "."]
    if selection.rung is not None:
        lines.append(
            f"The candidates raced on a rung: {selection.rung:.0%} of each row's epochs, a joint row's rounded up to "
            "where its joint cycle stands at its last epoch (the validation and test columns); the winner and the baselines "
            f"then went on from those runs to the full budget at seed {selection.registered_seed} (the full-budget columns: one "
            "seed), and this version is the winner's."
        )
    return [*lines, markdown_table(table, digits=2)]


@dataclass(frozen=True)
class RunData:
    """The run's data behind a version: A's table and its image cache (the gate's rows, the
    parity images), B's prepared table and the stage numbers (the model card)."""

    target_table: pd.DataFrame
    target_cache: str
    extra_table: pd.DataFrame
    stage_numbers: dict = field(default_factory=dict)


def model_card(
    model_name: str,
    data: RunData,
    evaluation: RowEvaluation,
    sources: dict[str, str],
    recipe: dict,
    decision: dict,
    selection=None,
) -> str:
    """The card as markdown. ``data``: the run's tables and stage numbers (subset, relabel and
    audit figures); ``evaluation``: the row's scores; ``sources``: role -> dataset root;
    ``recipe``: network / training settings; ``decision``: the promotion gate's outcome;
    ``selection``: the evidence of ``run.py select``."""
    target_table, extra_table, stage_numbers = data.target_table, data.extra_table, data.stage_numbers
    test = evaluation.test
    va_text = (
        markdown_table(pd.DataFrame([test.va_truth], index=["test (hidden truth)"]))
        if test.va_truth
        else "The target dataset has no valence/arousal labels: V/A is not scored on its test split."
    )
    sections = [
        f"# Model card: {model_name}, DCJT row `{evaluation.variant}`",
        f"Promotion gate: **{decision.get('verdict')}**: {decision.get('reason')}.",
        *(_selection_section(selection) if selection is not None else []),
        "## Data",
        *[f"- {role}: `{root}`" for role, root in sources.items()],
        "Target (A) rows per split and emotion:",
        markdown_table(counts_by_split_and_class(target_table)),
        "Extra (B) rows per split and emotion, after subset selection, mapping and relabeling:",
        markdown_table(counts_by_split_and_class(extra_table)),
        "## Labeling-criteria audit (stages 1-3)",
        markdown_table(pd.DataFrame([stage_numbers], index=["value"]).T) if stage_numbers else "not available",
        "## Metrics on the target's test split",
        f"accuracy {test.accuracy:.4f}, mean class accuracy {test.mean_class_accuracy:.4f}, macro-F1 {test.macro_f1:.4f} "
        f"on {test.n} images; the epoch was selected on validation (accuracy {evaluation.val.accuracy:.4f}).",
        *(
            [
                f"**Selected before B**: the selected check (epoch {evaluation.selected_epoch}) precedes the first of "
                f"its {evaluation.b_passes} passes over B: this model trained on A alone and is never promoted as DCJT."
            ]
            if evaluation.selected_before_b
            else []
        ),
        markdown_table(per_class_table(test.confusion)),
        "### Valence / arousal",
        va_text,
        "## Training recipe",
        "```json",
        json.dumps(recipe, indent=2, sort_keys=True, default=str),
        "```",
        INTENDED_USE,
    ]
    return "\n\n".join(sections) + "\n"


def quality_tags(evaluation: RowEvaluation) -> dict[str, str]:
    """Per-emotion precision / recall / F1 on the test split and macro-F1, as registry version tags
    (``test.f1.anger``...): searchable and shown on the version page."""
    test = evaluation.test
    table = per_class_table(test.confusion)
    tags = {f"test.{m}.{e}": f"{table.loc[e, m]:.4f}" for e in EMOTIONS for m in ("precision", "recall", "f1")}
    never = never_right(test.confusion)
    return tags | {"test.macro_f1": f"{test.macro_f1:.4f}", "test.never_right": ", ".join(never) or "none"}


def never_right(confusion: list[list[int]]) -> list[str]:
    """Emotions present in the split that the model never gets right (recall 0)."""
    table = per_class_table(confusion)
    return [e for e in EMOTIONS if table.loc[e, "support"] > 0 and table.loc[e, "recall"] == 0]


def version_description(
    challenger: RowEvaluation, baselines: list[RowEvaluation], sources: dict[str, str], card_link: str
) -> str:
    """The registry version's page: what it was trained on, its scores beside the baselines of its
    own run (same splits, same code), its per-emotion quality and a link to the full model card."""
    test = challenger.test
    rows = [challenger, *baselines]
    scores = pd.DataFrame(
        {
            "val accuracy": [r.val.accuracy for r in rows],
            "test accuracy": [r.test.accuracy for r in rows],
            "test macro-F1": [r.test.macro_f1 for r in rows],
        },
        index=[f"**{r.row}** (this version)" if r is challenger else r.row for r in rows],
    )
    trained_on = " + ".join(f"{root} {role.split()[-1]}" for role, root in sources.items() if root)  # "/data/rafdb (A)"
    never = never_right(test.confusion)
    warning = [f"**Never right on test:** {', '.join(never)} (recall 0)."] if never else []
    return "\n\n".join(
        [
            f"DCJT row `{challenger.variant}` on {trained_on}: validation "
            f"accuracy {challenger.val.accuracy:.4f}, test accuracy {test.accuracy:.4f}, test macro-F1 {test.macro_f1:.4f}.",
            f"Model card: [model_card.md]({card_link}) (also in the model's artifacts).",
            *warning,
            "Rows of the same run (same splits, same code; the epoch selected on validation):",
            markdown_table(scores, digits=4),
            "Per emotion on the test split:",
            markdown_table(per_class_table(test.confusion)),
        ]
    )
