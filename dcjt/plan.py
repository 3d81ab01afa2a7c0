"""The run plan: what a pipeline run does, row by row, from its configuration alone.

One pure function (``plan_run``) turns a ``PipelineConfig`` into the run's rows: for each its id
(``dcjt`` or a key of ``BASELINES``), its method settings, the stage-3 table it trains on, the
stages whose gates its training relies on, its step names and whether it goes on from the run's
shared warm-up (``RunPlan.warmup``, ``dcjt.train.warmup``). The pipeline loops over the plan;
the steps that need a GPU on a cluster are the stage 1-2 network steps and every row's training
step (``GPU_STEPS``); studies and ``run.py select`` key their rows by the same ids (display
names are labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dcjt.config import BASELINES, MethodConfig, PipelineConfig, TrainConfig
from dcjt.method.health import stages_used

ROWS: tuple[str, ...] = ("dcjt", *BASELINES)  # every row a run can report: the one list of ids

# Steps of stages 1-2 that train or run a network over a dataset (the GPU image on a cluster).
STAGE_NETWORK_STEPS = ("train_m_a", "select_extra_subset", "train_m_b", "pseudo_label_target", "pseudo_label_extras")

# The stage-3 settings that decide B's prepared table (with the relabel rule): rows that agree on
# them share DCJT's table (and ZenML's cache), the others prepare their own.
STAGE3_KEYS = ("mapping", "b_stats_from", "stage3_order")

WARMUP_STEP = "train_warmup"  # the DCN's warm-up, trained once for the rows that share it (RunPlan.warmup)

# B's table a row trains on: as published (or unused), DCJT's prepared table, or its own stage 3.
ExtraTable = Literal["published", "prepared", "own"]


@dataclass(frozen=True)
class RowPlan:
    """One reported row of a run."""

    id: str
    method: MethodConfig
    extra: ExtraTable
    gates: frozenset[str]  # stages 1-3 whose output this row trains on: their gates apply to the run

    @property
    def label(self) -> str:
        """The row's name in tables: DCJT's variant name, else its id."""
        return self.method.variant_name if self.id == "dcjt" else self.id

    @property
    def joint(self) -> bool:
        """Trains on B in passes of the joint schedule (a row that makes too few stops the run)."""
        return self.method.uses_joint_passes

    @property
    def train_step(self) -> str:
        return train_step(self.id)

    @property
    def evaluate_step(self) -> str:
        return f"evaluate_{self.id}"

    @property
    def shares_warmup(self) -> bool:
        """Warms up as DCJT does: A's rows with V/A targets, no class balancing, no SCN, then the
        joint schedule (``dcjt.train.warmup`` checks the rest of the recipe by key)."""
        m = self.method
        return m.continuous and m.target_use and m.combine == "joint" and not m.balanced and not m.scn

    @property
    def stage3_steps(self) -> tuple[str, str]:
        """The (map, relabel) steps of the row's own stage 3 (``extra == "own"``)."""
        return f"map_{self.id}", f"relabel_{self.id}"


@dataclass(frozen=True)
class RunPlan:
    rows: tuple[RowPlan, ...]
    warmup: bool = False  # the DCN's warm-up trains once (``train_warmup``) for the rows that share it

    @property
    def gates(self) -> frozenset[str]:
        """Stages 1-3 the run's rows train on: only their gates can stop the run."""
        return frozenset().union(*(r.gates for r in self.rows))


def train_step(row_id: str) -> str:
    """A row's training step: DCJT's is ``train_dcn``, a baseline's ``train_<id>``."""
    return "train_dcn" if row_id == "dcjt" else f"train_{row_id}"


def extra_table(row_id: str, row: MethodConfig, dcjt: MethodConfig) -> ExtraTable:
    """B's table a row trains on: DCJT's prepared table; B as published (or unused) for rows without
    stage 3, shared by every variant so it stays cached; else B prepared the row's own way."""
    if row_id == "dcjt":
        return "prepared"
    if row.extra_use == "none" or (row.mapping, row.relabel) == ("none", "none"):
        return "published"
    same = all(getattr(row, k) == getattr(dcjt, k) for k in STAGE3_KEYS) and row.relabel_rule() == dcjt.relabel_rule()
    return "prepared" if same else "own"


def warmup_shareable(cfg: TrainConfig) -> bool:
    """A recipe whose warm-up can be trained once and gone on from: it has one, its network is the
    plain DCN (not SCN's) and it trains in one process."""
    return cfg.warmup_epochs > 0 and not cfg.scn.enabled and cfg.devices == 1


def plan_run(config: PipelineConfig) -> RunPlan:
    """DCJT's row, then each configured baseline; the shared warm-up where it is asked for and used."""
    rows = []
    for row_id in ("dcjt", *config.baselines):
        method = config.method_for(row_id)
        rows.append(RowPlan(row_id, method, extra_table(row_id, method, config.method), stages_used(method)))
    share = config.runtime.share_warmup and warmup_shareable(config.train_config("dcn"))
    return RunPlan(tuple(rows), warmup=share and any(r.shares_warmup for r in rows))


# Every step that may get a GPU, whichever rows a run reports (the remote run configurations):
# each trains or runs a network over a dataset.
GPU_STEPS: tuple[str, ...] = STAGE_NETWORK_STEPS + (WARMUP_STEP,) + tuple(train_step(r) for r in ROWS)
