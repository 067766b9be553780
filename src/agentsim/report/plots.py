"""Drawing: prepared numbers in, PNG bytes out. No run files and no summary keys here (see :mod:`agentsim.report`).

matplotlib is an optional dependency (``pip install 'agentsim[report]'``) and is imported inside the functions
only, so ``import agentsim`` never pays for it. Figures are drawn on a :class:`matplotlib.figure.Figure` with
the Agg canvas directly, without ``pyplot``: no global backend is switched and no window can open, which keeps
the functions safe to call from a notebook or a server.

Every figure has the same size, :data:`FIG_SIZE_IN` inches at :data:`DPI` dots per inch, and is saved without
``bbox_inches="tight"``, so every PNG is exactly :data:`PNG_SIZE_PX` pixels. PNG metadata carries no software
version or date, so the same data gives the same bytes on the same matplotlib version.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIG_SIZE_IN: tuple[float, float] = (8.0, 4.5)
DPI = 120
PNG_SIZE_PX: tuple[int, int] = (round(FIG_SIZE_IN[0] * DPI), round(FIG_SIZE_IN[1] * DPI))

# matplotlib's tab10, spelled out so that choosing a colour does not import matplotlib.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

# Quantile ticks of the CDF's logit axis: the tail is spread out, 0.99 and 0.999 are as far apart as 0.5 and 0.9.
_CDF_TICKS = (0.01, 0.1, 0.5, 0.9, 0.99, 0.999)
_CDF_LIMITS = (0.005, 0.9995)


def color(i: int) -> str:
    """The ``i``-th colour of the palette (cycling)."""
    return PALETTE[i % len(PALETTE)]


@dataclass(frozen=True)
class CdfSeries:
    """One empirical CDF. ``values`` are the finished values; ``censored`` counts items that had not finished by
    the end of the run: they are in the denominator, beyond the right edge, so the curve tops out at the
    finished fraction (a lower bound of the true CDF, which is how SLO attainment counts them)."""

    label: str
    values: np.ndarray
    censored: int = 0
    color: str = PALETTE[0]
    style: str = "-"


@dataclass(frozen=True)
class Threshold:
    """An SLO on a CDF: a per-item limit (``quantile=None``: the curve's height at ``x`` is the attainment) or a
    percentile target (the curve must reach ``quantile`` at or left of ``x``)."""

    label: str
    x: float
    quantile: float | None
    color: str = "#000000"


@dataclass(frozen=True)
class Line:
    """A time series. With ``step=True`` each ``y[i]`` is a rate over the interval ending at ``t[i]``;
    ``lo``/``hi`` give an optional band (e.g. the range over a pool's replicas)."""

    label: str
    t: np.ndarray
    y: np.ndarray
    color: str = PALETTE[0]
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    step: bool = False
    style: str = "-"


@dataclass(frozen=True)
class Panel:
    """One axes of a time-series figure."""

    ylabel: str
    lines: Sequence[Line]
    percent: bool = False
    ymin: float | None = 0.0
    ymax: float | None = None


@dataclass(frozen=True)
class BarPanel:
    """One axes of grouped (or stacked) bars: for each of ``series`` (label, colour, one value per category) a
    bar per category; ``None`` draws nothing and is marked n/a. ``fmt`` writes the value labels."""

    title: str
    ylabel: str
    categories: Sequence[str]
    series: Sequence[tuple[str, str, Sequence[float | None]]]
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:.3g}")
    log: bool = False
    stacked: bool = False


def _new_figure(nrows: int = 1, ncols: int = 1, sharex: bool = False) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIG_SIZE_IN, dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def to_png(fig: Figure) -> bytes:
    """Render ``fig`` on the Agg canvas at :data:`DPI`; always :data:`PNG_SIZE_PX` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#666666", fontsize=11)


def si(x: float, unit: str = "", digits: int = 3) -> str:
    """``12_300_000`` -> ``"12.3M"``: ``digits`` significant digits with a k/M/G/T suffix."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}{unit}"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.{digits}g}{suffix}{unit}"
    return f"{x:.{digits}g}{unit}"


def percent(x: float) -> str:
    """A share as a percentage with two significant digits: ``0.0026`` -> ``"0.26 %"``, ``0.87`` -> ``"87 %"``."""
    return f"{x * 100:.2g} %" if x < 0.995 else f"{x * 100:.3g} %"


