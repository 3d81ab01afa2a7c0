"""Files the pipeline did not write are not trusted: planted checkpoints, paths that leave a
dataset root, served paths outside the configured roots, credentials in configs.

Planted pickles carry a payload that would create a marker file when unpickled; every test
checks that the marker never appears.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch

from dcjt.models.nets import build_model
from dcjt.train.checkpoint import CheckpointError, load_checkpoint
from dcjt.train.loop import train
from helpers import ROOT  # noqa: E402
from helpers.training import toy_samples
from helpers.trust import Payload, plant_checkpoint, tiny_fingerprint


def test_planted_checkpoint_of_another_training_is_refused_before_unpickling(tmp_path):
    marker = tmp_path / "marker"
    plant_checkpoint(tmp_path / "ck", marker, record={"fingerprint": {"config": {}, "model": {}, "sizes": [1, 0]}, "epoch": 3})
    with pytest.raises(CheckpointError, match="belongs to another training"):
        load_checkpoint(tmp_path / "ck", tiny_fingerprint(), torch.device("cpu"))
    assert not marker.exists()


def test_planted_checkpoint_with_a_forged_record_runs_no_code(tmp_path):
    marker = tmp_path / "marker"
    plant_checkpoint(
        tmp_path / "ck", marker, record={"fingerprint": tiny_fingerprint(), "epoch": 3}
    )  # matching fingerprint and hash
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        load_checkpoint(tmp_path / "ck", tiny_fingerprint(), torch.device("cpu"))
    assert not marker.exists()


def test_a_bare_planted_file_is_never_read(tmp_path):
    """A pickle dropped into a checkpoint folder without a record: training starts fresh and
    never opens it (an old-format ``last.pt`` is treated the same)."""
    from helpers.data import random_images  # noqa: F401  (tests path)
    from helpers.training import small_cfg

    marker = tmp_path / "marker"
    folder = tmp_path / "ck"
    folder.mkdir()
    torch.save({"model": Payload(marker)}, folder / "last.pt")
    torch.save({"model": Payload(marker)}, folder / "epoch-0000.pt")
    result = train(build_model("tiny", "linear", 32), toy_samples(32), cfg=small_cfg(epochs=2), checkpoint_dir=folder)
    assert len(result.history) == 2 and not marker.exists()


def test_no_credentials_inline_and_auth_is_documented():
    import re

    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "configs").glob("*.yaml"))]
    text = {p: p.read_text() for p in files}
    for path, body in text.items():
        body = body.replace("`http://user:pass@…`", "")  # the docs' example of what never to do
        assert not re.search(r"[a-z][a-z0-9+.-]*://[^\s/@:]+:[^\s/@]+@", body), path  # user:password@host
        assert not re.search(r"(?i)(password|token)\s*[:=]\s*['\"]?[A-Za-z0-9]{6,}", body), path
    clusters = text[ROOT / "docs" / "how-to" / "clusters.md"]
    assert "--app-name basic-auth" in clusters and "MLFLOW_TRACKING_USERNAME" in clusters
    assert "secretKeyRef" in text[ROOT / "configs" / "remote-kubernetes.yaml"]
    assert "basic-auth" in text[ROOT / "configs" / "remote-kubeflow.yaml"]


# --- readers: every listed path stays inside its dataset root ----------------------------------
def _rafdb(tmp_path, listed: str) -> Path:
    from PIL import Image

    from helpers.data import random_images

    root = tmp_path / "rafdb"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    names = [f"train_{k:05d}.jpg" for k in range(7)] + ["test_0001.jpg"]
    for name, image in zip(names, random_images(8, 32)):
        stem, ext = os.path.splitext(name)
        Image.fromarray(image).save(root / "Image" / "aligned" / f"{stem}_aligned{ext}")
    lines = [f"{n} {k % 7 + 1}" for k, n in enumerate(names)] + [f"{listed} 1"]
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("listed", ["train_../../../../secret.jpg", "train_/../../outside.jpg"])
def test_rafdb_entry_leaving_the_root_is_refused_alike_whether_or_not_it_exists(tmp_path, listed):
    from dcjt.data.readers import DatasetFormatError, read_rafdb

    root = _rafdb(tmp_path, listed)
    with pytest.raises(DatasetFormatError) as missing:
        read_rafdb(root)
    (tmp_path / "secret_aligned.jpg").write_bytes(b"x")  # now the outside target exists
    (tmp_path / "outside_aligned.jpg").write_bytes(b"x")
    with pytest.raises(DatasetFormatError) as present:
        read_rafdb(root)
    assert "list_patition_label.txt:9" in str(missing.value) and "leaves the dataset root" in str(missing.value)
    assert str(missing.value) == str(present.value)


@pytest.mark.parametrize("entry", ["../../outside.jpg", "/etc/hostname"])
def test_affectnet_csv_entry_leaving_the_root_is_refused(tmp_path, entry):
    from dcjt.data.readers import DatasetFormatError, read_affectnet

    root = tmp_path / "an"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    (lists / "training.csv").write_text(f"{header}\n1/a.jpg,0,0,8,8,,1,0.1,0.1\n{entry},0,0,8,8,,1,0.1,0.1\n")
    (lists / "validation.csv").write_text(f"{header}\n1/b.jpg,0,0,8,8,,1,0.1,0.1\n")
    with pytest.raises(DatasetFormatError, match=r"training.csv:3: path .* leaves the dataset root"):
        read_affectnet(root)


def test_caers_symlink_out_of_the_root_and_absolute_box_paths_are_refused(tmp_path):
    from PIL import Image

    from dcjt.data.readers import DatasetFormatError, read_caers
    from helpers.data import random_images

    root = tmp_path / "caer"
    for split in ("train", "test"):
        (root / split / "Happy").mkdir(parents=True)
        Image.fromarray(random_images(1, 32)[0]).save(root / split / "Happy" / "0001.png")
    outside = tmp_path / "private.png"
    Image.fromarray(random_images(1, 32)[0]).save(outside)
    (root / "train" / "Happy" / "0002.png").symlink_to(outside)
    with pytest.raises(DatasetFormatError, match=r"0002.png: path .* leaves the dataset root"):
        read_caers(root, detect_faces=False)
    (root / "train" / "Happy" / "0002.png").unlink()
    (root / "boxes.csv").write_text(f"path,label,x1,y1,x2,y2\n{outside},3,0,0,8,8\n")
    with pytest.raises(DatasetFormatError, match=r"boxes.csv:2: path .* leaves the dataset root"):
        read_caers(root, detect_faces=False)


def test_ferplus_writes_only_derived_names_under_its_work_folder(tmp_path):
    from dcjt.data.readers import read_ferplus

    root = tmp_path / "fp"
    root.mkdir()
    pixels = " ".join(["7"] * 48 * 48)
    columns = "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    absolute = tmp_path.parent / f"{tmp_path.name}-absolute.png"  # outside tmp_path
    rows = [("Training", "../../../escaped.png"), ("PublicTest", str(absolute)), ("PrivateTest", "..")]
    (root / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "".join(f"0,{pixels},{u}\n" for u, _ in rows))
    (root / "fer2013new.csv").write_text(
        f"Usage,Image name,{columns}\n" + "".join(f"{u},{n},10,0,0,0,0,0,0,0,0,0\n" for u, n in rows)
    )
    work = tmp_path / "work"
    before = {p for p in tmp_path.rglob("*")}
    df, _ = read_ferplus(root, image_dir=work)
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(p.is_relative_to(work) for p in written)
    assert sorted(Path(p).name for p in df["image"]) == ["row000002.png", "row000003.png", "row000004.png"]
    assert not absolute.exists()


def test_checkpoint_reads_stay_consistent_while_another_run_writes(tmp_path):
    """Two runs of the same training share a folder (same recipe and data): one keeps writing
    epochs while the other resumes and logs; every read is a whole, verified checkpoint."""
    import threading

    from dcjt.train.checkpoint import read_latest, save_checkpoint_file

    folder, fp = tmp_path / "ck", tiny_fingerprint()
    save_checkpoint_file(folder, 0, {"w": torch.zeros(64, 64)}, fp)
    done = threading.Event()

    def writer():
        for epoch in range(1, 60):
            save_checkpoint_file(folder, epoch, {"w": torch.full((64, 64), float(epoch))}, fp)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = set()
    while not done.is_set():
        record, data = read_latest(folder, fp)
        ck = torch.load(io.BytesIO(data), weights_only=True)
        assert ck["epoch"] == record["epoch"] and float(ck["w"][0, 0]) == record["epoch"]
        seen.add(record["epoch"])
    thread.join()
    assert len(seen) > 1


def test_two_writers_of_the_same_epochs_never_break_a_read(tmp_path):
    """Two runs of one training write the same epoch numbers with different bytes (as two
    processes do): a read never pairs one run's record with the other's file, and nothing is
    refused."""
    import threading

    from dcjt.train.checkpoint import read_latest, save_checkpoint_file

    folder, fp = tmp_path / "ck", tiny_fingerprint()
    save_checkpoint_file(folder, 0, {"w": torch.zeros(64, 64)}, fp)

    def writer(offset: float):
        for epoch in range(1, 40):
            save_checkpoint_file(folder, epoch, {"w": torch.full((64, 64), epoch + offset)}, fp)

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (0.0, 0.5)]
    for thread in threads:
        thread.start()
    reads = 0
    while any(thread.is_alive() for thread in threads):
        record, data = read_latest(folder, fp)
        ck = torch.load(io.BytesIO(data), weights_only=True)
        assert ck["epoch"] == record["epoch"] and int(float(ck["w"][0, 0])) == record["epoch"]
        reads += 1
    for thread in threads:
        thread.join()
    assert reads > 1 and read_latest(folder, fp)[0]["epoch"] == 39
    assert len(list(folder.glob("epoch-*.pt"))) <= 2


def test_writers_that_finish_together_leave_a_record_that_names_a_file(tmp_path):
    """Three runs of one training end on the same epoch: whoever wrote the record last, its file
    is there (before the folder lock, about 4 % of such endings named a file another run had
    just removed, and the next resume was refused)."""
    import threading

    from dcjt.train.checkpoint import read_latest, save_checkpoint_file

    fp = tiny_fingerprint()
    for trial in range(40):
        folder = tmp_path / f"ck{trial}"

        def writer(offset: float, folder=folder):
            for epoch in range(1, 30):
                save_checkpoint_file(folder, epoch, {"w": torch.full((8, 8), epoch + offset)}, fp)

        threads = [threading.Thread(target=writer, args=(offset,)) for offset in (0.0, 0.25, 0.5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        record, _ = read_latest(folder, fp)
        assert record["epoch"] == 29 and [p.name for p in folder.glob("epoch-*.pt")] == [record["file"]]
