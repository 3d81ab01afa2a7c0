"""Stages 1-3 of a run in one record (``StageSummary``, one artifact): the reports, the
labeling-criteria audit of B - subB before and after stage 3, and what each extra contributed."""

from __future__ import annotations

import pandas as pd

from dcjt.data.labels import split_rows
from dcjt.method.extras import contributions, transitions
from dcjt.method.reports import ExtrasPseudoReport, MappingReport, PseudoReport, RelabelReport, StageSummary, SubsetReport
from dcjt.method.truth import criteria_report


def summarise_stages(
    subset: SubsetReport,
    pseudo: PseudoReport,
    mapping: MappingReport,
    relabel: RelabelReport,
    extras_pseudo: ExtrasPseudoReport,
    target_pseudo: pd.DataFrame,
    extra_marked: pd.DataFrame,
    extra_prepared: pd.DataFrame,
) -> StageSummary:
    """The run's ``StageSummary``, the criteria audits (``before`` / ``after`` stage 3) included."""
    a = split_rows(target_pseudo, "train")
    before, after = split_rows(extra_marked, "train"), split_rows(extra_prepared, "train")
    audits, numbers = criteria_report(a, before, after)
    return StageSummary(
        subset=subset,
        pseudo=pseudo,
        mapping=mapping,
        relabel=relabel,
        extras_pseudo=extras_pseudo,
        audit=numbers,
        extras=contributions(extra_marked, extra_prepared).to_dict("records"),
        transitions=transitions(extra_marked, extra_prepared),
        criteria={when: audit.reset_index().to_dict("records") for when, audit in audits.items()},
    )
