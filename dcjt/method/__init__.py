"""The DCJT method as stages, each a pure function over label tables (no ZenML, no torch).

Stage 1 ``subset``, stage 2 ``pseudo``, stage 3 ``mapping`` and ``relabel``, stage 4 data
``joint``; ``gaussian`` holds the maths they share and ``truth`` the synthetic-world checks.
"""

from dcjt.method.gaussian import criteria_audit, va_stats
from dcjt.method.joint import training_rows
from dcjt.method.mapping import map_continuous
from dcjt.method.pseudo import m_b_rows, pseudo_label, with_pseudo_va
from dcjt.method.relabel import class_centres, relabel, relabel_gated, relabel_nearest
from dcjt.method.subset import select_subset, take_fraction, with_m_a_probabilities

__all__ = [
    "relabel",
    "relabel_gated",
    "take_fraction",
    "class_centres",
    "criteria_audit",
    "m_b_rows",
    "map_continuous",
    "pseudo_label",
    "relabel_nearest",
    "select_subset",
    "training_rows",
    "va_stats",
    "with_m_a_probabilities",
    "with_pseudo_va",
]
