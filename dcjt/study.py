"""Studies: the paper's ablation tables as named rows of the one pipeline, and their statistics.

A row is a name and the config values it sets (``method.*``); each (row, seed) is one pipeline
run, so shared stages come from ZenML's cache. Statistics (``dcjt.statistics``): mean and
standard deviation over seeds of test and validation accuracy, and for each row the per-seed
differences to the table's reference row with a t-interval over seeds, a two-level bootstrap
interval (seeds, then test images) and Holm-adjusted p-values across the table's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dcjt.config import BASELINES
from dcjt.statistics import holm, seed_differences, t_interval, two_level_bootstrap


@dataclass(frozen=True)
class Row:
    name: str
    values: dict = field(default_factory=dict)  # dotted config keys -> values
    synthetic_only: bool = False


def _method(**kw) -> dict:
    return {f"method.{k}": v for k, v in kw.items()}


TARGET_ONLY = Row("target only (A, DL)", _method(**BASELINES["target_only"]))
STRAIGHT = Row("straight A + B", _method(**BASELINES["straight"]))
STRAIGHT_BALANCED = Row("straight A + B, class-balanced", _method(**BASELINES["straight_balanced"]))
DCJT = Row("DCJT", {})
ORACLE = Row("oracle (B relabeled by truth)", _method(**BASELINES["oracle"]), synthetic_only=True)

# Paper Table 1: A alone or A + B's subset; discrete labels, or with pseudo V/A from M_B trained on
# all of B (CLE) or on the subset (CLS).
TABLE_1 = [
    Row("A / DL", _method(extra_use="none", continuous=False)),
    Row("A / DL & CLE", _method(extra_use="none", pseudo_from="all")),
    Row("A / DL & CLS", _method(extra_use="none", pseudo_from="subset")),
    Row("A + subB / DL", _method(extra_use="subset", continuous=False)),
    Row("A + subB / DL & CLE", _method(extra_use="subset", pseudo_from="all")),
    Row("A + subB / DL & CLS", _method(extra_use="subset", pseudo_from="subset")),
]

# Paper Table 2: A (CLE or CLS) + subset + B - subB with original or relabeled discrete labels x
# original / global / per-emotion continuous labels; plus the OT map and the gated relabel.
_MAPPING_NAMES = {"none": "orig CL", "global": "GCLM", "emotion": "EDCLM"}
TABLE_2 = [
    Row(
        f"{src} / {'relabeled' if relabel != 'none' else 'orig'} DL / {_MAPPING_NAMES[mapping]}",
        _method(pseudo_from=("all" if src == "CLE" else "subset"), relabel=relabel, mapping=mapping),
    )
    for src in ("CLE", "CLS")
    for relabel in ("none", "nearest")
    for mapping in ("none", "global", "emotion")
] + [
    Row("CLS / relabeled DL / EDCLM-OT", _method(relabel="nearest", mapping="emotion_ot")),
    Row("CLS / gated DL / EDCLM", _method(relabel="gated", mapping="emotion")),
    Row("CLS / gated DL / orig CL", _method(relabel="gated", mapping="none")),
]

# More than one extra (synthetic world: the third, discrete-only population C) and the SCN
# baseline of paper Tables 3-4, beside target only, straight and DCJT.
EXTRA2_ROWS = 2500  # C: half the size of B in the demo world
WITH_C = {"data.world.n_extra2": EXTRA2_ROWS}
SCN_STRAIGHT = Row("SCN on straight A + B", _method(**BASELINES["scn"]))
SCN_TARGET = Row("SCN on A", _method(**BASELINES["scn_target"]))
TABLE_EXTRAS = [
    TARGET_ONLY,
    STRAIGHT,
    DCJT,
    Row("straight A + B + C", {**STRAIGHT.values, **WITH_C}, synthetic_only=True),
    Row("DCJT A + B + C", dict(WITH_C), synthetic_only=True),
    SCN_STRAIGHT,
    SCN_TARGET,
]

# Paper Table 8: DCJT with a seeded, stratified share of B.
TABLE_8 = [TARGET_ONLY] + [Row(f"DCJT, B {int(f * 100)} %", _method(extra_fraction=f)) for f in (0.1, 0.5, 1.0)]

TABLES: dict[str, list[Row]] = {
    "main": [TARGET_ONLY, STRAIGHT, STRAIGHT_BALANCED, DCJT, ORACLE],
    "1": TABLE_1,
    "2": TABLE_2,
    "8": TABLE_8,
    "extras": TABLE_EXTRAS,
}
REFERENCES = {
    "main": TARGET_ONLY.name,
    "1": "A / DL",
    "2": "CLS / orig DL / orig CL",
    "8": TARGET_ONLY.name,
    "extras": TARGET_ONLY.name,
}


MAX_SEED, MAX_SEEDS = 99_999, 1_000  # a study is rows x seeds pipeline runs: a typo should not start 100,000 of them


class StudyError(ValueError):
    """An unknown table or row, or seeds that do not parse."""


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` or ``0-2`` -> [0, 1, 2]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds += list(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise StudyError(f"--seeds {text!r}: expected integers like 0,1,2 or 0-2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise StudyError(f"--seeds {text!r}: expected distinct integers like 0,1,2")
    if min(seeds) < 0 or max(seeds) > MAX_SEED or len(seeds) > MAX_SEEDS:
        raise StudyError(f"--seeds {text!r}: at most {MAX_SEEDS} seeds, each in 0..{MAX_SEED}")
    return seeds


def study_rows(table: str, only: list[str] | None = None, synthetic: bool = True) -> tuple[list[Row], str]:
    """The rows of ``table`` (``all``: every table's rows once), optionally only the named ones,
    and the reference row's name."""
    if table != "all" and table not in TABLES:
        raise StudyError(f"unknown table {table!r}; choose from {sorted(TABLES) + ['all']}")
    names = list(TABLES) if table == "all" else [table]
    rows = list({r.name: r for t in names for r in TABLES[t]}.values())
    rows = [r for r in rows if synthetic or not r.synthetic_only]
    if only:
        known = {r.name: r for r in rows}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise StudyError(f"unknown row(s) {unknown} in table {table}; rows: {list(known)}")
        rows = [known[n] for n in only]
    reference = REFERENCES.get(table, TARGET_ONLY.name)
    if reference not in {r.name for r in rows}:
        reference = rows[0].name
    return rows, reference


def paired_bootstrap(
    correct_row: list[np.ndarray], correct_ref: list[np.ndarray], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean over seeds of (row accuracy - reference accuracy) and its 95 % interval.

    Each resample draws test images with replacement within every seed (the same images for both
    rows: paired) and averages the per-seed differences.
    """
    rng = np.random.default_rng(seed)
    diffs = [np.asarray(a, float) - np.asarray(b, float) for a, b in zip(correct_row, correct_ref)]
    point = float(np.mean([d.mean() for d in diffs]))
    boot = np.zeros(n_boot)
    for d in diffs:
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        boot += d[idx].mean(axis=1)
    boot /= len(diffs)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return point, float(lo), float(hi)


DIAGNOSTICS = (
    "subset_purity",
    "pseudo_rmse",
    "w2_truth_mean_emotion_before",
    "w2_truth_mean_emotion_after",
    "relabel_precision",
    "remaining_correct_after",
)


def _sd(values: pd.Series) -> float:
    """Standard deviation over seeds in points (0 for one seed)."""
    return 100 * float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarise(
    records: pd.DataFrame, correct: dict[tuple[str, int], np.ndarray], reference: str, *, shared_images: bool = False
) -> pd.DataFrame:
    """One line per row: test and validation accuracy (mean +- sd over seeds), budget spent, and
    against the reference: the per-seed differences' mean +- sd, a t-interval over seeds, a
    two-level bootstrap interval (seeds, then test images), and Holm-adjusted p-values across the
    table's rows (``dcjt.statistics``); the synthetic-world diagnostics (means)."""
    lines = []
    for name, group in records.groupby("row", sort=False):
        seeds = sorted(group["seed"])
        line = {
            "row": name,
            "seeds": len(seeds),
            "accuracy_mean": 100 * group["accuracy"].mean(),
            "accuracy_std": _sd(group["accuracy"]),
            "images_seen": group["images_seen"].mean(),
            "epochs_run": group["epochs_run"].mean(),
        }
        if "val_accuracy" in group:
            line.update(val_accuracy_mean=100 * group["val_accuracy"].mean(), val_accuracy_std=_sd(group["val_accuracy"]))
        for col in ("b_passes",):
            if col in group:
                line[col] = group[col].mean()
        if "degenerate" in group:
            line["degenerate_seeds"] = int(group["degenerate"].fillna(False).astype(bool).sum())
        if name != reference and all((reference, s) in correct for s in seeds):
            row_c, ref_c = [correct[(name, s)] for s in seeds], [correct[(reference, s)] for s in seeds]
            diffs = seed_differences(row_c, ref_c)
            mean, lo, hi, p = t_interval(diffs)
            _, blo, bhi = two_level_bootstrap(row_c, ref_c, shared_images=shared_images)
            line.update(
                diff=100 * mean,
                diff_std=100 * diffs.std(ddof=1) if len(diffs) > 1 else 0.0,
                diff_lo=100 * lo,
                diff_hi=100 * hi,
                boot_lo=100 * blo,
                boot_hi=100 * bhi,
                p=p,
            )
        for k in DIAGNOSTICS:
            if k in group and group[k].notna().any():
                line[k] = group[k].mean()
        lines.append(line)
    out = pd.DataFrame(lines)
    if "p" in out:
        out["p_holm"] = holm(out["p"].tolist())
    return out


def best_on_validation(summary: pd.DataFrame) -> str | None:
    """The row with the highest mean validation accuracy (what "best" means in a study)."""
    if "val_accuracy_mean" not in summary or summary["val_accuracy_mean"].isna().all():
        return None
    return str(summary.loc[summary["val_accuracy_mean"].idxmax(), "row"])


def _interval(lo, hi) -> str:
    return f"[{lo:+.2f}, {hi:+.2f}]" if pd.notna(lo) and pd.notna(hi) else ""


def markdown(summary: pd.DataFrame, reference: str, title: str) -> str:
    """The study as a markdown table: test and validation accuracy, the difference to the
    reference with both intervals and Holm's p, the budget, the diagnostics; then which row is
    best on validation and which rows were no better than the majority class."""
    head = [
        "row",
        "test % (mean ± sd)",
        "val % (mean ± sd)",
        f"Δ test vs {reference} (mean ± sd)",
        "95 % t-interval",
        "95 % two-level bootstrap",
        "Holm p",
        "images seen",
        "epochs",
        "passes over B",
    ]
    diag = [k for k in DIAGNOSTICS if k in summary]
    line = lambda cells: "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"  # noqa: E731
    lines = [f"### {title}", "", line(head + diag), "|" + "---|" * (len(head) + len(diag))]
    for _, r in summary.iterrows():
        is_ref = r["row"] == reference
        has = pd.notna(r.get("diff"))
        cells = [
            r["row"],
            f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}",
            f"{r['val_accuracy_mean']:.2f} ± {r['val_accuracy_std']:.2f}" if pd.notna(r.get("val_accuracy_mean")) else "",
            "reference" if is_ref else (f"{r['diff']:+.2f} ± {r['diff_std']:.2f}" if has else ""),
            "" if is_ref else _interval(r.get("diff_lo"), r.get("diff_hi")),
            "" if is_ref else _interval(r.get("boot_lo"), r.get("boot_hi")),
            f"{r['p_holm']:.3f}" if not is_ref and pd.notna(r.get("p_holm")) else "",
            f"{r['images_seen']:,.0f}",
            f"{r['epochs_run']:.1f}",
            f"{r['b_passes']:.1f}" if pd.notna(r.get("b_passes")) else "",
        ]
        cells += [f"{r[k]:.3f}" if pd.notna(r.get(k)) else "" for k in diag]
        lines.append(line(cells))
    text = "\n".join(lines) + "\n"
    best = best_on_validation(summary)
    if best is not None:
        text += f"\nBest on validation (what this table calls best; the test split never chooses): **{best}**.\n"
    if "degenerate_seeds" in summary:
        flat = summary[summary["degenerate_seeds"] > 0]
        for _, r in flat.iterrows():
            text += (
                f"\n- {r['row']}: {int(r['degenerate_seeds'])} of {int(r['seeds'])} seeds no better than always "
                "predicting the majority class (validation)\n"
            )
    return text
