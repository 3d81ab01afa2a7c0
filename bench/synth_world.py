"""The synthetic-world benchmark: does DCJT beat target-only and straight combination?

Per seed: generate the world, train M_A (= target only), select B's subset, train M_B, pseudo-label
A, then train every comparison row (straight combination; DCJT with each mapping mode, relabeling
on/off; the oracle that relabels B with the hidden truth). Reports accuracy on A's test split
(validation-selected epoch) as mean and standard deviation over seeds, and how well stage 3
recovers the truth (per-emotion 2-Wasserstein distance before/after mapping; share of
relabeled labels that are right). Last line: DCJT (emotion, relabel) minus target only, in points.

    python bench/synth_world.py                 # 3 seeds: target only, straight, DCJT, oracle (~7 min)
    python bench/synth_world.py --ablations     # + every mapping mode x relabeling on/off (~16 min)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dcjt.data.labels import EMOTIONS, stratified_val_split
from dcjt.labelmaths import criteria_audit, select_subset
from dcjt.method import (
    Variant,
    oracle_extra,
    prepare_extra,
    relabel_truth_report,
    straight_combination,
    train_rows,
    with_pseudo_va,
)
from dcjt.nets import build_model
from dcjt.synthetic.world import WorldConfig, generate_world
from dcjt.train.loop import Samples, TrainConfig, predict, set_seed, train

MAPPINGS = ("none", "global", "emotion", "emotion_ot")


def samples(table: pd.DataFrame, images: np.ndarray, index: np.ndarray) -> Samples:
    return Samples(images, index, table["label"].to_numpy(np.int64), table[["valence", "arousal"]].to_numpy(np.float32))


class World:
    """One seed's world held in memory: tables plus image arrays, rows addressed by image id."""

    def __init__(self, cfg: WorldConfig):
        world = generate_world(cfg)
        self.target, t_imgs = world["target"]
        self.extra, e_imgs = world["extra"]
        self.target = stratified_val_split(self.target, 0.1, cfg.seed)
        self.images = np.concatenate([t_imgs, e_imgs])
        self.pos = pd.Series(np.arange(len(self.images)), index=pd.concat([self.target["image"], self.extra["image"]]).to_numpy())

    def s(self, table: pd.DataFrame) -> Samples:
        return samples(table, self.images, self.pos.loc[table["image"].to_numpy()].to_numpy())


