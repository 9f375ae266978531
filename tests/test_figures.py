"""Figures a reader can read: point labels that never collide (numbered with a key where they do not
fit), tick labels that never touch, the lr of each point, and one style per mixer family in every figure."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.text import Text

from zoology import analysis, results
from zoology.analysis import layout, palette
from zoology.config import TrainConfig

SLICE = "mqar-L64-N8"


def run_row(mixer: str, d_model: int, lr: float, state: int, acc: float, kwargs: dict | None = None) -> dict:
    """One results row, as results.load builds it from a finished run's result and config."""
    kw = kwargs or {}
    config = TrainConfig.model_validate(
        {
            "model": {"vocab_size": 128, "d_model": d_model, "mixers": ["base_conv", {"name": mixer, "kwargs": kw}]},
            "data": {
                "train": [{"input_seq_len": 64, "num_kv_pairs": 8, "num_examples": 8, "vocab_size": 128}],
                "test": [{"input_seq_len": 64, "num_kv_pairs": 8, "num_examples": 8, "vocab_size": 128}],
            },
            "lr": lr,
        }
    )
    result = {
        "run_id": config.run_id,
        "name": config.name,
        "params": 1000,
        "state_size": state,
        "state_seq_len": 64,
        "epochs": 1,
        "last": {"acc": acc, "slices": {SLICE: acc}},
        "best": {"acc": acc, "epoch": 0, "slices": {SLICE: acc}},
        "wall_time": 1.0,
    }
    return results.result_row(result, config.model_dump(mode="json"))


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def crowded() -> pd.DataFrame:
    """Three families whose points crowd the top right (as attention, Based and ReBased do in the
    default sweep), with learning rates that differ between models."""
    rows = []
    for i, d in enumerate((16, 24, 32, 48, 64, 96)):
        rows.append(run_row("attention", d, (1e-3, 3e-3)[i % 2], 4000 + 300 * i, 0.97 + 0.004 * i))
        rows.append(run_row("based", d, 1e-2, 4100 + 280 * i, 0.96 + 0.005 * i))
        rows.append(run_row("sliding_window", d, 3e-3, 4200 + 250 * i, 0.95 + 0.006 * i, {"window_size": 8}))
    return frame(rows)


def drawn(fig):
    """Save the figure (as the CLI does), draw it again untranslated (a tight bounding box shifts the
    whole saved image) and return the renderer, for measuring what was drawn."""
    analysis.save(fig, io.BytesIO())
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def marker_centres(ax) -> np.ndarray:
    xy = [ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()])) for line in ax.get_lines()]
    return np.vstack([a for a in xy if len(a)])


def test_point_labels_never_overlap_and_what_does_not_fit_is_numbered_with_a_key():
    df = crowded()
    fig = analysis.plot_frontier(df)
    renderer = drawn(fig)
    ax = fig.axes[0]
    frame_box = ax.get_window_extent(renderer)
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text, without its leader line
    assert boxes, "no point was labelled"
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    for box in boxes:
        assert frame_box.x0 <= box.x0 and box.x1 <= frame_box.x1 and frame_box.y0 <= box.y0 and box.y1 <= frame_box.y1
    centres = marker_centres(ax)
    for text, box in zip(ax.texts, boxes):
        x, y = centres[:, 0], centres[:, 1]
        inside = (x > box.x0) & (x < box.x1) & (y > box.y0) & (y < box.y1)
        assert not inside.any(), f"label {text.get_text()!r} covers a point"

    numbers = [t.get_text() for t in ax.texts if t.get_text().isdigit()]
    assert numbers, "the crowded corner should need numbered labels"
    key = [t.get_text() for t in fig.texts if t.get_text()[:1].isdigit()]
    assert [k.split("  ")[0] for k in key] == sorted(numbers, key=int)
    written = [t.get_text() for t in ax.texts if not t.get_text().isdigit()] + [k.split("  ", 1)[1] for k in key]
    points = analysis.frontier_points(df)
    assert len(written) == len(points)  # every point once: beside it, or by number in the key
    for _, p in points.iterrows():
        assert f"{p['model_label']} lr={analysis.figures.format_lr(p['lr'])}" in written
    legend = fig.legends[0].get_window_extent(renderer)
    assert not any(legend.overlaps(b) for b in boxes) and legend.x0 >= frame_box.x1  # the legend is beside the data


