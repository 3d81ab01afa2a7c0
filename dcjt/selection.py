"""The evidence a run's variant was chosen on (``run.py select``): a leaf record that the
configuration carries (``PipelineConfig.selection``) into the model card and the registry."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# How ``run.py select`` runs its candidates (the command line's choices and defaults read these).
STRATEGIES = ("race", "exhaustive")  # race: losers stop at the bound; exhaustive: every candidate, every seed
ALPHA = 0.05  # the race's bound: family-wise error per seed, one-sided (``dcjt.experiments.racing``)
# The race's rung: candidates race on this share of each row's epochs, then the finalists go on to
# the full budget (successive halving's usual reduction factor, 3; ``budget.rung``).
RUNG = 1 / 3


class Record(BaseModel):
    """Base: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CandidateScore(Record):
    """One candidate variant of ``run.py select``: its accuracy over the seeds it ran (points). The
    validation columns are on the ranking half of A's validation rows (``val_mean``: what ranked it)
    and on the other half (``heldout_mean``)."""

    row: str
    val_mean: float
    val_sd: float
    test_mean: float
    test_sd: float
    heldout_mean: float | None = None
    seeds: list[int] = Field(default_factory=list, description="the seeds it ran (a raced-out candidate: fewer)")
    steps: int = Field(
        0, description="optimiser steps of its trainings, summed over its seeds (a shared warm-up's: counted once, below)"
    )
    dropped_after: int | None = Field(None, description="the seed after which the race stopped it")
    full_val: float | None = Field(
        None, description="a race at a rung's finalist: its full-budget run (registered seed), ranking half"
    )
    full_heldout: float | None = Field(None, description="the same run on the held-out half of validation")
    full_test: float | None = Field(None, description="the same run's test accuracy (never used to choose)")


class SelectionEvidence(Record):
    """Why a run's variant was chosen (``run.py select``): every candidate's scores, the winner on
    the ranking half of A's validation rows, and its lead over the runner-up measured on the other
    half (rows that did not rank it), with the seed-level t-interval. Set by the select command; a
    version that carries it shows it in its model card and its registry tags."""

    study: str = Field(description="the selection's name (its files: outputs/studies/NAME)")
    seeds: list[int] = Field(description="the seeds of the race (every candidate ran the first)")
    strategy: str = Field("exhaustive", description="race: losers stop early; exhaustive: every candidate runs every seed")
    rung: float | None = Field(
        None, description="race: the share of each row's epochs the candidates raced at (None: the full budget)"
    )
    candidates: list[CandidateScore] = Field(description="each candidate's validation and test accuracy")
    winner: str = Field(description="the candidate with the best mean accuracy on the ranking half")
    runner_up: str | None = Field(None, description="the second best on the ranking half")
    lead: float | None = Field(
        None, description="winner minus runner-up on the held-out half of validation, points, mean over their common seeds"
    )
    lead_lo: float | None = Field(None, description="95 % t-interval over seeds of the held-out lead: low (one seed: none)")
    lead_hi: float | None = Field(None, description="95 % t-interval over seeds of the held-out lead: high")
    ranked_lead: float | None = Field(None, description="the same lead on the ranking half (its optimism: ranked_lead - lead)")
    full_lead: float | None = Field(
        None,
        description="a race at a rung: the winner minus the best other finalist (a baseline) at the full budget "
        "(registered seed, held-out half; one seed)",
    )
    full_versus: str | None = Field(None, description="that finalist")
    registered_seed: int | None = Field(None, description="the seed of the race's run the winner is registered from")
    runs: int = Field(0, description="pipeline runs the selection launched")
    steps: int = Field(
        0, description="optimiser steps of every candidate's trainings and each seed's shared warm-up (stages 1-2 not counted)"
    )

    def summary(self) -> str:
        interval = f" [{self.lead_lo:+.2f}, {self.lead_hi:+.2f}]" if self.lead_lo is not None else ""
        ranked = f"; on the rows that ranked it {self.ranked_lead:+.2f}" if self.ranked_lead is not None else ""
        versus = (
            f" ahead of {self.runner_up!r} by {self.lead:+.2f} points on held-out validation rows{interval}{ranked}"
            if self.runner_up and self.lead is not None
            else ""
        )
        full = (
            f"; at the full budget {self.full_lead:+.2f} over {self.full_versus!r} (seed {self.registered_seed})"
            if self.full_lead is not None
            else ""
        )
        how = self.strategy if self.rung is None else f"{self.strategy} on {self.rung:.0%} of the epochs, finalists finished"
        return f"chosen on validation over seeds {self.seeds} ({how}): {self.winner!r}{versus}{full} ({self.study})"
