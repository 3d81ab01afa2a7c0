"""The synthetic-world benchmark: a thin wrapper around the study command (one DCJT flow).

Runs ``python run.py study --table main`` on the demo config (2,500 target + 5,000 extra images,
32 px, tiny ResNet), prints its table, and as the last line DCJT's paired difference to target
only in points, pooled over seeds.

    python bench/synth_world.py                  # seed 0 (five rows): about 15 minutes on 2 cores
    python bench/synth_world.py --seeds 0-4      # the table on the results pages
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0")
    p.add_argument("--config", default="demo")
    args = p.parse_args()
    cmd = [sys.executable, str(ROOT / "run.py"), "study", "--config", args.config, "--table", "main", "--seeds", args.seeds]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    table = proc.stdout[proc.stdout.index("### ") :]
    print(table)
    gain = re.search(r"^\| DCJT \| [^|]+\| ([+-][0-9.]+) \[", table, flags=re.M)
    print(f"dcjt_minus_target_only_points: {gain.group(1) if gain else 'nan'}")


if __name__ == "__main__":
    main()