def test_one_lr_for_every_point_is_said_once_not_on_each_label():
    df = frame([run_row("attention", d, 3e-3, 1000 * d, 0.5 + d / 200) for d in (16, 32, 64)])
    fig = analysis.plot_frontier(df)
    drawn(fig)
    assert "lr 3e-3 for every point" in fig.legends[0].get_title().get_text()
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["d_model=16", "d_model=32", "d_model=64"]


@pytest.mark.parametrize("unit", ["elements", "bytes"])
def test_tick_labels_do_not_collide_on_a_narrow_log_axis(unit):
    """The state axis of the default sweep spans about a decade: 3k and 4k must not run together."""
    df = frame([run_row("attention", d, 3e-3, s, 0.5) for d, s in zip((16, 24, 32, 48), (750, 1200, 2500, 3600))])
    fig = analysis.plot_frontier(df, unit=unit)
    renderer = drawn(fig)
    ax = fig.axes[0]
    labels = [
        t.label1
        for t in [*ax.xaxis.get_major_ticks(), *ax.xaxis.get_minor_ticks()]
        if t.label1.get_visible() and t.label1.get_text() and ax.get_xlim()[0] <= t.get_loc() <= ax.get_xlim()[1]
    ]
    texts = [label.get_text() for label in labels]
    assert len(texts) >= 3 and all(len(t) <= 4 for t in texts), texts  # compact: 1k, 2k, 5k, 10k
    boxes = [label.get_window_extent(renderer) for label in labels]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), texts


def test_a_family_keeps_its_colour_and_marker_in_every_figure(tmp_path):
    alone = frame([run_row("attention", 16, 1e-3, 1000, 0.9), run_row("attention", 32, 1e-3, 2000, 0.95)])
    others = [run_row("based", 16, 1e-3, 500, 0.8), run_row("mamba", 16, 1e-3, 700, 0.2)]
    mixed = frame([*alone.to_dict("records"), *others])
    mixed = mixed.assign(model=mixed["model"].replace({"base_conv+mamba": "mamba"}))

    def front_style(df, family):
        (line,) = [ln for ln in analysis.plot_frontier(df).axes[0].get_lines() if ln.get_label() == family]
        return to_hex(line.get_color()), line.get_marker()

    expected = (palette.FAMILY_STYLES["attention"].color, palette.FAMILY_STYLES["attention"].marker)
    assert front_style(alone, "base_conv+attention") == front_style(mixed, "base_conv+attention") == expected
    assert front_style(mixed, "mamba")[0] == palette.FAMILY_STYLES["mamba"].color

    curves = pd.DataFrame(
        {"run_id": "a", "name": "att", "family": "base_conv+attention", "epoch": [0, 1], "train_loss": 1.0,
         "valid_loss": 1.0, "valid_acc": [0.2, 0.4]}
    )  # fmt: skip
    (acc_line,) = analysis.plot_curves(curves).axes[1].get_lines()
    assert (to_hex(acc_line.get_color()), acc_line.get_marker()) == expected

    slices = analysis.plot_slices(mixed)
    colours = [to_hex(t.get_color()) for t in slices.axes[0].get_yticklabels()]
    assert colours[0] == to_hex(layout.text_color(palette.FAMILY_STYLES["attention"].color))

    scores = pd.DataFrame(
        {"in_context_recall": [0.9, 0.8, 0.1], "mean": [0.9, 0.8, 0.1]},
        index=pd.Index(["base_conv+based", "base_conv+attention", "mamba"], name="family"),
    )
    heat = analysis.plot_task_scores(scores).axes[0]
    rows = {t.get_text(): to_hex(t.get_color()) for t in heat.get_yticklabels()}
    markers = [(to_hex(ln.get_markeredgecolor()), ln.get_marker()) for ln in heat.get_lines()]
    for family, mixer in (("base_conv+based", "based"), ("base_conv+attention", "attention"), ("mamba", "mamba")):
        style = palette.FAMILY_STYLES[mixer]
        assert rows[family] == to_hex(layout.text_color(style.color))
        assert (style.color, style.marker) in markers  # the row's marker, as on the frontier


