"""The evidence a run's variant was chosen on (``run.py select``): a leaf record that the
configuration carries (``PipelineConfig.selection``) into the model card and the registry."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """Base: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CandidateScore(Record):
    """One candidate variant of ``run.py select``: its accuracy over the seeds (points)."""

    row: str
    val_mean: float
    val_sd: float
    test_mean: float
    test_sd: float


class SelectionEvidence(Record):
    """Why a run's variant was chosen (``run.py select``): every candidate's scores over the same
    seeds, the winner on validation and the seed-level t-interval of its lead over the runner-up.
    Set by the select command; a run that carries it puts it in the model card and the registry."""

    study: str = Field(description="the study that scored the candidates")
    seeds: list[int] = Field(description="the seeds every candidate ran")
    candidates: list[CandidateScore] = Field(description="each candidate's validation and test accuracy")
    winner: str = Field(description="the candidate with the best mean validation accuracy")
    runner_up: str | None = Field(None, description="the second best on validation")
    lead: float | None = Field(None, description="winner minus runner-up, validation points, mean over seeds")
    lead_lo: float | None = Field(None, description="95 % t-interval over seeds of the lead: low (one seed: none)")
    lead_hi: float | None = Field(None, description="95 % t-interval over seeds of the lead: high")

    def summary(self) -> str:
        interval = f" [{self.lead_lo:+.2f}, {self.lead_hi:+.2f}]" if self.lead_lo is not None else ""
        versus = f" ahead of {self.runner_up!r} by {self.lead:+.2f} points{interval}" if self.runner_up else ""
        return f"chosen on validation over seeds {self.seeds}: {self.winner!r}{versus} ({self.study})"
