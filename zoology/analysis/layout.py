"""Legibility helpers shared by the figures: point labels placed where they fit (the rest numbered,
with a key), tick labels that never collide, compact numbers on log axes.

They measure text in display pixels, so they run on a figure whose layout is final (`freeze_layout`),
and the figure is then saved at its own dpi (`figures.save`): what was measured is what is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.transforms import Bbox

RINGS = (2.0, 7.0, 14.0, 24.0, 38.0)
"""Pixels between a point's marker and its label, tried nearest first; beyond the first a thin line joins them."""
DIRECTIONS = ((1, 0), (1, 1), (1, -1), (0, 1), (0, -1), (-1, 0), (-1, 1), (-1, -1))
"""Where a label may sit around its point, in order of preference: right, above right, below right, ..."""


@dataclass
class PointLabel:
    """The text for one point (data coordinates) of an axes, in its family's colour."""

    x: float
    y: float
    text: str
    color: str


def freeze_layout(fig: Figure) -> RendererAgg:
    """Lay the figure out once and keep that layout, so positions measured now hold when it is saved
    (figure legends are pinned where they are: a tight bounding box would move them otherwise)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    fig.set_layout_engine("none")
    renderer = canvas.get_renderer()
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        legend.set_loc("upper left")
        legend.borderaxespad = 0.0
        legend.set_bbox_to_anchor((box.x0 / fig.bbox.width, box.y1 / fig.bbox.height), transform=fig.transFigure)
    return renderer


def text_color(color: str) -> tuple[float, float, float]:
    """A family colour darkened enough to read as text on white."""
    return tuple(0.7 * np.array(to_rgb(color)))


def compact_number(value: float) -> str:
    """1, 500, 2k, 40k, 1.5M: the numbers of a log axis, short enough not to collide."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def compact_log_axis(axis) -> None:
    """Compact tick labels on a log axis: every decade; between decades 2x and 5x when the axis spans
    fewer than two decades, and 2x to 9x when it spans less than one (else the decades suffice)."""
    lo, hi = sorted(axis.get_view_interval())
    span = np.log10(hi / lo) if lo > 0 else np.inf
    shown = set(range(2, 10)) if span < 1 else {2, 5} if span < 2 else set()

    def minor(value: float, _) -> str:
        mantissa = round(value / 10 ** np.floor(np.log10(value)), 6) if value > 0 else 0
        return compact_number(value) if mantissa in shown else ""

    axis.set_major_formatter(FuncFormatter(lambda v, _: compact_number(v)))
    axis.set_minor_formatter(FuncFormatter(minor) if shown else NullFormatter())


def _key(value: float) -> str:
    return f"{value:.10g}"


def thin_tick_labels(ax: Axes, renderer: RendererAgg, pad: float = 3.0) -> None:
    """Blank tick labels that would touch another: major labels first, then minor ones, each kept
    only where it clears every label kept before it. Needs a drawn figure (`freeze_layout`)."""
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
        kept: list[Bbox] = []
        for major in (True, False):
            locs = axis.get_majorticklocs() if major else axis.get_minorticklocs()
            ticks = axis.get_major_ticks(len(locs)) if major else axis.get_minor_ticks(len(locs))
            texts: dict[str, str] = {}
            for loc, tick in zip(locs, ticks):
                label = tick.label1
                if not (lo - tol <= loc <= hi + tol) or not label.get_visible() or not label.get_text():
                    continue
                box = label.get_window_extent(renderer).padded(pad)
                if any(box.overlaps(other) for other in kept):
                    continue
                kept.append(box)
                texts[_key(loc)] = label.get_text()
            formatter = FuncFormatter(lambda v, _, texts=texts: texts.get(_key(v), ""))
            (axis.set_major_formatter if major else axis.set_minor_formatter)(formatter)


