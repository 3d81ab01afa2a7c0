"""The world suite: named synthetic worlds that vary, one at a time and together, the factors that
decide which variant wins (how B's labelling criteria differ from A's and whether B's V/A reveals
it, B's V/A bias, B's class priors, the sizes of A and B).

B's V/A bias varies only in combination (``mixed``: nearly unbiased, beside milder and random
criteria and AffectNet's priors); a world with the demo's criteria and unbiased V/A was dropped
from the first measured suite to fit its run into one session (2026-12-06).

One world is one world: advice measured on the project's own world (``demo``, the one the method
was developed on) says nothing about the others. ``run.py study --worlds suite`` runs a table on
every world here and reports each row's regret (``dcjt.experiments.regret``).

Each preset is a mapping of ``WorldSpec`` values at the demo's scale (A 2,500 images, B 5,000);
``b_agreement`` is the share of B's labels that equal the true emotion, as measured over seeds 0-4
with a margin (the unit tests hold each preset to it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

# AffectNet's manually annotated 7-class train counts in the canonical order (surprise, fear,
# disgust, happiness, sadness, anger, neutral): far more happiness and neutral, far less fear and
# disgust than RAF-DB.
AFFECTNET_PRIORS = (14090, 6378, 3803, 134415, 25459, 24882, 74874)

NO_SHIFT = {"weak_to_neutral": 0.0, "fear_to_surprise_arousal": 2.0, "anger_to_disgust": 0.0}


@dataclass(frozen=True)
class World:
    name: str
    description: str
    values: dict = field(default_factory=dict)  # WorldSpec values (``extra`` merges into ExtraCriteria)
    b_agreement: tuple[float, float] = (0.0, 1.0)  # share of B's labels equal to the truth: (low, high)


SUITE = (
    World(
        "demo",
        "the project's own world: B calls weak happiness/sadness neutral, high-arousal fear surprise and "
        "low-arousal anger disgust (B's V/A reveals all three), B's V/A biased per emotion, B 2x A",
        {"n_target": 2500, "n_extra": 5000},
        (0.41, 0.50),
    ),
    World(
        "close",
        "B's labels close to A's: no criteria shift, A's noise level (0.04); the straight merge should win",
        {"n_target": 2500, "n_extra": 5000, "extra": {**NO_SHIFT, "noise": 0.04}},
        (0.93, 0.98),
    ),
    World(
        "random-swaps",
        "shifts independent of every latent: 50 % of sadness called neutral, 60 % of fear surprise, 50 % of anger "
        "disgust, drawn at random (V/A cannot reveal them), noise 0.1",
        {
            "n_target": 2500,
            "n_extra": 5000,
            "extra": {
                **NO_SHIFT,
                "random_swaps": {"sadness": ("neutral", 0.5), "fear": ("surprise", 0.6), "anger": ("disgust", 0.5)},
            },
        },
        (0.75, 0.83),
    ),
    World(
        "instance-noise",
        "no criteria shift; instance-dependent noise: a face of intensity i is called a random other class with "
        "probability 0.4 x (1 - i) (weak faces and neutral ones most), plus symmetric noise 0.04",
        {"n_target": 2500, "n_extra": 5000, "extra": {**NO_SHIFT, "noise": 0.04, "instance_noise": 0.4}},
        (0.72, 0.80),
    ),
    World(
        "affectnet-priors",
        "the demo's criteria, B drawn with AffectNet's class counts (happiness 47 %, neutral 26 %, fear 2 %, disgust "
        "1 %) while A keeps RAF-DB's",
        {"n_target": 2500, "n_extra": 5000, "extra_priors": AFFECTNET_PRIORS},
        (0.39, 0.47),
    ),
    World(
        "small-a",
        "A small (800 images: target only is weak) and B 10x A (8,000); the demo's criteria",
        {"n_target": 800, "n_extra": 8000},
        (0.41, 0.50),
    ),
    World(
        "large-a",
        "A large (6,000 images) and B half of it (3,000): B should add little; the demo's criteria",
        {"n_target": 6000, "n_extra": 3000},
        (0.41, 0.51),
    ),
    World(
        "mixed",
        "a world unlike the demo's: milder criteria (weak happiness/sadness below 0.45 called neutral, fear above "
        "arousal 0.6 surprise, 30 % of anger disgust), 20 % of sadness neutral and 20 % of surprise fear at random, "
        "B's V/A nearly unbiased, AffectNet's class counts for B",
        {
            "n_target": 2500,
            "n_extra": 5000,
            "extra_priors": AFFECTNET_PRIORS,
            "extra": {
                "weak_to_neutral": 0.45,
                "fear_to_surprise_arousal": 0.6,
                "anger_to_disgust": 0.3,
                "noise": 0.08,
                "random_swaps": {"sadness": ("neutral", 0.2), "surprise": ("fear", 0.2)},
                "va_scale": (0.95, 0.95),
                "va_shift": (0.03, 0.03),
                "va_emotion_shift": {},
            },
        },
        (0.69, 0.78),
    ),
)
WORLDS: dict[str, World] = {w.name: w for w in SUITE}


class UnknownWorld(ValueError):
    """A world name outside the suite; the message lists the names."""


def check_world(name: str) -> str:
    """``name`` if the suite has it; else ``UnknownWorld`` listing the suite's names (the one check
    behind ``data.world.preset``, ``--world`` and ``WorldSpec``)."""
    if name not in WORLDS:
        raise UnknownWorld(f"unknown world {name!r}; worlds: {', '.join(WORLDS)} (run.py worlds describes them)")
    return name


def preset_values(name: str) -> dict:
    """The ``data.world`` mapping of a preset (``preset`` included); refuses an unknown name."""
    check_world(name)
    return {**copy.deepcopy(WORLDS[name].values), "preset": name}  # a copy: --set keys merge into it


def parse_worlds(text: str) -> list[str]:
    """``suite`` -> every world; ``a,b`` -> those (unknown names refused, listing the known ones)."""
    names = list(WORLDS) if text.strip() == "suite" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORLDS]
    if unknown or not names:
        raise ValueError(f"--worlds {text!r}: unknown world(s) {unknown}; worlds: suite or any of {', '.join(WORLDS)}")
    return list(dict.fromkeys(names))