def test_the_palette_covers_families_to_come_and_any_other_name():
    coming = ["delta_net", "gated_delta_net", "gla", "mamba2", "rwkv7", "hyena", "h3"]
    assert set(coming) <= set(palette.FAMILY_STYLES)
    colours = [s.color for s in palette.FAMILY_STYLES.values()]
    assert len(set(colours)) == len(colours)
    assert palette.family_style("base_conv+gla") == palette.FAMILY_STYLES["gla"]
    assert palette.family_style("base_conv+my_pkg.mixers.CumulativeMean") == palette.family_style("CumulativeMean")
    own = palette.family_style("base_conv+CumulativeMean")
    assert own.color in palette.FALLBACK_COLORS and own.color not in colours
    styles = palette.family_styles(["base_conv+attention", "attention", "base_conv+based"])
    assert styles["attention"].variant == 0 and styles["base_conv+attention"].variant == 1  # told apart
    assert styles["base_conv+attention"].marker_kwargs()["markerfacecolor"] == "white"
    assert styles["base_conv+attention"].linestyle == "--"


def test_points_that_coincide_share_one_label():
    assert layout.merge_texts(["d_model=64 num_heads=1", "d_model=64 num_heads=2"]) == "d_model=64 num_heads=1/2"
    assert layout.merge_texts(["d_model=64", "window_size=8"]) == "d_model=64 / window_size=8"
    assert layout.compact_number(1500) == "1.5k" and layout.compact_number(2_000_000) == "2M"


def test_a_score_table_of_one_family_keeps_its_colour_bar_label_and_task_names_whole():
    scores = pd.DataFrame(
        [[1.0, 0.98, 1.0, 0.45, 0.63, 1.0, 0.84]],
        columns=["in_context_recall", "fuzzy_recall", "noisy_recall", "selective_copying", "compression",
                 "memorization", "mean"],
        index=pd.Index(["base_conv+based"], name="family"),
    )  # fmt: skip
    fig = analysis.plot_task_scores(scores, label="token accuracy (selected epoch, class-balanced)")
    renderer = drawn(fig)
    ax, bar = fig.axes
    label = bar.yaxis.label.get_window_extent(renderer)
    assert label.height <= bar.get_window_extent(renderer).height * 1.05, "the label runs past its colour bar"
    assert fig.bbox.y0 <= label.y0 and label.y1 <= fig.bbox.y1
    ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    for a, b in itertools.combinations(ticks, 2):
        assert not a.overlaps(b)


@pytest.mark.parametrize("facet", [None, "d_model"])
def test_a_long_title_is_wrapped_over_the_panels_clear_of_the_legend(facet):
    title = "Recall against perplexity: text and MQAR trained together in one model, every family at two sizes"
    fig = analysis.plot_frontier(crowded(), title=title, facet=facet)
    renderer = drawn(fig)
    shown = fig.axes[0].title if facet is None else fig._suptitle
    assert shown.get_text().split() == title.split()  # every word, wrapped onto lines
    box = shown.get_window_extent(renderer)
    assert not box.overlaps(fig.legends[0].get_window_extent(renderer))
    panels = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
    assert min(p.x0 for p in panels) - 1 <= box.x0 and box.x1 <= max(p.x1 for p in panels) + 1
    assert not any(box.overlaps(p) for p in panels)
