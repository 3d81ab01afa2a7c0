"""Readers: each release layout, label orders, splits, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dcjt.data.labels import EMOTIONS
from dcjt.data.readers import DatasetFormatError, ingest, read_affectnet, read_caers, read_ferplus, read_rafdb
from dcjt.synthetic import layouts
from helpers.data import ALL_LABELS, random_images


def test_rafdb_reads_labels_in_canonical_order(rafdb_root):
    root, labels, splits = rafdb_root
    df, _ = read_rafdb(root)
    assert df["label"].tolist() == labels
    assert df["split"].tolist() == splits
    assert df["image"].str.endswith("_aligned.jpg").all()
    assert (df["va_origin"] == "none").all() and df["valence"].isna().all()


def test_rafdb_handwritten_list_file(tmp_path):
    """RAF-DB's own numbering: 1 surprise ... 4 happiness ... 7 neutral."""
    root = tmp_path / "r"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\ntrain_00002.jpg 7\ntest_0001.jpg 1\n")
    for name in ("train_00001", "train_00002", "test_0001"):
        (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_images(1)[0]).save(root / "Image" / "aligned" / f"{name}_aligned.jpg")
    df, _ = read_rafdb(root)
    assert [EMOTIONS[i] for i in df["label"]] == ["happiness", "neutral", "surprise"]


def test_validation_split_is_fixed_by_the_dataset_not_by_its_place_or_the_run(rafdb_root, tmp_path):
    """Every run on the same dataset carves the same validation rows (a model from one run is never
    scored on rows it trained on in another), wherever the dataset lies."""
    import shutil

    from dcjt.data.identity import row_keys, split_seed

    root, _, _ = rafdb_root
    df, report = ingest("rafdb", root, val_fraction=0.5)
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "RAF-DB")
    again, _ = ingest("rafdb", moved, val_fraction=0.5)
    assert df["split"].tolist() == again["split"].tolist()
    before_carving = df.assign(split=df["split"].replace({"val": "train"}))
    assert f"seed {split_seed(before_carving)}" in " ".join(report.notes)
    val = lambda t: row_keys(t[t["split"] == "val"], t)  # noqa: E731
    assert np.array_equal(val(df), val(again))  # the same keys, so a registered model's record matches
    first_train = df.index[df["split"] == "train"][0]
    other = df.assign(label=df["label"].where(df.index != first_train, (df["label"] + 1) % 7))
    assert split_seed(other) != split_seed(df)  # another dataset (a label changed): another split seed


def test_ingest_carves_stratified_val_and_keeps_test(rafdb_root):
    root, labels, splits = rafdb_root
    df, _ = ingest("rafdb", root, val_fraction=0.5, split_seed=1)
    assert (df["split"] == "test").sum() == 7
    val = df[df["split"] == "val"]
    assert len(val) == 7 and sorted(val["label"]) == list(range(7))  # one of each pair of 2 per class
    again, report = ingest("rafdb", root, val_fraction=0.5, split_seed=1)
    assert again["split"].tolist() == df["split"].tolist()
    assert "validation: 7 rows carved from train (50% per class, seed 1)" in report.notes
    kept, report = ingest("rafdb", root, val_fraction=0.0)  # how the pipeline reads B: all train rows stay
    assert not (kept["split"] == "val").any() and "validation: none carved at ingestion (val_fraction 0)" in report.notes


def _affectnet_rows():
    labels = ALL_LABELS + [3, 4]
    splits = ["train"] * len(ALL_LABELS) + ["test", "test"]
    v = np.linspace(-0.9, 0.9, len(labels))
    a = np.linspace(0.8, -0.8, len(labels))
    return labels, splits, v, a


def test_affectnet_csv_release_maps_codes_and_excludes(tmp_path):
    labels, splits, v, a = _affectnet_rows()
    n = len(labels)
    codes = [None] * n
    # Two extra rows: code 7 (contempt) and a -2 valence row must be excluded and counted.
    images = random_images(n + 2, size=48)
    from dcjt.synthetic.layouts import CANONICAL_TO_AFFECTNET

    codes = [CANONICAL_TO_AFFECTNET[x] for x in labels] + [7, 1]
    landmarks = [np.array([[14, 18], [34, 18], [24, 26], [18, 34], [30, 35.5]]) + k for k in range(n + 2)]
    layouts.write_affectnet_csv(
        tmp_path / "an",
        images,
        labels + [3, 3],
        (list(v) + [0.1, -2.0], list(a) + [0.1, 0.5]),
        splits + ["train", "train"],
        codes=codes,
        boxes=[(4, 4, 40, 40)] * (n + 2),
        landmarks=landmarks,
    )
    df, report = read_affectnet(tmp_path / "an")
    assert df["label"].tolist() == labels
    assert np.allclose(df["valence"], v, atol=1e-6)
    assert report.excluded["code 7 (contempt)"] == 1 and report.excluded["valence/arousal -2"] == 1
    assert set(df["split"]) == {"train", "test"}
    assert df["face_w"].eq(40).all() and (df["va_origin"] == "human").all()
    for k, row in enumerate(df["landmarks"]):  # parsed back point for point, in file order
        np.testing.assert_allclose(np.reshape(row, (-1, 2)), landmarks[k], atol=0.01)


