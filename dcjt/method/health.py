"""Stage health gates: numbers each stage must meet before the next one may trust it.

DCJT's later stages trust stage 1: a weak M_A collapses the subset onto a few classes and
poisons everything after it, silently. Every limit is relative to what the data gives, so it
means the same on any dataset and does not sit inside a run's normal spread:

- stage 1: M_A agrees with A's validation labels beyond chance (Cohen's kappa: a model that
  always predicts A's majority class scores 0, however frequent that class), and B's subset holds
  a share of the classes B's rows hold (a collapsed subset trains a collapsed M_B);
- stage 2: each dimension of A's pseudo valence/arousal keeps a share of the spread of the V/A
  M_B learnt from (B's published labels), and M_B's V/A agree (CCC) with B's held-out subset rows;
- stage 3a: the map does not push many labels outside [-1, 1];
- stage 3b: the relabel rule, applied to rows whose label is trusted (A's validation rows with
  their pseudo V/A, each given every wrong label in turn), changes labels to the right class more
  often than relabeling everything to A's majority class would;
- every trained row: its selected model beats always predicting the majority class, and a joint
  row made its passes over B.

A gate applies only when the run's rows use its stage (``stages_used``). Each gate records what
it observed, its limit and the config key that sets it; ``gate_report`` raises ``GateError``
naming every failed gate in ``stop`` mode, so the run ends before anything is registered.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, M_A_COLUMN, NUM_CLASSES, SUBSET_COLUMN, majority_rate, split_rows
from dcjt.method.gaussian import va_array
from dcjt.method.relabel import RELABEL_READS
from dcjt.method.reports import GateRecord, GateReport, MappingReport, SubsetReport


class GateError(RuntimeError):
    """A stage's output is too weak for the next stage; the message names gates, numbers and keys,
    ``report`` holds them (in the process that raised it) for the failed run's MLflow record."""

    def __init__(self, message: str, report: GateReport | None = None):
        super().__init__(message)
        self.report = report


class Gate(GateRecord):
    """One gate's outcome (``dcjt.method.reports.GateRecord``) and its one-line description."""

    def line(self) -> str:
        basis = f"; {self.basis}" if self.basis else ""
        return f"{self.name} = {self.observed:.4g} (must be {self.rule} {self.threshold:.4g}{basis})"


def _check(name: str, observed: float, threshold: float, rule: str, key: str, basis: str = "") -> Gate:
    passed = {">=": observed >= threshold, "<=": observed <= threshold, ">": observed > threshold}[rule]
    return Gate(
        name=name, observed=float(observed), threshold=float(threshold), passed=bool(passed), rule=rule, key=key, basis=basis
    )


def of_dataset(dataset: str, gates: list[Gate]) -> list[Gate]:
    """The same gates applied to one extra dataset, named after it."""
    return [g.model_copy(update={"name": f"{dataset}: {g.name}"}) for g in gates]


def stages_used(method) -> frozenset[str]:
    """Which of stages 1-3 the rows of ``method`` (a ``MethodConfig``) train on: their gates apply.

    ``subset`` (M_A and B's subset), ``pseudo`` (A's pseudo V/A from M_B), ``mapping``, ``relabel``.
    """
    used: set[str] = set()
    on_remaining = method.extra_use == "all"  # stage 3 works on B - subB
    if on_remaining and method.mapping != "none":
        used |= {"mapping", "pseudo"}
    if on_remaining and RELABEL_READS[method.relabel]:  # every rule that reads stages 1-2 (not none, not the oracle)
        used |= {"relabel"} | RELABEL_READS[method.relabel]
    if method.continuous:
        used.add("pseudo")
    if method.extra_use == "subset" or on_remaining and used & {"mapping", "relabel"}:
        used.add("subset")
    if "pseudo" in used and method.pseudo_from == "subset":
        used.add("subset")
    return frozenset(used)


def gate_report(stage: str, gates: list[Gate], mode: str, applies: bool = True) -> GateReport:
    """The stage's gate record (for MLflow). Raises ``GateError`` on a failure in ``stop`` mode when
    the run's rows use the stage; a stage they do not use is recorded as ``not used``."""
    failed = [g for g in gates if not g.passed]
    report = GateReport(stage=stage, passed=not failed, mode=mode if applies else "not used", gates=list(gates))
    if failed and applies and mode == "stop":
        keys = [k for k in dict.fromkeys(g.key for g in failed) if k != "gates.mode"]
        raise GateError(
            f"{stage} health gate failed: "
            + "; ".join(g.line() for g in failed)
            + ". To continue anyway: "
            + "".join(f"--set {k}=VALUE or " for k in keys)
            + "--set gates.mode=warn",
            report,
        )
    return report


