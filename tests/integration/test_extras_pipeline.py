"""The files pipeline on real release layouts (RAF-DB + AffectNet + CAER-S) with a planted duplicate."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from dcjt.config_files import load_config
from dcjt.synthetic.world import WorldSpec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_files_pipeline_with_two_extras_and_a_planted_duplicate(tmp_path):
    import cv2

    from app.runner import run_pipeline
    from dcjt.synthetic import layouts
    from dcjt.synthetic.world import generate_world

    world = generate_world(WorldSpec(n_target=360, n_extra=420, n_extra2=300), size=64, seed=4)
    (t, ti), (e, ei), (c, ci) = world["target"], world["extra"], world["extra2"]
    raf = layouts.write_rafdb(tmp_path / "raf", ti, t["label"], t["split"])
    layouts.write_affectnet_csv(tmp_path / "an", ei, e["label"], (e["valence"], e["arousal"]), e["split"])
    full = [(0, 0, 64, 64)] * len(c)
    layouts.write_caers(tmp_path / "caer", ci, c["label"], c["split"], boxes=full)
    test_image = raf[int(np.flatnonzero(t["split"].to_numpy() == "test")[0])]
    first_train = int(np.flatnonzero(e["split"].to_numpy() == "train")[0])
    planted = tmp_path / "an" / "Manually_Annotated_Images" / f"{first_train // 1000:03d}/{first_train:07d}.jpg"
    cv2.imwrite(str(planted), cv2.imread(str(test_image)), [cv2.IMWRITE_JPEG_QUALITY, 40])
    audited = [int(i) for i in np.flatnonzero(e["split"].to_numpy() == "train")[1:4]]  # a team's audit of three images
    audit = tmp_path / "audit.csv"
    audit.write_text(
        "image,emotion\n" + "".join(f"Manually_Annotated_Images/{i // 1000:03d}/{i:07d}.jpg,fear\n" for i in audited)
    )
    tiny = [
        "network.image_size=32",
        f"data.extras.0.audit={audit}",
        "network={backbone: tiny, head: linear, weights: none}",
        f"data.target.root={tmp_path / 'raf'}",
        f"data.extras.0.root={tmp_path / 'an'}",
        "data.extras.1.dataset=caers",
        f"data.extras.1.root={tmp_path / 'caer'}",
        "m_a={epochs: 2, batch_size: 32}",
        "m_b={epochs: 2, batch_size: 32, lam: 1.0}",
        "dcn={epochs: 3, batch_size: 32, lam: 1.0, warmup_epochs: 1, joint_frequency: 1, extra_balance: each}",
        "baselines=[extra_only]",
        "gates.mode=warn",
        "gates.min_val_rows=20",  # a tiny A: 29 validation rows
    ]
    outcome = run_pipeline(load_config("rafdb", tiny))
    assert outcome.summary.leaked == 1
    from zenml.client import Client

    table = Client().get_pipeline_run(outcome.run_name).steps["ingest_extras"].outputs["table"][0].load()
    marked = table[table["audit_label"] >= 0]
    assert len(marked) == 3 and set(marked["dataset"]) == {"affectnet"} and set(marked["audit_label"]) == {1}  # fear
    extras = {x["dataset"]: x for x in outcome.summary.extras}
    assert set(extras) == {"affectnet", "caers"} and extras["caers"]["va"] == "pseudo (M_B)"
    assert extras["affectnet"]["train_rows"] == int((e["split"] == "train").sum()) - 1  # the copy left training
    assert extras["caers"]["relabeled_rows"] > 0 and extras["affectnet"]["mapped_rows"] > 0
    # Table 7's "B only" row: trained on both extras' train rows as published, none of A's; scored on A's test
    assert "extra_only" in [r.row for r in outcome.summary.rows]
    parent = outcome.summary.mlflow_run_id
    child = mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.mlflow.parentRunId = '{parent}'", output_format="list"
    )
    params = next(r for r in child if r.data.tags["dcjt.stage"] == "extra_only").data.params
    train_rows = extras["affectnet"]["train_rows"] + extras["caers"]["train_rows"]
    assert (int(params["rows.train"]), int(params["rows.extra"])) == (train_rows, 0)
