"""Readers: a dataset root in its real release layout -> a label table (canonical order).

Each reader raises ``DatasetFormatError`` naming the file and line (or value) of bad input,
and returns an ``IngestReport`` of what was excluded and why.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dcjt.data.identity import split_seed as dataset_split_seed
from dcjt.data.labels import BOX_COLUMNS, EMOTIONS, NUM_CLASSES, SPLITS, make_table, stratified_val_split
from dcjt.models.images import IMAGE_SUFFIXES, ImageReadError, decode
from dcjt.utils.files import replace_atomic, sigterm_unwinds
from dcjt.utils.runtime import workers as runtime_workers


class DatasetFormatError(ValueError):
    """The dataset on disk does not match its release's layout; names file and line."""


@dataclass
class IngestReport:
    dataset: str
    excluded: dict[str, int] = field(default_factory=dict)
    skipped_images: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, reason: str, n: int = 1) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + n


# --- label orders of the releases, mapped by name to the canonical order --------------------------
AFFECTNET_CODES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")  # codes 0..6
AFFECTNET_TO_CANONICAL = {code: EMOTIONS.index(name) for code, name in enumerate(AFFECTNET_CODES)}
AFFECTNET_CODE_NAMES = {7: "contempt", 8: "none", 9: "uncertain", 10: "no-face"}
CAERS_FOLDER_NAMES = {
    "Surprise": "surprise",
    "Fear": "fear",
    "Disgust": "disgust",
    "Happy": "happiness",
    "Sad": "sadness",
    "Anger": "anger",
    "Neutral": "neutral",
}
CAERS_FOLDERS = {folder: EMOTIONS.index(name) for folder, name in CAERS_FOLDER_NAMES.items()}
FERPLUS_VOTES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
FERPLUS_TO_CANONICAL = {k: EMOTIONS.index(name) for k, name in enumerate(FERPLUS_VOTES) if name in EMOTIONS}
FERPLUS_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
AFFECTNET_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)


def _read_text(path: Path) -> str:
    """A text file as editors save it: a UTF-8 byte-order mark and CRLF endings are accepted."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def default_work_dir(dataset: str, root: Path) -> Path:
    """Where files derived from a dataset root go: ``$DCJT_HOME/work/<dataset>-<hash of the root>``."""
    from dcjt.utils.state import state_home

    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    return state_home() / "work" / f"{dataset}-{digest}"


def _require_dir(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(f"{what} root not found or not a folder: {root}")
    return root


def inside_root(root: Path, relative: str, where: str) -> str:
    """``root / relative`` if it stays inside ``root`` after following symlinks; otherwise a
    ``DatasetFormatError`` naming ``where`` (file:line). The message is the same whether or not
    the outside target exists, so a listing cannot probe the file system."""
    rel = Path(relative)
    full = root / rel
    if rel.is_absolute() or ".." in rel.parts or not full.resolve().is_relative_to(root.resolve()):
        raise DatasetFormatError(f"{where}: path {str(relative)!r} leaves the dataset root {root}; refused")
    return str(full)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DatasetFormatError(f"required file missing: {path}")
    return path


def _check_nonempty_splits(df: pd.DataFrame, source: Path, splits=("train", "test")) -> None:
    for split in splits:
        if not (df["split"] == split).any():
            raise DatasetFormatError(f"empty split '{split}' in {source}")


def _check_duplicates(images: list[str], source: Path) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(images, start=1):
        if name in seen:
            raise DatasetFormatError(f"{source}: image '{name}' listed twice (entries {seen[name]} and {i})")
        seen[name] = i


# --- RAF-DB -----------------------------------------------------------------------------------
def read_rafdb(root, *, aligned: bool = True) -> tuple[pd.DataFrame, IngestReport]:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (labels 1..7) + aligned images."""
    root = _require_dir(root, "RAF-DB")
    listing = _require_file(root / "EmoLabel" / "list_patition_label.txt")
    report = IngestReport("rafdb")
    names, labels, splits, paths = [], [], [], []
    for lineno, line in enumerate(_read_text(listing).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9]+", parts[1]):
            raise DatasetFormatError(f"{listing}:{lineno}: expected '<name>.jpg <label 1-7>', got {line!r}")
        name, label = parts[0], int(parts[1])
        if not 1 <= label <= NUM_CLASSES:
            raise DatasetFormatError(f"{listing}:{lineno}: label {label} outside 1..7 for {name}")
        split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
        if split is None:
            raise DatasetFormatError(f"{listing}:{lineno}: name {name!r} starts with neither 'train' nor 'test'")
        stem, ext = os.path.splitext(name)
        relative = Path("Image") / ("aligned" if aligned else "original") / (f"{stem}_aligned{ext}" if aligned else name)
        file = inside_root(root, str(relative), f"{listing}:{lineno}")
        names.append(name), labels.append(label - 1), splits.append(split), paths.append(file)
    _check_duplicates(names, listing)
    df = make_table("rafdb", splits, paths, labels)
    _check_nonempty_splits(df, listing)
    return df, report