def tick_seconds(x: float) -> str:
    """A log-axis tick label: ``0.05`` -> ``"50 ms"``, ``2000`` -> ``"2000 s"`` (round numbers stay round)."""
    if x < 1:
        return f"{x * 1000:.4g} ms"
    return f"{x:.6g} s"


def seconds(x: float) -> str:
    """A duration label: ``0.05`` -> ``"50 ms"``, ``12`` -> ``"12 s"``, ``5400`` -> ``"90 min"``."""
    if x < 1:
        return f"{x * 1000:.3g} ms"
    if x < 600:
        return f"{x:.3g} s"
    if x < 3 * 3600:
        return f"{x / 60:.3g} min"
    return f"{x / 3600:.3g} h"


def cdf_png(
    title: str,
    xlabel: str,
    series: Sequence[CdfSeries],
    thresholds: Sequence[Threshold] = (),
    *,
    empty: str = "no finished values in the measurement window",
) -> bytes:
    """Empirical CDFs on a log x axis and a logit y axis (quantiles 1 %..99.9 % evenly spread, so tails show),
    with SLO thresholds. Non-positive values cannot sit on a log axis and are counted below the left edge."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    fig, (ax,) = _new_figure()
    drawn = False
    for s in series:
        v = np.sort(np.asarray(s.values, dtype=float))
        v = v[np.isfinite(v)]
        total = v.size + s.censored
        if total == 0:
            continue
        y = np.arange(1, v.size + 1) / total
        pos = v > 0
        if not pos.any():
            continue
        done = v.size / total
        label = f"{s.label} (n={v.size:,}"
        label += f", {s.censored:,} unfinished = {percent(1 - done)})" if s.censored else ")"
        ax.step(v[pos], y[pos], where="post", color=s.color, linestyle=s.style, linewidth=1.6, label=label)
        drawn = True
    if not drawn:
        unfinished = sum(s.censored for s in series)
        _no_data(ax, empty + (f"\n({unfinished:,} unfinished at the horizon)" if unfinished else ""))
        ax.set_xscale("log")
        xs = [th.x for th in thresholds]
        ax.set_xlim(min(xs) / 30, max(xs) * 3) if xs else ax.set_xlim(1e-3, 1e3)
    for th in thresholds:
        ax.axvline(th.x, color=th.color, linestyle="--", linewidth=1.1, label=th.label)
        if th.quantile is not None:
            ax.axhline(th.quantile, color=th.color, linestyle=":", linewidth=0.9)
            ax.plot([th.x], [th.quantile], marker="o", color=th.color, markersize=5)
    ax.set_xscale("log")
    ax.set_yscale("logit", nonpositive="clip")
    ax.set_ylim(*_CDF_LIMITS)
    ax.yaxis.set_major_locator(FixedLocator(list(_CDF_TICKS)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda q, _pos: f"{q * 100:g} %"))
    ax.yaxis.set_minor_locator(NullLocator())
    lo, hi = ax.get_xlim()
    # More labels on a narrow axis (1-2-5, then 1-3), powers of ten only when labels would collide.
    decades = math.log10(hi / lo)
    subs = (1.0, 2.0, 5.0) if decades <= 2.2 else (1.0, 3.0) if decades <= 4.5 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: tick_seconds(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", axis="x", alpha=0.12)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction ≤ x (logit scale)")
    if drawn or thresholds:
        # Upper left: a CDF rises from lower left to upper right, so that corner is the emptiest.
        ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    return to_png(fig)


def timeseries_png(title: str, panels: Sequence[Panel], warmup_s: float, horizon_s: float) -> bytes:
    """Stacked time-series panels sharing the time axis, the warm-up shaded."""
    from matplotlib.ticker import PercentFormatter

    fig, axes = _new_figure(nrows=len(panels), sharex=True)
    for k, (ax, p) in enumerate(zip(axes, panels, strict=True)):
        if warmup_s > 0:
            ax.axvspan(0, warmup_s, color="#999999", alpha=0.18, linewidth=0, label="warm-up (not in summary)")
        for ln in p.lines:
            if ln.t.size == 0:
                continue
            # A rate holds over the interval ending at its sample: a step; a level is an instantaneous sample: a line.
            if ln.lo is not None and ln.hi is not None:
                ax.fill_between(
                    ln.t, ln.lo, ln.hi, step="pre" if ln.step else None, color=ln.color, alpha=0.18, linewidth=0
                )
            if ln.step:
                ax.step(ln.t, ln.y, where="pre", color=ln.color, linestyle=ln.style, linewidth=1.4, label=ln.label)
            else:
                ax.plot(ln.t, ln.y, color=ln.color, linestyle=ln.style, linewidth=1.4, label=ln.label)
        if not any(ln.t.size for ln in p.lines):
            _no_data(ax, "no samples")
        ax.set_xlim(0, horizon_s)
        if p.ymin is not None:
            ax.set_ylim(bottom=p.ymin)
        if p.ymax is not None:
            ax.set_ylim(top=p.ymax)
        if p.percent:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel(p.ylabel)
        ax.grid(True, alpha=0.3)
        if k == 0:
            ax.set_title(title)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[-1].set_xlabel("simulated time (s)")
    return to_png(fig)


def bars_png(title: str, panels: Sequence[BarPanel]) -> bytes:
    """Side-by-side panels of grouped or stacked bars with value labels."""
    from matplotlib.patches import Patch

    fig, axes = _new_figure(ncols=len(panels))
    # Grouped bars of several series (runs) share one legend below the panels instead of one per panel.
    shared = any(len(p.series) > 1 and not p.stacked for p in panels)
    for ax, p in zip(axes, panels, strict=True):
        _bars(ax, p, legend=not shared)
    fig.suptitle(title)
    if shared:
        first = next(p for p in panels if len(p.series) > 1 and not p.stacked)
        handles = [Patch(color=c, label=label) for label, c, _ in first.series]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    return to_png(fig)


def _bars(ax: Axes, p: BarPanel, legend: bool = True) -> None:
    ncat = len(p.categories)
    nser = len(p.series)
    x = np.arange(ncat, dtype=float)
    if p.log:
        ax.set_yscale("log")
    if nser == 0 or ncat == 0:
        _no_data(ax, "no data")
    elif p.stacked:
        bottom = np.zeros(ncat)
        totals = np.zeros(ncat)
        for _, _, vals in p.series:
            totals += np.array([v or 0.0 for v in vals])
        for label, c, vals in p.series:
            h = np.array([v or 0.0 for v in vals])
            ax.bar(x, h, 0.6, bottom=bottom, color=c, label=label)
            for i in range(ncat):
                if totals[i] > 0 and h[i] / totals[i] >= 0.08:
                    ax.text(
                        x[i],
                        bottom[i] + h[i] / 2,
                        f"{h[i] / totals[i]:.0%}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white",
                    )
            bottom += h
        for i in range(ncat):
            ax.text(x[i], totals[i], p.fmt(totals[i]), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(float(totals.max()), 1e-12) * 1.15)
    else:
        width = 0.8 / nser
        top = 0.0
        low = math.inf
        for j, (label, c, vals) in enumerate(p.series):
            xs = x - 0.4 + width * (j + 0.5)
            h = np.array([np.nan if v is None else v for v in vals], dtype=float)
            ok = np.isfinite(h) & ((h > 0) if p.log else np.ones_like(h, dtype=bool))
            ax.bar(xs[ok], h[ok], width * 0.92, color=c, label=label)
            for xi, hi, good in zip(xs, h, ok, strict=True):
                if good:
                    # Narrow bars (three or more series) get vertical labels so neighbours do not overlap.
                    ax.text(
                        xi,
                        hi,
                        " " + p.fmt(float(hi)) if nser > 2 else p.fmt(float(hi)),
                        ha="center",
                        va="bottom",
                        fontsize=7 if nser > 2 else 8,
                        rotation=90 if nser > 2 else 0,
                    )
                    top = max(top, float(hi))
                    low = min(low, float(hi))
                else:
                    ax.text(
                        xi,
                        0.5,
                        "n/a",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="#666666",
                        transform=ax.get_xaxis_transform(),
                    )
        if top <= 0:
            ax.set_yscale("linear")
            ax.set_ylim(0, 1)
            ax.set_yticks([])
        elif p.log:
            ax.set_ylim(low / 3, top * 4)
        else:
            ax.set_ylim(0, top * (1.35 if nser > 2 else 1.18))
    ax.set_xlim(-0.6, ncat - 0.4)
    ax.set_xticks(x, list(p.categories), fontsize=8)
    ax.set_title(p.title, fontsize=10)
    ax.set_ylabel(p.ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    if legend and (nser > 1 or p.stacked):
        ax.legend(fontsize=7, loc="upper left", framealpha=0.9)


# ------------------------------------------------------------------------------------------------ sweeps


@dataclass(frozen=True)
class Point:
    """One labelled point of a scatter plot."""

    label: str
    x: float
    y: float
    color: str = PALETTE[0]


def pareto_mask(x: np.ndarray, y: np.ndarray, *, max_x: bool = True, max_y: bool = True) -> np.ndarray:
    """Which points are Pareto-optimal: no other point is at least as good in both coordinates and strictly better
    in one. ``max_x``/``max_y`` say whether more is better. Points with a non-finite coordinate are never on it."""
    xs = np.asarray(x, dtype=float) * (1.0 if max_x else -1.0)
    ys = np.asarray(y, dtype=float) * (1.0 if max_y else -1.0)
    ok = np.isfinite(xs) & np.isfinite(ys)
    out = np.zeros(xs.size, dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (xs >= xs[i]) & (ys >= ys[i]) & ((xs > xs[i]) | (ys > ys[i]))
        out[i] = not dominated.any()
    return out


def _auto_log(ax: Axes, values: np.ndarray, axis: str) -> None:
    """A log scale when the positive values span more than a factor of 30."""
    v = values[np.isfinite(values)]
    if v.size and (v > 0).all() and v.max() / v.min() > 30:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def lines_png(
    title: str,
    xlabel: str,
    ylabel: str,
    lines: Sequence[Line],
    *,
    xticks: Sequence[tuple[float, str]] | None = None,
    percent_y: bool = False,
) -> bytes:
    """Lines with markers over a sweep axis (``Line.t`` holds the x values), each with its optional ``lo``..``hi``
    band shaded; ``xticks`` (position, label) for a categorical axis. The y axis turns logarithmic when the values
    span more than a factor of 30."""
    from matplotlib.ticker import PercentFormatter

    fig, (ax,) = _new_figure()
    ys: list[np.ndarray] = []
    for ln in lines:
        ok = np.isfinite(ln.t) & np.isfinite(ln.y)
        if not ok.any():
            continue
        if ln.lo is not None and ln.hi is not None:
            band = ok & np.isfinite(ln.lo) & np.isfinite(ln.hi)
            if band.any():
                ax.fill_between(ln.t[band], ln.lo[band], ln.hi[band], color=ln.color, alpha=0.18, linewidth=0)
        ax.plot(
            ln.t[ok],
            ln.y[ok],
            color=ln.color,
            linestyle=ln.style,
            marker="o",
            markersize=4,
            linewidth=1.5,
            label=ln.label,
        )
        ys.append(ln.y[ok])
    if not ys:
        _no_data(ax, "no values")
    else:
        allv = np.concatenate(ys)
        if not percent_y:
            _auto_log(ax, allv, "y")
        if len(lines) > 1 or lines[0].label:
            ax.legend(loc="best", fontsize=8, framealpha=0.9)
    if xticks is not None:
        ax.set_xticks([p for p, _ in xticks], [s for _, s in xticks], fontsize=8)
    elif all(np.array_equal(ln.t[np.isfinite(ln.t)], np.round(ln.t[np.isfinite(ln.t)])) for ln in lines):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # an integer axis (replicas, TP): no 1.5 ticks
    if percent_y:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _labelled_png(fig, ax, title, xlabel, ylabel)


def multiples_png(
    title: str,
    xlabel: str,
    ylabel: str,
    panels: Sequence[tuple[str, Sequence[Line]]],
    *,
    threshold: float | None = None,
    threshold_label: str = "SLO",
    xticks: Sequence[tuple[float, str]] | None = None,
    percent_y: bool = False,
    nonnegative: bool = True,
) -> bytes:
    """Small multiples: one axes per ``(panel title, lines)``, sharing both axes (so panels compare at a
    glance), in a grid of up to 3 columns; each line with its ``lo``..``hi`` band; ``threshold`` drawn as a
    dashed horizontal line in every panel (an SLO target)."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    n = max(1, len(panels))
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig, axes = _new_figure(nrows=nrows, ncols=ncols, sharex=True)
    for ax in axes[1:]:
        ax.sharey(axes[0])
    allv: list[np.ndarray] = []
    for k, ax in enumerate(axes):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        name, lines = panels[k]
        drew = False
        for ln in lines:
            ok = np.isfinite(ln.t) & np.isfinite(ln.y)
            if not ok.any():
                continue
            if ln.lo is not None and ln.hi is not None:
                band = ok & np.isfinite(ln.lo) & np.isfinite(ln.hi)
                if band.any():
                    lo = np.maximum(ln.lo[band], 0.0) if nonnegative else ln.lo[band]  # latencies, costs: >= 0
                    ax.fill_between(ln.t[band], lo, ln.hi[band], color=ln.color, alpha=0.2, linewidth=0)
            ax.plot(ln.t[ok], ln.y[ok], color=ln.color, marker="o", markersize=3.5, linewidth=1.4, label=ln.label)
            allv.append(ln.y[ok])
            drew = True
        if not drew:
            _no_data(ax, "no values")
        if threshold is not None:
            ax.axhline(threshold, color="#c0392b", linestyle="--", linewidth=1.0, label=threshold_label)
        ax.set_title(name, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        if k % ncols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if k >= n - ncols:
            ax.set_xlabel(xlabel, fontsize=8)
        if xticks is not None:
            ax.set_xticks([p for p, _ in xticks], [s for _, s in xticks], fontsize=7)
        elif all(np.array_equal(ln.t[np.isfinite(ln.t)], np.round(ln.t[np.isfinite(ln.t)])) for ln in lines):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if percent_y:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if allv and not percent_y:
        _auto_log(axes[0], np.concatenate(allv), "y")
    if threshold is not None:
        axes[0].legend(loc="best", fontsize=7, framealpha=0.9)
    fig.suptitle(title, fontsize=10)
    return to_png(fig)


def _labelled_png(fig: Figure, ax: Axes, title: str, xlabel: str, ylabel: str) -> bytes:
    """Title, axis labels and grid, then the PNG: how every single-axes figure ends."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return to_png(fig)


def scatter_png(
    title: str,
    xlabel: str,
    ylabel: str,
    points: Sequence[Point],
    *,
    frontier: np.ndarray | None = None,
    frontier_label: str = "Pareto frontier",
    groups: Sequence[int] | None = None,
    legend: Sequence[tuple[str, str]] = (),
    percent_x: bool = False,
    percent_y: bool = False,
) -> bytes:
    """Points; ``frontier`` (a boolean mask over ``points``) is ringed and joined by a line in x order, one line
    per value of ``groups`` when given (frontiers within each group). Points at the same place share one label
    (their labels joined), so labels do not print over each other. ``legend``: (label, colour) entries.
    Axes turn logarithmic when the values span more than a factor of 30."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import PercentFormatter

    fig, (ax,) = _new_figure()
    x = np.array([p.x for p in points], dtype=float)
    y = np.array([p.y for p in points], dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        _no_data(ax, "no points with both values")
    else:
        labels: dict[tuple[float, float], list[str]] = {}
        for p, good in zip(points, ok, strict=True):
            if good:
                ax.scatter([p.x], [p.y], color=p.color, s=30, zorder=3)
                if p.label:
                    at = labels.setdefault((round(p.x, 9), round(p.y, 9)), [])
                    if p.label not in at:
                        at.append(p.label)
        for k, ((px, py), names) in enumerate(labels.items()):
            ax.annotate(" | ".join(names), (px, py), textcoords="offset points", xytext=(7, 5 if k % 2 else -10),
                        fontsize=7, color="#333333")  # fmt: skip
        handles = [Line2D([], [], marker="o", linestyle="", color=c, label=lb) for lb, c in legend]
        if frontier is not None and (frontier & ok).any():
            gid = np.zeros(len(points), dtype=int) if groups is None else np.asarray(groups, dtype=int)
            for g in dict.fromkeys(gid.tolist()):
                f = np.flatnonzero(frontier & ok & (gid == g))
                if f.size == 0:
                    continue
                f = f[np.argsort(x[f], kind="stable")]
                ax.plot(x[f], y[f], color="#222222", linestyle="--", linewidth=1.1, zorder=2)
            ring = np.flatnonzero(frontier & ok)
            ax.scatter(x[ring], y[ring], s=90, facecolors="none", edgecolors="#222222", linewidths=1.2, zorder=4)
            handles.append(Line2D([], [], color="#222222", linestyle="--", label=frontier_label))
        if handles:
            ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
        if not percent_x:
            _auto_log(ax, x[ok], "x")
        if not percent_y:
            _auto_log(ax, y[ok], "y")
        ax.margins(0.12)
    if percent_x:
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if percent_y:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _labelled_png(fig, ax, title, xlabel, ylabel)
