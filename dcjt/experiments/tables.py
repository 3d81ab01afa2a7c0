"""Studies: the paper's ablation tables as named rows of the one pipeline.

A row is a name and the config values it sets (``method.*``); each (row, seed) is one pipeline
run, so shared stages come from ZenML's cache. ``dcjt.experiments.study_summary`` turns the runs into
the table's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dcjt.config import BASELINES


@dataclass(frozen=True)
class Row:
    id: str  # the key (--row, --candidate, records); a run plan's row id where it is one (dcjt.plan.ROWS)
    name: str  # the label tables show
    values: dict = field(default_factory=dict)  # dotted config keys -> values
    synthetic_only: bool = False
    uses_truth: bool = False  # an upper bound from the hidden truth: shown, never called best


def _method(**kw) -> dict:
    return {f"method.{k}": v for k, v in kw.items()}


def _baseline(row_id: str, name: str, **kw) -> Row:
    """A run's baseline row as a study row: the same id, the same settings (``BASELINES``)."""
    return Row(row_id, name, _method(**BASELINES[row_id]), **kw)


TARGET_ONLY = _baseline("target_only", "target only (A, DL)")
STRAIGHT = _baseline("straight", "straight A + B")
STRAIGHT_BALANCED = _baseline("straight_balanced", "straight A + B, class-balanced")
DCJT = Row("dcjt", "DCJT", {})
ORACLE = _baseline("oracle", "oracle (B relabeled by truth)", synthetic_only=True, uses_truth=True)

# Paper Table 1: A alone or A + B's subset; discrete labels, or with pseudo V/A from M_B trained on
# all of B (CLE) or on the subset (CLS).
TABLE_1 = [
    Row("a_dl", "A / DL", _method(extra_use="none", continuous=False)),
    Row("a_cle", "A / DL & CLE", _method(extra_use="none", pseudo_from="all")),
    Row("a_cls", "A / DL & CLS", _method(extra_use="none", pseudo_from="subset")),
    Row("a_subb_dl", "A + subB / DL", _method(extra_use="subset", continuous=False)),
    Row("a_subb_cle", "A + subB / DL & CLE", _method(extra_use="subset", pseudo_from="all")),
    Row("a_subb_cls", "A + subB / DL & CLS", _method(extra_use="subset", pseudo_from="subset")),
]

# Paper Table 2: A (CLE or CLS) + subset + B - subB with original or relabeled discrete labels x
# original / global / per-emotion continuous labels; plus the OT map and the gated relabel.
_MAPPING_NAMES = {"none": "orig CL", "global": "GCLM", "emotion": "EDCLM"}
TABLE_2 = [
    Row(
        f"{src.lower()}_{relabel}_{mapping}",
        f"{src} / {'relabeled' if relabel != 'none' else 'orig'} DL / {_MAPPING_NAMES[mapping]}",
        _method(pseudo_from=("all" if src == "CLE" else "subset"), relabel=relabel, mapping=mapping),
    )
    for src in ("CLE", "CLS")
    for relabel in ("none", "nearest")
    for mapping in ("none", "global", "emotion")
] + [
    Row("cls_nearest_emotion_ot", "CLS / relabeled DL / EDCLM-OT", _method(relabel="nearest", mapping="emotion_ot")),
    Row("cls_gated_emotion", "CLS / gated DL / EDCLM", _method(relabel="gated", mapping="emotion")),
    Row("cls_gated_none", "CLS / gated DL / orig CL", _method(relabel="gated", mapping="none")),
]

# More than one extra (synthetic world: the third, discrete-only population C) and the SCN
# baseline of paper Tables 3-4, beside target only, straight and DCJT.
EXTRA2_ROWS = 2500  # C: half the size of B in the demo world
WITH_C = {"data.world.n_extra2": EXTRA2_ROWS}
SCN_STRAIGHT = _baseline("scn", "SCN on straight A + B")
SCN_TARGET = _baseline("scn_target", "SCN on A")
TABLE_EXTRAS = [
    TARGET_ONLY,
    STRAIGHT,
    DCJT,
    Row("straight_c", "straight A + B + C", {**STRAIGHT.values, **WITH_C}, synthetic_only=True),
    Row("dcjt_c", "DCJT A + B + C", dict(WITH_C), synthetic_only=True),
    SCN_STRAIGHT,
    SCN_TARGET,
]

# Where a better stage 3b's gain comes from (beyond the paper): B - subB relabeled by M_A alone, by
# V/A alone, by their posterior, by a latent true class (each relabeling on the unmapped V/A, then
# mapped by the new labels), with and without soft targets for the rows they leave unresolved;
# beside target only, the straight merges, DCJT as published and the gated rows.
_FIRST = {"stage3_order": "relabel_first"}
RELABEL_ROWS = [
    ("m_a", "M_A alone", _method(relabel="posterior", relabel_evidence="m_a", **_FIRST)),
    ("va", "V/A alone", _method(relabel="posterior", relabel_evidence="va", **_FIRST)),
    ("posterior", "posterior (V/A + M_A)", _method(relabel="posterior", **_FIRST)),
    ("latent", "latent", _method(relabel="latent", **_FIRST)),
]
TABLE_RELABEL = (
    [TARGET_ONLY, STRAIGHT, STRAIGHT_BALANCED, DCJT, TABLE_2[-2], TABLE_2[-1]]
    + [Row(f"relabel_{key}", f"relabel: {name}", values) for key, name, values in RELABEL_ROWS]
    + [
        Row(f"relabel_{key}_soft", f"relabel: {name}, soft", {**values, "method.unresolved": "soft"})
        for key, name, values in RELABEL_ROWS
    ]
    + [Row("relabel_posterior_map_first", "relabel: posterior (V/A + M_A), map first", _method(relabel="posterior")), ORACLE]
)

