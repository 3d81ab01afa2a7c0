"""The one typed configuration of a pipeline run (pydantic): the schema, every default and its
validation.

YAML files in ``configs/`` set what differs from these defaults (``extends`` shares parts),
``--set a.b=value`` and the CLI shortcuts override single fields (``dcjt.config_files`` reads
them); validation errors name the key path (``dcn.lam: ...``). Steps receive these objects, not
dicts. The mode names come from ``dcjt.modes``, which the method shares, so this module sits
below ``dcjt.method``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dcjt.models.architecture import BACKBONES, HEADS
from dcjt.modes import (
    B_STATS_SOURCES,
    EVIDENCE,
    MAPPING_MODES,
    PSEUDO_SOURCES,
    RELABEL_CALIBRATION,
    RELABEL_MODES,
    RELABEL_VA,
    UNRESOLVED,
    RelabelRule,
)
from dcjt.schedule import joint_epochs
from dcjt.selection import SelectionEvidence
from dcjt.synthetic.world import WorldSpec
from dcjt.utils.mappings import deep_merge
from dcjt.utils.state import state_home

DATASETS = ("rafdb", "affectnet", "caers", "ferplus")
DATASETS_WITH_VA: tuple[str, ...] = ("affectnet",)


class Settings(BaseModel):
    """Base: unknown keys are errors (a typo never silently falls back to a default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SCNConfig(Settings):
    """Self-Cure Network (Wang et al., CVPR 2020; kaiwang960112/Self-Cure-Network) as a training
    mode: a sigmoid attention weight per image scales its logits, a rank regularisation keeps the
    top ``top_share`` of each batch's weights ``rank_margin`` above the rest, and from
    ``relabel_epoch`` on a sample of the low-weight group whose top probability beats its label's
    by more than ``relabel_margin`` takes the top class as its label."""

    enabled: bool = Field(False, description="set by the row (method.scn)")
    top_share: float = Field(0.7, gt=0, lt=1, description="beta: share of each batch in the high-importance group")
    rank_margin: float = Field(0.15, ge=0, description="delta_1 of the rank regularisation")
    relabel_margin: float = Field(0.2, ge=0, le=1, description="delta_2: P_max - P_label above which a sample is relabeled")
    relabel_epoch: int = Field(10, ge=0, description="first epoch (0-based) that relabels")
    relabel_group: Literal["low", "all"] = Field(
        "low", description="low: the low-importance group only (the paper); all: any sample (the official code)"
    )


class TrainConfig(Settings):
    """One training run's recipe (M_A, M_B, the DCN and every comparison row)."""

    epochs: int = Field(10, ge=1, le=10_000, description="epochs at most (the budget may stop a row earlier)")
    batch_size: int = Field(128, ge=2, le=65_536, description="rows per optimiser step (all processes together)")
    lr: float = Field(1e-3, gt=0, le=10, description="initial learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay of the optimiser")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="optimiser (sgd: momentum 0.9)")
    scheduler: Literal["step", "exponential", "cosine", "none"] = Field("step", description="learning-rate schedule per epoch")
    step_size: int = Field(40, ge=1, description="step schedule: epochs between two multiplications by gamma")
    gamma: float = Field(0.5, gt=0, description="step / exponential schedule: the factor")
    lam: float = Field(0.0, ge=0, description="lambda: weight of the valence/arousal MSE")
    warmup_epochs: int = Field(0, ge=0, description="joint schedule: epochs on A only before B comes in (Algorithm 3)")
    joint_frequency: int = Field(1, ge=1, description="joint schedule: a pass over B every this many epochs after the warm-up")
    joint_mode: Literal["batch", "epoch"] = Field(
        "epoch", description="a pass over B: a B batch after each A batch (the paper) or a whole pass (the official code)"
    )
    balanced_extra: bool = Field(True, description="draw the pass over B class-balanced (with replacement)")
    extra_balance: Literal["union", "each"] = Field(
        "union",
        description="joint passes over several extras: union = one class-balanced pass over their union; each = every "
        "extra an equal share of the pass, classes balanced within it",
    )
    scn: SCNConfig = Field(default_factory=SCNConfig, description="the Self-Cure Network mode (SCN rows only)")
    seed: int = Field(0, description="set from the run's seed")
    flip: bool = Field(True, description="random horizontal flips")
    erase_p: float = Field(0.5, ge=0, le=1, description="RandomErasing: the share of images erased")
    erase_scale: tuple[float, float] = Field((0.02, 0.25), description="RandomErasing: the erased area's share of the image")
    amp: bool = Field(True, description="CUDA: bf16 autocast")
    channels_last: bool = Field(True, description="CUDA: channels_last memory format")
    compile: bool = Field(False, description="torch.compile the network")
    prefetch: int = Field(2, ge=0, description="batches gathered ahead of the training step by a background thread (0: none)")
    oom_split: bool = Field(
        False, description="on out-of-memory, run batches in halves (gradients accumulated) instead of stopping"
    )
    eval_batch_size: int = Field(256, ge=1, description="rows per batch when predicting")
    # How long a row trains: set from the budget (``dcjt.train.budget.row_recipe``), rarely by hand.
    patience: int | None = Field(
        None, ge=1, description="stop after this many checks without a better val accuracy (dcjt.train.stopping)"
    )
    stop_every: int = Field(1, ge=1, description="epochs between stop checks, counted from the first joint epoch")
    min_epochs: int = Field(0, ge=0, description="no early stop before this many epochs")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps")
    schedule_steps: int | None = Field(
        None, ge=1, description="step budgets: the learning-rate schedule runs per optimiser step over this many steps"
    )
    schedule_epochs: int | None = Field(
        None, ge=1, description="step budgets: the epochs the schedule's step_size / gamma are written for"
    )
    check_every_steps: int | None = Field(
        None, ge=1, description="step budgets: validate every this many optimiser steps (and at the last one)"
    )
    stop_after_epochs: int | None = Field(
        None,
        ge=1,
        description="train only the first this many epochs of the recipe (a shared warm-up: dcjt.train.warmup; a race's "
        "rung: budget.rung); not part of the recipe's identity, so the whole recipe goes on from its checkpoint",
    )
    balanced: bool = Field(False, description="draw the main pass class-balanced (with replacement), as B's joint pass")
    devices: int = Field(1, ge=1, description="> 1: DistributedDataParallel over this many processes (GPUs)")

    @model_validator(mode="after")
    def _warmup_before_end(self) -> TrainConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        return self

    @model_validator(mode="after")
    def _scn_one_process(self) -> TrainConfig:
        if self.scn.enabled and self.devices > 1:
            raise ValueError("scn relabels its training rows as it goes: it runs in one process (devices: 1)")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def identity(self) -> dict:
        """What its checkpoints must agree on: the recipe, not where a run of it stops
        (``stop_after_epochs``): the whole recipe goes on from a cut-short run's checkpoint."""
        return self.model_dump(mode="json", exclude={"stop_after_epochs"})