def failed_gates(reports: list[GateReport | None]) -> list[str]:
    """Lines for the gates that failed in records of stages the rows use (warn mode, studies)."""
    return [
        f"{r.stage}: {Gate(**g.model_dump()).line()}"
        for r in reports
        if r is not None and r.mode != "not used"
        for g in r.gates
        if not g.passed
    ]


# --- stage 1 ----------------------------------------------------------------------------------------
def subset_gates(m_a_metrics: dict, subset: SubsetReport, cfg, with_agreement: bool = True) -> list[Gate]:
    """Stage 1: M_A agrees with A's validation labels beyond chance; the subset keeps B's classes."""
    gates = []
    if with_agreement:
        kappa = m_a_metrics.get("val_kappa_selected", float("nan"))
        acc, floor = m_a_metrics.get("val_accuracy_selected"), m_a_metrics.get("val_majority_rate_selected")
        basis = f"accuracy {acc:.3f} vs majority class {floor:.3f}" if acc is not None and floor is not None else ""
        name = "M_A's agreement with A's validation labels (kappa)"
        gates.append(_check(name, kappa, cfg.m_a_min_kappa, ">=", "gates.m_a_min_kappa", basis))
    kept = subset.kept_per_class
    present = [e for e in EMOTIONS if subset.total_per_class[e] > 0]
    populated = sum(kept[e] >= max(cfg.subset_min_rows, 1) for e in present)
    share = populated / len(present) if present else 0.0
    basis = f"{populated} of the {len(present)} classes of B's rows"
    gates.append(
        _check(
            "share of B's classes held by the subset",
            share,
            cfg.subset_min_class_share,
            ">=",
            "gates.subset_min_class_share",
            basis,
        )
    )
    for emotion in EMOTIONS:
        total = subset.total_per_class[emotion]
        if total == 0:
            continue
        n = kept[emotion]
        gates.append(_check(f"subset rows of {emotion}", n, cfg.subset_min_rows, ">=", "gates.subset_min_rows"))
        gates.append(_check(f"subset share of {emotion}", n / total, cfg.subset_min_share, ">=", "gates.subset_min_share"))
    return gates


def extra_subset_gates(dataset: str, subset: SubsetReport, cfg) -> list[Gate]:
    """Stage 1 for one of several extras: M_A agrees with some of its rows (an extra it never
    agrees with has nothing in common with A's criteria), and its subset keeps its classes."""
    own = [_check("rows in the subset", subset.n_kept, 1, ">=", "data.extras")]
    return of_dataset(dataset, own + subset_gates({}, subset, cfg, with_agreement=False))


# --- stage 2 ----------------------------------------------------------------------------------------
def pseudo_gates(target_pseudo: pd.DataFrame, m_b_rows: pd.DataFrame, m_b_metrics: dict, cfg) -> list[Gate]:
    """Stage 2: each dimension of A's pseudo V/A keeps a share of the spread of the V/A M_B learnt
    from (``m_b_rows``: B's published labels), and M_B's V/A agree with B's held-out subset rows."""
    a = va_array(split_rows(target_pseudo, "train"))
    b = va_array(m_b_rows)
    a, b = a[~np.isnan(a).any(axis=1)], b[~np.isnan(b).any(axis=1)]
    gates = []
    for j, dim in enumerate(("valence", "arousal")):
        if len(a) >= 2 and len(b) >= 2:
            spread_b = float(b[:, j].std(ddof=1))
            limit = cfg.pseudo_min_spread_ratio * spread_b
            basis = f"{cfg.pseudo_min_spread_ratio:g} x the spread of B's published {dim}, {spread_b:.3f}"
            spread_a = float(a[:, j].std(ddof=1))
            gates.append(_check(f"spread of A's pseudo {dim}", spread_a, limit, ">=", "gates.pseudo_min_spread_ratio", basis))
        ccc = m_b_metrics.get(f"val_{dim}_ccc_selected")
        if ccc is not None and np.isfinite(ccc):
            gates.append(_check(f"M_B's {dim} CCC on held-out subset rows", ccc, cfg.m_b_min_ccc, ">=", "gates.m_b_min_ccc"))
    return gates


