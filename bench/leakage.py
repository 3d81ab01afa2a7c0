"""The leakage guard on a world with planted duplicates: how many it finds, what it flags
wrongly, and what it costs against decoding the images once (the cache build it rides on).

A RAF-DB and an AffectNet release of the synthetic world (100 px JPEGs, 2,500 + 5,000 images)
get planted copies of RAF-DB test images: resized, recompressed (JPEG quality 40) and flipped
copies over AffectNet training images, and recompressed copies over RAF-DB training images.
The guard runs as the pipeline runs it (``dcjt.data.leakage.screen`` on 64 px image caches).
Last line: the share of planted copies found.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2

from dcjt.config import LeakageConfig
from dcjt.data.cache import build_cache
from dcjt.data.leakage import cache_hashes, screen
from dcjt.data.readers import ingest
from dcjt.synthetic.disk import write_world

KINDS = ("resized", "recompressed", "flipped")


def plant(src: str, dst: str, how: str) -> None:
    img = cv2.imread(src)
    if how == "resized":
        img = cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    elif how == "flipped":
        img = img[:, ::-1]
    cv2.imwrite(dst, img, [cv2.IMWRITE_JPEG_QUALITY, 40 if how == "recompressed" else 95])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-target", type=int, default=2500)
    ap.add_argument("--n-extra", type=int, default=5000)
    ap.add_argument("--per-kind", type=int, default=20)
    ap.add_argument("--size", type=int, default=64, help="image cache size")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_world(out, ["rafdb", "affectnet"], n_target=args.n_target, n_extra=args.n_extra, size=100, seed=0)
        raf, _ = ingest("rafdb", out / "rafdb", val_fraction=0.1, check=False)
        aff, _ = ingest("affectnet", out / "affectnet", val_fraction=0.0, check=False)
        tests = raf[raf["split"] == "test"]["image"].tolist()
        aff_train = aff[aff["split"] == "train"]["image"].tolist()
        raf_train = raf[raf["split"] == "train"]["image"].tolist()
        k, planted = args.per_kind, {}
        for i, how in enumerate(KINDS):
            for j in range(k):
                src, dst = tests[i * k + j], aff_train[i * k + j]
                plant(src, dst, how)
                planted[dst] = (how, src)
        for j in range(k):
            src, dst = tests[3 * k + j], raf_train[j]
            plant(src, dst, "recompressed")
            planted[dst] = ("recompressed (in A)", src)
        t0 = time.perf_counter()
        t_cache, e_cache = build_cache(raf, args.size, out / "cache"), build_cache(aff, args.size, out / "cache")
        decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache_hashes(t_cache), cache_hashes(e_cache)
        hashing = time.perf_counter() - t0
        t0 = time.perf_counter()
        distance = LeakageConfig().max_distance
        _, _, counts, pairs = screen(raf, aff, t_cache, e_cache, distance)
        compare = time.perf_counter() - t0
    removed = pairs[pairs["kind"] == "removed"]
    found = {
        r.train_image for r in removed.itertuples() if r.train_image in planted and planted[r.train_image][1] == r.test_image
    }
    wrong = removed[~removed["train_image"].isin(list(planted))]
    images = len(raf) + len(aff)
    print(f"world: {len(raf)} RAF-DB + {len(aff)} AffectNet images (100 px JPEG), cache {args.size} px, max_distance {distance}")
    dist = dict(zip(removed["train_image"], removed["distance"]))
    for how in (*KINDS, "recompressed (in A)"):
        total = sum(1 for v in planted.values() if v[0] == how)
        mine = [dist[p] for p in found if planted[p][0] == how]
        print(f"  planted {how}: {len(mine)} of {total} found, distance {min(mine, default='-')}-{max(mine, default='-')}")
    print(f"  flagged but not planted (false positives): {len(wrong)} (distances {sorted(wrong['distance'].tolist())})")
    print(f"  removed per dataset: { ({d: v['leaked'] for d, v in counts['removed'].items()}) }")
    print(
        f"decode + resize into the cache: {decode:.1f} s; hashes: {hashing:.1f} s ({images / hashing:,.0f} images/s); "
        f"comparison: {compare:.2f} s; hashing / decoding = {hashing / decode:.2f}"
    )
    print(f"planted_found_share: {len(found) / len(planted):.3f}")


if __name__ == "__main__":
    main()