class NetworkConfig(Settings):
    """The network every model of a run uses (M_A, M_B, the DCN and every row)."""

    backbone: Literal[BACKBONES] = Field("resnet18", description="trunk: ResNet-18, or a tiny ResNet for CPU demos")
    head: Literal[HEADS] = Field("linear", description="head: pooled linear, or ARM (de-albino + affinity, >= 96 px)")
    image_size: int = Field(224, ge=32, le=1024, description="side of the square face crop the network takes, in pixels")
    weights: str = Field(
        "imagenet",
        description="starting weights: imagenet (torchvision's cache), none, a local file (ResNet-18 ImageNet / "
        "MS-Celeb, or a checkpoint of this project), or models:/NAME@alias (a registered DCJT model)",
    )
    weights_digest: str | None = Field(None, description="set by the pre-flight check: SHA-256 of a weights file")

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_source(cls, v: str | None) -> str:
        if v in (None, "", "none", "null"):
            return "none"
        v = str(v)
        if v != "imagenet" and not v.startswith("models:/") and not Path(v).is_file():
            raise ValueError(f"not imagenet, none, models:/NAME@alias or an existing file: {v}")
        return v

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32 (the trunk's stride), got {v}")
        return v

    @model_validator(mode="after")
    def _imagenet_is_resnet18(self) -> NetworkConfig:
        if self.weights == "imagenet" and self.backbone != "resnet18":
            raise ValueError(f"imagenet weights are for the resnet18 backbone, not {self.backbone} (use weights: none)")
        return self


class MethodConfig(Settings):
    """Which rows the final network trains on, with which labels (paper Tables 1, 2, 8).

    The defaults are DCJT: A with pseudo V/A from M_B trained on B's subset (CLS), plus all of B
    (subset as labelled, B - subB mapped per emotion and relabeled), joint schedule. The target-only
    and straight baselines are settings of the same fields (``BASELINES``).
    """

    extra_use: Literal["none", "subset", "all"] = Field("all", description="rows of B the network trains on")
    continuous: bool = Field(True, description="train valence/arousal too (DL & CL) or discrete labels only (DL)")
    combine: Literal["joint", "merged"] = Field("joint", description="joint schedule, or A and B pooled every epoch")
    pseudo_from: Literal[PSEUDO_SOURCES] = Field("subset", description="M_B trains on B's subset (CLS) or all of B (CLE)")
    mapping: Literal[MAPPING_MODES] = Field(
        "emotion", description="stage 3a: none, global (Algorithm 1), emotion (Algorithm 2), emotion_ot (a W2 map per emotion)"
    )
    b_stats_from: Literal[B_STATS_SOURCES] = Field("all", description="B's Gaussians from all of B or from B - subB only")
    relabel: Literal[RELABEL_MODES] = Field(
        "nearest",
        description="stage 3b: none, nearest (the paper), gated, posterior (V/A Gaussians and M_A), latent (Dawid-Skene "
        "over B's label, M_A and V/A), oracle (the synthetic world's truth)",
    )
    gate_ratio: float = Field(0.8, gt=0, le=1, description="gated: new centre nearer than ratio x the old class's centre")
    gate_m_a: bool = Field(True, description="gated: M_A must also predict the new label")
    relabel_evidence: Literal[EVIDENCE] = Field(
        "both", description="posterior: V/A and M_A's probabilities (both), V/A alone (va) or M_A alone (m_a)"
    )
    relabel_va: Literal[RELABEL_VA] = Field(
        "published",
        description="posterior, latent: B's V/A as published (mapped first under map_first) or M_B's prediction for "
        "B's image (predicted: the instrument that gave A's pseudo V/A, so the confidence measured on A's validation "
        "rows carries over, and no map moves it by B's label)",
    )
    relabel_calibration: Literal[RELABEL_CALIBRATION] = Field(
        "a_validation",
        description="posterior, latent: the rows whose labels choose and judge the threshold (and M_A's weight): A's "
        "validation rows, or the rows of B - subB an audit labelled under A's criteria (audit: the rows the rule "
        "acts on, so the precision it reaches there carries over; data.world.audit_rows on the synthetic world)",
    )
    relabel_weight: float | None = Field(
        None, ge=0, description="posterior: M_A's weight beside V/A (null: chosen on A's validation rows)"
    )
    relabel_threshold: float | None = Field(
        None,
        gt=0,
        le=1,
        description="posterior, latent: the posterior a new label must reach (null: chosen on A's validation rows to "
        "reach relabel_precision; latent: relabel_precision itself)",
    )
    relabel_precision: float = Field(0.9, gt=0, le=1, description="posterior, latent: the precision a new label should reach")
    unresolved: Literal[UNRESOLVED] = Field(
        "keep",
        description="posterior, latent: rows of B - subB below the threshold keep their label, train on the posterior as a "
        "soft target (soft), or drop their discrete term (ignore)",
    )
    latent_max_iter: int = Field(
        200, ge=1, le=100_000, description="latent: EM's iteration cap (then a warning; the last estimate is kept)"
    )
    stage3_order: Literal["map_first", "relabel_first"] = Field(
        "map_first",
        description="map B - subB's V/A then relabel (the paper), or relabel on the unmapped V/A, then map by the new labels",
    )
    extra_fraction: float = Field(1.0, gt=0, le=1, description="seeded, stratified share of B's train rows used")
    scn: bool = Field(False, description="train the row as a Self-Cure Network (settings: dcn.scn)")
    target_use: bool = Field(
        True, description="train on A's train rows; false: the extras alone (paper Table 7's 'B only' pre-training)"
    )
    balanced: bool = Field(
        False, description="draw the row's main pass class-balanced, as DCJT's pass over B is (the balanced straight merge)"
    )

    @field_validator("relabel", mode="before")
    @classmethod
    def _relabel_flag(cls, v):
        return {True: "nearest", False: "none"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _something_to_train_on(self) -> MethodConfig:
        if self.target_use:
            return self
        if self.extra_use == "none":
            raise ValueError("method.target_use: false with method.extra_use: none leaves no training rows")
        if self.combine != "merged":
            raise ValueError("method.target_use: false needs method.combine: merged (the joint schedule warms up on A's rows)")
        return self

    @model_validator(mode="after")
    def _soft_targets_need_a_posterior(self) -> MethodConfig:
        if self.unresolved != "keep" and self.relabel not in ("posterior", "latent"):
            raise ValueError(f"method.unresolved: {self.unresolved} needs method.relabel: posterior or latent")
        if self.unresolved != "keep" and self.scn:
            raise ValueError("method.unresolved: soft targets cannot train a Self-Cure Network row (it relabels hard labels)")
        return self

    @model_validator(mode="after")
    def _latent_relabels_before_the_map(self) -> MethodConfig:
        if self.relabel_calibration != "a_validation" and self.relabel not in ("posterior", "latent"):
            raise ValueError(f"method.relabel_calibration: {self.relabel_calibration} needs method.relabel: posterior or latent")
        if self.relabel_va != "published" and self.relabel not in ("posterior", "latent"):
            raise ValueError(f"method.relabel_va: {self.relabel_va} needs method.relabel: posterior or latent")
        predicted = self.relabel_va == "predicted"  # M_B's V/A: no map moves it by B's label
        if self.relabel == "latent" and self.stage3_order == "map_first" and self.extra_use == "all" and not predicted:
            raise ValueError(
                "method.relabel: latent needs method.stage3_order: relabel_first: after the per-emotion map, B - subB's "
                "V/A is moved by B's own label, so the V/A answer repeats the label answer and the latent model counts "
                "one source twice (sure of most rows, right for few); set method.stage3_order=relabel_first or "
                "method.relabel_va=predicted"
            )
        return self

    def relabel_rule(self) -> RelabelRule:
        """Stage 3b's settings as the rule ``dcjt.method.relabel`` applies."""
        return RelabelRule(
            mode=self.relabel,
            gate_ratio=self.gate_ratio,
            gate_m_a=self.gate_m_a,
            evidence=self.relabel_evidence,
            va=self.relabel_va,
            calibration=self.relabel_calibration,
            weight=self.relabel_weight,
            threshold=self.relabel_threshold,
            precision=self.relabel_precision,
            unresolved=self.unresolved,
            max_iter=self.latent_max_iter,
        )

    @property
    def uses_joint_passes(self) -> bool:
        """Trains on B in passes of the joint schedule (DCJT and the oracle, not merged rows)."""
        return self.extra_use != "none" and self.combine == "joint"

    @property
    def variant_name(self) -> str:
        """Stable, readable name of the variant, e.g. ``dcjt-emotion-nearest``."""
        parts = [f"dcjt-{self.mapping}", self.relabel]
        if self.relabel == "posterior" and self.relabel_evidence != "both":
            parts.append(f"by-{self.relabel_evidence}")
        if self.relabel_va != "published":
            parts.append(f"va-{self.relabel_va}")
        if self.relabel_calibration != "a_validation":
            parts.append("audited")
        if self.unresolved != "keep":
            parts.append(self.unresolved)
        if self.stage3_order != "map_first":
            parts.append("relabel-first")
        if self.pseudo_from != "subset":
            parts.append(f"pseudo-{self.pseudo_from}")
        if self.extra_use != "all":
            parts.append(f"extra-{self.extra_use}")
        if not self.continuous:
            parts.append("discrete")
        if self.combine != "joint":
            parts.append(self.combine)
        if self.extra_fraction < 1:
            parts.append(f"b{self.extra_fraction:g}")
        if self.scn:
            parts.append("scn")
        if not self.target_use:
            parts.append("no-target")
        if self.balanced:
            parts.append("balanced")
        return "-".join(parts)


# The comparison rows reported beside DCJT: settings of the same method, trained with the DCN's
# recipe and budget, scored by the same evaluation step.
_STRAIGHT: dict[str, Any] = {"extra_use": "all", "continuous": False, "combine": "merged", "mapping": "none", "relabel": "none"}
BASELINES: dict[str, dict[str, Any]] = {
    "target_only": {"extra_use": "none", "continuous": False},
    "straight": _STRAIGHT,
    # The straight merge drawn class-balanced, as DCJT's pass over B is: the merge's other handicap.
    "straight_balanced": {**_STRAIGHT, "balanced": True},
    "oracle": {"relabel": "oracle"},  # synthetic world only: B relabeled with the hidden truth
    # The Self-Cure Network (paper Tables 3-4) on the straight combination and on A alone.
    "scn": {**_STRAIGHT, "scn": True},
    "scn_target": {"extra_use": "none", "continuous": False, "scn": True},
    # The straight combination without A (paper Table 7's "B only"): how far B's criteria are from A's.
    "extra_only": {**_STRAIGHT, "target_use": False},
}


class BudgetConfig(Settings):
    """How much training every reported row gets (equal epochs are not equal work), and when a row
    may stop early (``dcjt.train.stopping``): the same rule for DCJT and every baseline."""

    mode: Literal["converged", "steps"] = Field(
        "converged",
        description="converged: each row trains until val accuracy has not improved for `patience` joint cycles "
        "(at most dcn.epochs); steps: every row gets the same number of optimiser steps",
    )
    patience: int = Field(
        3,
        ge=1,
        description="converged: checks without a better validation accuracy before a row stops; checks close each "
        "joint cycle (dcn.joint_frequency epochs) from the first joint epoch, or each epoch with patience_unit: epochs",
    )
    patience_unit: Literal["cycles", "epochs"] = Field(
        "cycles", description="cycles: a check per joint cycle; epochs: a check per epoch after the warm-up"
    )
    min_share: float = Field(0.5, ge=0, le=1, description="converged: no row stops before this share of dcn.epochs")
    min_b_passes: int = Field(
        1, ge=0, description="a joint row (DCJT, the oracle) that ends with fewer passes over B stops the run"
    )
    steps: int | None = Field(None, ge=1, description="steps mode: None = the DCJT row's steps at dcn.epochs")
    checks: int = Field(
        20, ge=1, description="steps mode: validation checks spread evenly over the step budget (the same for every row)"
    )
    rung: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="train only this share of each row's epochs (at least one); a joint row past its warm-up "
        "and first pass over B, where its joint cycle stands at its last epoch (run.py select's race; the full "
        "budget later goes on from the row's checkpoint)",
    )


class DatasetSpec(Settings):
    """One dataset on disk in its release layout."""

    dataset: Literal[DATASETS] = Field(description="the release layout: rafdb, affectnet, caers, ferplus")
    root: str | None = Field(None, description="the dataset's folder")
    name: str | None = Field(None, description="the rows' dataset name (default: dataset); tells two of a kind apart")
    audit: str | None = Field(
        None,
        description="an extra dataset: a CSV file (image, emotion) of its images labelled again under the target's "
        "criteria, for method.relabel_calibration: audit",
    )
    fingerprint: str = Field("", description="set by the runner: changed files change ZenML's cache key")

    @property
    def label(self) -> str:
        return self.name or self.dataset


class DataConfig(Settings):
    """Target A and one or more extra datasets. ``extra`` is shorthand for a one-item ``extras``
    (beside several extras it is an error: set ``data.extras.K.root``)."""

    kind: Literal["synthetic", "files"] = Field("synthetic", description="the synthetic world, or datasets on disk")
    world: WorldSpec = Field(default_factory=WorldSpec, description="the synthetic world's populations")
    target: DatasetSpec | None = Field(None, description="A: the target dataset (discrete labels)")
    extras: list[DatasetSpec] = Field(default_factory=list, description="B (and more): the extra datasets")
    max_bad_fraction: float = Field(0.0, ge=0, le=1, description="share of unreadable images skipped (above it: an error)")

    @model_validator(mode="before")
    @classmethod
    def _extra_shorthand(cls, data):
        if not isinstance(data, dict) or data.get("extra") is None:
            return data
        data = dict(data)
        one = data.pop("extra")
        extras = list(data.get("extras") or [])
        if len(extras) > 1:
            raise ValueError(
                f"data.extra is shorthand for a single extra dataset, but data.extras lists {len(extras)}: "
                "set data.extras.K.root (K = 0, 1, ...) instead"
            )
        data["extras"] = [deep_merge(extras[0], one) if extras and isinstance(one, dict) else one]
        return data

    @model_validator(mode="after")
    def _audits_belong_to_extras(self) -> DataConfig:
        if self.target is not None and self.target.audit:
            raise ValueError(
                "data.target.audit: an audit labels an extra dataset's images under A's criteria; set data.extras.K.audit"
            )
        return self

    @model_validator(mode="after")
    def _files_need_roots(self) -> DataConfig:
        if self.kind != "files":
            return self
        if self.target is None:
            raise ValueError("data.target is not set (dataset and root)")
        if not self.extras:
            raise ValueError("data.extras is empty: DCJT needs at least one extra dataset (dataset and root)")
        roles = [("target", "--target-root DIR or ", self.target)]
        roles += [(f"extras.{k}", "--extra-root DIR or " if len(self.extras) == 1 else "", s) for k, s in enumerate(self.extras)]
        seen: dict[str, str] = {}
        names: dict[str, str] = {}
        for where, flag, spec in roles:
            if not spec.root:
                raise ValueError(f"data.{where}.root is not set: pass {flag}--set data.{where}.root=DIR")
            if not Path(spec.root).is_dir():
                raise ValueError(f"data.{where}.root: folder not found: {spec.root}")
            real = str(Path(spec.root).resolve())
            if real in seen:
                raise ValueError(
                    f"data.{where}.root is the same folder as data.{seen[real]}.root ({spec.root}): "
                    "its images would be counted twice"
                )
            seen[real] = where
            if spec.label in names:
                raise ValueError(
                    f"data.{where} and data.{names[spec.label]} are both named {spec.label!r}: "
                    f"set data.{where}.name to tell their rows apart"
                )
            names[spec.label] = where
        if not any(s.dataset in DATASETS_WITH_VA for s in self.extras):
            raise ValueError(
                f"data.extras: none has valence/arousal labels ({', '.join(DATASETS_WITH_VA)}); "
                "M_B (stage 2) trains on such an extra, and the others get its pseudo valence/arousal"
            )
        return self


class LeakageConfig(Settings):
    """The leakage guard (``dcjt.data.leakage``): before training, images of A's train/val rows and
    of every extra that are near-duplicates of A's test images leave the training data."""

    enabled: bool = Field(True, description="screen the training rows against A's test images")
    max_distance: int = Field(
        20,
        ge=0,
        lt=256,
        description="Hamming distance (of 256 perceptual-hash bits) at or below which two images count as one photo",
    )


class GatesConfig(Settings):
    """Stage health gates (``dcjt.method.health``): later stages trust earlier ones, so a weak stage
    stops the run (or warns). Every limit is relative to what the data gives."""

    mode: Literal["stop", "warn"] = Field("stop", description="a failed gate stops the run, or warns (studies)")
    m_a_min_kappa: float = Field(
        0.2, ge=-1, le=1, description="M_A's Cohen's kappa on A's validation split (0: no better than the majority class)"
    )
    subset_min_class_share: float = Field(
        0.5, ge=0, le=1, description="share of the classes of B's rows that B's subset holds (subset_min_rows rows each)"
    )
    subset_min_rows: int = Field(3, ge=0, description="rows of every class in B's subset")
    subset_min_share: float = Field(0.02, ge=0, le=1, description="share of each class of B kept in the subset")
    pseudo_min_spread_ratio: float = Field(
        0.25, ge=0, description="each dimension of A's pseudo V/A: std at least this x the std of B's published V/A"
    )
    m_b_min_ccc: float = Field(0.2, ge=-1, le=1, description="M_B's valence and arousal CCC on its held-out subset rows")
    max_clipped_share: float = Field(0.25, ge=0, le=1, description="share of mapped V/A clipped to [-1, 1]")
    relabel_min_lift: float = Field(
        0.0,
        ge=-1,
        le=1,
        description="relabel precision on A's validation rows must beat A's majority-class rate by more than this",
    )
    min_val_rows: int = Field(30, ge=1, description="A's validation split must hold at least this many rows to select on")


class PathsConfig(Settings):
    """Where state lives; empty values resolve under ``DCJT_HOME`` (default ./state)."""

    home: str = Field("", description="the state folder (default DCJT_HOME, else ./state)")
    cache_dir: str = Field("", description="decoded-image caches (default HOME/cache)")
    data_dir: str = Field("", description="the synthetic world's images (default HOME/data)")
    checkpoint_root: str = Field("", description="training checkpoints, for resuming (default HOME/checkpoints)")
    outputs: str = Field("", description="comparison CSVs and studies (default HOME/outputs)")
    handoff: Literal["shared_disk", "artifact_store"] = Field(
        "shared_disk",
        description="how image caches reach later steps: one disk every step sees (local, Kubernetes with the shared "
        "volume), or the stack's artifact store (Kubeflow: steps share no disk)",
    )

    @model_validator(mode="after")
    def _resolve(self) -> PathsConfig:
        home = Path(self.home) if self.home else state_home()
        defaults = {
            "home": home,
            "cache_dir": home / "cache",
            "data_dir": home / "data",
            "checkpoint_root": home / "checkpoints",
            "outputs": home / "outputs",
        }
        for key, value in defaults.items():
            if not getattr(self, key):
                object.__setattr__(self, key, str(value))
        return self


class RuntimeConfig(Settings):
    """How much of the machine a run takes (``dcjt.utils.runtime``): applied when every step starts
    and passed to every worker pool; ``--threads`` sets both."""

    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads every step may use (None: every core)")
    workers: int | None = Field(
        None, ge=1, le=1024, description="processes of every pool: cache build, image checks, rendering (None: threads)"
    )
    share_warmup: bool = Field(
        False,
        description="train the DCN's warm-up on A once per seed and go on from it in every row whose recipe agrees "
        "(the same numbers; studies and select turn it on: dcjt.train.warmup)",
    )


class MlflowConfig(Settings):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking server or store (default MLFLOW_TRACKING_URI, else HOME/mlflow.db)"
    )