# --- stage 3 ----------------------------------------------------------------------------------------
def mapping_gates(mapping: MappingReport, cfg) -> list[Gate]:
    """Stage 3a: the map does not push many labels outside [-1, 1]."""
    return [_check("share of mapped V/A clipped", mapping.clipped_share, cfg.max_clipped_share, "<=", "gates.max_clipped_share")]


def trusted_rows(target_pseudo: pd.DataFrame, split: str = "val") -> pd.DataFrame:
    """Rows whose label is trusted, shaped as B - subB for a relabel rule: every row of A's
    ``split`` once per wrong label (``label``), its pseudo V/A and M_A's prediction, the trusted
    label in ``trusted_label``."""
    rows = split_rows(target_pseudo, split)
    rows = rows[~np.isnan(va_array(rows)).any(axis=1)].reset_index(drop=True)
    n = len(rows)
    wrong = (rows["label"].to_numpy()[:, None] + np.arange(1, NUM_CLASSES)[None, :]) % NUM_CLASSES
    out = rows.loc[np.repeat(np.arange(n), NUM_CLASSES - 1)].reset_index(drop=True)
    out["trusted_label"] = out["label"].to_numpy()
    out["label"] = wrong.reshape(-1).astype("int64")
    out[SUBSET_COLUMN] = False
    if M_A_COLUMN not in out:
        out[M_A_COLUMN] = -1
    return out


def relabel_health(trusted: pd.DataFrame, relabeled: pd.DataFrame) -> dict:
    """Precision (changes that land on the trusted label) and coverage (share of wrong labels
    changed) of a relabel rule on ``trusted_rows``, beside the majority-class rate of those rows."""
    truth = trusted["trusted_label"].to_numpy()
    changed = relabeled["label"].to_numpy() != trusted["label"].to_numpy()
    right = relabeled["label"].to_numpy() == truth
    n_rows = len(trusted) // (NUM_CLASSES - 1) if len(trusted) else 0
    return {
        "precision": float(right[changed].mean()) if changed.any() else float("nan"),
        "coverage": float(changed.mean()) if len(changed) else float("nan"),
        "recovered": float(right.mean()) if len(right) else float("nan"),
        "rows": n_rows,
        "majority_rate": majority_rate(truth[:: NUM_CLASSES - 1]) if n_rows else float("nan"),
    }


def posterior_health(record, validation: pd.DataFrame) -> dict:
    """A posterior mode's health in ``relabel_health``'s terms: the precision and coverage of its
    confident answers on A's validation rows (labels trusted) beside their majority-class rate."""
    if record is None or record.val_rows == 0:
        return {}
    labels = validation["label"].to_numpy()
    return {
        "precision": record.val_precision,
        "coverage": record.val_coverage,
        "rows": record.val_rows,
        "majority_rate": majority_rate(labels) if len(labels) else float("nan"),
    }


def relabel_gates(health: dict, cfg) -> list[Gate]:
    """Stage 3b: on trusted rows the rule changes labels to the right class more often than
    relabeling everything to A's majority class would (a rule that changes nothing passes)."""
    if not np.isfinite(health.get("precision", float("nan"))):
        return []
    floor = health["majority_rate"] + cfg.relabel_min_lift
    basis = f"A's majority-class rate {health['majority_rate']:.3f} + gates.relabel_min_lift {cfg.relabel_min_lift:g}"
    return [_check("relabel precision on A's validation rows", health["precision"], floor, ">", "gates.relabel_min_lift", basis)]


# --- every trained row ------------------------------------------------------------------------------
def row_gates(row: str, evaluation, joint: bool, min_b_passes: int) -> list[Gate]:
    """A trained row (a ``RowEvaluation``): its selected model beats always predicting A's majority
    class on the validation split, and a joint row made at least ``min_b_passes`` passes over B."""
    val = evaluation.val
    gates = [
        _check(
            f"{row}: validation accuracy of the selected model",
            val.accuracy,
            val.majority_rate,
            ">",
            "gates.mode",
            "always predicting A's majority class",
        )
    ]
    if joint and evaluation.b_passes is not None:
        gates.append(_check(f"{row}: passes over B", evaluation.b_passes, min_b_passes, ">=", "budget.min_b_passes"))
    return gates
