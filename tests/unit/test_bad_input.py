"""Bad input never becomes a model: strict readers, honest CLI, clean failures, health gates."""

from __future__ import annotations

import io
import json
import os
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.preflight import PreflightError, check_dataset_roots, check_tracking_store
from dcjt.config_files import load_config
from dcjt.data.cache import build_cache
from dcjt.data.labels import make_table, write_table
from dcjt.data.readers import DatasetFormatError, check_layout, ingest, read_affectnet, read_caers, read_ferplus, read_rafdb
from dcjt.models.images import ImageReadError, decode
from dcjt.models.nets import build_model
from dcjt.serving.inputs import predict_inputs
from dcjt.serving.network import TorchScorer
from dcjt.synthetic import layouts
from helpers.data import ALL_LABELS, random_images

# --- wrong results that used to pass -----------------------------------------------------------


def _png16(path: Path, value: int = 30000) -> np.ndarray:
    a = np.full((64, 64), value, dtype=np.uint16)
    a[:, :32] = 65535
    Image.fromarray(a).save(path)
    return a


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    _png16(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode.startswith("I")
    rgb = decode(tmp_path / "g.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    assert rgb[0, 0, 0] == 255 and rgb[0, 40, 0] == round(30000 * 255 / 65535)  # not all white
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ImageReadError, match="f.tiff"):
        decode(tmp_path / "f.tiff")


def _affectnet(tmp_path, **kw) -> Path:
    labels = ALL_LABELS + [3, 4]
    splits = ["train"] * len(ALL_LABELS) + ["test", "test"]
    n = len(labels)
    layouts.write_affectnet_csv(tmp_path / "an", random_images(n, 48), labels, (np.zeros(n), np.zeros(n)), splits, **kw)
    return tmp_path / "an" / "Manually_Annotated_file_lists" / "training.csv"


def _edit_cell(csv_path: Path, line: int, column: str, value: str, bom: bool = False) -> None:
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    frame.loc[line - 2, column] = value
    frame.to_csv(csv_path, index=False, encoding="utf-8-sig" if bom else "utf-8")


def test_affectnet_integer_codes_and_positive_boxes(tmp_path):
    path = _affectnet(tmp_path)
    _edit_cell(path, 3, "expression", "3.7")
    with pytest.raises(DatasetFormatError, match=r"training.csv:3: expression '3.7' is not an integer code"):
        read_affectnet(tmp_path / "an")
    _edit_cell(path, 3, "expression", "3")
    _edit_cell(path, 4, "face_width", "-5")
    with pytest.raises(DatasetFormatError, match=r"training.csv:4: face box face_width -5 must be positive"):
        read_affectnet(tmp_path / "an")
    _edit_cell(path, 4, "face_width", "40")
    _edit_cell(path, 5, "face_height", "0")
    with pytest.raises(DatasetFormatError, match=r"training.csv:5: face box face_height 0 must be positive"):
        read_affectnet(tmp_path / "an")
    _edit_cell(path, 5, "face_height", "40")
    _edit_cell(path, 6, "valence", "")
    with pytest.raises(DatasetFormatError, match=r"training.csv:6: column valence has an empty value"):
        read_affectnet(tmp_path / "an")


def test_box_outside_the_image_is_named(tmp_path):
    path = _affectnet(tmp_path, boxes=[(4, 4, 40, 40)] * 16)
    _edit_cell(path, 2, "face_x", "500")
    with pytest.raises(DatasetFormatError, match=r"face box \(x=500.*outside the 48x48 image"):
        ingest("affectnet", tmp_path / "an")


def test_caers_box_without_area_is_named(tmp_path):
    layouts.write_caers(
        tmp_path / "c", random_images(14, 32), ALL_LABELS, ["train"] * 7 + ["test"] * 7, boxes=[(2, 2, 20, 20)] * 14
    )
    text = (tmp_path / "c" / "boxes.csv").read_text().splitlines()
    parts = text[2].split(",")
    parts[4] = parts[2]  # x2 = x1
    text[2] = ",".join(parts)
    (tmp_path / "c" / "boxes.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DatasetFormatError, match=r"boxes.csv:3: face box .* has no area"):
        read_caers(tmp_path / "c", detect_faces=False)


def test_byte_order_marks_are_accepted(tmp_path, rafdb_root):
    root, labels, _ = rafdb_root
    listing = root / "EmoLabel" / "list_patition_label.txt"
    listing.write_text(listing.read_text().replace("\n", "\r\n"), encoding="utf-8-sig")
    assert read_rafdb(root)[0]["label"].tolist() == labels
    path = _affectnet(tmp_path)
    _edit_cell(path, 2, "expression", "1", bom=True)
    assert len(read_affectnet(tmp_path / "an")[0]) == 16


def test_tiny_or_unreadable_inputs_are_reported_not_classified(tmp_path, monkeypatch):
    monkeypatch.setenv("DCJT_SERVE_IMAGE_ROOTS", str(tmp_path))
    model = TorchScorer(build_model("tiny", "linear", 32))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    Image.fromarray(random_images(1, 40)[0]).save(tmp_path / "ok.png")
    out = predict_inputs(
        model, [np.zeros((1, 1, 3), np.uint8), str(tmp_path / "broken.png"), str(tmp_path / "ok.png")], min_side=8
    )
    assert out["label"].tolist()[:2] == [-1, -1] and 0 <= out["label"].iloc[2] <= 6
    assert out["error"].iloc[0].startswith("too small: 1x1 px") and "broken.png" in out["error"].iloc[1]
    assert out["error"].iloc[2] == "" and out.loc[:1, "prob_happiness"].isna().all()
    # refused rows hold None (JSON null), never NaN: the scoring server's body parses strictly
    assert out.loc[:1, ["valence", "prob_anger"]].map(lambda v: v is None).all().all()
    body = json.dumps(out.to_dict(orient="records"))
    assert "NaN" not in body and json.loads(body, parse_constant=lambda c: pytest.fail(c))[2]["valence"] is not None


def test_serving_byte_budget_and_exif_orientation(tmp_path, monkeypatch):
    model = TorchScorer(build_model("tiny", "linear", 32))
    image = io.BytesIO()
    Image.fromarray(random_images(1, 40)[0]).save(image, format="PNG")
    monkeypatch.setenv("DCJT_SERVE_MAX_BYTES", "100")
    out = predict_inputs(model, [image.getvalue()], min_side=8)
    assert out["error"].iloc[0] == f"too large: {len(image.getvalue()):,} bytes, over the budget of 100 (DCJT_SERVE_MAX_BYTES)"
    # a phone's photo: pixels stored sideways plus an orientation tag; decoded upright
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "phone.jpg", exif=exif)
    assert decode(tmp_path / "phone.jpg").shape == (40, 20, 3)


# --- clean failures before any step --------------------------------------------------------------
def test_preflight_names_the_missing_dataset_and_the_bad_tracking_store(tmp_path):
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    with pytest.raises(DatasetFormatError, match=r"holds no rafdb dataset: missing \['EmoLabel/list_patition_label.txt'"):
        check_layout("rafdb", empty)
    cfg = load_config("rafdb", values={"data.target.root": str(empty), "data.extra.root": str(other)})
    with pytest.raises(PreflightError, match="data.target: .* holds no rafdb dataset"):
        check_dataset_roots(cfg)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PreflightError, match=r"MLflow tracking store sqlite:///.*file/mlflow.db: .*file is a file"):
        check_tracking_store(f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}")
    with pytest.raises(PreflightError, match=r"sqlite:////proc/dcjt/mlflow.db: cannot write"):
        check_tracking_store("sqlite:////proc/dcjt/mlflow.db")
    with pytest.raises(PreflightError, match=r"MLflow tracking server http://127.0.0.1:9 is unreachable"):
        check_tracking_store("http://127.0.0.1:9")


