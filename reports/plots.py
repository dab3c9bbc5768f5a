"""Report figures. Each function returns a matplotlib Figure bound to the Agg canvas and touches no global state
(no pyplot, no seaborn theme), so reports can be built in any process, also one with an interactive backend."""

from __future__ import annotations

import io
import math
from typing import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from reports.stats import Comparison, cliques
from reports.tables import fmt_ratio

DPI = 100
# Bootstrap resamples for the confidence bands: few seeds per point, so more resamples buy nothing; fixed seed
# keeps the band the same from one report to the next.
N_BOOT = 200
BOOT_SEED = 0
DASHES = ["", (4, 1.5), (1, 1), (3, 1.25, 1.5, 1.25), (5, 1, 1, 1)]  # line styles of the observation ratios


def short(name: str, width: int = 40) -> str:
    """A name cut to fit a panel title or a legend entry (the tables carry the full names)."""
    name = str(name)
    return name if len(name) <= width else name[:width - 1] + "…"


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def method_palette(methods) -> dict[str, tuple]:
    """One colour per method, the same in every figure of a report."""
    methods = sorted(set(methods))
    colours = sns.color_palette("tab10" if len(methods) <= 10 else "husl", max(len(methods), 1))
    return dict(zip(methods, colours))


def _facets(n: int, width: float = 4.2, height: float = 3.2, max_cols: int = 3):
    cols = max(1, min(max_cols, n))
    rows = math.ceil(n / cols)
    fig = new_figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def metric_vs_ratio(scores: pd.DataFrame, metric: str, higher_is_better: bool,
                    palette: Mapping[str, tuple]) -> Figure | None:
    """The metric against the observation ratio, one panel per benchmark, one line per method: the mean over seeds
    with its 95% bootstrap confidence band. ``scores``: :func:`reports.tables.run_scores` rows."""
    data = scores[(scores["metric"] == metric) & (scores["status"] == "done")]
    if data.empty:
        return None
    benchmarks = sorted(set(data["benchmark"]))
    fig, axes = _facets(len(benchmarks))
    arrow = "↑" if higher_is_better else "↓"
    for i, (ax, bench) in enumerate(zip(axes, benchmarks)):
        sub = data[data["benchmark"] == bench]
        sns.lineplot(data=sub, x="obs_ratio", y="value", hue="method", hue_order=sorted(set(sub["method"])),
                     palette=palette, errorbar=("ci", 95), n_boot=N_BOOT, seed=BOOT_SEED, marker="o", ax=ax,
                     legend=False)
        ax.set_title(short(bench))
        ax.set_xlabel("observation ratio")
        ax.set_ylabel(f"{metric} {arrow}")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=palette[m], marker="o", label=short(m)) for m in sorted(set(data["method"]))]
    _legend(fig, "method", handles)
    return fig


def _legend(fig: Figure, title: str, handles: list) -> None:
    # one legend for the figure: a panel's own legend would list only the methods that ran on its benchmark
    fig.legend(handles=handles, title=title, loc="outside right upper", fontsize="small")


def _dash(i: int):
    return DASHES[i % len(DASHES)]


