"""The method's mode names and the relabel rule: the settings vocabulary that the configuration
(its choices) and the method (what it applies) share.

A leaf module: it imports nothing of the project, so ``dcjt.config`` sits below ``dcjt.method``
and the method's functions take typed settings. Which stages each relabel mode reads, and so
which gates apply to it, is the method's knowledge (``dcjt.method.relabel.RELABEL_READS``); a
unit test fails when a mode here has no entry there.
"""

from __future__ import annotations

from dataclasses import dataclass

MAPPING_MODES = ("none", "global", "emotion", "emotion_ot")  # stage 3a: none, Algorithm 1, Algorithm 2, a W2 map
B_STATS_SOURCES = ("all", "remaining")  # B's Gaussians from all of B or from B - subB
PSEUDO_SOURCES = ("subset", "all")  # M_B trains on B's subset (CLS) or all of B (CLE)
RELABEL_MODES = ("none", "nearest", "gated", "posterior", "latent", "oracle")  # stage 3b
EVIDENCE = ("both", "va", "m_a")  # posterior: V/A and M_A, V/A alone, M_A alone
RELABEL_CALIBRATION = ("a_validation", "audit")  # posterior, latent: rows the threshold is chosen and judged on
RELABEL_VA = ("published", "predicted")  # posterior, latent: B's V/A as published (or mapped), or M_B's prediction
UNRESOLVED = ("keep", "soft", "ignore")  # posterior, latent: rows below the threshold


@dataclass(frozen=True)
class RelabelRule:
    """How stage 3b relabels (``MethodConfig.relabel_rule()`` builds it from the config;
    ``dcjt.method.relabel.relabel`` applies it)."""

    mode: str = "nearest"
    gate_ratio: float = 0.8  # gated
    gate_m_a: bool = True  # gated
    evidence: str = "both"  # posterior: both | va | m_a
    calibration: str = "a_validation"  # posterior, latent: A's validation rows or B's audited rows
    va: str = "published"  # posterior, latent: B's V/A as the table holds it, or M_B's prediction (``RELABEL_VA``)
    weight: float | None = None  # posterior: M_A's weight (None: chosen on A's validation rows)
    threshold: float | None = None  # posterior, latent: None: chosen on validation / the target precision
    precision: float = 0.9  # posterior, latent: the precision a new label should reach
    unresolved: str = "keep"  # posterior, latent: keep | soft | ignore
    max_iter: int = 200  # latent: EM's iteration cap

    def __post_init__(self) -> None:
        if self.mode not in RELABEL_MODES:
            raise ValueError(f"unknown relabel mode {self.mode!r}; choose from {RELABEL_MODES}")
        if self.calibration not in RELABEL_CALIBRATION:
            raise ValueError(f"unknown relabel calibration {self.calibration!r}; choose from {RELABEL_CALIBRATION}")
        if self.va not in RELABEL_VA:
            raise ValueError(f"unknown relabel V/A source {self.va!r}; choose from {RELABEL_VA}")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ValueError(f"relabel threshold must be in (0, 1], got {self.threshold}")
        if self.weight is not None and self.weight < 0:
            raise ValueError(f"posterior weight must be >= 0, got {self.weight}")
        if not 0 < self.precision <= 1:
            raise ValueError(f"relabel precision must be in (0, 1], got {self.precision}")
        if self.unresolved not in UNRESOLVED:
            raise ValueError(f"unresolved rows: choose from {UNRESOLVED}, got {self.unresolved!r}")
