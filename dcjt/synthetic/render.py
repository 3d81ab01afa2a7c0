"""The synthetic face renderer: valence/arousal drive mouth and eyes, each emotion adds its own
cues (brows, nose wrinkle, lip shapes) scaled by intensity, so weak expressions are ambiguous."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

import cv2
import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, NUM_CLASSES
from dcjt.utils.procs import spawned_pool
from dcjt.utils.runtime import workers as runtime_workers

# Emotion ids by name, through the canonical order (dcjt.data.labels.EMOTIONS).
SURPRISE, FEAR, DISGUST, HAPPINESS, SADNESS, ANGER, NEUTRAL = (
    EMOTIONS.index(e) for e in ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
)
# Circumplex centres (valence, arousal) of full-intensity expressions, in canonical order.
VA_CENTRES = np.array([[0.20, 0.75], [-0.55, 0.65], [-0.60, 0.30], [0.80, 0.30], [-0.65, -0.40], [-0.60, 0.70], [0.0, 0.0]])
CANVAS = 128


def render_face(
    emotion: int, intensity: float, valence: float, arousal: float, rng: np.random.Generator, size: int = 64
) -> np.ndarray:
    """Draw one face (uint8 RGB, size x size) with random nuisance from ``rng``."""
    e, k = int(emotion), float(intensity)
    cue = lambda emo: k if e == emo else 0.0  # noqa: E731
    # Background: colour, gradient and a smooth random texture (built small: it is smooth).
    ramp16 = np.linspace(-1, 1, 16, dtype=np.float32)
    gx, gy = rng.uniform(-30, 30, 2)
    bg = rng.uniform(30, 220, 3).astype(np.float32) + rng.normal(0, 1, (16, 16, 3)).astype(np.float32) * rng.uniform(5, 35)
    bg += (gx * ramp16)[None, :, None] + (gy * ramp16)[:, None, None]
    img = cv2.resize(np.clip(bg, 0, 255).astype(np.uint8), (CANVAS, CANVAS), interpolation=cv2.INTER_LINEAR)
    # Face geometry: a similarity transform of a canonical face (units: half face height = 1).
    scale = rng.uniform(0.78, 1.08) * CANVAS * 0.36
    theta = math.radians(rng.uniform(-15, 15))
    cx, cy = CANVAS / 2 + rng.uniform(-9, 9), CANVAS / 2 + rng.uniform(-7, 9)
    aspect = rng.uniform(0.72, 0.88)
    cos, sin = math.cos(theta), math.sin(theta)

    def P(x: float, y: float) -> tuple[int, int]:
        X, Y = x * scale, y * scale
        return (int(round((cx + cos * X - sin * Y) * 16)), int(round((cy + sin * X + cos * Y) * 16)))

    def ell(x, y, rx, ry, color, thickness=-1, ang=0.0):
        cv2.ellipse(
            img,
            P(x, y),
            (max(1, int(rx * scale * 16)), max(1, int(ry * scale * 16))),
            math.degrees(theta) + ang,
            0,
            360,
            color,
            thickness,
            cv2.LINE_AA,
            4,
        )

    def line(pts, color, thickness):
        cv2.polylines(img, [np.array([P(*p) for p in pts], np.int32)], False, color, max(1, int(thickness)), cv2.LINE_AA, 4)

    skin = np.array([rng.uniform(90, 245), 0, 0])
    skin[1] = skin[0] * rng.uniform(0.7, 0.9)
    skin[2] = skin[1] * rng.uniform(0.65, 0.9)
    hair = rng.uniform(10, 140, 3) * rng.uniform(0.4, 1.0)
    ell(0, -0.25, aspect * 1.12, 0.95, hair.tolist())
    ell(0, 0.0, aspect, 1.0, skin.tolist())
    dark = (skin * 0.35).tolist()
    # Eyes: opening from arousal plus emotion cues.
    openness = (
        0.55
        + 0.35 * arousal
        + 0.6 * cue(SURPRISE)
        + 0.5 * cue(FEAR)
        - 0.3 * cue(ANGER)
        - 0.35 * cue(DISGUST)
        - 0.25 * cue(HAPPINESS)
        - 0.15 * cue(SADNESS)
    )
    openness = float(np.clip(openness, 0.12, 1.4))
    for side in (-1, 1):
        ell(side * 0.36 * aspect, -0.18, 0.15, 0.085 * openness, (245, 245, 240))
        ell(side * 0.36 * aspect, -0.18, 0.055, min(0.055, 0.08 * openness), (25, 20, 20))
    # Brows: inner and outer heights per emotion.
    inner = -0.45 - 0.2 * cue(SURPRISE) - 0.2 * cue(FEAR) - 0.17 * cue(SADNESS) + 0.2 * cue(ANGER) + 0.1 * cue(DISGUST)
    outer = -0.45 - 0.2 * cue(SURPRISE) - 0.05 * cue(FEAR) + 0.08 * cue(SADNESS) - 0.06 * cue(ANGER) + 0.08 * cue(DISGUST)
    for side in (-1, 1):
        line([(side * 0.14 * aspect, inner), (side * 0.58 * aspect, outer)], dark, scale * 0.07)
    # Nose, and the wrinkle of disgust.
    line([(0.0, -0.05), (0.06, 0.22), (-0.04, 0.24)], dark, scale * 0.035)
    if cue(DISGUST) > 0.2:
        for side in (-1, 1):
            line([(side * 0.1, 0.02), (side * 0.2, 0.1)], dark, scale * 0.03 * (0.5 + k))
            line([(side * 0.11, 0.1), (side * 0.21, 0.18)], dark, scale * 0.03 * (0.5 + k))
    # Mouth: width, curvature (valence), opening (arousal) and emotion-specific lip shapes.
    width = (0.33 + 0.08 * valence + 0.12 * cue(FEAR) - 0.1 * cue(SURPRISE) + 0.06 * cue(HAPPINESS)) * aspect
    curve = 0.16 * valence + 0.1 * cue(HAPPINESS) - 0.1 * cue(SADNESS) - 0.04 * cue(ANGER)
    opening = max(0.0, 0.02 + 0.12 * arousal + 0.3 * cue(SURPRISE) + 0.16 * cue(FEAR) + 0.08 * cue(HAPPINESS) - 0.1 * cue(ANGER))
    snarl = 0.1 * cue(DISGUST)
    xs = np.linspace(-1, 1, 11)
    upper = [(x * width, 0.52 - curve * x * x - snarl * max(0.0, x) + 0.02 * cue(ANGER)) for x in xs]
    lower = [(x * width, y + opening * (1 - x * x)) for (x, y) in reversed(upper)]
    lips = (np.array([150, 40, 50]) * (0.6 + 0.4 * skin[0] / 255)).tolist()
    if opening > 0.03:
        cv2.fillPoly(img, [np.array([P(*p) for p in upper + lower], np.int32)], (40, 15, 20), cv2.LINE_AA, 4)
    line(upper, lips, scale * (0.05 + 0.03 * cue(ANGER)))
    if opening > 0.03:
        line(lower, lips, scale * 0.05)
    # Down to the output size, then lighting, blur, noise and flip.
    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    light = 1 + rng.uniform(-0.35, 0.35) * ramp[None, :, None] + rng.uniform(-0.2, 0.2) * ramp[:, None, None]
    out *= light * rng.uniform(0.75, 1.2)
    sigma = rng.uniform(0, 0.8) * size / 64
    if sigma > 0.15:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.normal(0, rng.uniform(0, 10), out.shape).astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out, 0, 255).astype(np.uint8)


def render_many(lat: pd.DataFrame, seed: int, size: int, stream: str, first: int = 0) -> np.ndarray:
    """Render every row of ``lat`` (row ``i`` is image ``first + i`` of the stream, drawn from its
    own generator: order-independent, so any chunk renders alone)."""
    out = np.empty((len(lat), size, size, 3), np.uint8)
    cols = [lat[c].to_numpy() for c in ("emotion", "intensity", "valence", "arousal")]
    salt = sum(map(ord, stream))
    for i, (e, k, v, a) in enumerate(zip(*cols)):
        out[i] = render_face(e, k, v, a, np.random.default_rng([seed, salt, first + i]), size)
    return out


def render_stream(
    lat: pd.DataFrame, seed: int, size: int, stream: str, *, workers: int | None = None, chunk: int = 256
) -> Iterator[np.ndarray]:
    """The images of ``render_many``, in order, rendered a chunk at a time by ``workers``
    processes with at most ``2 x workers`` chunks in memory: 100,000 faces at 224 px never
    need the 15 GB they take at once."""
    workers = workers or runtime_workers()
    starts = range(0, len(lat), chunk)
    if workers <= 1:
        for lo in starts:
            yield from render_many(lat.iloc[lo : lo + chunk], seed, size, stream, lo)
        return
    with spawned_pool(workers) as pool:
        pending: deque = deque()
        for lo in starts:
            pending.append(pool.submit(render_many, lat.iloc[lo : lo + chunk], seed, size, stream, lo))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def sample_grid(size: int = 64, steps: int = 6, seed: int = 0) -> np.ndarray:
    """One row per emotion, intensity rising left to right (scripts/docs.py draws docs/images/synth_grid.png)."""
    rows = []
    for e in range(NUM_CLASSES):
        row = []
        for j, k in enumerate(np.linspace(0.15, 1.0, steps)):
            k = 0.0 if e == NEUTRAL else k
            v, a = VA_CENTRES[e] * (k if e != NEUTRAL else 0)
            row.append(render_face(e, k, v, a, np.random.default_rng([seed, e, j]), size))
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)
