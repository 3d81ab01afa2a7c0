"""What the served model does around its network, with no torch: read each input (a path, encoded
bytes or an array) within its budgets, preprocess it as in training (``dcjt.models.images``), run a
scorer on the batch and assemble one output row per input, refused inputs included.

A scorer is anything with an ``image_size`` and ``__call__(uint8 NHWC) -> (probabilities (N, 7),
valence/arousal (N, 2))``: ONNX Runtime in the registered model (``dcjt.serving.onnx_runtime``),
the torch network on the training side (``dcjt.serving.network.TorchScorer``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from dcjt.models.emotions import EMOTIONS
from dcjt.models.images import OverPixelBudget, decode, open_rgb8, preprocess

OUTPUT_COLUMNS = ["label", "emotion", *[f"prob_{e}" for e in EMOTIONS], "valence", "arousal"]


class Scorer(Protocol):
    image_size: int

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def encode_arrays(arrays) -> pd.DataFrame:
    """uint8 HxWx3 arrays -> the model's ``image_bytes`` input (PNG)."""
    from PIL import Image

    out = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(a, dtype=np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return pd.DataFrame({"image_bytes": out})


MAX_PIXELS_ENV, MAX_BYTES_ENV = "DCJT_SERVE_MAX_PIXELS", "DCJT_SERVE_MAX_BYTES"
MAX_PIXELS, MAX_BYTES = 25_000_000, 20_000_000  # a 25-megapixel photo; 20 MB per encoded image


def budgets() -> tuple[int, int]:
    """(pixels, bytes) one input may have (``DCJT_SERVE_MAX_PIXELS`` / ``DCJT_SERVE_MAX_BYTES``):
    a small file can declare a huge image, and decoding it would take gigabytes."""
    return int(os.environ.get(MAX_PIXELS_ENV) or MAX_PIXELS), int(os.environ.get(MAX_BYTES_ENV) or MAX_BYTES)


def predict_arrays(scorer: Scorer, images: list[np.ndarray], batch_size: int = 128) -> pd.DataFrame:
    """Run the scorer on RGB uint8 images of any size; one output row per image."""
    probs, vas = [np.zeros((0, len(EMOTIONS)))], [np.zeros((0, 2))]
    for i in range(0, len(images), batch_size):
        batch = np.stack([preprocess(img, scorer.image_size) for img in images[i : i + batch_size]])
        p, va = scorer(batch)
        probs.append(p)
        vas.append(np.clip(va, -1, 1))
    p, va = np.concatenate(probs), np.concatenate(vas)
    label = p.argmax(1)
    frame = pd.DataFrame({"label": label.astype("int64"), "emotion": [EMOTIONS[k] for k in label]})
    for k, e in enumerate(EMOTIONS):
        frame[f"prob_{e}"] = p[:, k].astype("float64")
    frame["valence"], frame["arousal"] = va[:, 0].astype("float64"), va[:, 1].astype("float64")
    return frame


IMAGE_ROOTS_ENV = "DCJT_SERVE_IMAGE_ROOTS"


def image_roots() -> list[Path]:
    """Folders whose files the model may read when given paths (``DCJT_SERVE_IMAGE_ROOTS``,
    separated by ``os.pathsep``). Default: none, so a served model reads no file a client names;
    clients send ``image_bytes``."""
    return [Path(p).resolve() for p in os.environ.get(IMAGE_ROOTS_ENV, "").split(os.pathsep) if p.strip()]


def path_refusal(item: str, roots: list[Path]) -> str | None:
    """Why a path input is refused, or None. Decided before the file is touched, with the same
    words whether or not it exists."""
    if not roots:
        return f"image paths are not read here: send image_bytes (or allow folders with {IMAGE_ROOTS_ENV})"
    resolved = Path(item).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        return f"path outside the allowed image folders ({IMAGE_ROOTS_ENV}): refused"
    return None


def load_input(item, min_side: int, roots: list[Path]) -> tuple[np.ndarray | None, str]:
    """One input (path, bytes or array) -> (RGB uint8 image, "") or (None, why it was refused).
    Byte and pixel budgets are checked before decoding (the pixels from the image's header)."""
    max_pixels, max_bytes = budgets()
    try:
        if isinstance(item, np.ndarray):
            image = item
        elif isinstance(item, (bytes, bytearray)):
            if len(item) > max_bytes:
                return None, f"too large: {len(item):,} bytes, over the budget of {max_bytes:,} ({MAX_BYTES_ENV})"
            image = open_rgb8(io.BytesIO(bytes(item)), "image_bytes", max_pixels)
        else:
            refused = path_refusal(str(item), roots)
            if refused:
                return None, refused
            image = decode(item, max_pixels)
    except OverPixelBudget as exc:
        return None, f"too large: {exc} ({MAX_PIXELS_ENV})"
    except Exception as exc:  # one unreadable input never fails the batch: it is reported in its row
        return None, f"unreadable: {exc}"
    h, w = image.shape[:2]
    if min(h, w) < min_side:
        return None, f"too small: {w}x{h} px, the model needs at least {min_side} px per side"
    return image, ""


def predict_inputs(scorer: Scorer, items: list, min_side: int) -> pd.DataFrame:
    """Predictions for every input; refused, unreadable or too-small ones get label -1 and an ``error``."""
    roots = image_roots()
    loaded = [load_input(item, min_side, roots) for item in items]
    good = [i for i, (image, _) in enumerate(loaded) if image is not None]
    preds = predict_arrays(scorer, [loaded[i][0] for i in good])
    out = pd.DataFrame({c: pd.Series([np.nan] * len(items), dtype="float64") for c in OUTPUT_COLUMNS})
    out["label"], out["emotion"] = -1, ""
    out.loc[good, OUTPUT_COLUMNS] = preds.to_numpy(dtype=object)
    out["label"] = out["label"].astype("int64")
    out["error"] = [why for _, why in loaded]
    # A refused row's numbers are None, not NaN: the scoring server then answers JSON that every
    # strict parser reads (a bare NaN makes JavaScript's JSON.parse reject the whole batch). A batch
    # with no refused row keeps float columns (pd.to_numeric turns the others back into NaN).
    numbers = [c for c in OUTPUT_COLUMNS if c not in ("label", "emotion")]
    if len(good) < len(items):
        out[numbers] = out[numbers].astype(object).where(out[numbers].notna(), None)
    return out[[*OUTPUT_COLUMNS, "error"]]


def input_items(model_input) -> list:
    """The items of a pyfunc input: an array (one image or a batch), or a frame with ``image``
    (paths) or ``image_bytes`` (encoded images)."""
    if isinstance(model_input, np.ndarray):
        return list(model_input) if model_input.ndim == 4 else [model_input]
    frame = pd.DataFrame(model_input)
    if "image" in frame and frame["image"].notna().all():
        return frame["image"].astype(str).tolist()
    if "image_bytes" in frame:
        return frame["image_bytes"].tolist()
    raise ValueError("input needs a column 'image' (file paths) or 'image_bytes' (encoded images)")