def training_curves(records: pd.DataFrame, palette: Mapping[str, tuple]) -> Figure | None:
    """Per-epoch validation loss, one panel per benchmark, colour by method, line style by observation ratio, band =
    one standard deviation over seeds."""
    data = records[(records["metric"] == "loss") & (records["split"] == "val") & (records["status"] == "done")]
    if data.empty:
        return None
    data = data.assign(ratio=[f"r={fmt_ratio(r)}" for r in data["obs_ratio"]])
    benchmarks = sorted(set(data["benchmark"]))
    ratios = sorted(set(data["ratio"]), key=lambda r: float(r[2:]))
    dashes = {r: _dash(i) for i, r in enumerate(ratios)}
    fig, axes = _facets(len(benchmarks))
    for ax, bench in zip(axes, benchmarks):
        sub = data[data["benchmark"] == bench]
        sns.lineplot(data=sub, x="epoch", y="value", hue="method", hue_order=sorted(set(sub["method"])),
                     style="ratio", dashes=dashes, palette=palette, errorbar="sd", ax=ax, legend=False)
        ax.set_title(short(bench))
        ax.set_ylabel("validation loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=palette[m], label=short(m)) for m in sorted(set(data["method"]))]
    handles += [Line2D([], [], color="0.3", label=r, linestyle=(0, dashes[r]) if dashes[r] else "-") for r in ratios]
    _legend(fig, "method, ratio", handles)
    return fig


def rank_heatmap(ranks: pd.DataFrame) -> Figure | None:
    """Average rank over benchmarks, method x (metric, observation ratio); 1 is best."""
    if ranks.empty:
        return None
    label = max(len(str(m)) for m in ranks.index)  # long method names need room or the axes collapse
    fig = new_figure(2.0 + 1.1 * ranks.shape[1] + 0.08 * label, 1.4 + 0.45 * ranks.shape[0])
    ax = fig.subplots()
    sns.heatmap(ranks, annot=True, fmt=".2f", cmap="viridis_r", cbar_kws={"label": "average rank (1 = best)"},
                linewidths=0.5, ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("method")
    ax.tick_params(axis="x", labelrotation=0)
    ax.tick_params(axis="y", labelrotation=0)
    return fig


def draw_cd(ax, ranks: pd.Series, cd: float, title: str = "") -> None:
    """A critical-difference diagram: the rank axis (1 = best, on the left), each method hung from its average rank,
    and a thick bar over every group of methods that the Nemenyi test does not tell apart."""
    k = len(ranks)
    names, r = list(ranks.index), ranks.to_numpy(float)
    bars = cliques(ranks, cd)
    half = (k + 1) // 2
    step, bar_gap = 0.3, 0.12
    top = bar_gap * (len(bars) + 1)  # the label lines start below the bars
    depth = top + step * (max(half, k - half) + 0.5)
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(depth, -1.0)  # y grows downwards
    ax.axis("off")
    ax.plot([1, k], [0, 0], color="black", lw=1)
    for t in range(1, k + 1):
        ax.plot([t, t], [0, -0.1], color="black", lw=1)
        ax.text(t, -0.15, str(t), ha="center", va="bottom", fontsize=9)
    ax.plot([1, 1 + cd], [-0.7, -0.7], color="black", lw=1.5)
    for x in (1, 1 + cd):
        ax.plot([x, x], [-0.63, -0.77], color="black", lw=1.5)
    ax.text(1 + cd / 2, -0.8, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    for i, (name, x) in enumerate(zip(names, r)):
        left = i < half
        y = top + step * ((i if left else k - 1 - i) + 1)
        edge = 0.6 if left else k + 0.4
        ax.plot([x, x, edge], [0, y, y], color="0.3", lw=1)
        ax.text(edge + (-0.05 if left else 0.05), y, f"{name} ({x:.2f})", ha="right" if left else "left",
                va="center", fontsize=9)
    for j, group in enumerate(bars):
        lo, hi = ranks[group[0]], ranks[group[-1]]
        y = bar_gap * (j + 1)
        ax.plot([lo - 0.03, hi + 0.03], [y, y], color="black", lw=4, solid_capstyle="butt")
    if title:
        ax.set_title(title, fontsize=10)


def cd_figure(comparisons: list[Comparison]) -> Figure | None:
    """Critical-difference diagrams of one metric, one panel per observation ratio with a Friedman test."""
    drawable = [c for c in comparisons if c.cd is not None and len(c.ranks) >= 2]
    if not drawable:
        return None
    heights = [1.2 + 0.35 * ((len(c.ranks) + 1) // 2 + 2) for c in drawable]
    fig = new_figure(8.0, sum(heights))
    axes = fig.subplots(len(drawable), 1, squeeze=False, height_ratios=heights).ravel()
    for ax, c in zip(axes, drawable):
        chi2, p = c.friedman
        draw_cd(ax, c.ranks, c.cd, f"{c.metric}, observation ratio {fmt_ratio(c.obs_ratio)}: Friedman p = {p:.3g}, "
                                   f"N = {c.n} benchmarks")
    return fig


def _as_image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)  # channels first, as torch stores them
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype.kind == "f" and img.ndim == 3:
        img = np.clip(img, 0.0, 1.0)  # imshow wants RGB floats in [0, 1]
    return img


def sample_grid(images: Mapping[str, np.ndarray], max_cols: int = 8, title: str = "") -> Figure:
    """Generated samples, one row per method: ``images[method]`` is an array of images, (n, H, W), (n, H, W, C) or
    (n, C, H, W). The hook for generative methods; at most ``max_cols`` samples per row."""
    if not images:
        raise ValueError("sample_grid needs at least one method's images")
    methods = sorted(images)
    stacks = {m: np.asarray(images[m]) for m in methods}
    stacks = {m: (a[None] if a.ndim == 2 else a) for m, a in stacks.items()}
    cols = max(1, min(max_cols, max(len(a) for a in stacks.values())))
    fig = new_figure(1.1 * cols + 1.5, 1.1 * len(methods) + (0.4 if title else 0.1))
    axes = fig.subplots(len(methods), cols, squeeze=False)
    for i, m in enumerate(methods):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(stacks[m]):
                img = _as_image(stacks[m][j])
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        axes[i][0].set_ylabel(m, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------- the DCMEM poster's analyses (figure data)


def profile_frame(records: pd.DataFrame, metric: str, benchmark: str) -> tuple[pd.DataFrame, float] | None:
    """The test rows of one figure-data metric on one benchmark, at its largest observation ratio, averaged over
    seeds per (method, target); with that ratio. Averaging quantiles over seeds gives the quantiles of the
    seed-averaged distribution (Vincentisation), which is what the histogram shows."""
    data = records[(records["metric"] == metric) & (records["benchmark"] == benchmark)
                   & (records["split"] == "test") & (records["status"] == "done")]
    if data.empty:
        return None
    ratio = float(data["obs_ratio"].max())
    data = data[data["obs_ratio"] == ratio]
    return data.groupby(["method", "target"], as_index=False)["value"].mean(), ratio


def class_distance_heatmaps(profile: pd.DataFrame, title: str) -> Figure | None:
    """One class x class heatmap of the cross-modal distance per method (rows: class seen through one modality,
    columns: through another); a dark diagonal means same-class cross-modal pairs are the closest."""
    methods = sorted(set(profile["method"]))
    if not methods:
        return None
    mats = {}
    for m in methods:
        sub = profile[profile["method"] == m]
        ij = np.array([[int(v) for v in t.split(",")] for t in sub["target"]])
        D = np.full((ij.max() + 1, ij.max() + 1), np.nan)
        D[ij[:, 0], ij[:, 1]] = sub["value"].to_numpy()
        mats[m] = D
    vmax = np.nanmax([np.nanmax(D) for D in mats.values()])
    fig, axes = _facets(len(methods), width=3.4, height=3.0, max_cols=4)
    for ax, m in zip(axes, methods):
        im = ax.imshow(mats[m], cmap="viridis", vmin=0.0, vmax=vmax)
        ax.set_title(short(m))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("class (modality b)")
        ax.set_ylabel("class (modality a)")
    fig.colorbar(im, ax=list(axes), label="mean L2 distance (unit sphere)", shrink=0.8)
    fig.suptitle(title)
    return fig


def equal_mass_bins(quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(densities, edges) of the histogram whose bins are the intervals between consecutive quantiles, each holding
    mass 1/n. A zero-width interval (ties) cannot carry a density: its mass joins the next interval of positive
    width (the previous one at the end), so the densities still integrate to 1."""
    q = np.maximum.accumulate(np.asarray(quantiles, dtype=float))
    n = len(q) - 1
    wide = np.flatnonzero(np.diff(q) > 1e-12 * max(1.0, abs(q[-1])))
    if len(wide) == 0:
        return np.zeros(0), q[:1]
    # interval k's mass goes to the first wide interval at or after k (or the last wide one)
    target = np.minimum(np.searchsorted(wide, np.arange(n)), len(wide) - 1)
    mass = np.bincount(target, minlength=len(wide)) / n
    edges = np.concatenate([q[wide], [q[wide[-1] + 1]]])
    # the intervals between wide ones have zero width, so consecutive wide intervals share their edges
    return mass / np.diff(edges), edges


def _equal_mass_histogram(ax, quantiles: np.ndarray, **style) -> None:
    dens, edges = equal_mass_bins(quantiles)
    if len(dens):
        ax.stairs(dens, edges, **style)


def w2_histograms(profile: pd.DataFrame, title: str) -> Figure | None:
    """Per method, the distribution of the paired (same instance, two modalities) and unpaired (two different
    instances) distances: well-separated curves mean that pairs sit closer than strangers."""
    methods = sorted(set(profile["method"]))
    if not methods:
        return None
    fig, axes = _facets(len(methods), width=3.4, height=2.8, max_cols=4)
    styles = {"paired": {"color": "tab:blue", "fill": True, "alpha": 0.45},
              "unpaired": {"color": "tab:orange", "fill": False, "linewidth": 1.5}}
    for ax, m in zip(axes, methods):
        sub = profile[profile["method"] == m]
        for kind, style in styles.items():
            rows = sub[sub["target"].str.startswith(f"{kind}:q")]
            rows = rows.iloc[np.argsort([int(t.rsplit(":q", 1)[1]) for t in rows["target"]])]  # q100 after q95
            if len(rows) >= 2:
                _equal_mass_histogram(ax, rows["value"].to_numpy(), label=kind, **style)
        ax.set_title(short(m))
        ax.set_xlabel("W2 (point mass) distance")
        ax.set_ylabel("density")
    handles = [Line2D([], [], color=s["color"], linewidth=4 if s["fill"] else 1.5, label=k) for k, s in styles.items()]
    _legend(fig, "samples", handles)
    fig.suptitle(title)
    return fig