# --- AffectNet ----------------------------------------------------------------------------------
def _affectnet_filter(codes, val, aro, report: IngestReport) -> np.ndarray:
    """Keep the 7 basic codes with valid valence/arousal; count what is dropped and why."""
    codes = np.asarray(codes)
    keep = codes < 7
    for code, name in AFFECTNET_CODE_NAMES.items():
        report.count(f"code {code} ({name})", int((codes == code).sum()))
    bad_va = keep & ((np.asarray(val) == -2) | (np.asarray(aro) == -2))
    report.count("valence/arousal -2", int(bad_va.sum()))
    return keep & ~bad_va


def read_affectnet(root) -> tuple[pd.DataFrame, IngestReport]:
    """AffectNet, either release: original CSV lists, or per-image ``.npy`` annotations."""
    root = _require_dir(root, "AffectNet")
    if (root / "Manually_Annotated_file_lists").is_dir():
        return _read_affectnet_csv(root)
    if (root / "train_set").is_dir():
        return _read_affectnet_npy(root)
    raise DatasetFormatError(
        f"{root}: neither 'Manually_Annotated_file_lists/' (original release) nor 'train_set/' (npy release) found"
    )


def _read_affectnet_csv(root: Path):
    report = IngestReport("affectnet")
    frames = []
    for fname, split in (("training.csv", "train"), ("validation.csv", "test")):
        path = _require_file(root / "Manually_Annotated_file_lists" / fname)
        text = _read_text(path)
        header = next(csv.reader(io.StringIO(text)), None)
        if header is None or tuple(h.strip() for h in header) != AFFECTNET_COLUMNS:
            raise DatasetFormatError(f"{path}:1: header {header} does not match AffectNet's {list(AFFECTNET_COLUMNS)}")
        try:
            raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, ValueError) as exc:
            raise DatasetFormatError(f"{path}: not a CSV table AffectNet's reader can parse: {exc}") from None
        raw.columns = [c.strip() for c in raw.columns]
        raw = raw.fillna("")  # missing trailing fields are empty values
        empty = raw["subDirectory_filePath"].str.strip() == ""
        if empty.any():
            raise DatasetFormatError(f"{path}:{int(empty.to_numpy().argmax()) + 2}: empty subDirectory_filePath")
        for col in ("expression", "valence", "arousal", "face_x", "face_y", "face_width", "face_height"):
            cells = raw[col].str.strip()
            values = pd.to_numeric(cells.where(cells != ""), errors="coerce")
            bad = values.isna() | ~np.isfinite(values.fillna(0))  # inf / nan parse as floats
            if bad.any():
                row = int(bad.to_numpy().argmax())
                cell = cells.iloc[row]
                shown = repr(cell) if cell else "an empty value"
                raise DatasetFormatError(f"{path}:{row + 2}: column {col} has {shown}, expected a finite number")
            if col == "expression" and (values != values.round()).any():
                row = int((values != values.round()).to_numpy().argmax())
                raise DatasetFormatError(f"{path}:{row + 2}: expression {cells.iloc[row]!r} is not an integer code")
            raw[col] = values
        for col in ("face_width", "face_height"):
            if (raw[col] <= 0).any():
                row = int((raw[col] <= 0).to_numpy().argmax())
                raise DatasetFormatError(f"{path}:{row + 2}: face box {col} {raw[col].iloc[row]:g} must be positive")
        codes = raw["expression"].astype(int).to_numpy()
        if ((codes < 0) | (codes > 10)).any():
            row = int(((codes < 0) | (codes > 10)).argmax())
            raise DatasetFormatError(f"{path}:{row + 2}: expression code {codes[row]} outside 0..10")
        va = raw[["valence", "arousal"]].to_numpy()
        valid_va = (va == -2) | ((va >= -1) & (va <= 1))
        if not valid_va.all():
            row = int((~valid_va.all(axis=1)).argmax())
            raise DatasetFormatError(f"{path}:{row + 2}: valence/arousal {va[row].tolist()} outside [-1, 1] (and not -2)")
        keep = _affectnet_filter(codes, raw["valence"], raw["arousal"], report)
        raw = raw[keep]
        _check_duplicates(raw["subDirectory_filePath"].tolist(), path)
        landmarks = [_landmarks(s, path, row + 2) for row, s in zip(raw.index, raw["facial_landmarks"])]
        images = [
            inside_root(root, str(Path("Manually_Annotated_Images") / p), f"{path}:{row + 2}")
            for row, p in zip(raw.index, raw["subDirectory_filePath"])
        ]
        frames.append(
            make_table(
                "affectnet",
                split,
                images,
                [AFFECTNET_TO_CANONICAL[c] for c in raw["expression"].astype(int)],
                raw["valence"],
                raw["arousal"],
                extra={
                    "face_x": raw["face_x"].to_numpy(float),
                    "face_y": raw["face_y"].to_numpy(float),
                    "face_w": raw["face_width"].to_numpy(float),
                    "face_h": raw["face_height"].to_numpy(float),
                    "landmarks": landmarks,
                },
            )
        )
    df = pd.concat(frames, ignore_index=True)
    _check_nonempty_splits(df, root / "Manually_Annotated_file_lists")
    return df, report


