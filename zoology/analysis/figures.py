"""Figures from results frames. Each function returns a matplotlib Figure built without pyplot
(nothing global is touched, nothing is shown); save it with `fig.savefig(path)`."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from zoology.analysis.data import (
    FAMILY,
    Axis,
    Metric,
    accuracy_label,
    axis_label,
    frontier_points,
    natural_key,
    resolve_axis,
    slice_matrix,
)

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def family_styles(families) -> dict[str, dict]:
    """A fixed colour and marker per family (sorted by name, so every figure of a sweep agrees)."""
    names = sorted(set(families))
    styles = zip(itertools.cycle(COLORS), itertools.cycle(MARKERS))
    return {name: {"color": c, "marker": m} for name, (c, m) in zip(names, styles)}


def plot_frontier(
    df: pd.DataFrame,
    x: str | Axis = "state",
    metric: Metric = "last",
    slices: list[str] | None = None,
    unit: str = "elements",
    family_column: str = FAMILY,
    facet: str | None = None,
    labels: bool = True,
    title: str | None = None,
) -> Figure:
    """Accuracy against recurrent state (or throughput): each model at its best lr, one colour and
    marker per family, each family's Pareto front as a line, faded markers for dominated models."""
    axis = resolve_axis(x, unit)
    points = frontier_points(df, axis, metric, slices, family_column, facet)
    panels = sorted(points[facet].unique(), key=lambda v: natural_key(str(v))) if facet else [None]
    n = len(panels)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(6.4 * ncols, 4.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    styles = family_styles(points[FAMILY])
    for ax, panel in zip(axes, panels):
        subset = points if panel is None else points[points[facet] == panel]
        draw_frontier(ax, subset, axis, styles, labels)
        ax.set_xlabel(axis_label(axis, df))
        ax.set_ylabel(accuracy_label(df, metric, slices))
        if panel is not None:
            ax.set_title(f"{facet} = {panel}")
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    axes[0].legend(handles, names, title="best lr per model; line: Pareto front", fontsize=8, title_fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def draw_frontier(ax: Axes, points: pd.DataFrame, axis: Axis, styles: dict[str, dict], labels: bool = True) -> None:
    for family, group in points.groupby(FAMILY, sort=True):
        style = styles[family]
        front = group[group["pareto"]].sort_values("x")
        ax.plot(front["x"], front["accuracy"], "-", color=style["color"], marker=style["marker"], label=family, lw=1.6)
        dominated = group[~group["pareto"]]
        ax.plot(
            dominated["x"], dominated["accuracy"], ls="none", color=style["color"], marker=style["marker"], alpha=0.35
        )
        spread = group[group["n_seeds"] > 1]
        if len(spread):
            ax.errorbar(spread["x"], spread["accuracy"], yerr=spread["accuracy_std"], fmt="none", ecolor=style["color"])
        if labels:
            for _, p in group.iterrows():
                text = p["model_label"] or family
                high = p["accuracy"] > 0.9
                ax.annotate(
                    text,
                    (p["x"], p["accuracy"]),
                    textcoords="offset points",
                    xytext=(5, -5 if high else 4),
                    va="top" if high else "bottom",
                    fontsize=7,
                )
    if axis.log:
        ax.set_xscale("log")
    ax.margins(x=0.12 if labels else 0.05)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)


def plot_slices(
    df: pd.DataFrame,
    metric: Metric = "last",
    slices: list[str] | None = None,
    family_column: str = FAMILY,
    title: str | None = None,
) -> Figure:
    """Heatmap of accuracy per model (rows, at its best lr) and test slice (columns, by length then
    number of key-value pairs): where recall breaks. Grey: a slice the model was not tested on."""
    matrix = slice_matrix(df, metric, slices, family_column)
    values = matrix.to_numpy(dtype=float)
    rows, cols = values.shape
    fig = Figure(figsize=(max(4.5, 1.2 + 0.75 * cols), max(2.5, 1.2 + 0.38 * rows)), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    tasks = {name.split("-", 1)[0] for name in matrix.columns}
    prefix = f"{tasks.pop()}-" if len(tasks) == 1 else ""
    ax.set_xticks(range(cols), [name.removeprefix(prefix).replace("-", "\n") for name in matrix.columns], fontsize=8)
    ax.set_yticks(range(rows), matrix.index, fontsize=8)
    task = f" ({prefix.rstrip('-')})" if prefix else ""
    ax.set_xlabel(f"test slice{task}\nL: sequence length, N: key-value pairs")
    if rows * cols <= 400:
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    fig.colorbar(image, ax=ax, label=f"accuracy ({metric} epoch)", shrink=0.9)
    if title:
        ax.set_title(title)
    return fig


def plot_curves(curves: pd.DataFrame, runs: list[str] | None = None, title: str | None = None) -> Figure:
    """Training curves from `load_curves`: train (solid) and validation (dashed) loss, and
    validation accuracy, per epoch; one colour per run. `runs` picks run ids or names."""
    if runs is not None:
        curves = curves[curves["run_id"].isin(runs) | curves["name"].isin(runs)]
        if curves.empty:
            raise ValueError(f"runs={runs!r}: none of these run ids or names has logged an epoch")
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    colors = itertools.cycle(COLORS)
    curves = curves.sort_values(["family", "name", "epoch"], kind="stable")
    ids_per_name = curves.groupby("name")["run_id"].nunique()
    for (run_id, name), run in curves.groupby(["run_id", "name"], sort=False):
        color = next(colors)
        if ids_per_name[name] > 1:
            name = f"{name} ({run_id})"
        run = run.sort_values("epoch")
        epoch = run["epoch"] + 1
        loss_ax.plot(epoch, run["train_loss"], "-", color=color, label=name)
        loss_ax.plot(epoch, run["valid_loss"], "--", color=color)
        acc_ax.plot(epoch, run["valid_acc"], "-", color=color, marker=".", label=name)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss (solid: train, dashed: validation)")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("validation accuracy (all test slices)")
    acc_ax.set_ylim(-0.02, 1.02)
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    acc_ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    return fig