def merge_texts(texts: list[str]) -> str:
    """One label for points that coincide. Labels naming the same keys keep each key once, with the
    values that differ joined by '/' ('d_model=64 num_heads=1' and 'd_model=64 num_heads=2' ->
    'd_model=64 num_heads=1/2'); other labels are joined by ' / '."""
    texts = list(dict.fromkeys(texts))
    if len(texts) == 1:
        return texts[0]
    words = [[w.partition("=") for w in t.split()] for t in texts]
    keys = [[k for k, _, _ in ws] for ws in words]
    if all(k == keys[0] for k in keys) and all(sep for ws in words for _, sep, _ in ws):
        merged = []
        for i, key in enumerate(keys[0]):
            values = list(dict.fromkeys(ws[i][2] for ws in words))
            merged.append(f"{key}={'/'.join(values)}")
        return " ".join(merged)
    return " / ".join(texts)


def _marker_radius(ax: Axes, markersize: float) -> float:
    return 0.5 * markersize * ax.figure.dpi / 72.0


def _obstacles(ax: Axes, renderer: RendererAgg) -> tuple[np.ndarray, np.ndarray, list[Bbox]]:
    """Marker centres (display px), points sampled every 3 px along drawn lines, and boxes to keep clear."""
    markers, samples = [], []
    for line in ax.get_lines():
        xy = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float))
        xy = xy[np.isfinite(xy).all(axis=1)]
        if line.get_marker() not in (None, "None", "", " "):
            markers.append(xy)
        if line.get_linestyle() not in ("None", "", " ") and len(xy) > 1:
            for a, b in zip(xy[:-1], xy[1:]):
                n = max(2, int(np.hypot(*(b - a)) / 3.0))
                samples.append(a + np.linspace(0, 1, n)[:, None] * (b - a))
    boxes = []
    legend = ax.get_legend()
    if isinstance(legend, Legend) and legend.get_visible():
        boxes.append(legend.get_window_extent(renderer).padded(2))
    empty = np.zeros((0, 2))
    return (np.vstack(markers) if markers else empty), (np.vstack(samples) if samples else empty), boxes


def _inside(points: np.ndarray, box: Bbox) -> int:
    if not len(points):
        return 0
    x, y = points[:, 0], points[:, 1]
    return int(((x >= box.x0) & (x <= box.x1) & (y >= box.y0) & (y <= box.y1)).sum())


def _candidates(px: float, py: float, w: float, h: float, radius: float):
    """(ring, box) around a point, nearest ring first, each in the order of DIRECTIONS."""
    for ring, gap in enumerate(RINGS):
        for cx, cy in DIRECTIONS:
            scale = (radius + gap) * (0.75 if cx and cy else 1.0)
            ox, oy = px + cx * scale, py + cy * scale
            left = ox if cx > 0 else ox - w if cx < 0 else ox - w / 2
            bottom = oy if cy > 0 else oy - h if cy < 0 else oy - h / 2
            yield ring, Bbox.from_bounds(left, bottom, w, h)


