"""Figures from results frames. Each function returns a matplotlib Figure built without pyplot
(nothing global is touched, nothing is shown), laid out for reading at its own dpi; save it with
`save(fig, path)`, or let `write_frontier` load a sweep and save its frontier.

Every figure draws a family in its fixed style (zoology.analysis.palette) and keeps its text apart
(zoology.analysis.layout): point labels where they fit, else numbered with a key; no tick labels
that touch; the legend outside the data.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import offset_copy

from zoology import results
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
from zoology.analysis.layout import (
    PointLabel,
    add_key,
    compact_log_axis,
    freeze_layout,
    place_labels,
    text_color,
    thin_tick_labels,
)
from zoology.analysis.palette import ROLE_COLORS, Style, family_styles, shades

DPI = 150
"""Every figure is laid out and saved at this resolution."""
FONT = {"label": 8.0, "tick": 9.0, "axis": 10.0}
PANEL_INCHES = (5.8, 4.6)
"""Width and height of one frontier panel."""
LEGEND_INCHES = 2.4
"""Width of the frontier's legend column beside the panels."""


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path) -> None:
    """Write the figure (to a path or binary file) at its own dpi, its bounding box grown to hold
    every label and key."""
    fig.savefig(path, dpi=fig.dpi, bbox_inches="tight", pad_inches=0.08, format="png")


