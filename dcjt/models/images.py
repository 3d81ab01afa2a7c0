"""Decode, crop, align and resize face images as the paper does (section 4.2).

Crop by face box where given; align by landmarks with a similarity transform where given;
resize to the configured square size. Output is uint8 RGB, HxWx3.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # the files readers, predict and the size estimate take as images

# Where the eyes and mouth centre land in the aligned square, as fractions of its side.
ALIGN_TEMPLATE = np.array([[0.35, 0.40], [0.65, 0.40], [0.50, 0.75]], dtype=np.float32)


class ImageReadError(OSError):
    """An image file cannot be decoded; the message names the file."""


class OverPixelBudget(ImageReadError):
    """An image whose header declares more pixels than the caller's budget (nothing decoded)."""


def to_rgb8(im: Image.Image, name: str) -> np.ndarray:
    """Any mode Pillow opens -> RGB uint8. 16-bit grey (``I;16*``, or ``I`` within 0..65535) is
    scaled by 255/65535, not clipped (Pillow's own ``convert`` would clip it to white); float
    and wider integer images are refused by name."""
    if im.mode.startswith("I;16") or im.mode == "I":
        wide = np.asarray(im, dtype=np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 65535):
            raise ImageReadError(f"cannot decode image {name}: {im.mode} values outside 0..65535")
        grey = np.round(wide * (255 / 65535)).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if im.mode == "F":
        raise ImageReadError(f"cannot decode image {name}: 32-bit float images are not supported")
    return np.asarray(im.convert("RGB"))


def open_rgb8(source, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Open ``source`` (a path or a file object), check its size from the header against
    ``max_pixels`` before any pixel is decoded, decode it upright (EXIF orientation applied:
    phones store pixels rotated and an orientation tag) into RGB uint8."""
    with Image.open(source) as im:
        width, height = im.size
        if max_pixels is not None and width * height > max_pixels:
            raise OverPixelBudget(f"{width}x{height} px, over the budget of {max_pixels:,} px")
        im.load()
        return to_rgb8(ImageOps.exif_transpose(im), name)


def decode(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file fully into RGB uint8 (upright); truncated, unreadable or over-budget
    files raise ``ImageReadError`` naming the file."""
    try:
        return open_rgb8(path, str(path), max_pixels)
    except ImageReadError:
        raise
    except FileNotFoundError as exc:
        raise ImageReadError(f"image file missing: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot decode image {path}: {exc}") from exc


def _landmark_anchors(landmarks: np.ndarray) -> np.ndarray:
    """Left eye, right eye and mouth centre from 68-point or 5-point landmarks."""
    pts = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    if len(pts) == 68:
        return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[48:68].mean(0)])
    if len(pts) == 5:  # eyes, nose, mouth corners
        return np.stack([pts[0], pts[1], pts[3:5].mean(0)])
    raise ValueError(f"landmarks must have 68 or 5 points, got {len(pts)}")


def preprocess(
    image: np.ndarray,
    size: int,
    box: tuple[float, float, float, float] | None = None,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """Align (landmarks) or crop (box), then resize to ``size`` x ``size``."""
    if landmarks is not None and len(landmarks):
        src = _landmark_anchors(landmarks)
        matrix, _ = cv2.estimateAffinePartial2D(src, ALIGN_TEMPLATE * size)
        if matrix is not None:
            return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if box is not None and not any(v is None or np.isnan(v) for v in box):
        x, y, w, h = (int(round(v)) for v in box)
        height, width = image.shape[:2]
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
        if x1 > x0 and y1 > y0:
            image = image[y0:y1, x0:x1]
    if image.shape[0] != size or image.shape[1] != size:
        interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    return np.ascontiguousarray(image)


def load_preprocessed(path, size, box=None, landmarks=None) -> np.ndarray:
    return preprocess(decode(path), size, box, landmarks)
