"""Annotator populations of the synthetic world: the target's criteria, the extra's other ones
(discrete + valence/arousal, like AffectNet) and a third population's (discrete only, like
CAER-S or FERPlus as an extra)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dcjt.data.labels import EMOTIONS, NUM_CLASSES
from dcjt.synthetic.render import ANGER, DISGUST, FEAR, HAPPINESS, NEUTRAL, SADNESS, SURPRISE


class ExtraCriteria(BaseModel):
    """How the extra population's annotators differ from the target's."""

    model_config = ConfigDict(extra="forbid")

    weak_to_neutral: float = Field(0.8, description="happiness / sadness weaker than this intensity -> neutral")
    fear_to_surprise_arousal: float = Field(0.3, description="fear with true arousal above this -> surprise")
    anger_to_disgust: float = Field(0.8, description="share of anger (the lower-arousal part) called disgust")
    noise: float = Field(0.1, description="symmetric label noise")
    va_scale: tuple[float, float] = Field((0.8, 0.9), description="global scale of the published (valence, arousal)")
    va_shift: tuple[float, float] = Field((0.05, 0.12), description="global shift of the published (valence, arousal)")
    va_emotion_shift: dict[str, tuple[float, float]] = Field(
        description="per-emotion shift of the published (valence, arousal)",
        default_factory=lambda: {
            "happiness": (0.10, -0.10),
            "sadness": (-0.05, -0.10),
            "fear": (0.0, 0.10),
            "anger": (0.05, -0.05),
        },
    )
    va_noise: float = Field(0.08, description="noise of the published valence/arousal")
    random_swaps: dict[str, tuple[str, float]] = Field(
        default_factory=dict,
        description="class -> (other class, share): that share of the class, drawn at random (independent of every "
        "latent, so V/A cannot reveal it), is called the other class",
    )
    instance_noise: float = Field(
        0.0,
        ge=0,
        le=1,
        description="instance-dependent noise: a face of intensity i is called a random other class with "
        "probability instance_noise x (1 - i) (weak faces are confused most)",
    )

    @field_validator("random_swaps")
    @classmethod
    def _known_classes(cls, swaps: dict) -> dict:
        for src, (dst, share) in swaps.items():
            for name in (src, dst):
                if name not in EMOTIONS:
                    raise ValueError(f"random_swaps: unknown class {name!r}; classes: {list(EMOTIONS)}")
            if not 0 <= share <= 1:
                raise ValueError(f"random_swaps.{src}: share {share} must be in [0, 1]")
        return swaps


def _noisy(labels: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(len(labels)) < rate
    other = (labels + rng.integers(1, NUM_CLASSES, len(labels))) % NUM_CLASSES
    return np.where(flip, other, labels)


def annotate_target(lat: pd.DataFrame, rate: float, rng: np.random.Generator) -> np.ndarray:
    return _noisy(lat["emotion"].to_numpy(), rate, rng)


def annotate_extra(lat: pd.DataFrame, c: ExtraCriteria, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Discrete labels and valence/arousal published by the extra population."""
    e, i, ar = lat["emotion"].to_numpy(), lat["intensity"].to_numpy(), lat["arousal"].to_numpy()
    label = e.copy()
    label[((e == HAPPINESS) | (e == SADNESS)) & (i < c.weak_to_neutral)] = NEUTRAL
    label[(e == FEAR) & (ar > c.fear_to_surprise_arousal)] = SURPRISE
    anger = np.flatnonzero(e == ANGER)
    if len(anger) and c.anger_to_disgust > 0:
        cut = np.quantile(ar[anger], c.anger_to_disgust)
        label[anger[ar[anger] <= cut]] = DISGUST
    label = _noisy(label, c.noise, rng)
    if c.random_swaps:  # drawn after the noise, from the same stream: worlds without swaps keep their draws
        draw = rng.random(len(e))
        for src, (dst, share) in c.random_swaps.items():
            label[(e == EMOTIONS.index(src)) & (draw < share)] = EMOTIONS.index(dst)
    if c.instance_noise > 0:
        label = np.where(rng.random(len(e)) < c.instance_noise * (1 - i), _noisy(label, 1.0, rng), label)
    va = lat[["valence", "arousal"]].to_numpy() * np.asarray(c.va_scale) + np.asarray(c.va_shift)
    for emo, shift in c.va_emotion_shift.items():
        va[e == EMOTIONS.index(emo)] += shift
    va = np.clip(va + rng.normal(0, c.va_noise, va.shape), -1, 1)
    return label, va


class DiscreteCriteria(BaseModel):
    """A second extra population that publishes discrete labels only, by criteria of its own
    (not the extra's): weak sadness called neutral, disgust called anger, low-arousal surprise
    called happiness, and more noise."""

    model_config = ConfigDict(extra="forbid")

    weak_sadness_to_neutral: float = Field(0.6, description="sadness weaker than this intensity -> neutral")
    disgust_to_anger: float = Field(0.6, description="share of disgust (the higher-arousal part) called anger")
    surprise_to_happiness_arousal: float = Field(0.35, description="surprise with true arousal below this -> happiness")
    noise: float = Field(0.12, description="symmetric label noise")


def annotate_discrete(lat: pd.DataFrame, c: DiscreteCriteria, rng: np.random.Generator) -> np.ndarray:
    """Discrete labels published by the third (discrete-only) population."""
    e, i, ar = lat["emotion"].to_numpy(), lat["intensity"].to_numpy(), lat["arousal"].to_numpy()
    label = e.copy()
    label[(e == SADNESS) & (i < c.weak_sadness_to_neutral)] = NEUTRAL
    label[(e == SURPRISE) & (ar < c.surprise_to_happiness_arousal)] = HAPPINESS
    disgust = np.flatnonzero(e == DISGUST)
    if len(disgust):
        cut = np.quantile(ar[disgust], 1 - c.disgust_to_anger)
        label[disgust[ar[disgust] > cut]] = ANGER
    return _noisy(label, c.noise, rng)
