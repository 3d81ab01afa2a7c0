"""AffectNet-size data on one machine: synthetic images in AffectNet's original layout at 224 px,
ingested (CSV read, every image decoded once to check it) and cached (decoded, resized, written
to the memory-mapped cache), at several row counts.

Per row count: images/s of ingestion and of the cache build (both cores, and one core for the
ratio at the smallest count), bytes per cached image, and peak RSS of each phase in its own
process beside the label table's own size. Memory must not grow with the row count beyond the
table. Default counts fit a few minutes on 2 cores; the benchmarks page's figures come from
``--rows 10000,100000`` (about 40 minutes, 17 GB of disk).

Last line: cache-build peak RSS growth from the smallest to the largest count, minus the growth
of the label table itself, in MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ``getrusage``: Linux carries ``ru_maxrss`` across
    ``execve``, so a child would report its parent's peak when that was higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(phase: str, *args: str) -> None:
    """One phase in this process; prints its numbers as JSON."""
    import pandas as pd

    from dcjt.data.cache import build_cache
    from dcjt.data.readers import ingest

    t0 = time.perf_counter()
    if phase == "imports":
        out = {}
    elif phase == "ingest":
        root, table_path = args
        table, _ = ingest("affectnet", root, val_fraction=0.0)
        table.to_pickle(table_path)
        out = {"rows": len(table), "table_mb": table.memory_usage(deep=True).sum() / 2**20}
    else:
        table_path, cache_dir, workers = args
        table = pd.read_pickle(table_path)
        cache = build_cache(table, SIZE, cache_dir, workers=int(workers))
        out = {"rows": len(table), "bytes_per_image": cache.path.stat().st_size / len(table)}
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def phase(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="2000,8000", help="comma-separated row counts")
    parser.add_argument("--work", default=None, help="folder for the images and caches (default: a temp folder)")
    args = parser.parse_args()
    counts = [int(x) for x in args.rows.split(",")]
    from dcjt.synthetic.disk import write_world

    base = phase("imports")["peak_rss_mb"]
    print(f"AffectNet original layout, {SIZE}x{SIZE} JPEG, 2 cores; interpreter + imports: {base:.0f} MB RSS")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work or ROOT) as tmp:
        for n in counts:
            work = Path(tmp) / str(n)
            t = time.perf_counter()
            write_world(work, ["affectnet"], n_target=10, n_extra=n, size=SIZE, seed=0)
            synth = n / (time.perf_counter() - t)
            ing = phase("ingest", str(work / "affectnet"), str(work / "table.pkl"))
            one = phase("cache", str(work / "table.pkl"), str(work / "cache1"), "1") if n == counts[0] else None
            two = phase("cache", str(work / "table.pkl"), str(work / "cache"), "2")
            rows.append((n, synth, ing, one, two))
            print(
                f"{n:>7,} rows | synth {synth:5.0f} img/s | ingest {n / ing['seconds']:5.0f} img/s, peak RSS "
                f"{ing['peak_rss_mb']:6.0f} MB (table {ing['table_mb']:.1f} MB) | cache build {n / two['seconds']:5.0f} img/s, "
                f"peak RSS {two['peak_rss_mb']:6.0f} MB, {two['bytes_per_image']:,.0f} B/image"
            )
            if one is not None:
                ratio = one["seconds"] / two["seconds"]
                print(f"        cache build, 2 workers vs 1: {ratio:.2f}x ({n / one['seconds']:.0f} img/s with 1)")
            shutil.rmtree(work)
    (n0, _, ing0, _, c0), (n1, _, ing1, _, c1) = rows[0], rows[-1]
    per_image = c1["bytes_per_image"]
    print(
        f"extrapolated to AffectNet's 284k manually annotated images: cache {284_000 * per_image / 2**30:.0f} GiB, "
        f"ingest {284_000 / (n1 / ing1['seconds']) / 60:.0f} min, cache build {284_000 / (n1 / c1['seconds']) / 60:.0f} min"
    )
    growth = (c1["peak_rss_mb"] - c0["peak_rss_mb"]) - (ing1["table_mb"] - ing0["table_mb"])
    print(f"cache build peak RSS {c0['peak_rss_mb']:.0f} MB at {n0:,} rows, {c1['peak_rss_mb']:.0f} MB at {n1:,} rows")
    print(f"cache_build_rss_growth_beyond_table_mb: {growth:.1f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