def test_affectnet_handwritten_codes(tmp_path):
    """AffectNet's codes 0 neutral, 1 happy, 6 anger -> canonical 6, 3, 5."""
    root = tmp_path / "an"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    header = ",".join(layouts.AFFECTNET_COLUMNS)
    rows = ["1/a.jpg,0,0,32,32,,0,0.0,0.0", "1/b.jpg,0,0,32,32,,1,0.5,0.1", "1/c.jpg,0,0,32,32,,6,-0.5,0.7"]
    (lists / "training.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (lists / "validation.csv").write_text(header + "\n" + rows[1].replace("b.jpg", "d.jpg") + "\n")
    for name in "abcd":
        (root / "Manually_Annotated_Images" / "1").mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_images(1)[0]).save(root / "Manually_Annotated_Images" / "1" / f"{name}.jpg")
    df, _ = read_affectnet(root)
    assert [EMOTIONS[i] for i in df["label"]] == ["neutral", "happiness", "anger", "happiness"]


def test_affectnet_npy_release(tmp_path):
    labels, splits, v, a = _affectnet_rows()
    marks = [np.array([[5, 8], [10, 8], [7, 12], [6, 14], [9, 14]], dtype=float)] * len(labels)
    codes = [layouts.CANONICAL_TO_AFFECTNET[x] for x in labels] + [10]
    layouts.write_affectnet_npy(
        tmp_path / "an2",
        random_images(len(labels) + 1),
        labels + [0],
        (list(v) + [0.0], list(a) + [0.0]),
        splits + ["train"],
        landmarks=marks + marks[:1],
        codes=codes,
    )
    df, report = read_affectnet(tmp_path / "an2")
    assert sorted(zip(df["image"].map(lambda p: int(p.rsplit("/", 1)[1][:-4])), df["label"])) == list(enumerate(labels))
    assert report.excluded["code 10 (no-face)"] == 1
    assert len(df["landmarks"].iloc[0]) == 10


def _npy_release(tmp_path, n=4):
    labels, splits = ALL_LABELS[:n], ["train"] * (n - 1) + ["test"]
    layouts.write_affectnet_npy(tmp_path / "an", random_images(n), labels, ([0.1] * n, [0.2] * n), splits)
    return tmp_path / "an" / "train_set"


def test_affectnet_npy_keeps_upper_case_jpg_names(tmp_path):
    base = _npy_release(tmp_path)
    (base / "images" / "1.jpg").rename(base / "images" / "1.JPG")
    df, _ = read_affectnet(tmp_path / "an")
    assert len(df) == 4 and any(p.endswith("1.JPG") for p in df["image"])


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("0_exp.npy", np.array(np.inf), r"0_exp\.npy: inf is not a finite number"),
        ("0_val.npy", np.array(np.nan), r"0_val\.npy: nan is not a finite number"),
        ("0_exp.npy", b"", r"cannot read annotation .*0_exp\.npy"),
        ("0_lnd.npy", np.array([{"x": 1}], dtype=object), r"cannot read annotation .*0_lnd\.npy"),
    ],
)
def test_affectnet_npy_faults_name_the_file(tmp_path, name, content, message):
    base = _npy_release(tmp_path)
    target = base / "annotations" / name
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        np.save(target, content, allow_pickle=True)
    with pytest.raises(DatasetFormatError, match=message):
        read_affectnet(tmp_path / "an")