def test_ferplus_never_writes_into_its_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DCJT_HOME", str(tmp_path / "state"))
    votes = [layouts.ferplus_votes_for(x) for x in ALL_LABELS * 3]
    usages = ["Training"] * 14 + ["PublicTest"] * 14 + ["PrivateTest"] * 14
    layouts.write_ferplus(tmp_path / "fp", random_images(42, 48), votes, usages)
    before = sorted(p.name for p in (tmp_path / "fp").rglob("*"))
    df, _ = read_ferplus(tmp_path / "fp")
    assert sorted(p.name for p in (tmp_path / "fp").rglob("*")) == before
    assert all(p.startswith(str(tmp_path / "state" / "work")) for p in df["image"])

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_ferplus(tmp_path / "fp", image_dir=tmp_path / "fresh")
    assert not list((tmp_path / "fresh").rglob("*.tmp.png"))


def test_tables_and_caches_get_the_users_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        table = make_table("x", ["train"] * 7 + ["test"], [f"i{k}" for k in range(8)], list(range(7)) + [0])
        write_table(table, tmp_path / "t.parquet")
        assert (tmp_path / "t.parquet").stat().st_mode & 0o777 == 0o644
        paths = []
        for k in range(3):
            Image.fromarray(random_images(1, 16, seed=k)[0]).save(tmp_path / f"{k}.png")
            paths.append(str(tmp_path / f"{k}.png"))
        cache = build_cache(make_table("x", "train", paths, [0, 1, 2]), 16, tmp_path / "cache")
        assert cache.path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


