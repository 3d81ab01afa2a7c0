"""ZenML's per-artifact package lookup, cached vs uncached, on the tiny pipeline run.

ZenML resolves every stored output's type to its distribution package through
``importlib.metadata.packages_distributions()``, which walks every installed package's file list
on each call; ``steps.common`` caches it once per process. This runs the tiny pipeline (no step
cache, fresh stores) twice side by side in subprocesses, the baseline with the cache undone, and
prints both wall times. Headline: ``step_overhead_ratio`` = cached / uncached pipeline seconds.

    python bench/step_overhead.py            # about 2 minutes on 2 cores
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER = """
import importlib.metadata, sys
original, calls = importlib.metadata.packages_distributions, []
def uncached():
    calls.append(1)
    return original()
if sys.argv[1] == "uncached":  # steps.common leaves a lookup that has cache_info alone
    uncached.cache_info = None
    importlib.metadata.packages_distributions = uncached
from app.runner import run_pipeline
from dcjt.config_files import load_config
run_pipeline(load_config("tiny", ["register_model=false"]), cache=False)
lookup = importlib.metadata.packages_distributions
info = lookup.cache_info() if callable(lookup.cache_info) else None
print("lookups:", len(calls) if info is None else f"{info.hits + info.misses}, computed {info.misses}")
"""


def run(mode: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DCJT_HOME": home, "DCJT_THREADS": "2", "DCJT_OFFLINE": "1", "ZENML_CUSTOM_SOURCE_ROOT": str(ROOT)}
        for key in ("MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH", "ZENML_STORE_URL"):
            env.pop(key, None)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", DRIVER, mode], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        sys.exit(f"step_overhead: the {mode} run failed (its last output above)")
    lookups = next(line for line in proc.stdout.splitlines() if line.startswith("lookups:"))
    print(f"{mode:9s} {seconds:6.1f} s  ({lookups})", flush=True)
    return seconds


def main() -> None:
    print("tiny pipeline, no step cache, fresh stores, 2 threads (process wall time)")
    uncached, cached = run("uncached"), run("cached")
    print(f"saved: {uncached - cached:.1f} s per run")
    print(f"step_overhead_ratio: {cached / uncached:.2f}")


if __name__ == "__main__":
    main()