class EvaluationConfig(Settings):
    test_curve: bool = Field(
        False,
        description="score the test split after every epoch (the paper-comparison number "
        "best_test_accuracy_over_epochs_for_comparison_only); never used to select",
    )


class PromotionConfig(Settings):
    """The gate between ``challenger`` and ``champion``: both models are scored in this run, by the
    same code, on the same rows of A's validation split (rows neither model trained on: the split
    is fixed by the dataset, and a champion whose training rows overlap them is not compared); the
    challenger is promoted only if it wins. The test split never selects."""

    metric: Literal["val_accuracy"] = Field("val_accuracy", description="accuracy on A's validation split")
    min_margin: float = Field(0.0, ge=0, le=1, description="the challenger must lead by more than this (accuracy points / 100)")
    bootstrap: bool = Field(True, description="also require the paired-bootstrap 95 % interval of the difference above 0")
    bootstrap_samples: int = Field(2000, ge=100, description="resamples of the paired bootstrap")
    force: bool = Field(False, description="promote the challenger whatever the gate says (e.g. an unusable champion)")
    beat_baselines: bool = Field(
        True,
        description="a DCN that scores below one of the run's own baseline rows on validation is registered, not promoted",
    )
    despite_failed_gates: bool = Field(
        False,
        description="let a run whose health gates failed in warn mode promote (when the gate says so): for smoke "
        "profiles whose models are weak on purpose; otherwise such a run is registered, not promoted",
    )

    @field_validator("metric", mode="before")
    @classmethod
    def _never_on_test(cls, v):
        if v == "test_accuracy":
            raise ValueError(
                "selecting on the test split is not offered: the promotion gate compares on A's validation split "
                "(val_accuracy); every version still reports its test accuracy"
            )
        return v