def format_lr(lr: float) -> str:
    """0.003 -> '3e-3', 0.00316 -> '3.16e-3'."""
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def family_handles(styles: dict[str, Style]) -> list[Line2D]:
    return [
        Line2D([], [], color=s.color, ls=s.linestyle, lw=1.6, markersize=6, label=family, **s.marker_kwargs())
        for family, s in styles.items()
    ]


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
    marker per family, each family's Pareto front as a line, faded markers for dominated models.
    Labels name what varies between a family's models, and the lr where the points' lrs differ."""
    axis = resolve_axis(x, unit)
    points = frontier_points(df, axis, metric, slices, family_column, facet)
    panels = sorted(points[facet].unique(), key=lambda v: natural_key(str(v))) if facet else [None]
    n = len(panels)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    panels_width = PANEL_INCHES[0] * ncols
    fig = new_figure(panels_width + LEGEND_INCHES, PANEL_INCHES[1] * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    styles = family_styles(points[FAMILY])
    lrs = points["lr"].dropna().unique()
    one_lr = len(lrs) == 1
    for ax, panel in zip(axes, panels):
        subset = points if panel is None else points[points[facet] == panel]
        draw_frontier(ax, subset, axis, styles)
        ax.set_xlabel(axis_label(axis, df), fontsize=FONT["axis"])
        ax.set_ylabel(accuracy_label(df, metric, slices), fontsize=FONT["axis"])
        ax.tick_params(labelsize=FONT["tick"])
        if axis.log:
            compact_log_axis(ax.xaxis)
        if panel is not None:
            ax.set_title(f"{facet} = {panel}", fontsize=FONT["axis"])
    for ax in axes[n:]:
        ax.set_visible(False)
    where = f"lr {format_lr(lrs[0])} for every point" if one_lr else "lr in the labels"
    legend = fig.legend(
        handles=family_handles(styles),
        loc="outside right upper",
        title=f"each model at its best lr\n({where})\nline: Pareto front\nfaded: dominated",
        fontsize=FONT["label"],
        title_fontsize=FONT["label"],
        frameon=False,
        alignment="left",
    )
    if title:  # wrapped to the panels' width and centred on them, clear of the legend beside them
        size = FONT["axis"] + 1
        wrapped = textwrap.fill(title, width=int(panels_width * 72 / (0.5 * size)))  # ~0.5 em per character
        if facet is None:
            axes[0].set_title(wrapped, fontsize=size)
        else:  # over the panels (and the y label's margin), not the whole figure with its legend
            fig.suptitle(wrapped, fontsize=size, x=(panels_width / 2 + 0.4) / (panels_width + LEGEND_INCHES))
    renderer = freeze_layout(fig)
    key: list[tuple[int, PointLabel]] = []
    for ax, panel in zip(axes, panels):
        thin_tick_labels(ax, renderer)
        if not labels:
            continue
        subset = points if panel is None else points[points[facet] == panel]
        texts = [
            PointLabel(p["x"], p["accuracy"], point_text(p, one_lr), styles[p[FAMILY]].color)
            for _, p in subset.iterrows()
        ]
        key += place_labels(ax, renderer, texts, first_number=len(key) + 1, fontsize=FONT["label"])
    add_key(fig, renderer, legend, key, fontsize=FONT["label"])
    return fig


def point_text(point: pd.Series, one_lr: bool) -> str:
    lr = "" if one_lr or pd.isna(point["lr"]) else f"lr={format_lr(point['lr'])}"
    return " ".join(t for t in (point["model_label"], lr) if t)


def draw_frontier(ax: Axes, points: pd.DataFrame, axis: Axis, styles: dict[str, Style]) -> None:
    for family, group in points.groupby(FAMILY, sort=True):
        style = styles[family]
        marker = style.marker_kwargs()
        front = group[group["pareto"]].sort_values("x")
        ax.plot(front["x"], front["accuracy"], ls=style.linestyle, color=style.color, label=family, lw=1.6, **marker)
        dominated = group[~group["pareto"]]
        ax.plot(dominated["x"], dominated["accuracy"], ls="none", color=style.color, alpha=0.35, **marker)
        spread = group[group["n_seeds"] > 1]
        if len(spread):
            ax.errorbar(spread["x"], spread["accuracy"], yerr=spread["accuracy_std"], fmt="none", ecolor=style.color)
    if axis.log:
        ax.set_xscale("log")
    ax.margins(x=0.08)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)


def draw_heatmap(
    ax: Axes,
    values: np.ndarray,
    rows: list[str],
    columns: list[str],
    row_styles: list[Style] | None = None,
    annotate: bool = True,
):
    """Accuracies in [0, 1] as a viridis grid (grey: missing), each cell written when `annotate`;
    with `row_styles`, each row label in its family's colour beside its marker, and a white rule
    between rows of different families. Returns the image (for a colour bar)."""
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, fontsize=FONT["label"])
    ax.set_yticks(range(len(rows)), rows, fontsize=FONT["label"])
    ax.tick_params(length=0)
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):
                color = "white" if v < 0.6 else "black"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=FONT["label"] - 1, color=color)
    if row_styles is not None:
        style_row_labels(ax, row_styles, rules=True)
    return image


def style_row_labels(ax: Axes, row_styles: list[Style], rules: bool = False) -> None:
    """Each row label of a heat map in its family's colour, beside its family's marker; with `rules`,
    a white rule between rows of different families."""
    ax.tick_params(axis="y", pad=14)
    beside = offset_copy(ax.get_yaxis_transform(), fig=ax.figure, x=-7, units="points")
    for i, (label, style) in enumerate(zip(ax.get_yticklabels(), row_styles)):
        label.set_color(text_color(style.color))
        ax.plot([0], [i], transform=beside, clip_on=False, ls="none", markersize=6, **style.marker_kwargs())
        if rules and i and row_styles[i - 1] != style:
            ax.axhline(i - 0.5, color="white", lw=2.5)


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
    points = frontier_points(df, "state", metric, slices, family_column)
    styles = family_styles(points[FAMILY])
    one_lr = points["lr"].nunique(dropna=True) <= 1
    rows = [f"{p[FAMILY]} {point_text(p, one_lr)}".strip() for _, p in points.iterrows()]
    values = matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    label_width = 0.065 * max(map(len, rows))  # inches of 8 pt text
    fig = new_figure(label_width + 1.6 + 0.62 * n_cols, max(2.5, 1.3 + 0.3 * n_rows))
    ax = fig.add_subplot()
    tasks = {name.split("-", 1)[0] for name in matrix.columns}
    prefix = f"{tasks.pop()}-" if len(tasks) == 1 else ""
    columns = [name.removeprefix(prefix).replace("-", "\n") for name in matrix.columns]
    row_styles = [styles[f] for f in points[FAMILY]]
    image = draw_heatmap(ax, values, rows, columns, row_styles, annotate=n_rows * n_cols <= 400)
    task = f" ({prefix.rstrip('-')})" if prefix else ""
    ax.set_xlabel(f"test slice{task}\nL: sequence length, N: key-value pairs", fontsize=FONT["axis"])
    lr_note = f"; lr {format_lr(points['lr'].iloc[0])}" if one_lr and points["lr"].notna().any() else ""
    fig.colorbar(image, ax=ax, label=f"accuracy ({metric} epoch, best lr per model{lr_note})", shrink=0.9)
    if title:
        ax.set_title(title, fontsize=FONT["axis"] + 1)
    return fig


def plot_curves(curves: pd.DataFrame, runs: list[str] | None = None, title: str | None = None) -> Figure:
    """Training curves from `load_curves`: train (solid) and validation (dashed) loss, and
    validation accuracy, per epoch; each run in a shade of its family's colour, with its marker.
    `runs` picks run ids or names."""
    if runs is not None:
        curves = curves[curves["run_id"].isin(runs) | curves["name"].isin(runs)]
        if curves.empty:
            raise ValueError(f"runs={runs!r}: none of these run ids or names has logged an epoch")
    fig = new_figure(11, 4.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    curves = curves.sort_values(["family", "name", "epoch"], kind="stable")
    styles = family_styles(curves["family"])
    ids_per_name = curves.groupby("name")["run_id"].nunique()
    for family, of_family in curves.groupby("family", sort=True):
        style = styles[family]
        runs_of_family = list(of_family.groupby(["run_id", "name"], sort=False))
        for color, ((run_id, name), run) in zip(shades(style.color, len(runs_of_family)), runs_of_family):
            if ids_per_name[name] > 1:
                name = f"{name} ({run_id})"
            run = run.sort_values("epoch")
            epoch = run["epoch"] + 1
            every = max(1, len(run) // 12)
            loss_ax.plot(epoch, run["train_loss"], "-", color=color, label=name)
            loss_ax.plot(epoch, run["valid_loss"], "--", color=color)
            acc_ax.plot(epoch, run["valid_acc"], "-", color=color, label=name, marker=style.marker, markevery=every)
    loss_ax.set_xlabel("epoch", fontsize=FONT["axis"])
    loss_ax.set_ylabel("loss (solid: train, dashed: validation)", fontsize=FONT["axis"])
    acc_ax.set_xlabel("epoch", fontsize=FONT["axis"])
    acc_ax.set_ylabel("validation accuracy (all test slices)", fontsize=FONT["axis"])
    acc_ax.set_ylim(-0.02, 1.02)
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=FONT["tick"])
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, names = acc_ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right upper", fontsize=FONT["label"], frameon=False)
    if title:
        fig.suptitle(title, fontsize=FONT["axis"] + 1)
    renderer = freeze_layout(fig)
    for ax in (loss_ax, acc_ax):
        thin_tick_labels(ax, renderer)
    return fig


def write_frontier(sweep_dir: str | Path, path: str | Path | None = None) -> Path:
    """Save the state frontier of a sweep (last-epoch accuracy, all test slices) as a PNG, by default
    <sweep_dir>/frontier.png; returns its path."""
    sweep_dir = Path(sweep_dir)
    path = Path(path) if path else sweep_dir / "frontier.png"
    save(plot_frontier(results.load(sweep_dir), title=sweep_dir.name), path)
    return path


def plot_task_scores(scores: pd.DataFrame, title: str | None = None, label: str = "score") -> Figure:
    """Heat map of a `task_scores` table: families (rows, each named in its family's colour beside its
    marker, as in every figure) × tasks and their mean (columns), each cell its score written in a
    colour that contrasts with the cell; grey: a task the family did not run."""
    values = scores.to_numpy(dtype=float)
    rows, cols = values.shape
    styles = family_styles(map(str, scores.index))
    fig = new_figure(max(6.0, 1.6 + 1.25 * cols), max(2.6, 1.4 + 0.5 * rows))
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(
        range(cols),
        [textwrap.fill(str(c).replace("_", " "), 11, break_long_words=False) for c in scores.columns],
        fontsize=10,
    )
    ax.set_yticks(range(rows), scores.index, fontsize=10)
    ax.tick_params(axis="y", length=0)
    style_row_labels(ax, [styles[f] for f in map(str, scores.index)])
    if "mean" in scores.columns:
        ax.axvline(list(scores.columns).index("mean") - 0.5, color="white", lw=3)
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=11, color="white" if v < 0.6 else "black")
    bar = fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    ax.set_xlabel("task: mean over its settings of the best\nover learning rate and weight decay", fontsize=10)
    if title:
        ax.set_title(title)
    wrap_to_length(bar.ax.yaxis.label, bar.ax)
    return fig


def wrap_to_length(text, ax: Axes) -> None:
    """Wrap a colour bar's label onto as many lines as it takes to be no longer than its bar (a short
    heat map has a short bar, and a label longer than it is cut off at the figure's edge)."""
    fig = ax.figure
    whole = text.get_text()
    for _ in range(4):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        length, room = text.get_window_extent(renderer).height, ax.get_window_extent(renderer).height
        if length <= room:
            return
        longest = max(map(len, text.get_text().splitlines()))
        text.set_text(textwrap.fill(whole, max(8, int(longest * room / length) - 1), break_long_words=False))