def test_a_decompression_bomb_is_a_named_bad_image(tmp_path, monkeypatch):
    from dcjt.models.images import ImageReadError, decode

    path = tmp_path / "bomb.png"
    Image.new("L", (400, 400)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # 400 x 400 is over twice this: Pillow refuses it
    with pytest.raises(ImageReadError, match="bomb.png"):
        decode(path)


def test_caers_folders_map_alphabetical_names(tmp_path):
    labels = ALL_LABELS
    splits = ["train"] * 7 + ["test"] * 7
    layouts.write_caers(tmp_path / "caer", random_images(len(labels), 64), labels, splits, boxes=[(8, 8, 40, 40)] * len(labels))
    df, report = read_caers(tmp_path / "caer")
    by_path = dict(zip(df["image"], df["label"]))
    assert by_path[str(tmp_path / "caer" / "train" / "Anger" / "0005.png")] == 5
    assert by_path[str(tmp_path / "caer" / "train" / "Surprise" / "0000.png")] == 0
    assert sorted(df["label"]) == sorted(labels)
    assert (df["face_w"] == 40).all()


def test_caers_without_boxes_runs_opencv_detector(tmp_path):
    layouts.write_caers(tmp_path / "caer", random_images(14, 64), ALL_LABELS, ["train"] * 7 + ["test"] * 7)
    df, report = read_caers(tmp_path / "caer")
    # Noise images hold no face: the detector reports that, and the full frame is kept.
    assert report.excluded["no face detected (full frame used)"] == 14
    assert df["face_x"].isna().all()


def test_ferplus_majority_vote_and_usage(tmp_path):
    labels = ALL_LABELS + [3, 4, 0]
    usages = ["Training"] * 14 + ["PublicTest", "PrivateTest", "PrivateTest"]
    votes = [layouts.ferplus_votes_for(x) for x in labels]
    votes[-1] = [1, 0, 2, 0, 0, 0, 0, 0, 7, 0]  # majority 'unknown': dropped
    votes[0] = [3, 0, 4, 0, 0, 0, 0, 0, 0, 3]  # majority surprise (4 votes) over neutral (3)
    layouts.write_ferplus(tmp_path / "fp", [img[:48, :48] for img in random_images(17, 48)], votes, usages)
    df, report = read_ferplus(tmp_path / "fp")
    assert df["label"].tolist() == labels[:-1]
    assert df["split"].tolist() == ["train"] * 14 + ["val", "test"]
    assert report.excluded["majority unknown"] == 1
    assert Image.open(df["image"].iloc[0]).size == (48, 48)


# --- bad input ---------------------------------------------------------------------------------------
def test_missing_root_and_list_file(tmp_path):
    with pytest.raises(DatasetFormatError, match="not found"):
        read_rafdb(tmp_path / "nope")
    (tmp_path / "r").mkdir()
    with pytest.raises(DatasetFormatError, match="list_patition_label.txt"):
        read_rafdb(tmp_path / "r")


def test_wrong_csv_header(tmp_path):
    lists = tmp_path / "an" / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    (lists / "training.csv").write_text("path,label\nx.jpg,1\n")
    with pytest.raises(DatasetFormatError, match=r"training.csv:1: header"):
        read_affectnet(tmp_path / "an")


def test_label_out_of_range_names_line(rafdb_root):
    root, *_ = rafdb_root
    listing = root / "EmoLabel" / "list_patition_label.txt"
    lines = listing.read_text().splitlines()
    lines[2] = lines[2].split()[0] + " 9"
    listing.write_text("\n".join(lines))
    with pytest.raises(DatasetFormatError, match=r"list_patition_label.txt:3: label 9"):
        read_rafdb(root)


def test_image_listed_twice(rafdb_root):
    root, *_ = rafdb_root
    listing = root / "EmoLabel" / "list_patition_label.txt"
    lines = listing.read_text().splitlines()
    listing.write_text("\n".join(lines + [lines[0]]))
    with pytest.raises(DatasetFormatError, match="listed twice"):
        read_rafdb(root)


def test_empty_split(rafdb_root):
    root, *_ = rafdb_root
    listing = root / "EmoLabel" / "list_patition_label.txt"
    listing.write_text("\n".join(line for line in listing.read_text().splitlines() if line.startswith("train")))
    with pytest.raises(DatasetFormatError, match="empty split 'test'"):
        read_rafdb(root)


def test_truncated_image_fails_or_is_skipped_within_fraction(rafdb_root):
    root, labels, _ = rafdb_root
    victim = root / "Image" / "aligned" / "train_00003_aligned.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match="train_00003_aligned.jpg"):
        ingest("rafdb", root)
    df, report = ingest("rafdb", root, max_bad_fraction=0.1)
    assert len(df) == len(labels) - 1
    assert report.skipped_images == [str(victim)]


def test_missing_image_file_is_named(rafdb_root):
    root, *_ = rafdb_root
    (root / "Image" / "aligned" / "test_0002_aligned.jpg").unlink()
    with pytest.raises(DatasetFormatError, match="test_0002_aligned.jpg"):
        ingest("rafdb", root)
