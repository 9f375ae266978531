"""Recall frontier, slice and training-curve figures from a sweep's results.

from zoology import results, analysis
df = results.load("runs/mqar")
analysis.frontier_points(df, metric="best")          # the data: one row per model at its best lr
analysis.plot_frontier(df).savefig("frontier.png")   # the figure
"""

from zoology.analysis.data import (
    Axis,
    accuracy,
    annotate_models,
    frontier_points,
    load_curves,
    mixer_family,
    pareto_mask,
    resolve_axis,
    run_table,
    select_slices,
    slice_matrix,
    slice_names,
    state_axis,
    throughput_axis,
)
from zoology.analysis.figures import family_styles, plot_curves, plot_frontier, plot_slices

__all__ = [
    "Axis",
    "accuracy",
    "annotate_models",
    "family_styles",
    "frontier_points",
    "load_curves",
    "mixer_family",
    "pareto_mask",
    "plot_curves",
    "plot_frontier",
    "plot_slices",
    "resolve_axis",
    "run_table",
    "select_slices",
    "slice_matrix",
    "slice_names",
    "state_axis",
    "throughput_axis",
]