def plot_token_weights(
    shares: np.ndarray,
    query_positions: list[int],
    cells: list[str],
    roles: list[str],
    answers: list[tuple[list[int], list[int]]],
    title: str,
    legend: str,
    color: str = "black",
) -> Figure:
    """Heat map of token weights: one row per query, shares (queries, positions) of its row's |W| against the
    positions 0 … positions − 1 it can see, darker for more (square-root scale). Tick labels are the marked tokens
    (`cells`) coloured by role (palette.ROLE_COLORS); each row's answering key and value positions (`answers`:
    (keys, values) per query) are outlined in the key and value colours, the query's own position in the query
    colour. `legend` (how tokens are marked) goes under the axis; the title is in `color`."""
    n_rows, n_cols = shares.shape
    fig = new_figure(min(max(6.0, 2.8 + 0.11 * n_cols), 28.0), min(max(3.2, 2.4 + 0.2 * n_rows), 16.0))
    ax = fig.add_subplot()
    top = max(float(shares.max()), 1e-12)
    image = ax.imshow(
        shares, cmap="Greys", norm=PowerNorm(0.5, vmin=0.0, vmax=top), aspect="auto", interpolation="nearest"
    )
    for row, (q, (keys, values)) in enumerate(zip(query_positions, answers)):
        outlined = [(q, "query")] + [(p, "key") for p in keys] + [(p, "value") for p in values]
        for position, role in outlined:
            box = Rectangle((position - 0.5, row - 0.5), 1, 1, fill=False, lw=1.4, edgecolor=ROLE_COLORS[role])
            ax.add_patch(box)
    context = [i for i, role in enumerate(roles[:n_cols]) if role in ("key", "value")]
    if context:
        ax.axvline(max(context) + 0.5, color=ROLE_COLORS["filler"], lw=0.8, ls="--")
    ax.set_xticks(range(n_cols), cells[:n_cols], rotation=90, fontsize=FONT["label"] - 1.5)
    ax.set_yticks(range(n_rows), [f"{cells[q]} @{q}" for q in query_positions], fontsize=FONT["label"])
    for label, role in zip(ax.get_xticklabels(), roles):
        label.set_color(text_color(ROLE_COLORS[role]))
    for label in ax.get_yticklabels():
        label.set_color(text_color(ROLE_COLORS["query"]))
    ax.tick_params(length=2, pad=1.5)
    outline = "outlined: the query's key (blue), its value (red) and the query itself (green)"
    ax.set_xlabel(f"context position\n{legend}\n{outline}", fontsize=FONT["label"])
    ax.set_ylabel("query (token→label @position)", fontsize=FONT["label"])
    bar = fig.colorbar(image, ax=ax, shrink=0.9, pad=0.01)
    bar.set_label("share of the query row's |W|\n(each row sums to 1)", fontsize=FONT["label"])
    bar.ax.tick_params(labelsize=FONT["label"])
    ax.set_title(title, fontsize=FONT["label"] + 1, color=text_color(color), loc="left")
    renderer = freeze_layout(fig)
    thin_tick_labels(ax, renderer, pad=0.5)
    return fig
