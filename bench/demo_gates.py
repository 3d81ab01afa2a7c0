"""How far the main job's health gates sit from their limits, over seeds: a main job that passes
on any machine needs every gate well clear of its limit (the last digits of every number move
between CPUs and thread counts).

Runs the main job (the demo config: DCJT and its baselines, every stage, gates in ``warn`` mode
so every gate is measured, nothing registered) for each seed in its own state folder, then
prints per gate its value on every seed and its smallest distance to the limit as a share of the
limit (positive: passed; a gate whose limit is 0 is shown, not counted). Last line:
``min_gate_margin: X``, the smallest of those shares over every gate and seed (above 0: no gate
fired on any seed).

    python -m bench.demo_gates                      # from the repository root; seeds 0-7: about 35 minutes on 2 cores
    python -m bench.demo_gates --seeds 0-1 --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def margin(gate: dict) -> float | None:
    """Distance to the limit as a share of the limit (positive on the passing side); None for 0."""
    limit = gate["threshold"]
    if limit == 0:
        return None
    room = gate["observed"] - limit if gate["rule"] in (">=", ">") else limit - gate["observed"]
    return room / abs(limit)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0-7")
    p.add_argument("--config", default="demo")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--home", default=None, help="state folder (default: $DCJT_HOME/bench-demo-gates)")
    args = p.parse_args()

    from dcjt.config_files import load_config
    from dcjt.experiments.tables import parse_seeds
    from dcjt.utils.state import state_home

    home = Path(args.home) if args.home else state_home() / "bench-demo-gates"
    os.environ["DCJT_HOME"] = str(home)
    for key in ("ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI"):
        os.environ.pop(key, None)  # the bench's own stores under its state folder
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from app.runner import run_pipeline

    rows, t0 = [], time.perf_counter()
    seeds = parse_seeds(args.seeds)
    for seed in seeds:
        values = {"seed": seed, "gates.mode": "warn", "register_model": False, "tracking_tags": {"bench": "demo_gates"}}
        outcome = run_pipeline(load_config(args.config, args.overrides, values))
        for report in outcome.summary.gates:
            if report.mode == "not used":
                continue
            for gate in report.gates:
                g = gate.model_dump()
                rows.append({"seed": seed, "stage": report.stage, **g, "margin": margin(g)})
        acc = outcome.comparison.set_index("variant")["accuracy"].mul(100).round(1).to_dict()
        print(f"seed {seed}: test accuracy {acc}", flush=True)
    frame = pd.DataFrame(rows)
    frame["gate"] = frame["stage"] + ": " + frame["name"]
    values = frame.pivot_table(index="gate", columns="seed", values="observed", aggfunc="first", sort=False)
    limits = frame.groupby("gate", sort=False).agg(rule=("rule", "first"), limit=("threshold", "min"), margin=("margin", "min"))
    table = pd.concat([limits, values.round(4)], axis=1)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 70):
        print(table.to_string())
    counted = frame["margin"].dropna()
    worst = frame.loc[counted.idxmin()] if len(counted) else None
    print(f"seeds {seeds}, {time.perf_counter() - t0:.0f} s")
    if worst is not None:
        print(
            f"smallest margin: {worst['gate']} on seed {worst['seed']}: {worst['observed']:.4g} vs limit {worst['threshold']:.4g}"
        )
    print(f"min_gate_margin: {counted.min():.3f}" if len(counted) else "min_gate_margin: nan")


if __name__ == "__main__":
    main()
