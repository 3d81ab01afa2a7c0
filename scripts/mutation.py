"""Curated mutation check: each mutant is a deliberate, meaningful bug in the core; the suite must
fail on every one of them.

A copy of the checkout (tracked files) gets one mutant at a time and runs only the tests that
cover that code, so the whole check takes minutes rather than hours. Before any mutant, the
selected tests must pass on the unmutated copy (else a "kill" would mean nothing). A mutant whose
original text is no longer found is reported as stale, and counts as a failure of this check, so
the list follows the code.

    python scripts/mutation.py            # every mutant; prints one line each, then killed: K/N
    python scripts/mutation.py --only gx  # mutants whose name contains "gx"

Exit status 0 only when every mutant is killed and none is stale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


T = "tests/"
CODINGS = (T + "unit/test_release_codings.py",)
MATHS = (T + "unit/test_labelmaths.py",)
SCHEDULE = (T + "unit/test_models_training.py", "-k", "joint_schedule")
LOSS = (T + "unit/test_models_training.py", "-k", "loss")
GX = (T + "unit/test_table_and_cache.py", "-k", "expectation")
CACHE = (T + "unit/test_table_and_cache.py", "-k", "builds_once or crop_and_align")
GATE = (T + "integration/test_registry.py",)
TRUST = (T + "unit/test_trust.py",)
E2E = (T + "integration/test_pipeline_e2e.py", "-k", "relabeled")
SERVED_VA = (T + "integration/test_registry.py", "-k", "hidden_truth")
RELABEL = (T + "unit/test_relabel_posterior.py",)

MUTANTS = [
    # readers: label maps and paths
    Mutant(
        "affectnet codes swapped",
        "dcjt/data/readers.py",
        '"sadness", "surprise", "fear"',
        '"surprise", "sadness", "fear"',
        CODINGS,
    ),
    Mutant("caer-s folders swapped", "dcjt/data/readers.py", '"Happy": "happiness"', '"Happy": "sadness"', CODINGS),
    Mutant(
        "ferplus votes swapped",
        "dcjt/data/readers.py",
        '("neutral", "happiness", "surprise"',
        '("neutral", "surprise", "happiness"',
        CODINGS,
    ),
    Mutant(
        "rafdb labels not shifted",
        "dcjt/data/readers.py",
        "labels.append(label - 1)",
        "labels.append(label % 7)",
        (T + "unit/test_readers.py",),
    ),
    Mutant(
        "val carved from test too",
        "dcjt/data/labels.py",
        'train_idx = out.index[out["split"] == "train"]',
        'train_idx = out.index[out["split"] != "val"]',
        (T + "unit/test_readers.py", "-k", "carve"),
    ),
    Mutant(
        "paths may leave the root",
        "dcjt/data/readers.py",
        'if rel.is_absolute() or ".." in rel.parts or not full.resolve()',
        "if False and not full.resolve()",
        TRUST,
    ),
    # label maths (stages 1-3)
    Mutant(
        "subset keeps disagreements",
        "dcjt/method/subset.py",
        "keep = pred.astype(int) == labels",
        "keep = pred.astype(int) != labels",
        MATHS,
    ),
    Mutant(
        "cholesky map inverted", "dcjt/method/gaussian.py", "return p @ np.linalg.inv(q)", "return q @ np.linalg.inv(p)", MATHS
    ),
    Mutant(
        "b_stats_from ignored",
        "dcjt/method/mapping.py",
        'remaining_rows(extra) if b_stats_from == "remaining" else True',
        "True",
        MATHS,
    ),
    Mutant("mapped V/A not clipped", "dcjt/method/mapping.py", "mapped = np.clip(mapped, -1.0, 1.0)", "mapped = mapped", MATHS),
    Mutant("relabel to farthest centre", "dcjt/method/relabel.py", "centres).argmin(axis=1)", "centres).argmax(axis=1)", MATHS),
    # training schedule and loss
    Mutant(
        "warm-up one epoch longer",
        "dcjt/train/batches.py",
        "return epoch >= cfg.warmup_epochs and",
        "return epoch > cfg.warmup_epochs and",
        SCHEDULE,
    ),
    Mutant("batch mode reuses B rows", "dcjt/train/batches.py", "start = (i * bs) % n_b", "start = 0", SCHEDULE),
    Mutant(
        "B pass not class-balanced",
        "dcjt/train/batches.py",
        "b_order = balanced_order(extra_labels, rng) if cfg.balanced_extra else rng.permutation(n_b)",
        "b_order = rng.permutation(n_b)",
        SCHEDULE,
    ),
    Mutant(
        "lambda ignored",
        "dcjt/train/loop.py",
        "return (ce + lam * mse) * world, ce.detach(), mse.detach()",
        "return ce * world, ce.detach(), mse.detach()",
        LOSS,
    ),
    Mutant(
        "NaN V/A not masked",
        "dcjt/train/loop.py",
        "known = ~torch.isnan(va).any(dim=1)",
        "known = torch.ones(len(va), dtype=torch.bool, device=va.device)",
        LOSS,
    ),
    Mutant(
        "no optimiser step under DDP",
        "dcjt/train/loop.py",
        "        opt.step()\n",
        "        if world == 1:\n            opt.step()\n",
        (T + "integration/test_distributed.py",),
    ),
    # tables, GX, cache
    Mutant(
        "gx valence range dropped",
        "dcjt/data/validation.py",
        '    add(gxe.ExpectColumnValuesToBeBetween(column="valence", min_value=-1.0, max_value=1.0))\n',
        "",
        GX,
    ),
    Mutant(
        "gx arousal range widened",
        "dcjt/data/validation.py",
        'column="arousal", min_value=-1.0',
        'column="arousal", min_value=-1.5',
        GX,
    ),
    Mutant(
        "gx overlap check dropped",
        "dcjt/data/validation.py",
        '    add(gxe.ExpectColumnValuesToBeInSet(column="train_test_overlap", value_set=[False]))\n',
        "",
        GX,
    ),
    Mutant(
        "cache key ignores boxes",
        "dcjt/data/cache.py",
        'cols = ["dataset", "image"] + [c for c in BOX_COLUMNS if c in table]',
        'cols = ["dataset", "image"]',
        CACHE,
    ),
    Mutant(
        "cache key ignores landmarks",
        "dcjt/data/cache.py",
        "    for lo in slices if LANDMARK_COLUMN in table else ():",
        "    for lo in ():",
        CACHE,
    ),
    Mutant(
        "alignment ignores landmarks",
        "dcjt/models/images.py",
        "    if landmarks is not None and len(landmarks):",
        "    if False:",
        CACHE,
    ),
    # budgets and health gates
    Mutant(
        "patience counted from epoch 0",
        "dcjt/train/stopping.py",
        "    anchor = first_joint_epoch(warmup_epochs, joint_frequency)\n    if epoch + 1 < min_epochs",
        "    anchor = 0\n    if epoch + 1 < min_epochs",
        (T + "unit/test_budgets.py", "-k", "paper or shape"),
    ),
    Mutant(
        "majority-class row passes",
        "dcjt/method/health.py",
        "            val.majority_rate,\n",
        "            0.0,\n",
        (T + "unit/test_gates.py", "-k", "majority"),
    ),
    Mutant(
        "champion's training rows ignored",
        "dcjt/registry/record.py",
        "    shared = np.intersect1d(own_keys, eval_keys)\n",
        "    shared = np.intersect1d(own_keys, eval_keys)[:0]\n",
        (T + "integration/test_registry.py", "-k", "trained_on_the"),
    ),
    # registry and promotion
    Mutant("a tie promotes", "dcjt/registry/gate.py", "wins = diff > min_margin", "wins = diff >= min_margin", GATE),
    Mutant("bootstrap ignored", "dcjt/registry/gate.py", "wins = wins and lo > 0", "wins = wins", GATE),
    Mutant(
        "unusable champion replaced",
        "dcjt/registry/gate.py",
        "        verdict, why = problem\n        if force:",
        "        verdict, why = problem\n        if True:",
        GATE,
    ),
    Mutant(
        "no rollback after failure",
        "dcjt/registry/lifecycle.py",
        "        client.delete_model_version(model_name, version.version)\n",
        "",
        GATE,
    ),
    # serving and trust
    Mutant(
        "served V/A swapped",
        "dcjt/serving/inputs.py",
        'va[:, 0].astype("float64"), va[:, 1].astype("float64")',
        'va[:, 1].astype("float64"), va[:, 0].astype("float64")',
        SERVED_VA,
    ),
    Mutant(
        "relabel output discarded", "steps/stages.py", "    return relabeled, report\n", "    return extra_mapped, report\n", E2E
    ),
    Mutant(
        "DCN never trains on B",
        "steps/training.py",
        '        "extra": b_rows,\n',
        '        "extra": None,\n',
        E2E,
    ),
    Mutant(
        "served paths unrestricted",
        "dcjt/serving/inputs.py",
        "    if not roots:\n        return f",
        "    if False:\n        return f",
        (T + "integration/test_registry.py", "-k", "description"),
    ),
    Mutant(
        "tiny images classified",
        "dcjt/serving/inputs.py",
        "    if min(h, w) < min_side:",
        "    if False:",
        (T + "unit/test_bad_input.py", "-k", "tiny"),
    ),
    Mutant(
        "checkpoint fingerprint unchecked",
        "dcjt/train/checkpoint.py",
        'record.get("fingerprint") != json.loads(json.dumps(expected_fingerprint))',
        "False",
        TRUST,
    ),
    Mutant(
        "checkpoint unpickled freely",
        "dcjt/train/checkpoint.py",
        "map_location=device, weights_only=True)",
        "map_location=device, weights_only=False)",
        TRUST,
    ),
    Mutant(
        "serving requirement missing",
        "dcjt/registry/packaging.py",
        ', "opencv-python-headless")',
        ")",
        (T + "integration/test_serving_package.py",),
    ),
    # stage 3b beyond the paper: posterior, latent, soft targets, the baseline guard
    Mutant(
        "posterior drops the class priors",
        "dcjt/method/posterior.py",
        "out[:, k] = g.log_priors[k] - 0.5",
        "out[:, k] = -0.5",
        RELABEL,
    ),
    Mutant(
        "posterior ignores the threshold it chose",
        "dcjt/method/relabel.py",
        "sure = posterior.max(axis=1) >= threshold if len(idx)",
        "sure = posterior.max(axis=1) >= 0 if len(idx)",
        RELABEL,
    ),
    Mutant(
        "EM forgets its anchors",
        "dcjt/method/latent.py",
        "t[known, anchors[known]] = 1.0",
        "t[known] = 1.0 / NUM_CLASSES",
        RELABEL,
    ),
    Mutant(
        "soft targets replaced by the labels",
        "dcjt/train/batches.py",
        "targets[has] = soft[has]",
        "targets[has] = targets[has]",
        RELABEL,
    ),
    Mutant(
        "a DCN below its baseline is promoted",
        "dcjt/registry/gate.py",
        "if loser is not None and decision.promoted and not settings.force:",
        "if False:",
        RELABEL,
    ),
]


def copy_checkout(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def pytest(copy: Path, args: tuple[str, ...], timeout: int = 900) -> tuple[bool, float]:
    """(tests passed, seconds). The copy's own code is imported (PYTHONPATH), not the checkout's."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DCJT_HOME", None)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        passed = proc.returncode == 0
    except subprocess.TimeoutExpired:
        passed = False  # a mutant that hangs the tests is caught too
    return passed, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutants whose name contains this text")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.only or args.only in m.name]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcjt-mutation-") as tmp:
        copy = Path(tmp)
        copy_checkout(copy)
        check = subprocess.run(
            [sys.executable, "-c", "import dcjt; print(dcjt.__file__)"],
            cwd=copy,
            env={**os.environ, "PYTHONPATH": str(copy)},
            capture_output=True,
            text=True,
        )
        if not check.stdout.strip().startswith(str(copy)):
            print(f"error: the copy imports dcjt from {check.stdout.strip()}, not from {copy}", file=sys.stderr)
            return 2
        baseline = sorted({m.tests for m in mutants})
        for tests in baseline:
            ok, seconds = pytest(copy, tests)
            if not ok:
                print(f"error: tests fail without any mutant: {' '.join(tests)}", file=sys.stderr)
                return 2
        killed, stale = 0, 0
        for m in mutants:
            target = copy / m.path
            original = target.read_text()
            if original.count(m.old) != 1:
                stale += 1
                print(f"STALE    {m.name}: text not found once in {m.path}")
                continue
            target.write_text(original.replace(m.old, m.new))
            try:
                survived, seconds = pytest(copy, m.tests)
            finally:
                target.write_text(original)
            killed += not survived
            print(f"{'survived' if survived else 'killed  '} {m.name} ({m.path}, {seconds:.0f} s)", flush=True)
    print(f"mutation check: {time.perf_counter() - t0:.0f} s for {len(mutants)} mutants")
    print(f"killed: {killed}/{len(mutants)}")
    return 0 if killed == len(mutants) and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