def _read_csv_text(path: Path) -> pd.DataFrame:
    """A CSV file as strings (BOM accepted); a file pandas cannot parse is named."""
    try:
        return pd.read_csv(io.StringIO(_read_text(path)), dtype=str, keep_default_na=False).fillna("")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: cannot parse as CSV: {exc}") from None


def _landmarks(cell: str, path: Path, lineno: int) -> list[float] | None:
    """``x;y;x;y;...`` (68 or 5 points) or empty."""
    if not isinstance(cell, str) or not cell.strip():
        return None
    try:
        values = [float(v) for v in cell.split(";") if v.strip()]
    except ValueError:
        raise DatasetFormatError(f"{path}:{lineno}: facial_landmarks {cell[:40]!r} are not numbers separated by ';'") from None
    if len(values) not in (136, 10):
        raise DatasetFormatError(f"{path}:{lineno}: facial_landmarks has {len(values)} numbers, expected 136 (68 points) or 10")
    return values


def _npy_load(path: Path) -> np.ndarray:
    """One annotation array of the npy release, never unpickled; any fault names the file."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DatasetFormatError(f"annotation file missing: {path}") from exc
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetFormatError(f"cannot read annotation {path}: {exc or 'empty file'}") from exc


def _npy_scalar(path: Path) -> float:
    try:
        value = float(_npy_load(path).item())
    except (ValueError, TypeError) as exc:
        raise DatasetFormatError(f"cannot read annotation {path}: {exc}") from exc
    if not np.isfinite(value):
        raise DatasetFormatError(f"annotation {path}: {value} is not a finite number")
    return value


def _read_affectnet_npy(root: Path):
    report = IngestReport("affectnet")
    frames = []
    for folder, split in (("train_set", "train"), ("val_set", "test")):
        base = _require_dir(root / folder, "AffectNet split")
        ann = _require_dir(base / "annotations", "AffectNet annotations")
        found = (base / "images").glob("*")
        images = sorted((p for p in found if p.suffix.lower() in (".jpg", ".jpeg")), key=lambda p: (len(p.stem), p.stem))
        for img in images:  # a symlink out of the release is refused like a ../ entry
            inside_root(root, str(img.relative_to(root)), str(img))
        codes, val, aro, marks = [], [], [], []
        for img in images:
            i = img.stem
            code = _npy_scalar(ann / f"{i}_exp.npy")
            if code != int(code) or not 0 <= code <= 10:
                raise DatasetFormatError(f"{ann / f'{i}_exp.npy'}: expression code {code} outside 0..10")
            codes.append(int(code)), val.append(_npy_scalar(ann / f"{i}_val.npy")), aro.append(_npy_scalar(ann / f"{i}_aro.npy"))
            lnd = ann / f"{i}_lnd.npy"
            marks.append(_npy_load(lnd).astype(float).ravel().tolist() if lnd.exists() else None)
        keep = _affectnet_filter(codes, val, aro, report)
        for i in np.flatnonzero(keep):
            if not -1 <= val[i] <= 1 or not -1 <= aro[i] <= 1:
                raise DatasetFormatError(
                    f"{ann}/{images[i].stem}_val/aro.npy: valence/arousal {val[i]}, {aro[i]} outside [-1, 1]"
                )
        idx = np.flatnonzero(keep)
        frames.append(
            make_table(
                "affectnet",
                split,
                [str(images[i]) for i in idx],
                [AFFECTNET_TO_CANONICAL[codes[i]] for i in idx],
                [val[i] for i in idx],
                [aro[i] for i in idx],
                extra={"landmarks": [marks[i] for i in idx]},
            )
        )
    df = pd.concat(frames, ignore_index=True)
    _check_nonempty_splits(df, root)
    return df, report


def _fer_pixels(text: str, where: str) -> np.ndarray:
    """FER2013's ``pixels`` cell: 2304 whole numbers in 0..255, or an error naming the first bad one."""
    cells = text.split()
    if len(cells) != 48 * 48:
        raise DatasetFormatError(f"{where}: pixels must be 2304 values (48 x 48), got {len(cells)}")
    try:
        pix = np.array(cells, dtype=np.float64)
    except ValueError:
        first = next(c for c in cells if not _is_number(c))
        raise DatasetFormatError(f"{where}: pixel {first!r} is not a number") from None
    bad = ~np.isfinite(pix) | (pix < 0) | (pix > 255) | (pix != np.round(pix))
    if bad.any():
        k = int(bad.argmax())
        raise DatasetFormatError(f"{where}: pixel {k} is {cells[k]!r}; pixels are whole numbers in 0..255")
    return pix


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- CAER-S -------------------------------------------------------------------------------------
def read_caers(root, *, boxes_file: str | os.PathLike | None = None, detect_faces: bool = True):
    """CAER-S: ``{train,test}/<Emotion>/NNNN.png`` frames; faces from a boxes file or OpenCV."""
    root = _require_dir(root, "CAER-S")
    report = IngestReport("caers")
    rows = []
    for split in ("train", "test"):
        split_dir = _require_dir(root / split, "CAER-S split")
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if folder.name not in CAERS_FOLDERS:
                raise DatasetFormatError(f"{folder}: unknown emotion folder; expected one of {sorted(CAERS_FOLDERS)}")
            for img in sorted(folder.iterdir()):
                if img.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append((split, inside_root(root, str(img.relative_to(root)), str(img)), CAERS_FOLDERS[folder.name]))
    df = make_table("caers", [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    _check_nonempty_splits(df, root)
    box = np.full((len(df), 4), np.nan)
    boxes_file = Path(boxes_file) if boxes_file else (root / "boxes.csv" if (root / "boxes.csv").exists() else None)
    if boxes_file is not None:
        known = _read_caers_boxes(_require_file(boxes_file), root)
        for i, path in enumerate(df["image"]):
            if path in known:
                box[i] = known[path]
        report.notes.append(f"boxes from {boxes_file}: {int((~np.isnan(box[:, 0])).sum())} of {len(df)}")
    todo = np.flatnonzero(np.isnan(box[:, 0]))
    if detect_faces and len(todo):
        found = detect_largest_faces([df["image"].iat[i] for i in todo])
        box[todo] = found
        report.count("no face detected (full frame used)", int(np.isnan(found[:, 0]).sum()))
    for j, col in enumerate(("face_x", "face_y", "face_w", "face_h")):
        df[col] = box[:, j]
    return df, report


def _read_caers_boxes(path: Path, root: Path) -> dict[str, tuple]:
    """``path,label,x1,y1,x2,y2`` per frame -> {image path: (x, y, w, h)}."""
    out = {}
    reader = csv.reader(io.StringIO(_read_text(path)))
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != ["path", "label", "x1", "y1", "x2", "y2"]:
        raise DatasetFormatError(f"{path}:1: header {header} is not 'path,label,x1,y1,x2,y2'")
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        bad = f"{path}:{lineno}: bad box row {row}: expected path,label,x1,y1,x2,y2"
        try:
            x1, y1, x2, y2 = (float(v) for v in row[2:6])
        except (ValueError, IndexError, TypeError):
            raise DatasetFormatError(bad) from None
        if len(row) != 6 or not np.isfinite([x1, y1, x2, y2]).all():
            raise DatasetFormatError(bad)
        if x2 <= x1 or y2 <= y1:
            raise DatasetFormatError(f"{path}:{lineno}: face box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has no area")
        label, folder = row[1].strip(), Path(row[0].strip()).parent.name
        if label in CAERS_FOLDERS and label != folder:
            raise DatasetFormatError(f"{path}:{lineno}: label {label!r} contradicts the frame's folder {folder!r} ({row[0]})")
        out[inside_root(root, row[0], f"{path}:{lineno}")] = (x1, y1, x2 - x1, y2 - y1)
    return out


def detect_largest_faces(paths: list[str]) -> np.ndarray:
    """Largest frontal face per image with OpenCV's bundled Haar cascade; NaN where none."""
    import cv2

    cascade_file = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")

    def detect(path: str):
        detector = cv2.CascadeClassifier(cascade_file)
        try:
            gray = cv2.cvtColor(decode(path), cv2.COLOR_RGB2GRAY)
            faces = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        except (ImageReadError, cv2.error):  # an unreadable frame is a bad row of the image check, not a stop
            return (np.nan,) * 4
        if len(faces) == 0:
            return (np.nan,) * 4
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
        return (float(x), float(y), float(w), float(h))

    with ThreadPoolExecutor(runtime_workers(limit=8)) as pool:
        return np.array(list(pool.map(detect, paths)), dtype=float).reshape(-1, 4)


# --- FERPlus ------------------------------------------------------------------------------------
def read_ferplus(root, *, image_dir: str | os.PathLike | None = None):
    """FERPlus: majority vote of ``fer2013new.csv``; pixels of ``fer2013.csv`` written as PNGs.

    Images are extracted once to ``image_dir`` (default: a folder per dataset root under the state
    folder, never inside the dataset root, which may be read-only) so that the rest of the project
    reads files like any other dataset.
    """
    from PIL import Image

    root = _require_dir(root, "FERPlus")
    old_path, new_path = _require_file(root / "fer2013.csv"), _require_file(root / "fer2013new.csv")
    old, new = _read_csv_text(old_path), _read_csv_text(new_path)
    if list(old.columns) != ["emotion", "pixels", "Usage"]:
        raise DatasetFormatError(f"{old_path}:1: header {list(old.columns)} is not 'emotion,pixels,Usage'")
    expected = ["Usage", "Image name", *FERPLUS_VOTES]
    if list(new.columns) != expected:
        raise DatasetFormatError(f"{new_path}:1: header {list(new.columns)} is not {expected}")
    if len(old) != len(new):
        raise DatasetFormatError(f"{new_path}: {len(new)} rows but {old_path} has {len(old)}; the files must align")
    report = IngestReport("ferplus")
    image_dir = Path(image_dir) if image_dir else default_work_dir("ferplus", root)
    votes = np.zeros((len(new), len(FERPLUS_VOTES)))
    for j, col in enumerate(FERPLUS_VOTES):
        cells = new[col].str.strip()
        values = pd.to_numeric(cells.where(cells != ""), errors="coerce")
        bad = values.isna() | (values < 0) | (values != values.round())
        if bad.any():
            row = int(bad.to_numpy().argmax())
            shown = repr(cells.iloc[row]) if cells.iloc[row] else "an empty value"
            raise DatasetFormatError(f"{new_path}:{row + 2}: vote column {col} has {shown}, expected a count")
        votes[:, j] = values
    named = new["Image name"].str.strip() != ""
    report.count("no image name (not a face)", int((~named).sum()))
    winner = votes.argmax(axis=1)
    for k in (7, 8, 9):
        report.count(f"majority {FERPLUS_VOTES[k]}", int((named & (winner == k)).sum()))
    no_votes = named.to_numpy() & (votes.sum(axis=1) == 0)
    report.count("no votes", int(no_votes.sum()))
    old_usage = old["Usage"].astype(str)  # the header was checked above
    keep = np.flatnonzero(named.to_numpy() & ~no_votes & (winner < 7))
    splits, paths, labels = [], [], []
    for i in keep:
        usage = new["Usage"].iat[i]
        if usage not in FERPLUS_USAGE:
            raise DatasetFormatError(f"{new_path}:{i + 2}: unknown Usage {usage!r}")
        pix = _fer_pixels(str(old["pixels"].iat[i]), f"{old_path}:{i + 2}")
        if old_usage.iat[i].strip() != usage:
            raise DatasetFormatError(
                f"{new_path}:{i + 2}: Usage {usage!r} but {old_path}:{i + 2} says {old_usage.iat[i].strip()!r}: "
                "the two files are not the same release (rows must match line for line)"
            )
        # The file name is derived from the row, never taken from the CSV: nothing it says can
        # place a file outside ``image_dir``.
        out = image_dir / FERPLUS_USAGE[usage] / f"row{i + 2:06d}.png"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            face = Image.fromarray(pix.reshape(48, 48).astype(np.uint8))
            with sigterm_unwinds():  # an interrupted extraction leaves no temp files
                replace_atomic(lambda tmp, face=face: face.save(tmp, format="PNG"), out)
        splits.append(FERPLUS_USAGE[usage]), paths.append(str(out)), labels.append(FERPLUS_TO_CANONICAL[int(winner[i])])
    _check_duplicates(paths, new_path)
    df = make_table("ferplus", splits, paths, labels)
    _check_nonempty_splits(df, new_path, splits=("train", "val", "test"))
    return df, report


READERS = {"rafdb": read_rafdb, "affectnet": read_affectnet, "caers": read_caers, "ferplus": read_ferplus}

# What each release's root must hold (any one of the alternatives), checked before a run starts.
LAYOUTS = {
    "rafdb": [("EmoLabel/list_patition_label.txt", "Image")],
    "affectnet": [
        ("Manually_Annotated_file_lists/training.csv", "Manually_Annotated_file_lists/validation.csv"),
        ("train_set/images", "train_set/annotations", "val_set/images", "val_set/annotations"),
    ],
    "caers": [("train", "test")],
    "ferplus": [("fer2013.csv", "fer2013new.csv")],
}


def check_layout(dataset: str, root) -> None:
    """Fail fast, naming what is missing, when ``root`` does not hold ``dataset``'s release layout."""
    root = _require_dir(root, dataset)
    alternatives = LAYOUTS[dataset]
    if any(all((root / part).exists() for part in parts) for parts in alternatives):
        return
    missing = [p for p in alternatives[0] if not (root / p).exists()]
    expected = " or ".join("{" + ", ".join(parts) + "}" for parts in alternatives)
    raise DatasetFormatError(f"{root} holds no {dataset} dataset: missing {missing}; expected {expected}")


def check_images(df: pd.DataFrame, report: IngestReport, max_bad_fraction: float = 0.0) -> pd.DataFrame:
    """Decode every image; drop unreadable ones up to ``max_bad_fraction``, else fail naming them."""
    paths = df["image"].tolist()
    boxes = df[list(BOX_COLUMNS)].to_numpy(float) if set(BOX_COLUMNS) <= set(df.columns) else np.full((len(df), 4), np.nan)

    def ok(i):
        try:
            h, w = decode(paths[i]).shape[:2]
        except ImageReadError as exc:
            return str(exc), False
        x, y, bw, bh = boxes[i]
        if not np.isnan(x) and (x >= w or y >= h or x + bw <= 0 or y + bh <= 0):
            return f"face box (x={x:g}, y={y:g}, w={bw:g}, h={bh:g}) lies outside the {w}x{h} image {paths[i]}", True
        return None, False

    results = []
    with ThreadPoolExecutor(runtime_workers(limit=8)) as pool:
        for lo in range(0, len(paths), 4096):  # a slice at a time: map() would queue a future per image at once
            results += pool.map(ok, range(lo, min(lo + 4096, len(paths))))
    boxes_off = [e for e, is_box in results if is_box]
    if boxes_off:
        raise DatasetFormatError(f"{len(boxes_off)} face boxes do not overlap their image, e.g. {boxes_off[0]}")
    errors = [e for e, _ in results]
    bad = [i for i, e in enumerate(errors) if e]
    if not bad:
        return df
    if len(bad) > max_bad_fraction * len(df):
        shown = "\n  ".join(errors[i] for i in bad[:10])
        raise DatasetFormatError(
            f"{len(bad)} of {len(df)} images unreadable ({len(bad) / len(df):.2%} > allowed {max_bad_fraction:.2%}):\n  {shown}"
        )
    report.skipped_images.extend(paths[i] for i in bad)
    report.count("unreadable image (skipped)", len(bad))
    return df.drop(index=df.index[bad]).reset_index(drop=True)


def ingest(
    dataset: str,
    root,
    *,
    val_fraction: float = 0.1,
    split_seed: int | None = None,
    max_bad_fraction: float = 0.0,
    check: bool = True,
    **reader_kwargs,
) -> tuple[pd.DataFrame, IngestReport]:
    """Read a dataset, check its images, and carve a validation split where it has none, with a
    seed fixed by the dataset (``dcjt.data.identity.split_seed``) unless ``split_seed`` is given."""
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(READERS)}")
    df, report = READERS[dataset](root, **reader_kwargs)
    if check:
        df = check_images(df, report, max_bad_fraction)
    published = int((df["split"] == "val").sum())
    seed = dataset_split_seed(df) if split_seed is None else split_seed
    df = stratified_val_split(df, val_fraction, seed)
    carved = int((df["split"] == "val").sum()) - published
    if published:
        report.notes.append(f"validation: the release's own {published} rows")
    elif carved:
        report.notes.append(f"validation: {carved} rows carved from train ({val_fraction:.0%} per class, seed {seed})")
    else:
        report.notes.append("validation: none carved at ingestion (val_fraction 0)")
    for split in SPLITS:
        if split != "val" and not (df["split"] == split).any():
            raise DatasetFormatError(f"{root}: empty split '{split}' after removing unreadable images")
    return df, report
