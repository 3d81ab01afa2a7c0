"""Every class of every reader, from files written by hand in each release's own coding.

The expected names below are copied from the releases' documentation, not computed from the
readers' maps, so a swapped code in a reader fails here (the other reader tests write their
fixtures with the project's own inverse maps, which a wrong map would survive).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from dcjt.data.labels import EMOTIONS
from dcjt.data.readers import read_affectnet, read_caers, read_ferplus
from helpers.data import random_images

# AffectNet paper / README: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
# 7 Contempt, 8 None, 9 Uncertain, 10 No-Face.
AFFECTNET_DOCUMENTED = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger"}
# CAER-S: one folder per emotion, named as in the release.
CAERS_DOCUMENTED = {
    "Anger": "anger",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happy": "happiness",
    "Neutral": "neutral",
    "Sad": "sadness",
    "Surprise": "surprise",
}
# FERPlus fer2013new.csv header, as published.
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def _names(labels) -> list[str]:
    return [EMOTIONS[k] for k in labels]


def test_affectnet_every_code_as_documented(tmp_path):
    root = tmp_path / "AffectNet"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    rows = [f"7/{code}.jpg,0,0,32,32,,{code},0.1,0.2" for code in AFFECTNET_DOCUMENTED]
    (lists / "training.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (lists / "validation.csv").write_text(header + "\n" + rows[0].replace("0.jpg", "v.jpg") + "\n")
    folder = root / "Manually_Annotated_Images" / "7"
    folder.mkdir(parents=True)
    for name, image in zip([*map(str, AFFECTNET_DOCUMENTED), "v"], random_images(8, 32)):
        Image.fromarray(image).save(folder / f"{name}.jpg")
    df, _ = read_affectnet(root)
    train = df[df["split"] == "train"]
    got = dict(zip(train["image"].map(lambda p: int(p.rsplit("/", 1)[1][:-4])), _names(train["label"])))
    assert got == AFFECTNET_DOCUMENTED


def test_caers_every_folder_as_documented(tmp_path):
    root = tmp_path / "CAER-S"
    images = iter(random_images(14, 48))
    for split in ("train", "test"):
        for folder in CAERS_DOCUMENTED:
            (root / split / folder).mkdir(parents=True)
            Image.fromarray(next(images)).save(root / split / folder / "0001.png")
    df, _ = read_caers(root, detect_faces=False)
    got = {(p.split("/")[-3], p.split("/")[-2]): name for p, name in zip(df["image"], _names(df["label"]))}
    assert got == {(split, folder): name for split in ("train", "test") for folder, name in CAERS_DOCUMENTED.items()}


def test_ferplus_every_vote_column_as_published(tmp_path):
    root = tmp_path / "FERPlus"
    root.mkdir()
    columns = FERPLUS_HEADER.split(",")[2:]
    emotions = [c for c in columns if c in EMOTIONS]  # contempt, unknown and NF are not classes
    pixels = " ".join(["128"] * 48 * 48)
    old = ["emotion,pixels,Usage"] + [f"0,{pixels},Training" for _ in emotions]
    old += [f"0,{pixels},PublicTest", f"0,{pixels},PrivateTest"]
    new = [FERPLUS_HEADER]
    for i, name in enumerate(emotions):
        votes = [10 if column == name else 0 for column in columns]
        new.append(f"Training,fer{i:07d}.png," + ",".join(map(str, votes)))
    neutral = ",".join("10" if c == "neutral" else "0" for c in columns)
    new += [f"PublicTest,fer{len(emotions):07d}.png,{neutral}", f"PrivateTest,fer{len(emotions) + 1:07d}.png,{neutral}"]
    (root / "fer2013.csv").write_text("\n".join(old) + "\n")
    (root / "fer2013new.csv").write_text("\n".join(new) + "\n")
    df, _ = read_ferplus(root)
    train = df[df["split"] == "train"]
    assert _names(train["label"]) == emotions
    assert sorted(set(emotions)) == sorted(EMOTIONS)
    assert np.asarray(Image.open(train["image"].iloc[0])).shape[:2] == (48, 48)
