"""What racing saves over the exhaustive selection, and what it costs in test accuracy.

Per world: ``run.py select --strategy exhaustive`` (every candidate on every seed), then
``--strategy race`` in the same state folder. The race's runs are the same pipeline runs as the
exhaustive ones (same configs and seeds, so ZenML's cache serves them, and the bench finishes in
the exhaustive time); its compute is the optimiser steps of the runs it asked for. Stages 1-2
(M_A, M_B) run once per seed in both strategies and are not counted. Regret: the best
candidate's mean test accuracy over the seeds (from the exhaustive runs) minus the winner's.
Prints per world each strategy's winner, regret (points), pipeline runs and steps; last line
``select_cost_ratio: X``, race steps / exhaustive steps summed over the worlds.

    python -m bench.select_cost                        # 4 worlds x 6 candidates x 3 seeds: about 55 minutes on 2 cores
    python -m bench.select_cost --worlds demo,close --seeds 0-1 --jobs 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORLDS = "demo,close,instance-noise,affectnet-priors"  # the project's world and three of the suite


def select(home: Path, world: str, strategy: str, seeds: str, threads: int, config: str) -> tuple[pd.DataFrame, float]:
    """One ``run.py select`` in ``home``: its per-candidate table and wall time."""
    env = {**os.environ, "DCJT_HOME": str(home)}
    for key in ("MLFLOW_TRACKING_URI", "ZENML_STORE_URL"):
        env.pop(key, None)  # the bench's own stores under its state folder
    argv = [sys.executable, "run.py", "select", "--config", config, "--world", world, "--seeds", seeds]
    argv += ["--strategy", strategy, "--threads", str(threads), "--set", f"model_name=bench-select-{world}"]
    t0 = time.perf_counter()
    log = home / f"select-{strategy}.log"
    with log.open("w") as out:
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{world} {strategy}: run.py select failed (exit {done.returncode}); see {log}")
    table = pd.read_csv(home / "outputs" / "studies" / f"{config}-select-{strategy}" / "select.csv")
    return table, time.perf_counter() - t0


def world_line(world: str, home: Path, seeds: str, threads: int, config: str) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    full, full_s = select(home, world, "exhaustive", seeds, threads, config)
    race, race_s = select(home, world, "race", seeds, threads, config)
    test = full.set_index("id")["test % (mean)"]  # every candidate on every seed
    best = test.max()
    won = {name: t.loc[t["stopped"] == "winner", "id"].iloc[0] for name, t in (("exhaustive", full), ("race", race))}
    return {
        "world": world,
        "best": test.idxmax(),
        "exhaustive winner": won["exhaustive"],
        "exhaustive regret": round(best - test[won["exhaustive"]], 2),
        "exhaustive steps": int(full["steps"].sum()),
        "exhaustive s": round(full_s),
        "race winner": won["race"],
        "race regret": round(best - test[won["race"]], 2),
        "race steps": int(race["steps"].sum()),
        "race trainings": int(race["seeds run"].sum()),
        "race s": round(race_s),
        "race stopped": "; ".join(f"{r.id} {r.stopped}" for r in race.itertuples() if str(r.stopped).startswith("after")),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worlds", default=WORLDS)
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--config", default="demo")
    p.add_argument("--threads", type=int, default=1, help="per select process")
    p.add_argument("--jobs", type=int, default=2, help="worlds at once (each its own state folder)")
    p.add_argument("--home", default=None, help="state folder (default: $DCJT_HOME/bench-select-cost)")
    args = p.parse_args()
    home = Path(args.home or Path(os.environ.get("DCJT_HOME", ROOT / "state")) / "bench-select-cost").resolve()
    worlds = args.worlds.split(",")
    with ThreadPoolExecutor(args.jobs) as pool:
        lines = list(pool.map(lambda w: world_line(w, home / w, args.seeds, args.threads, args.config), worlds))
    table = pd.DataFrame(lines)
    pd.set_option("display.width", 250)
    print(table.drop(columns="race stopped").to_string(index=False))
    for line in lines:
        print(f"{line['world']}: race stopped {line['race stopped'] or 'nothing'}")
    table.to_csv(home / "select_cost.csv", index=False)
    gap = (table["race regret"] - table["exhaustive regret"]).mean()
    full, race = table["exhaustive regret"].mean(), table["race regret"].mean()
    print(f"mean regret: exhaustive {full:.2f}, race {race:.2f} (race minus exhaustive {gap:+.2f})")
    print(f"select_cost_ratio: {table['race steps'].sum() / table['exhaustive steps'].sum():.3f}")


if __name__ == "__main__":
    main()
