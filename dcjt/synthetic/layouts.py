"""Writers for the datasets' real on-disk release layouts (the inverse of ``dcjt.data.readers``).

Used by the synthetic world (``run.py synth --layout``) and by test fixtures, so that the real
readers are exercised end to end on real image files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dcjt.data.readers import AFFECTNET_COLUMNS, AFFECTNET_TO_CANONICAL, CAERS_FOLDERS, FERPLUS_TO_CANONICAL, FERPLUS_VOTES

CANONICAL_TO_AFFECTNET = {v: k for k, v in AFFECTNET_TO_CANONICAL.items()}
CANONICAL_TO_CAERS = {v: k for k, v in CAERS_FOLDERS.items()}
CANONICAL_TO_FERPLUS = {v: k for k, v in FERPLUS_TO_CANONICAL.items()}


def _save(img: np.ndarray, path: Path, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(path, **kwargs)


def write_rafdb(root, images, labels, splits) -> list[Path]:
    """``EmoLabel/list_patition_label.txt`` (labels 1..7) + ``Image/aligned/*_aligned.jpg``."""
    root = Path(root)
    lines, paths, counters = [], [], {"train": 0, "test": 0}
    for img, label, split in zip(images, labels, splits):
        if split not in counters:
            raise ValueError(f"RAF-DB has only train/test splits, got {split!r}")
        counters[split] += 1
        name = f"{split}_{counters[split]:05d}.jpg" if split == "train" else f"test_{counters[split]:04d}.jpg"
        path = root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")
        _save(img, path)
        lines.append(f"{name} {int(label) + 1}")
        paths.append(path)
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return paths


def write_affectnet_csv(root, images, labels, va, splits, *, boxes=None, landmarks=None, codes=None):
    """Original release: ``Manually_Annotated_file_lists/{training,validation}.csv`` + images.
    ``va``: (valence, arousal), one value per row each.

    ``codes`` overrides the AffectNet expression code per row (e.g. 7-10 for excluded rows).
    """
    import csv

    root = Path(root)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    files = {"train": open(lists / "training.csv", "w", newline=""), "test": open(lists / "validation.csv", "w", newline="")}
    try:
        writers = {k: csv.writer(f) for k, f in files.items()}
        for w in writers.values():
            w.writerow(AFFECTNET_COLUMNS)
        for i, (img, label, v, a, split) in enumerate(zip(images, labels, *va, splits)):
            rel = f"{i // 1000:03d}/{i:07d}.jpg"
            _save(img, root / "Manually_Annotated_Images" / rel)
            h, w_ = np.asarray(img).shape[:2]
            x, y, bw, bh = boxes[i] if boxes is not None else (0, 0, w_, h)
            lm = ";".join(f"{p:.2f}" for p in np.ravel(landmarks[i])) if landmarks is not None else ""
            code = codes[i] if codes is not None else CANONICAL_TO_AFFECTNET[int(label)]
            writers[split].writerow([rel, x, y, bw, bh, lm, code, f"{v:.6f}", f"{a:.6f}"])
    finally:
        for f in files.values():
            f.close()


def write_affectnet_npy(root, images, labels, va, splits, *, landmarks=None, codes=None):
    """Newer release: ``{train,val}_set/images/{i}.jpg`` + ``annotations/{i}_{exp,val,aro,lnd}.npy``;
    ``va``: (valence, arousal)."""
    root = Path(root)
    for i, (img, label, v, a, split) in enumerate(zip(images, labels, *va, splits)):
        base = root / ("train_set" if split == "train" else "val_set")
        _save(img, base / "images" / f"{i}.jpg")
        ann = base / "annotations"
        ann.mkdir(parents=True, exist_ok=True)
        code = codes[i] if codes is not None else CANONICAL_TO_AFFECTNET[int(label)]
        np.save(ann / f"{i}_exp.npy", np.array(str(code)))  # the release stores strings
        np.save(ann / f"{i}_val.npy", np.array(str(float(v))))
        np.save(ann / f"{i}_aro.npy", np.array(str(float(a))))
        if landmarks is not None:
            np.save(ann / f"{i}_lnd.npy", np.asarray(landmarks[i], dtype=np.float64).ravel())


def write_caers(root, images, labels, splits, *, boxes=None) -> list[Path]:
    """``{train,test}/<Emotion>/NNNN.png``; optional ``boxes.csv`` (path,label,x1,y1,x2,y2)."""
    root = Path(root)
    paths, rows = [], []
    for i, (img, label, split) in enumerate(zip(images, labels, splits)):
        rel = Path(split) / CANONICAL_TO_CAERS[int(label)] / f"{i:04d}.png"
        _save(img, root / rel)
        paths.append(root / rel)
        if boxes is not None:
            x, y, w, h = boxes[i]
            rows.append(f"{rel},{CANONICAL_TO_CAERS[int(label)]},{x},{y},{x + w},{y + h}")
    if boxes is not None:
        (root / "boxes.csv").write_text("path,label,x1,y1,x2,y2\n" + "\n".join(rows) + "\n")
    return paths


def write_ferplus(root, images48, votes, usages, *, emotions=None) -> None:
    """``fer2013.csv`` (emotion,pixels,Usage) + ``fer2013new.csv`` (10 vote columns)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    old = ["emotion,pixels,Usage"]
    new = ["Usage,Image name," + ",".join(FERPLUS_VOTES)]
    for i, (img, vote, usage) in enumerate(zip(images48, votes, usages)):
        gray = np.asarray(img, dtype=np.uint8)
        if gray.ndim == 3:
            gray = gray.mean(axis=2).astype(np.uint8)
        old.append(f"{0 if emotions is None else emotions[i]},{' '.join(map(str, gray.ravel()))},{usage}")
        new.append(f"{usage},fer{i:07d}.png," + ",".join(str(int(v)) for v in vote))
    (root / "fer2013.csv").write_text("\n".join(old) + "\n")
    (root / "fer2013new.csv").write_text("\n".join(new) + "\n")


def ferplus_votes_for(label: int, n: int = 10) -> list[int]:
    """A vote row whose majority is canonical ``label``."""
    votes = [0] * len(FERPLUS_VOTES)
    votes[CANONICAL_TO_FERPLUS[int(label)]] = n
    return votes