# --- readers under fuzzing: a valid row or a named file and line ---------------------------------
TEXT = st.text(alphabet=string.printable + "é²\ufeff", max_size=40)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_valid_or_named(read, root: Path, name: str):
    try:
        df, _ = read(root)
    except DatasetFormatError as exc:
        assert name in str(exc)
        return
    assert df["label"].between(0, 6).all() and df["image"].str.len().gt(0).all()


@FUZZ
@given(lines=st.lists(TEXT, max_size=4))
def test_fuzz_rafdb_list_lines(tmp_path, rafdb_root, lines):
    root = rafdb_root[0]
    listing = root / "EmoLabel" / "list_patition_label.txt"
    listing.write_text("train_00001.jpg 1\ntest_0001.jpg 2\n" + "\n".join(lines) + "\n")
    _assert_valid_or_named(read_rafdb, root, "list_patition_label.txt")


@FUZZ
@given(cells=st.lists(TEXT, min_size=9, max_size=9), extra=st.booleans())
def test_fuzz_affectnet_csv_rows(tmp_path, cells, extra):
    path = (
        _affectnet(tmp_path)
        if not (tmp_path / "an").exists()
        else tmp_path / "an" / "Manually_Annotated_file_lists" / "training.csv"
    )
    good = path.read_text().splitlines()[:3]
    row = ",".join('"' + c.replace('"', "'") + '"' for c in cells + (["x"] if extra else []))
    path.write_text("\n".join(good + [row]) + "\n")
    _assert_valid_or_named(read_affectnet, tmp_path / "an", "training.csv")


@FUZZ
@given(cells=st.lists(TEXT, min_size=4, max_size=7))
def test_fuzz_caers_box_rows(tmp_path, cells):
    root = tmp_path / "c"
    if not root.exists():
        layouts.write_caers(root, random_images(14, 32), ALL_LABELS, ["train"] * 7 + ["test"] * 7)
    (root / "boxes.csv").write_text(
        "path,label,x1,y1,x2,y2\n" + ",".join(c.replace(",", ";").replace("\n", " ") for c in cells) + "\n"
    )
    _assert_valid_or_named(lambda r: read_caers(r, detect_faces=False), root, "boxes.csv")


