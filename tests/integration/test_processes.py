"""Unit-sized checks that need a process of their own or wait on one (so they are not in the unit
lane): a decompression bomb measured in a fresh interpreter, a killed cache build that resumes,
caches and renders built by worker processes, a DDP result read back without running code, and a
checkpoint read that waits for a writer to settle."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcjt.data.cache import build_cache, cache_key, open_cache
from dcjt.data.readers import ingest
from dcjt.models.images import ImageReadError, decode, preprocess
from dcjt.synthetic.world import sample_latents
from dcjt.train.checkpoint import CheckpointError, load_checkpoint
from dcjt.train.distributed import run_distributed
from helpers import ROOT
from helpers.trust import Payload, plant_checkpoint, tiny_fingerprint

BOMB_BURST = """
import io, resource, sys
import numpy as np
from dcjt.models.nets import build_model
from dcjt.serving.inputs import predict_inputs
from dcjt.serving.network import TorchScorer
bomb = open(sys.argv[1], "rb").read()
model = TorchScorer(build_model("tiny", "linear", 32))
ok = io.BytesIO()
from PIL import Image
Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(ok, format="PNG")
predict_inputs(model, [ok.getvalue()], min_side=8)  # warm up: torch's own allocations
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(20):
    out = predict_inputs(model, [bomb, ok.getvalue()], min_side=8)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(out["error"].iloc[0]); print(out["label"].iloc[1]); print(f"{grown:.0f}")
