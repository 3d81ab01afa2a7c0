"""Paper Table 7 from the fine-tuning runs of ``scripts/table7.sh``: per pre-training row, the
fine-tuned test accuracy (mean ± std over seeds) and its per-seed difference to "A only" with a
t-interval over seeds and a two-level bootstrap interval (the study's code; each seed fine-tunes on
its own synthetic world, so seeds share no test images). Reads the ZenML store of ``DCJT_HOME``;
the newest fine-tuning of each row and seed wins.

    .venv/bin/python -m scripts.table7_summary --seeds 0,1,2   # from the repository root
"""

from __future__ import annotations

import argparse
import re
import sys

import numpy as np
import pandas as pd

from app.environment import prepare_environment
from dcjt.experiments.study_summary import markdown, summarise
from dcjt.train.scoring import RowEvaluation

REFERENCE = "t7-a"
MODEL_NAME = re.compile(r"ft-(?P<row>t7-[a-z-]+)-s(?P<seed>\d+)")


def finetuned(seeds: set[int]) -> tuple[pd.DataFrame, dict[tuple[str, int], np.ndarray]]:
    """(one record per row and seed, the per-image correctness) of the completed fine-tunings."""
    from zenml.client import Client

    records, correct = {}, {}
    runs = Client().list_pipeline_runs(pipeline_name="finetune_pipeline", sort_by="asc:created", size=1000)
    for run in runs:
        if str(run.status) != "completed" or "close_finetune" not in run.steps:
            continue
        summary = run.steps["close_finetune"].outputs["summary"][0].load()
        found = MODEL_NAME.fullmatch((summary.get("promotion") or {}).get("model_name", ""))
        if found is None or int(found["seed"]) not in seeds:
            continue
        key, ev = (found["row"], int(found["seed"])), RowEvaluation(**summary["evaluation"])
        records[key] = {
            "row": key[0],
            "seed": key[1],
            "accuracy": ev.test.accuracy,
            "val_accuracy": ev.val.accuracy,
            "images_seen": ev.images_seen,
            "epochs_run": ev.epochs_run,
        }
        correct[key] = np.asarray(ev.test.correct)
    return pd.DataFrame(list(records.values())), correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    seeds = {int(s) for s in parser.parse_args().seeds.split(",")}
    prepare_environment()
    records, correct = finetuned(seeds)
    if records.empty:
        sys.exit(f"no completed fine-tuning of scripts/table7.sh for seeds {sorted(seeds)} in this DCJT_HOME")
    missing = {(r, s) for r in records["row"].unique() for s in seeds} - set(correct)
    if missing:
        sys.exit(f"fine-tunings missing (row, seed): {sorted(missing)}: run scripts/table7.sh for those seeds")
    title = f"Table 7: fine-tuned test accuracy by pre-training row, seeds {','.join(map(str, sorted(seeds)))}"
    print(markdown(summarise(records, correct, REFERENCE), REFERENCE, title))


if __name__ == "__main__":
    main()