def place_labels(
    ax: Axes,
    renderer: RendererAgg,
    labels: list[PointLabel],
    first_number: int = 1,
    fontsize: float = 8.0,
    markersize: float = 6.0,
) -> list[tuple[int, PointLabel]]:
    """Write each label beside its point where it overlaps no other label, marker or legend and stays
    inside the axes (nearest spot first, avoiding the lines where it can), joined to its point by a
    thin line when not adjacent. Points whose markers coincide share one label (`merge_texts`). A label that
    fits nowhere is replaced by a number, counted from `first_number`; returns those (number, label)
    pairs for the key (`add_key`)."""
    radius = _marker_radius(ax, markersize)
    markers, samples, blocked = _obstacles(ax, renderer)
    frame = ax.get_window_extent(renderer).padded(-2)
    placed: list[Bbox] = []

    groups: list[list[PointLabel]] = []
    centres: list[np.ndarray] = []
    for label in labels:
        xy = ax.transData.transform((label.x, label.y))
        if not np.isfinite(xy).all():
            continue
        for group, centre in zip(groups, centres):
            if group[0].color == label.color and np.hypot(*(xy - centre)) < 1.2 * radius:
                group.append(label)
                break
        else:
            groups.append([label])
            centres.append(xy)
    crowding = [int((np.hypot(*(np.array(centres) - c).T) < 60).sum()) for c in centres]
    order = sorted(range(len(groups)), key=lambda i: -crowding[i])

    def clear(box: Bbox, own: np.ndarray) -> bool:
        if not (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1):
            return False
        others = markers[np.hypot(*(markers - own).T) > 1.2 * radius] if len(markers) else markers
        near = Bbox.from_extents(box.x0 - radius, box.y0 - radius, box.x1 + radius, box.y1 + radius)
        return (
            not _inside(others, near)
            and not any(box.overlaps(p) for p in placed)
            and not any(box.overlaps(b) for b in blocked)
        )

    def best_spot(text: str, weight: str, own: np.ndarray) -> tuple[int, Bbox] | None:
        probe = ax.text(0.5, 0.5, text, transform=ax.transAxes, fontsize=fontsize, fontweight=weight)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        best, best_score = None, np.inf
        for i, (ring, box) in enumerate(_candidates(*own, extent.width, extent.height, radius)):
            if not clear(box, own):
                continue
            score = ring + 0.02 * (i % len(DIRECTIONS)) + 0.6 * _inside(samples, box)
            if score < best_score:
                best, best_score = (ring, box), score
        return best

    def draw(text: str, weight: str, own: np.ndarray, spot: tuple[int, Bbox], color: str) -> None:
        ring, box = spot
        placed.append(box.padded(2))  # text lands on whole pixels: keep a margin
        x, y = ax.transData.inverted().transform(own)
        arrow = None
        if ring > 0:
            shrink = (radius + 1) * 72.0 / ax.figure.dpi
            arrow = {"arrowstyle": "-", "color": color, "lw": 0.6, "alpha": 0.7, "shrinkA": 1, "shrinkB": shrink}
        ax.annotate(
            text,
            (x, y),
            xytext=(box.x0 - own[0], box.y0 - own[1]),
            textcoords="offset pixels",
            ha="left",
            va="bottom",
            fontsize=fontsize,
            fontweight=weight,
            color=text_color(color),
            arrowprops=arrow,
            annotation_clip=False,
        ).set_in_layout(False)

    numbered: list[tuple[int, PointLabel]] = []
    for i in order:
        group, own = groups[i], centres[i]
        text = merge_texts([g.text for g in group])
        if not text:
            continue
        spot = best_spot(text, "normal", own)
        if spot is not None:
            draw(text, "normal", own, spot, group[0].color)
            continue
        number = first_number + len(numbered)
        numbered.append((number, PointLabel(group[0].x, group[0].y, text, group[0].color)))
        spot = best_spot(str(number), "bold", own)
        if spot is None:  # not even the number fits: beside the point regardless
            spot = (0, Bbox.from_bounds(own[0] + radius + 1, own[1] - fontsize, fontsize, fontsize))
        draw(str(number), "bold", own, spot, group[0].color)
    return numbered


def add_key(
    fig: Figure, renderer: RendererAgg, below: Legend, entries: list[tuple[int, PointLabel]], fontsize: float = 8.0
) -> None:
    """The numbered labels as a list under the legend `below`, each line in its family's colour (it
    may reach past the figure's edge: save with a tight bounding box, as `figures.save` does)."""
    if not entries:
        return
    box = below.get_window_extent(renderer)
    step = 1.35 * fontsize * fig.dpi / 72.0
    x = box.x0 + 4
    y = box.y0 - 0.6 * step
    fig.text(x / fig.bbox.width, y / fig.bbox.height, "labels by number", fontsize=fontsize, va="top", weight="bold")
    for i, (number, label) in enumerate(entries, start=1):
        fig.text(
            x / fig.bbox.width,
            (y - i * step) / fig.bbox.height,
            f"{number}  {label.text}",
            fontsize=fontsize,
            va="top",
            color=text_color(label.color),
        )