"""


def test_serving_refuses_an_image_over_its_pixel_budget_from_the_header_with_flat_memory(tmp_path):
    """A 40 KB PNG declaring 13,000 x 13,000 pixels (under Pillow's own limit; 507 MB as RGB) is
    refused from its header in its row, the other row is answered, and 20 such requests leave the
    peak memory where it was."""

    bomb = tmp_path / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(bomb)
    assert bomb.stat().st_size < 100_000
    proc = subprocess.run([sys.executable, "-c", BOMB_BURST, str(bomb)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    error, label, grown = proc.stdout.strip().splitlines()[-3:]
    assert error == "too large: 13000x13000 px, over the budget of 25,000,000 px (DCJT_SERVE_MAX_PIXELS)"
    assert 0 <= int(label) <= 6 and float(grown) < 100, proc.stdout  # decoding even once would add ~500 MB


def test_a_killed_cache_build_resumes_without_redoing_finished_chunks(rafdb_root, tmp_path):
    import json
    import subprocess

    root, *_ = rafdb_root
    df, _ = ingest("rafdb", root, val_fraction=0.0)
    df.to_pickle(tmp_path / "table.pkl")
    cache_dir = tmp_path / "cache"
    child = textwrap.dedent(
        f"""
        import time, pandas as pd
        import dcjt.data.cache as cache
        slow = cache.load_preprocessed
        cache.load_preprocessed = lambda *a: (time.sleep(0.15), slow(*a))[1]  # a slow disk, so the kill lands midway
        cache.build_cache(pd.read_pickle({str(tmp_path / "table.pkl")!r}), 16, {str(cache_dir)!r}, workers=1, rows_per_chunk=3)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child])
    record = cache_dir / f".partial-{cache_key(df, 16)}.json"
    deadline = time.time() + 60
    while time.time() < deadline and not (record.exists() and len(json.loads(record.read_text())["done"]) >= 2):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(record.read_text())["done"]
    assert 2 <= len(done) < -(-len(df) // 3) and open_cache(df, 16, cache_dir) is None
    for chunk in done:  # images of finished chunks are never read again: break them to prove it
        for path in df["image"].iloc[chunk * 3 : chunk * 3 + 3]:
            open(path, "wb").write(b"gone")
    cache = build_cache(df, 16, cache_dir, rows_per_chunk=3)
    assert not record.exists() and sorted(p.name for p in cache_dir.iterdir()) == sorted(
        p.name for p in (cache.path, cache.path.with_suffix(".json"))
    )
    rest = [i for i in range(len(df)) if i // 3 not in done]
    assert np.array_equal(cache.images[rest], np.stack([preprocess(decode(df["image"].iloc[i]), 16) for i in rest]))
    assert cache.images[[c * 3 for c in done]].any(axis=(1, 2, 3)).all()  # built before the kill, kept


def test_cache_built_by_worker_processes_equals_one_thread_and_fails_cleanly(rafdb_root, tmp_path, monkeypatch):
    root, *_ = rafdb_root
    df, _ = ingest("rafdb", root, val_fraction=0.0)
    partial = tmp_path / "model-code" / "dcjt"  # a loaded MLflow model puts its serving closure first on sys.path
    (partial / "data").mkdir(parents=True)
    for package in (partial, partial / "data"):
        (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(partial.parent))
    one = build_cache(df, 16, tmp_path / "one", workers=1)
    procs = build_cache(df, 16, tmp_path / "procs", workers=2, rows_per_chunk=2)  # 2 processes, >= 4 chunks
    assert np.array_equal(one.images, procs.images) and list(one.keys) == list(procs.keys)
    victim = df["image"].iloc[-1]
    open(victim, "wb").write(b"not an image")
    with pytest.raises(ImageReadError, match=victim.rsplit("/", 1)[1]):
        build_cache(df, 24, tmp_path / "bad", workers=2, rows_per_chunk=2)
    assert not list((tmp_path / "bad").iterdir())


def test_streamed_rendering_equals_rendering_in_memory():
    from dcjt.synthetic.render import render_many, render_stream

    lat = sample_latents(23, np.random.default_rng(3))
    whole = render_many(lat, 5, 24, "extra")
    for workers in (1, 2):
        streamed = np.stack(list(render_stream(lat, 5, 24, "extra", workers=workers, chunk=5)))
        assert np.array_equal(streamed, whole)


def test_checkpoint_swapped_after_its_record_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = plant_checkpoint(tmp_path / "ck", marker, record={"fingerprint": tiny_fingerprint(), "epoch": 3})
    torch.save({"model": Payload(marker), "epoch": 4, "pad": 1}, path)  # another file under the recorded name
    with pytest.raises(CheckpointError, match="not the file its record"):
        load_checkpoint(tmp_path / "ck", tiny_fingerprint(), torch.device("cpu"))
    record = json.loads((tmp_path / "ck" / "last.json").read_text())
    (tmp_path / "ck" / "last.json").write_text(json.dumps({**record, "file": "../../etc/passwd"}))
    with pytest.raises(CheckpointError, match="not a checkpoint file of this folder"):
        load_checkpoint(tmp_path / "ck", tiny_fingerprint(), torch.device("cpu"))
    assert not marker.exists()


def _pickled_result(marker: str):
    return {"model": Payload(Path(marker))}


def test_ddp_result_is_read_without_running_code(tmp_path):

    marker = tmp_path / "marker"
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global|ProcessRaisedException"):
        run_distributed(_pickled_result, 2, marker=str(marker))
    assert not marker.exists()


PLANTED_UNIT_TESTS = """
import subprocess, threading, time

def test_sleeps():
    time.sleep(0.01)

def test_starts_a_subprocess():
    subprocess.run(["true"])

def test_imports_zenml():
    import zenml  # noqa: F401

def test_a_background_thread_may_sleep():
    t = threading.Thread(target=time.sleep, args=(0.01,))
    t.start()
    t.join()
"""


def test_the_unit_lane_guard_refuses_sleeps_subprocesses_and_zenml(tmp_path):
    """Planted unit tests that sleep, start a subprocess and import ZenML fail under the unit lane's
    conftest, each naming what it did; a library thread that sleeps is left alone."""
    lane = tmp_path / "tests" / "unit"
    lane.mkdir(parents=True)
    (lane / "conftest.py").write_text((ROOT / "tests" / "unit" / "conftest.py").read_text())
    (lane / "test_planted.py").write_text(PLANTED_UNIT_TESTS)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(lane)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 1 and "3 failed, 1 passed" in out, out[-3000:]
    for what in ("sleeps (time.sleep)", "starts a subprocess (subprocess.Popen)", "imports zenml"):
        assert f"unit lane: this test {what}" in out, what


SAME_TABLES = """
import sys, mlflow, pandas as pd
from dcjt.utils.mlflow_io import log_tables
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("race")
rows = pd.DataFrame({"image": [f"/data/{i}.png" for i in range(40)], "label": [i % 7 for i in range(40)], "dataset": "d"})
for j in range(int(sys.argv[2])):
    with mlflow.start_run():
        log_tables([(f"table {j}", rows, "train")], tuple("abcdefg"))
"""


def test_runs_logging_the_same_tables_at_once_all_link_them(tmp_path):
    """Two pipelines at once on one store log the same label tables; MLflow's SQL store looks the
    datasets up, then inserts, so one of two simultaneous inserts hit the unique key (about 1 in
    20 runs with four writers, measured; CI failed on it). Every run must link every table, once."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("race")  # the schema exists before the writers start
    writers = [
        subprocess.Popen([sys.executable, "-c", SAME_TABLES, uri, "20"], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    errors = [w.communicate(timeout=300)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), next(e for w, e in zip(writers, errors) if w.returncode)[-1500:]
    runs = client.search_runs([experiment], max_results=1000)
    assert len(runs) == 80 and all(len(r.inputs.dataset_inputs) == 1 for r in runs)
    assert len({i.dataset.name for r in runs for i in r.inputs.dataset_inputs}) == 20
