"""What racing saves over the exhaustive selection, and what it costs in test accuracy.

Per world: ``run.py select --strategy exhaustive`` (every candidate on every seed at the full
budget), then ``--strategy race`` (the default: candidates race on a third of each row's epochs,
then the winner and the baselines go on to the full budget at the first seed) in the same state
folder. Each strategy's compute is the optimiser steps its recipe trains, what a fresh selection
spends (the heading of its ``select.md``: every candidate's trainings, a rung's continuation
counted beyond the rung, each seed's shared warm-up once, a training that went on from a
checkpoint counted whole); stages 1-2 (M_A, M_B) run once per seed in both and are not counted. Regret: the best
candidate's mean test accuracy over the seeds at the full budget (from the exhaustive runs) minus
the winner's. Prints per world each strategy's winner, regret (points), trainings and steps; last
line ``select_cost_ratio: X``, race steps / exhaustive steps summed over the worlds.

    python -m bench.select_cost                        # 4 worlds x 6 candidates x 3 seeds: about 80 minutes on 2 cores
    python -m bench.select_cost --worlds demo,close --seeds 0-1 --jobs 1
    python -m bench.select_cost --keep exhaustive      # again, the exhaustive selections read back from --home
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WORLDS = "demo,close,instance-noise,affectnet-priors"  # the project's world and three of the suite


def outputs(home: Path, config: str, strategy: str) -> tuple[pd.DataFrame, int]:
    """A finished selection's per-candidate table and the optimiser steps it trained."""
    folder = home / "outputs" / "studies" / f"{config}-select-{strategy}"
    heading = (folder / "select.md").read_text().splitlines()[0]
    return pd.read_csv(folder / "select.csv"), int(re.search(r"([\d,]+) optimiser steps", heading)[1].replace(",", ""))


def select(home: Path, world: str, strategy: str, seeds: str, threads: int, config: str, keep=()):
    """One ``run.py select`` in ``home`` (a strategy in ``keep``: the one that finished there
    before, read back): its per-candidate table, the steps it trained and its wall time (None:
    read back)."""
    if strategy in keep:
        return *outputs(home, config, strategy), None
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
    return *outputs(home, config, strategy), time.perf_counter() - t0


def world_line(world: str, home: Path, seeds: str, threads: int, config: str, keep: tuple) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    full, full_steps, full_s = select(home, world, "exhaustive", seeds, threads, config, keep)
    race, race_steps, race_s = select(home, world, "race", seeds, threads, config, keep)
    test = full.set_index("id")["test % (mean)"]  # every candidate on every seed
    best = test.max()
    won = {name: t.loc[t["stopped"] == "winner", "id"].iloc[0] for name, t in (("exhaustive", full), ("race", race))}
    return {
        "world": world,
        "best": test.idxmax(),
        "exhaustive winner": won["exhaustive"],
        "exhaustive regret": round(best - test[won["exhaustive"]], 2),
        "exhaustive steps": full_steps,
        "exhaustive s": None if full_s is None else round(full_s),
        "race winner": won["race"],
        "race regret": round(best - test[won["race"]], 2),
        "race steps": race_steps,
        "race rung runs": int(race["seeds run"].sum()),
        "race finished": int(race.filter(like="full budget: test").notna().any(axis=1).sum()),
        "race s": None if race_s is None else round(race_s),
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
    p.add_argument("--keep", default="", help="strategies to read back from --home instead of running (exhaustive,race)")
    args = p.parse_args()
    home = Path(args.home or Path(os.environ.get("DCJT_HOME", ROOT / "state")) / "bench-select-cost").resolve()
    worlds, keep = args.worlds.split(","), tuple(filter(None, args.keep.split(",")))
    with ThreadPoolExecutor(args.jobs) as pool:
        lines = list(pool.map(lambda w: world_line(w, home / w, args.seeds, args.threads, args.config, keep), worlds))
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