def run_seed(seed: int, args) -> tuple[dict, dict]:
    w = World(WorldConfig(n_target=args.n_target, n_extra=args.n_extra, size=args.size, seed=seed))
    tgt, ext = w.target, train_rows(w.extra)
    a_train, a_val, a_test = (tgt[tgt["split"] == s].reset_index(drop=True) for s in ("train", "val", "test"))
    base = dict(batch_size=64, lr=3e-3, scheduler="cosine", seed=seed, erase_p=0.25)
    cls_cfg = TrainConfig(epochs=args.epochs, **base)
    net = lambda: build_model("tiny", "linear", args.size)  # noqa: E731
    acc: dict[str, float] = {}
    truth: dict = {}

    def fit(name, a, cfg, extra=None):
        set_seed(seed)
        r = train(
            net(), w.s(a), cfg=cfg, extra=None if extra is None else w.s(extra), val=w.s(a_val), test=w.s(a_test), desc=name
        )
        acc[name] = r.metrics["test_accuracy_selected"]
        print(f"  seed {seed} {name:<28} test acc {acc[name]:.4f}", flush=True)
        return r

    m_a = fit("target_only", a_train, cls_cfg)
    marked, sub_stats = select_subset(ext, predict(m_a.model, w.s(ext))[0])
    truth["subset_kept"] = sub_stats["n_kept"]
    sub = marked[marked["in_subset"]].reset_index(drop=True)
    sub = stratified_val_split(sub, 0.1, seed)
    set_seed(seed)
    m_b = train(
        net(),
        w.s(sub[sub["split"] == "train"]),
        cfg=TrainConfig(epochs=args.epochs, lam=1.0, **base),
        val=w.s(sub[sub["split"] == "val"]),
        desc="M_B",
    )
    _, pseudo_va = predict(m_b.model, w.s(tgt))
    tgt_pseudo = with_pseudo_va(tgt, pseudo_va)
    truth["pseudo_rmse_vs_true_va"] = float(
        np.sqrt(np.mean((pseudo_va - tgt[["truth_valence", "truth_arousal"]].to_numpy()) ** 2))
    )
    fit("straight", straight_combination(a_train, ext), cls_cfg)
    joint = TrainConfig(
        epochs=args.epochs + 2,
        lam=args.lam,
        warmup_epochs=args.warmup,
        joint_frequency=args.joint_frequency,
        joint_mode="epoch",
        **base,
    )
    a_joint = train_rows(tgt_pseudo)
    a_joint = a_joint[a_joint["split"] == "train"]
    truth["w2_before"] = criteria_audit(train_rows(tgt_pseudo), marked)["w2"].to_dict()
    for mapping in MAPPINGS if args.ablations else ("emotion",):
        for relabel in (True, False) if args.ablations else (True,):
            v = Variant(mapping=mapping, relabel=relabel)
            prepared, stats = prepare_extra(marked, tgt_pseudo, v)
            if mapping == "emotion" and relabel:
                truth["w2_after"] = pd.DataFrame(stats["audit_after"]).set_index("emotion")["w2"].to_dict()
                truth.update(relabel_truth_report(marked, prepared))
                fit("oracle", a_joint, joint, extra=oracle_extra(prepared))
            fit(v.name, a_joint, joint, extra=prepared)
    return acc, truth


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n-target", type=int, default=2500)
    p.add_argument("--n-extra", type=int, default=5000)
    p.add_argument("--size", type=int, default=32, help="image side; the demo uses 64, the benchmark 32 to fit 2 cores")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--joint-frequency", type=int, default=2)
    p.add_argument("--ablations", action="store_true", help="also DCJT with every mapping mode, relabeling on and off")
    p.add_argument("--json", type=Path, help="also write all numbers here")
    args = p.parse_args()
    t0 = time.perf_counter()
    accs, truths = [], []
    for seed in range(args.seeds):
        a, t = run_seed(seed, args)
        accs.append(a)
        truths.append(t)
    table = pd.DataFrame(accs)
    summary = pd.DataFrame({"mean": table.mean() * 100, "std": table.std(ddof=1).fillna(0) * 100}).round(2)
    print(
        f"\nworld: {args.n_target} target + {args.n_extra} extra images, {args.size}px, {args.seeds} seeds; "
        f"accuracy on the target test split (%), validation-selected epoch"
    )
    print(summary.to_string())
    w2 = pd.DataFrame(
        {
            "w2_before": pd.DataFrame([t["w2_before"] for t in truths]).mean(),
            "w2_after_emotion_map": pd.DataFrame([t.get("w2_after", {}) for t in truths]).mean(),
        }
    ).round(3)
    print("\nper-emotion 2-Wasserstein distance, extra vs target pseudo valence/arousal (mean over seeds)")
    print(w2.reindex(list(EMOTIONS) + ["global"]).to_string())
    keys = [
        "subset_kept",
        "subset_purity",
        "pseudo_rmse_vs_true_va",
        "n_relabeled",
        "relabeled_share_correct",
        "remaining_correct_before",
        "remaining_correct_after",
    ]
    print("\nstage 1-3 against the hidden truth (mean over seeds)")
    for k in keys:
        vals = [t[k] for t in truths if k in t]
        print(f"  {k}: {np.mean(vals):.3f}")
    wall = time.perf_counter() - t0
    print(f"\nwall time: {wall:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"accuracy": accs, "truth": truths, "wall_s": wall}, default=float, indent=1))
    gain = summary.loc["dcjt-emotion-relabel", "mean"] - summary.loc["target_only", "mean"]
    print(f"dcjt_minus_target_only_points: {gain:.2f}")


if __name__ == "__main__":
    main()
