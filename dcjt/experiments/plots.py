"""Figures for the tracking store: valence/arousal per emotion (paper Figs. 2 and 4), confusion."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from dcjt.data.labels import EMOTIONS

# Figures are built with the object API (``Figure``), not pyplot: no GUI backend is chosen,
# nothing global is set at import, and a figure is freed when it goes out of scope.
COLORS = colormaps["tab10"].colors[:7]


def va_scatter(panels: dict[str, pd.DataFrame], centres: np.ndarray | None = None, max_points: int = 4000, seed: int = 0):
    """One panel per table: valence/arousal coloured by discrete label, A's class centres as stars."""
    fig = Figure(figsize=(5 * len(panels), 5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, (title, table) in zip(axes[0], panels.items()):
        t = table.dropna(subset=["valence", "arousal"])
        if len(t) > max_points:
            t = t.iloc[np.sort(rng.choice(len(t), max_points, replace=False))]
        for k, name in enumerate(EMOTIONS):
            sel = t["label"].to_numpy() == k
            ax.scatter(t["valence"].to_numpy()[sel], t["arousal"].to_numpy()[sel], s=4, alpha=0.45, color=COLORS[k], label=name)
        if centres is not None:
            for k in range(len(EMOTIONS)):
                if not np.isnan(centres[k]).any():
                    ax.scatter(*centres[k], marker="*", s=220, color=COLORS[k], edgecolor="black", linewidth=0.8)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="valence", ylabel="arousal", title=title)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
    axes[0][0].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.tight_layout()
    return fig


def _confusion_panel(ax, matrix, title: str, row_label: str, col_label: str) -> None:
    """Counts (integers) or shares (rows summing to 1), shaded by row share."""
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-12)
    shares = np.allclose(m, norm)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            text = f"{m[i, j]:.2f}" if shares else f"{int(m[i, j])}"
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=6 if shares else 7, color=colour)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set(xlabel=col_label, ylabel=row_label, title=title)


def confusion_figure(matrix: np.ndarray, title: str, row_label: str = "true", col_label: str = "predicted"):
    fig = Figure(figsize=(6, 5.2))
    _confusion_panel(fig.subplots(), matrix, title, row_label, col_label)
    fig.tight_layout()
    return fig


def latent_figure(confusions: dict[str, list], truth: dict[str, list]):
    """The latent model's confusion of each annotator (true class x its answer), and beside it,
    on the synthetic world, the confusion the hidden truth shows."""
    names = list(confusions)
    rows = 2 if truth else 1
    fig = Figure(figsize=(5.2 * len(names), 4.8 * rows))
    axes = fig.subplots(rows, len(names), squeeze=False)
    for c, name in enumerate(names):
        _confusion_panel(axes[0][c], confusions[name], f"{name}: estimated (EM)", "latent true class", "answer")
        if truth:
            _confusion_panel(axes[1][c], truth.get(name, np.zeros((7, 7))), f"{name}: against the truth", "true class", "answer")
    fig.tight_layout()
    return fig


def reliability_figure(curves: dict[str, object], threshold: float) -> Figure:
    """Reliability diagram of a relabel rule's confidence: per bin the accuracy against the mean
    confidence (``dcjt.method.reports.Reliability``, one curve per set of rows, its ECE in the
    legend), the diagonal of a calibrated confidence and the rule's threshold."""
    fig = Figure(figsize=(5.6, 5.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="calibrated")
    for name, rel in curves.items():
        if rel is None or not rel.bins:
            continue
        conf, acc, n = np.asarray(rel.bins, dtype=float).T
        ax.plot(conf, acc, marker="o", label=f"{name} (ECE {rel.ece:.3f}, {rel.rows} rows)")
        ax.scatter(conf, acc, s=10 + 60 * n / n.max(), alpha=0.3)
    if np.isfinite(threshold) and threshold <= 1:
        ax.axvline(threshold, color="0.3", linewidth=0.8, label=f"threshold {threshold:.2f}")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="confidence (largest class probability)", ylabel="accuracy")
    ax.set_title("relabel confidence: reliability")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def study_figure(summary: pd.DataFrame, reference: str):
    """Bar chart of each row's mean accuracy, with the 95 % interval of its difference to the reference."""
    fig = Figure(figsize=(8, 0.45 * len(summary) + 1.5))
    ax = fig.subplots()
    y = np.arange(len(summary))
    ref = (
        float(summary.loc[summary["row"] == reference, "accuracy_mean"].iloc[0])
        if (summary["row"] == reference).any()
        else np.nan
    )
    ax.barh(y, summary["accuracy_mean"], color=["grey" if r == reference else "tab:blue" for r in summary["row"]])
    if "diff" in summary:
        has = summary["diff"].notna().to_numpy()
        lo = (summary["diff"] - summary["diff_lo"]).to_numpy()[has]
        hi = (summary["diff_hi"] - summary["diff"]).to_numpy()[has]
        ax.errorbar(ref + summary["diff"].to_numpy()[has], y[has], xerr=[lo, hi], fmt="o", color="black", capsize=3)
    ax.set_yticks(y, summary["row"])
    ax.invert_yaxis()
    ax.set(xlabel=f"test accuracy % (dots: reference + paired difference, 95 % CI); reference: {reference}")
    fig.tight_layout()
    return fig


def regret_figure(by_world: pd.DataFrame) -> Figure:
    """Mean test regret (points) per row (lines) and world (columns), as a heat map with values."""
    values = by_world.to_numpy(float)
    fig = Figure(figsize=(1.1 * values.shape[1] + 4, 0.45 * values.shape[0] + 1.8))
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Reds", vmin=0, vmax=max(1.0, float(np.nanmax(values))), aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(
                j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if v > 0.6 * np.nanmax(values) else "black"
            )
    ax.set_xticks(range(values.shape[1]), list(by_world.columns), rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(values.shape[0]), list(by_world.index), fontsize=8)
    ax.set_title("test regret (points below the best row of each world and seed; mean over seeds)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def world_confusion_figure(confusions: dict[str, np.ndarray]) -> Figure:
    """One panel per world: B's published label (columns) against the true emotion (lines), each
    line a share of that true class."""
    n = len(confusions)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 4.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    short = [e[:4] for e in EMOTIONS]
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, m) in zip(axes.flat, confusions.items()):
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(share):
            if v >= 0.05:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6.5, color="white" if v > 0.6 else "black")
        agree = np.trace(m) / max(m.sum(), 1)
        ax.set_title(f"{name} (B agrees with the truth: {agree:.2f})", fontsize=9)
        ax.set_xticks(range(len(EMOTIONS)), short, fontsize=7)
        ax.set_yticks(range(len(EMOTIONS)), short, fontsize=7)
        ax.set_xlabel("B's label", fontsize=8)
        ax.set_ylabel("true emotion", fontsize=8)
    fig.tight_layout()
    return fig
