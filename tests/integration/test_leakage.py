"""The leakage guard: planted near-duplicates (resized, recompressed, flipped copies of the
target's test images) in real dataset layouts are found, counted and removed; distinct faces are not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dcjt.data.leakage import HASH_BITS, find_leaks, image_hashes
from dcjt.data.readers import ingest
from dcjt.synthetic.disk import write_world
from helpers import ROOT  # noqa: E402


def _copy(src: Path, dst: Path, how: str) -> None:
    img = cv2.imread(str(src))
    if how == "resized":
        img = cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    elif how == "flipped":
        img = img[:, ::-1]
    quality = 40 if how == "recompressed" else 95
    cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, quality])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A RAF-DB and an AffectNet release of the synthetic world, with planted copies of RAF-DB test
    images: three in AffectNet's training images, one in RAF-DB's own train split."""
    out = tmp_path_factory.mktemp("leak")
    write_world(out, ["rafdb", "affectnet"], n_target=240, n_extra=300, size=96, seed=3)
    raf, _ = ingest("rafdb", out / "rafdb", val_fraction=0.0, check=False)
    aff, _ = ingest("affectnet", out / "affectnet", val_fraction=0.0, check=False)
    tests = raf[raf["split"] == "test"]["image"].tolist()
    aff_train = aff[aff["split"] == "train"]["image"].tolist()
    for src, dst, how in zip(tests[:3], aff_train[:3], ("resized", "recompressed", "flipped")):
        _copy(Path(src), Path(dst), how)
    raf_train = raf[raf["split"] == "train"]["image"].tolist()
    _copy(Path(tests[5]), Path(raf_train[0]), "recompressed")
    aff_test = aff[aff["split"] == "test"]["image"].tolist()
    _copy(Path(aff_test[0]), Path(aff_train[10]), "resized")  # inside AffectNet: reported, not removed
    return out


def test_leakage_command_counts_planted_copies_only(planted, tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "leakage", "--target", f"rafdb={planted / 'rafdb'}"]
    cmd += ["--extra", f"affectnet={planted / 'affectnet'}", "--image-size", "64", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "leaked: 4"
    assert any(line.startswith("affectnet: 3 of ") for line in lines), lines
    assert any(line.startswith("rafdb: 1 of ") for line in lines), lines
    assert any(line.startswith("affectnet: 1 of ") and "its own test images" in line for line in lines), lines
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run.py"),
            "leakage",
            "--target",
            f"rafdb={planted / 'rafdb'}",
            "--extra",
            f"rafdb={planted / 'rafdb'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "the same folder as" in bad.stderr and "Traceback" not in bad.stderr


def test_hash_distances_of_copies_and_of_distinct_faces():
    from dcjt.synthetic.world import WorldSpec, generate_world

    _, images = generate_world(WorldSpec(n_target=200, n_extra=10), size=64, seed=5)["target"]
    h = image_hashes(images)
    same = find_leaks(h[:20], h[:20], 0, "self")
    assert same.count == 20 and (same.test_rows == np.arange(20)).all()
    flipped = image_hashes(np.ascontiguousarray(images[:20, :, ::-1]))
    assert find_leaks(flipped, h[:20], 0, "flips").count == 20  # the mirror hash finds flipped copies
    distinct = find_leaks(h[20:], h[:20], 20, "distinct")
    assert distinct.count == 0  # the default threshold flags no distinct synthetic face
    with pytest.raises(ValueError, match="leakage.max_distance"):
        find_leaks(h, h, HASH_BITS, "x")


def test_screen_removes_copies_of_the_target_test_images_and_reports_the_rest(planted, tmp_path):
    from dcjt.data.cache import build_cache
    from dcjt.data.leakage import screen

    raf, _ = ingest("rafdb", planted / "rafdb", val_fraction=0.1)
    aff, _ = ingest("affectnet", planted / "affectnet", val_fraction=0.0)
    t_cache, e_cache = build_cache(raf, 64, tmp_path), build_cache(aff, 64, tmp_path)
    target, extra, counts, pairs = screen(raf, aff, t_cache, e_cache, 20)
    assert len(target) == len(raf) - 1 and len(extra) == len(aff) - 3
    assert (target["split"] == "test").sum() == (raf["split"] == "test").sum()  # the test split is never touched
    assert counts["removed"] == {
        "rafdb": {"checked": int((raf["split"] != "test").sum()), "leaked": 1},
        "affectnet": {"checked": int((aff["split"] != "test").sum()), "leaked": 3},
    }
    assert counts["within_dataset"]["affectnet"]["duplicates"] == 1 and counts["leaked"] == 4
    assert sorted(pairs["kind"]) == ["removed"] * 4 + ["within-dataset"]
    assert set(pairs.loc[pairs["kind"] == "removed", "test_image"]) <= set(raf.loc[raf["split"] == "test", "image"])
    again = screen(raf, aff, t_cache, e_cache, 20)  # hashes come from the file beside the cache now
    assert again[2] == counts and list(tmp_path.glob("*.phash-v1.npy"))