class PipelineConfig(Settings):
    name: str = Field(description="the config's name (run names, study names)")
    experiment: str = Field(description="MLflow experiment: one per target dataset")
    model_name: str = Field(description="MLflow registered model")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the synthetic world, initialisation and shuffles")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="share of A's train rows carved as its validation split")
    data: DataConfig = Field(default_factory=DataConfig, description="the datasets (or the synthetic world)")
    network: NetworkConfig = Field(default_factory=NetworkConfig, description="the network of every model")
    m_a: TrainConfig = Field(default_factory=TrainConfig, description="stage 1: M_A's recipe (the subset's selector)")
    m_b: TrainConfig = Field(default_factory=lambda: TrainConfig(lam=1.0), description="stage 2: M_B's recipe")
    dcn: TrainConfig = Field(
        default_factory=lambda: TrainConfig(lam=1.0), description="stage 4: the DCN's recipe, shared by every reported row"
    )
    finetune: TrainConfig = Field(
        default_factory=lambda: TrainConfig(lr=1e-4), description="run.py finetune: the recipe on the new target"
    )
    method: MethodConfig = Field(default_factory=MethodConfig, description="DCJT's variant (the paper's tables)")
    baselines: list[Literal[tuple(BASELINES)]] = Field(
        default_factory=lambda: ["target_only", "straight"], description="rows reported beside DCJT (dcjt.config.BASELINES)"
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="how long every row trains")
    gates: GatesConfig = Field(default_factory=GatesConfig, description="stage health gates")
    leakage: LeakageConfig = Field(default_factory=LeakageConfig, description="the leakage guard")
    min_image_side: int | None = Field(
        None, ge=1, description="serving: smaller images are refused (default: network.image_size / 4)"
    )
    register_model: bool = Field(True, description="register the DCN and run the promotion gate (studies: off)")
    tracking_tags: dict[str, str] = Field(default_factory=dict, description="extra tags of the MLflow parent run")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="what is scored beside the selection")
    promotion: PromotionConfig = Field(default_factory=PromotionConfig, description="the gate between challenger and champion")
    paths: PathsConfig = Field(default_factory=PathsConfig, description="where state lives")
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig, description="the MLflow tracking store")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="how much of the machine a run takes")
    selection: SelectionEvidence | None = Field(
        None, description="set by run.py select: the evidence the run's variant was chosen on (model card, registry)"
    )

    @model_validator(mode="before")
    @classmethod
    def _image_size_lives_in_network(cls, data):
        if isinstance(data, dict) and "image_size" in data:
            raise ValueError(f"image_size is set under network: use network.image_size={data['image_size']} (or --image-size)")
        return data

    @model_validator(mode="after")
    def _an_audit_exists_to_calibrate_on(self) -> PipelineConfig:
        """``relabel_calibration: audit`` needs audited rows of B: refused by key before any step."""
        if self.method.relabel_calibration == "audit":
            audited = self.data.world.audit_rows > 0 if self.data.kind == "synthetic" else any(s.audit for s in self.data.extras)
            if not audited:
                key = "data.world.audit_rows=N" if self.data.kind == "synthetic" else "data.extras.K.audit=FILE.csv"
                raise ValueError(f"method.relabel_calibration: audit needs audited rows of B: set {key}")
        return self

    @model_validator(mode="after")
    def _budget_reaches_the_joint_stage(self) -> PipelineConfig:
        """A budget that would end a joint row before its passes over B is refused before training."""
        b, dcn = self.budget, self.dcn
        if b.patience_unit == "epochs" and b.patience < dcn.joint_frequency:
            raise ValueError(
                f"budget.patience: {b.patience} epochs is shorter than one joint cycle (dcn.joint_frequency = "
                f"{dcn.joint_frequency} epochs), so a row could stop before B is trained on again; set budget.patience "
                f">= {dcn.joint_frequency}, or budget.patience_unit=cycles"
            )
        rows = [self.method] + [self.method_for(r) for r in self.baselines if r == "oracle"]
        joint = any(m.uses_joint_passes for m in rows)
        passes = joint_epochs(dcn.epochs, dcn.warmup_epochs, dcn.joint_frequency)
        if joint and b.mode == "converged" and passes < b.min_b_passes:
            raise ValueError(
                f"budget.min_b_passes: the joint schedule (dcn.epochs {dcn.epochs}, dcn.warmup_epochs "
                f"{dcn.warmup_epochs}, dcn.joint_frequency {dcn.joint_frequency}) passes over B {passes} time(s), "
                f"fewer than budget.min_b_passes = {b.min_b_passes}; raise dcn.epochs or lower the warm-up or frequency"
            )
        return self

    def method_for(self, row: str) -> MethodConfig:
        """The method settings of a reported row: ``dcjt`` or one of ``BASELINES``."""
        if row == "dcjt":
            return self.method
        # The oracle is DCJT with true labels; the other baselines ignore stage 3's settings, so
        # they start from the defaults (identical across variants: ZenML's cache serves them).
        shared = {"pseudo_from": self.method.pseudo_from, "extra_fraction": self.method.extra_fraction}
        base = self.method if row == "oracle" else MethodConfig(**shared)
        return base.model_copy(update=BASELINES[row])

    def recipe(self, stage: str = "dcn") -> dict:
        """What the registered model was trained with (its model card's recipe)."""
        return {
            "network": self.network.model_dump(mode="json"),
            stage: self.train_config(stage).to_dict(),
            "method": self.method.model_dump(mode="json"),
            "budget": self.budget.model_dump(mode="json"),
            "seed": self.seed,
        }

    def train_config(self, stage: str) -> TrainConfig:
        """The recipe of ``stage`` (m_a, m_b, dcn, finetune) with the run's seed."""
        return getattr(self, stage).model_copy(update={"seed": self.seed})
