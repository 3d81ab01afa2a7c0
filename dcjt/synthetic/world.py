"""The synthetic FER world: latents per image (true emotion, intensity, valence, arousal), two
annotator populations that disagree, and rendered faces. The hidden truth stays in ``truth_*``
columns that training never reads.

- target: discrete labels only, small symmetric noise (the criteria we want to match);
- extra: discrete AND valence/arousal by other criteria (weak happiness/sadness called neutral,
  high-arousal fear called surprise, part of anger called disgust, noise), with valence/arousal
  distorted per emotion (scale, shift) plus noise;
- the world suite (``dcjt.synthetic.suite``): named presets of these settings, each varying one
  factor that decides which variant wins (or several together);
- extra2 (only when ``n_extra2 > 0``): a third population with discrete labels only, by criteria
  of its own (``DiscreteCriteria``): a second extra dataset like CAER-S or FERPlus.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dcjt.data.labels import AUDIT_COLUMN, NUM_CLASSES, make_table
from dcjt.synthetic.annotators import DiscreteCriteria, ExtraCriteria, annotate_discrete, annotate_extra, annotate_target
from dcjt.synthetic.render import NEUTRAL, VA_CENTRES, render_many

RAFDB_PRIORS = np.array([1290, 281, 717, 4772, 1982, 705, 2524], dtype=float) / 12271


class WorldSpec(BaseModel):
    """Sizes and criteria of the populations (image size and seed are the run's)."""

    model_config = ConfigDict(extra="forbid")

    n_target: int = Field(3000, ge=10, le=10_000_000, description="images of the target population A")
    n_extra: int = Field(6000, ge=10, le=10_000_000, description="images of the extra population B")
    target_test_fraction: float = Field(0.2, gt=0, lt=1, description="A's test split")
    extra_test_fraction: float = Field(0.08, gt=0, lt=1, description="B's test split")
    target_noise: float = Field(0.04, ge=0, le=1, description="A's symmetric label noise")
    extra: ExtraCriteria = Field(default_factory=ExtraCriteria, description="how B's annotators differ from A's")
    n_extra2: int = Field(0, ge=0, description="rows of the third, discrete-only population (0: none)")
    extra2_test_fraction: float = Field(0.08, gt=0, lt=1, description="C's test split")
    extra2: DiscreteCriteria = Field(default_factory=DiscreteCriteria, description="how C's annotators label")
    audit_rows: int = Field(
        0,
        ge=0,
        description="rows of B's train split whose label an audit gave under A's criteria (here: the truth), drawn "
        "at random (method.relabel_calibration: audit)",
    )
    salt: int = Field(0, ge=0, description="> 0: another world with the same criteria (e.g. a fine-tuning target)")
    extra_priors: tuple[float, ...] | None = Field(
        None, description="B's class priors in the canonical order (7 weights; None: A's, RAF-DB's train counts)"
    )
    preset: str | None = Field(
        None, description="a world of the suite (run.py worlds): its sizes and criteria, under any key set beside it"
    )

    @field_validator("extra_priors")
    @classmethod
    def _seven_weights(cls, priors):
        if priors is not None and (len(priors) != NUM_CLASSES or min(priors) < 0 or sum(priors) <= 0):
            raise ValueError(f"extra_priors: {NUM_CLASSES} non-negative weights with a positive sum, got {list(priors)}")
        return priors

    @field_validator("preset")
    @classmethod
    def _known_world(cls, name):
        from dcjt.synthetic.suite import check_world

        return name if name is None else check_world(name)


def sample_latents(n: int, rng: np.random.Generator, priors: np.ndarray = RAFDB_PRIORS) -> pd.DataFrame:
    """True emotion (RAF-DB priors), intensity, valence/arousal drifting toward neutral when weak."""
    emotion = rng.choice(NUM_CLASSES, size=n, p=priors / priors.sum())
    intensity = np.where(emotion == NEUTRAL, 0.0, 0.1 + 0.9 * rng.beta(2.0, 1.6, size=n))
    va = VA_CENTRES[emotion] * intensity[:, None] + rng.normal(0, 0.08, size=(n, 2))
    va[emotion == NEUTRAL] = rng.normal(0, 0.1, size=((emotion == NEUTRAL).sum(), 2))
    va = np.clip(va, -1, 1)
    return pd.DataFrame({"emotion": emotion, "intensity": intensity, "valence": va[:, 0], "arousal": va[:, 1]})


def _splits(n: int, test_fraction: float, rng) -> np.ndarray:
    split = np.array(["train"] * n, dtype=object)
    split[rng.permutation(n)[: int(round(n * test_fraction))]] = "test"
    return split


def _truth(lat: pd.DataFrame) -> dict:
    return {
        "truth_label": lat["emotion"].to_numpy(),
        "truth_intensity": lat["intensity"].to_numpy(),
        "truth_valence": lat["valence"].to_numpy(),
        "truth_arousal": lat["arousal"].to_numpy(),
    }


def _salt_suffix(spec: WorldSpec) -> str:
    """What a world adds to its image names and render streams: a salted world its salt, a suite
    world (other than the demo's) its name and sizes, B's own priors their hash ("" for the demo
    world: its names, and so its validation split, stay as they always were). Images are written
    once per name, so two worlds whose faces differ must never share one."""
    out = f"-s{spec.salt}" if spec.salt else ""
    if spec.preset and spec.preset != "demo":
        out += f"-{spec.preset}-{spec.n_target}-{spec.n_extra}"
    elif spec.extra_priors is not None:
        out += "-p" + hashlib.sha256(repr(tuple(spec.extra_priors)).encode()).hexdigest()[:8]
    return out


def world_tables(spec: WorldSpec, seed: int = 0) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Deterministic label tables and per-image latents for ``target``, ``extra`` and (when
    ``n_extra2 > 0``) ``extra2`` (no pixels)."""
    salt = [spec.salt] if spec.salt else []  # salt 0: the world as it always was
    rng = np.random.default_rng([seed, 7, *salt])
    tag = f"{seed}{_salt_suffix(spec)}"
    out = {}
    lat = sample_latents(spec.n_target, rng)
    labels = annotate_target(lat, spec.target_noise, rng)
    names = [f"synth-target-{tag}/{i:06d}.png" for i in range(spec.n_target)]
    split = _splits(spec.n_target, spec.target_test_fraction, rng)
    out["target"] = (make_table("synth_target", split, names, labels, extra=_truth(lat)), lat)
    lat = sample_latents(spec.n_extra, rng, RAFDB_PRIORS if spec.extra_priors is None else np.asarray(spec.extra_priors, float))
    labels, va = annotate_extra(lat, spec.extra, rng)
    names = [f"synth-extra-{tag}/{i:06d}.png" for i in range(spec.n_extra)]
    split = _splits(spec.n_extra, spec.extra_test_fraction, rng)
    out["extra"] = (make_table("synth_extra", split, names, labels, va[:, 0], va[:, 1], extra=_truth(lat)), lat)
    if spec.n_extra2:
        rng2 = np.random.default_rng([seed, 11, *salt])  # its own stream: the others' draws unchanged
        lat = sample_latents(spec.n_extra2, rng2)
        labels = annotate_discrete(lat, spec.extra2, rng2)
        names = [f"synth-extra2-{tag}/{i:06d}.png" for i in range(spec.n_extra2)]
        split = _splits(spec.n_extra2, spec.extra2_test_fraction, rng2)
        out["extra2"] = (make_table("synth_extra2", split, names, labels, extra=_truth(lat)), lat)
    return out


def with_audit(extra: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """B's table with ``AUDIT_COLUMN``: ``n`` random train rows of B (population ``synth_extra``)
    carry the label an audit under A's criteria gives them, which in this world is the truth; the
    others -1. Its own random stream: the world's draws are unchanged."""
    out = extra.copy()
    out[AUDIT_COLUMN] = -1
    pool = np.flatnonzero(((out["dataset"] == "synth_extra") & (out["split"] == "train")).to_numpy())
    if n > len(pool):
        raise ValueError(f"data.world.audit_rows = {n}: B's train split holds {len(pool)} rows")
    picked = np.random.default_rng([seed, 13]).choice(pool, size=n, replace=False)
    out.loc[picked, AUDIT_COLUMN] = out.loc[picked, "truth_label"].to_numpy()
    out[AUDIT_COLUMN] = out[AUDIT_COLUMN].astype("int64")
    return out


def generate_world(spec: WorldSpec, size: int = 64, seed: int = 0) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Deterministic tables + images (``size`` px) for every population, in memory."""
    salt = _salt_suffix(spec)
    return {role: (table, render_many(lat, seed, size, role + salt)) for role, (table, lat) in world_tables(spec, seed).items()}