@FUZZ
@given(usage=TEXT, name=TEXT, votes=st.lists(TEXT, min_size=10, max_size=10))
def test_fuzz_ferplus_rows(tmp_path, usage, name, votes):
    root = tmp_path / "fp"
    if not root.exists():
        layouts.write_ferplus(
            root, random_images(3, 48), [layouts.ferplus_votes_for(3)] * 3, ["Training", "PublicTest", "PrivateTest"]
        )
    lines = (root / "fer2013new.csv").read_text().splitlines()[:4]
    clean = lambda c: c.replace(",", ";").replace("\n", " ").replace("\r", " ").replace('"', "'")  # noqa: E731
    lines[1] = ",".join([clean(usage), clean(name), *map(clean, votes)])
    (root / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    _assert_valid_or_named(lambda r: read_ferplus(r, image_dir=tmp_path / "img"), root, "fer2013")


def test_config_files_that_are_not_configs_are_refused_naming_the_file(tmp_path, monkeypatch):
    """YAML errors name the file, line and column; a list is not a config; an extends cycle and
    a --set value that is not YAML are one line each (no traceback, no recursion)."""
    from dcjt import config_files as config_module
    from dcjt.config_files import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nm_a: {epochs: [1\n")
    with pytest.raises(ConfigError, match=rf"config {bad}: line 3, column 1: not valid YAML"):
        load_config(str(bad))
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=rf"config {listed}: must be a mapping .* got a list"):
        load_config(str(listed))
    with pytest.raises(ConfigError, match=r"override 'm_a=\{epochs: \[1': the value is not valid YAML"):
        load_config("demo", ["m_a={epochs: [1"])
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    (tmp_path / "one.yaml").write_text("extends: two\n")
    (tmp_path / "two.yaml").write_text("extends: one\n")
    with pytest.raises(ConfigError, match=r"'extends' makes a cycle \(one.yaml -> two.yaml -> one.yaml\)"):
        load_config("one")


def test_numbers_that_are_not_finite_or_whole_are_named(tmp_path):
    """AffectNet's CSV face size `inf`, FER2013 pixels 12.5 and 256: file, line and value named."""
    path = _affectnet(tmp_path)
    _edit_cell(path, 3, "face_width", "inf")
    with pytest.raises(DatasetFormatError, match=r"training.csv:3: column face_width has 'inf', expected a finite number"):
        read_affectnet(tmp_path / "an")
    root = tmp_path / "fp"
    layouts.write_ferplus(
        root, random_images(3, 48), [layouts.ferplus_votes_for(3)] * 3, ["Training", "PublicTest", "PrivateTest"]
    )
    original = (root / "fer2013.csv").read_text()
    for value, message in (("12.5", r"pixel 5 is '12.5'; pixels are whole numbers in 0..255"), ("256", r"pixel 5 is '256'")):
        lines = original.splitlines()
        emotion, pixels, usage = lines[2].split(",")
        cells = pixels.split()
        cells[5] = value
        lines[2] = ",".join([emotion, " ".join(cells), usage])
        (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
        with pytest.raises(DatasetFormatError, match=rf"fer2013.csv:3: {message}"):
            read_ferplus(root, image_dir=tmp_path / f"img-{value}")
    lines = original.splitlines()
    lines[2] = lines[2].replace("PublicTest", "PrivateTest")  # the two files no longer agree on row 3
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=r"fer2013new.csv:3: Usage 'PublicTest' but .*fer2013.csv:3 says 'PrivateTest'"):
        read_ferplus(root, image_dir=tmp_path / "img-usage")


def test_caers_box_label_must_match_its_folder_and_an_unreadable_frame_is_a_bad_row(tmp_path):
    root = tmp_path / "c"
    layouts.write_caers(root, random_images(14, 32), ALL_LABELS * 2, ["train"] * 7 + ["test"] * 7, boxes=[(0, 0, 20, 20)] * 14)
    text = (root / "boxes.csv").read_text().splitlines()
    path, label, *box = text[1].split(",")
    other = "Happy" if label != "Happy" else "Sad"
    (root / "boxes.csv").write_text("\n".join([text[0], ",".join([path, other, *box]), *text[2:]]) + "\n")
    with pytest.raises(DatasetFormatError, match=rf"boxes.csv:2: label '{other}' contradicts the frame's folder '{label}'"):
        read_caers(root, detect_faces=False)
    (root / "boxes.csv").unlink()  # faces found by detection, which decodes every frame first
    frame = sorted((root / "train").rglob("*.png"))[0]
    frame.write_bytes(b"not a png")
    table, report = ingest("caers", root, max_bad_fraction=0.2, split_seed=0)
    assert str(frame) not in set(table["image"]) and len(table) == 13


def test_image_caches_that_cannot_fit_are_refused_and_large_ones_announced(tmp_path, monkeypatch):
    """network.image_size grows the caches with its square: a run whose caches cannot fit the
    cache folder's disk stops before any step, naming the size; a large one says how large."""
    import shutil
    from collections import namedtuple

    from app.preflight import check_cache_size

    home = ["paths.cache_dir=" + str(tmp_path / "cache")]
    cfg = load_config("demo", [*home, "network.image_size=1024"])  # 7,500 images: about 22 GiB
    said = []
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(1 << 40, 0, 1 << 40))
    check_cache_size(cfg, warn=said.append)
    assert said == ["warning: image caches of about 22.0 GiB (7,500 images at network.image_size=1024)"]
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(1 << 40, 0, 10 << 30))
    with pytest.raises(PreflightError, match=r"image caches need about 22.0 GiB .* has 10.0 GiB free: lower --image-size"):
        check_cache_size(cfg, warn=said.append)
    said.clear()
    check_cache_size(load_config("demo", home), warn=said.append)  # the demo's 32 px: 23 MB, nothing to say
    assert said == []


def test_sigterm_inside_a_file_write_unwinds_and_leaves_no_temp_file(tmp_path):
    """Python's default SIGTERM ends the process before any ``finally``: while FERPlus' images are
    written it raises instead, so the temp file of the image being written is removed."""
    import signal

    from dcjt.utils.files import replace_atomic, sigterm_unwinds

    def write(tmp):
        tmp.write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write

    with pytest.raises(KeyboardInterrupt), sigterm_unwinds():
        replace_atomic(write, tmp_path / "row000002.png")
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the default is back