# What ``run.py select`` chooses among by default (and the cross-world study's rows): the
# baselines, DCJT as published, the gated relabel on original V/A and the latent relabel with soft
# targets: one row per kind of stage 3, each measured on the whole world suite. The other stage 3b
# rows of the relabel table stay available (``--candidate``); a row that reads the hidden truth
# never is one.
SELECT_CANDIDATES = [TARGET_ONLY, STRAIGHT, STRAIGHT_BALANCED, DCJT, TABLE_2[-1]] + [
    r for r in TABLE_RELABEL if r.id == "relabel_latent_soft"
]

# How far the posterior rules' confidence holds (issue #33), beside target only: the two rules as in
# the relabel table, on M_B's predicted V/A for B's images (the instrument of A's pseudo V/A), and
# with the threshold chosen on an audit of B - subB (run with --set data.world.audit_rows=N).
_CALIBRATED = [
    ("posterior_predicted", "posterior (V/A + M_A), M_B's V/A", _method(relabel="posterior", relabel_va="predicted", **_FIRST)),
    ("latent_predicted", "latent, M_B's V/A", _method(relabel="latent", relabel_va="predicted", **_FIRST)),
    ("posterior_audited", "posterior (V/A + M_A), audited", _method(relabel="posterior", relabel_calibration="audit", **_FIRST)),
    ("latent_audited", "latent, audited", _method(relabel="latent", relabel_calibration="audit", **_FIRST)),
]
TABLE_CALIBRATION = (
    [TARGET_ONLY]
    + [r for r in TABLE_RELABEL if r.id in ("relabel_posterior", "relabel_latent")]
    + [Row(f"relabel_{key}", f"relabel: {name}", values) for key, name, values in _CALIBRATED]
)

# Paper Table 8: DCJT with a seeded, stratified share of B.
TABLE_8 = [TARGET_ONLY] + [
    Row(f"dcjt_b{int(f * 100)}", f"DCJT, B {int(f * 100)} %", _method(extra_fraction=f)) for f in (0.1, 0.5, 1.0)
]

TABLES: dict[str, list[Row]] = {
    "main": [TARGET_ONLY, STRAIGHT, STRAIGHT_BALANCED, DCJT, ORACLE],
    "1": TABLE_1,
    "2": TABLE_2,
    "8": TABLE_8,
    "extras": TABLE_EXTRAS,
    "relabel": TABLE_RELABEL,
    "select": SELECT_CANDIDATES,
    "calibration": TABLE_CALIBRATION,
}
NOT_IN_ALL = ("calibration",)  # its audited rows need --set data.world.audit_rows=N
REFERENCES = {
    "main": TARGET_ONLY.name,
    "1": "A / DL",
    "2": "CLS / orig DL / orig CL",
    "8": TARGET_ONLY.name,
    "extras": TARGET_ONLY.name,
    "relabel": TARGET_ONLY.name,
    "select": TARGET_ONLY.name,
    "calibration": TARGET_ONLY.name,
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
    """The rows of ``table`` (``all``: every table's rows once), optionally only the given ones (by
    id, or by the label tables show), and the reference row's name."""
    if table != "all" and table not in TABLES:
        raise StudyError(f"unknown table {table!r}; choose from {sorted(TABLES) + ['all']}")
    names = [t for t in TABLES if t not in NOT_IN_ALL] if table == "all" else [table]
    rows = list({r.id: r for t in names for r in TABLES[t]}.values())
    rows = [r for r in rows if synthetic or not r.synthetic_only]
    if only:
        known = {**{r.name: r for r in rows}, **{r.id: r for r in rows}}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise StudyError(
                f"unknown row(s) {unknown} in table {table}; rows (id: label): {[f'{r.id}: {r.name}' for r in rows]}"
            )
        rows = list({known[n].id: known[n] for n in only}.values())
    reference = REFERENCES.get(table, TARGET_ONLY.name)
    if reference not in {r.name for r in rows}:
        reference = rows[0].name
    return rows, reference


def check_world_rows(table: str, rows, worlds: list[str]) -> None:
    """Rows that set the world themselves (a third population C) cannot run on a preset world."""
    own = [r.name for r in rows if any(k.startswith("data.world") for k in r.values)]
    if own:
        raise StudyError(
            f"table {table}: rows {own} need a third population (C), which no suite world has "
            f"({', '.join(worlds)} lack it); leave them out with --row, or run them without --worlds"
        )
