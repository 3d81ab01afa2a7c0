"""Label table contract, GX suite, preprocessing and the decoded-image cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dcjt.data.cache import build_cache, cache_key, open_cache
from dcjt.data.labels import EMOTIONS, LabelTableError, make_table, read_table, write_table
from dcjt.data.readers import ingest
from dcjt.data.validation import ValidationError, assert_valid, validate_table, write_valid_table
from dcjt.models.images import ImageReadError, decode, preprocess
from helpers.data import random_images


def _table(n_train=7, n_test=2):
    labels = list(range(7))[:n_train] + [1] * n_test
    splits = ["train"] * n_train + ["test"] * n_test
    return make_table(
        "x", splits, [f"img{i}.jpg" for i in range(len(labels))], labels, np.linspace(-1, 1, len(labels)), np.zeros(len(labels))
    )


def test_valid_table_passes_and_roundtrips(tmp_path):
    df = _table()
    assert validate_table(df).success
    write_valid_table(df, tmp_path / "t.parquet")
    back = read_table(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize(
    "breakage, expectation",
    [
        (lambda d: d.__setitem__("valence", d["valence"].where(d.index != 2, 1.5)), "expect_column_values_to_be_between"),
        (lambda d: d.loc.__setitem__((8, "image"), "img0.jpg"), "expect_compound_columns_to_be_unique"),
        (lambda d: d.loc.__setitem__((1, "split"), "dev"), "expect_column_values_to_be_in_set"),
        (lambda d: d.loc.__setitem__((3, "arousal"), np.nan), "expect_column_values_to_not_be_null"),
        (lambda d: d.loc.__setitem__((6, "label"), 1), "expect_column_distinct_values_to_contain_set"),
    ],
    ids=["va-range", "duplicate", "split", "va-missing", "class-absent"],
)
def test_gx_suite_names_each_failure(breakage, expectation, tmp_path):
    df = _table()
    breakage(df)
    report = validate_table(df)
    assert not report.success
    assert expectation in [f["expectation"] for f in report.failures]
    assert report.result_json["success"] is False
    with pytest.raises(ValidationError, match=expectation):
        write_valid_table(df, tmp_path / "bad.parquet")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_class_without_training_rows_is_named():
    df = _table()
    df.loc[6, "label"] = 1  # row 6 held the only train row of class 6
    missing = sorted(set(range(7)) - set(df.loc[df["split"] == "train", "label"]))
    with pytest.raises(ValidationError, match=r"the train split has no row of neutral \(6\): every emotion needs"):
        assert_valid(df, "t")
    assert missing == [6]


def test_train_test_overlap_is_caught():
    df = _table()
    df.loc[8, "image"] = "img0.jpg"
    failures = {f["expectation"]: f for f in validate_table(df).failures}
    assert "expect_column_values_to_be_in_set" in failures
    overlap = [f for f in validate_table(df).failures if f["kwargs"].get("column") == "train_test_overlap"]
    assert overlap and overlap[0]["unexpected_count"] == 1


def test_check_table_rejects_label_out_of_range(tmp_path):
    df = _table()
    df.loc[0, "label"] = 7
    with pytest.raises(LabelTableError, match="labels outside 0..6"):
        write_table(df, tmp_path / "t.parquet")


def test_preprocess_crop_and_align():
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    img[20:60, 30:70] = 255
    out = preprocess(img, 16, box=(30, 20, 40, 40))
    assert out.shape == (16, 16, 3) and out.min() == 255
    # Landmarks whose eyes/mouth sit exactly on the template map the square onto itself.
    marks = np.array([[35, 40], [65, 40], [50, 60], [45, 75], [55, 75]], dtype=float)
    face = np.asarray(random_images(1, 100)[0])
    np.testing.assert_allclose(preprocess(face, 100, landmarks=marks).astype(int), face.astype(int), atol=1)
    # A face moved by (+12, +7) px comes back to the template: the left-eye dot lands at (35, 40).
    dot = np.zeros((100, 100, 3), dtype=np.uint8)
    dot[46:49, 46:49] = 255  # around (47, 47) = (35 + 12, 40 + 7)
    aligned = preprocess(dot, 100, landmarks=marks + [12, 7])
    y, x = np.unravel_index(aligned[..., 0].argmax(), aligned.shape[:2])
    assert abs(x - 35) <= 1 and abs(y - 40) <= 1
    # 68-point landmarks: eyes are the means of points 36-41 and 42-47, the mouth of 48-67.
    many = np.zeros((68, 2))
    many[36:42], many[42:48], many[48:68] = [35 + 12, 40 + 7], [65 + 12, 40 + 7], [50 + 12, 75 + 7]
    y, x = np.unravel_index(preprocess(dot, 100, landmarks=many)[..., 0].argmax(), (100, 100))
    assert abs(x - 35) <= 1 and abs(y - 40) <= 1


def test_decode_truncated_raises(tmp_path):
    from PIL import Image

    Image.fromarray(random_images(1, 64)[0]).save(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:300])
    with pytest.raises(ImageReadError, match="a.jpg"):
        decode(tmp_path / "a.jpg")


def test_cache_builds_once_and_reuses(rafdb_root, tmp_path):
    root, labels, _ = rafdb_root
    df, _ = ingest("rafdb", root, val_fraction=0.0)
    cache = build_cache(df, 16, tmp_path / "cache")
    assert cache.images.shape == (len(df), 16, 16, 3)
    expected = preprocess(decode(df["image"].iloc[3]), 16)
    assert np.array_equal(cache.images[cache.positions(df.iloc[[3]])[0]], expected)
    # Same table (even relabeled) -> same cache; different size -> new cache.
    relabeled = df.assign(label=0)
    assert cache_key(relabeled, 16) == cache_key(df, 16)
    again = build_cache(relabeled, 16, tmp_path / "cache")
    assert again.path == cache.path
    assert build_cache(df, 24, tmp_path / "cache").path != cache.path
    subset = df.iloc[[5, 1]]
    assert cache.positions(subset).tolist() == [5, 1]
    # A changed face box or landmark changes the pixels: a new cache, built with the new crop.
    boxed = df.assign(face_x=2.0, face_y=2.0, face_w=20.0, face_h=20.0)
    moved = boxed.copy()
    moved.loc[3, "face_x"] = 6.0
    assert len({cache_key(df, 16), cache_key(boxed, 16), cache_key(moved, 16)}) == 3
    rebuilt = build_cache(moved, 16, tmp_path / "cache")
    assert rebuilt.path != build_cache(boxed, 16, tmp_path / "cache").path
    crop = preprocess(decode(df["image"].iloc[3]), 16, box=(6, 2, 20, 20))
    assert np.array_equal(rebuilt.images[rebuilt.positions(moved.iloc[[3]])[0]], crop)
    marked = df.assign(landmarks=[[10.0, 10.0, 20.0, 10.0, 15.0, 20.0]] * len(df))
    shifted = marked.copy()
    shifted.at[3, "landmarks"] = [11.0, 10.0, 20.0, 10.0, 15.0, 20.0]
    assert cache_key(marked, 16) != cache_key(shifted, 16) != cache_key(df, 16)


def test_cache_failure_leaves_nothing(rafdb_root, tmp_path):
    root, *_ = rafdb_root
    df, _ = ingest("rafdb", root, val_fraction=0.0)
    victim = df["image"].iloc[4]
    open(victim, "wb").write(b"not an image")
    with pytest.raises(ImageReadError, match=victim.rsplit("/", 1)[1]):
        build_cache(df, 16, tmp_path / "cache")
    assert open_cache(df, 16, tmp_path / "cache") is None
    assert not [p for p in (tmp_path / "cache").iterdir()]


def _set(**cells):
    """A breakage: {(row, column): value} cells of the valid table."""

    def apply(d):
        for (row, column), value in cells["cells"].items():
            if column in ("label",) and value is None:
                d[column] = d[column].astype("Int64")
            d.loc[row, column] = value

    return apply


# One table per expectation of the suite, failing it and nothing else; where two expectations
# can only fail together (a half-missing V/A pair; a test image that is also a train image), both.
SUITE_CASES = {
    "image not null": ({(0, "image"): None}, {("expect_column_values_to_not_be_null", "image")}),
    "dataset not null": ({(0, "dataset"): None}, {("expect_column_values_to_not_be_null", "dataset")}),
    "unique image": ({(1, "image"): "img0.jpg"}, {("expect_compound_columns_to_be_unique", None)}),
    "label not null": ({(7, "label"): None}, {("expect_column_values_to_not_be_null", "label")}),
    "label range": ({(7, "label"): 7}, {("expect_column_values_to_be_between", "label")}),
    "valence range": ({(3, "valence"): 1.0001}, {("expect_column_values_to_be_between", "valence")}),
    "arousal range": ({(3, "arousal"): -1.0001}, {("expect_column_values_to_be_between", "arousal")}),
    "split set": ({(7, "split"): "dev"}, {("expect_column_values_to_be_in_set", "split")}),
    "label origin set": ({(2, "label_origin"): "guessed"}, {("expect_column_values_to_be_in_set", "label_origin")}),
    "va origin set": ({(2, "va_origin"): "guessed"}, {("expect_column_values_to_be_in_set", "va_origin")}),
    "va pair": (
        {(2, "va_origin"): "none", (2, "valence"): np.nan},
        {("expect_column_values_to_be_in_set", "va_pair")},
    ),
    "valence present": (
        {(2, "valence"): np.nan},
        {("expect_column_values_to_not_be_null", "valence"), ("expect_column_values_to_be_in_set", "va_pair")},
    ),
    "arousal present": (
        {(2, "arousal"): np.nan},
        {("expect_column_values_to_not_be_null", "arousal"), ("expect_column_values_to_be_in_set", "va_pair")},
    ),
    "no train image in test": (
        {(7, "image"): "img1.jpg"},
        {("expect_column_values_to_be_in_set", "train_test_overlap"), ("expect_compound_columns_to_be_unique", None)},
    ),
    "every class in train": ({(6, "label"): 5}, {("expect_column_distinct_values_to_contain_set", "label")}),
    "class distributions": (
        {(0, f"soft_{e}"): 0.5 for e in EMOTIONS},  # a soft target summing to 3.5
        {("expect_column_values_to_be_in_set", "distributions")},
    ),
}


@pytest.mark.parametrize("case", list(SUITE_CASES))
def test_each_expectation_fails_on_its_own_table(case):
    from dcjt.data.validation import run_suite

    cells, expected = SUITE_CASES[case]
    df = _table()
    _set(cells=cells)(df)
    report = run_suite(df)
    assert not report.success
    assert {(f["expectation"], f["kwargs"].get("column")) for f in report.failures} == expected


def test_suite_holds_one_expectation_per_case():
    """A new expectation needs its own failing table above."""
    from dcjt.data.validation import _build_suite

    assert len(_build_suite().expectations) == 16
    assert validate_table(_table()).success


# --- a cache at scale: chunks, resume after a kill, damaged files ----------------------------------------
def _cache_pair(cache) -> tuple:
    return cache.path, cache.path.with_suffix(".json")


def test_a_cut_short_or_mismatched_cache_is_named_and_rebuilt(rafdb_root, tmp_path, caplog):
    import json
    import logging
    import os

    from dcjt.data.cache import CacheError, load_cache

    root, *_ = rafdb_root
    df, _ = ingest("rafdb", root, val_fraction=0.0)
    cache = build_cache(df, 16, tmp_path / "cache")
    good = np.array(cache.images)
    data, meta = _cache_pair(cache)
    os.truncate(data, data.stat().st_size - 16 * 16 * 3 - 5)  # a full disk cut the last image short
    with pytest.raises(CacheError, match=f"image cache {data}.*rerun with --no-cache to rebuild it"):
        load_cache(data)
    with caplog.at_level(logging.WARNING):
        rebuilt = build_cache(df, 16, tmp_path / "cache")
    assert "rebuilding it" in caplog.text and np.array_equal(rebuilt.images, good)
    keys = json.loads(meta.read_text())
    meta.write_text(json.dumps({**keys, "keys": keys["keys"][:-1]}))  # the keys no longer match the rows
    with pytest.raises(CacheError, match=f"holds {len(df)} images but .* names {len(df) - 1}"):
        load_cache(data)


def test_a_gather_from_a_cache_cut_short_after_opening_names_the_file(rafdb_root, tmp_path):
    import os

    from dcjt.data.cache import CacheError
    from dcjt.train.batches import samples_from

    root, *_ = rafdb_root
    df, _ = ingest("rafdb", root, val_fraction=0.0)
    cache = build_cache(df, 16, tmp_path / "cache")
    samples = samples_from(df, cache)
    os.truncate(cache.path, cache.path.stat().st_size - 16 * 16 * 3)
    with pytest.raises(CacheError, match=f"image cache {cache.path} is shorter than its header"):
        samples.gather(np.arange(len(df)))
