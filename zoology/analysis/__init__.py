"""Recall frontier, slice and training-curve figures from a sweep's results.

from zoology import results, analysis
df = results.load("runs/mqar")
analysis.frontier_points(df, metric="best")          # the data: one row per model at its best lr
analysis.plot_frontier(df).savefig("frontier.png")   # the figure
analysis.task_scores(results.load("runs/mad"))       # families × tasks: the MAD score table
analysis.retrieval_mass("runs/mqar/<run id>")        # per layer and slice: query weight on its key's value
"""

from zoology.analysis.data import (
    Axis,
    accuracy,
    annotate_models,
    frontier_points,
    load_curves,
    mixer_family,
    pareto_mask,
    perplexity_axis,
    resolve_axis,
    run_table,
    select_slices,
    slice_matrix,
    slice_names,
    state_axis,
    throughput_axis,
)
from zoology.analysis.figures import (
    DPI,
    draw_heatmap,
    plot_curves,
    plot_frontier,
    plot_slices,
    plot_task_scores,
    plot_token_weights,
    save,
    write_frontier,
)
from zoology.analysis.palette import FAMILY_STYLES, family_style, family_styles
from zoology.analysis.retrieval import retrieval_mass
from zoology.analysis.scores import score_column, setting_scores, task_scores

__all__ = [
    "DPI",
    "FAMILY_STYLES",
    "Axis",
    "accuracy",
    "annotate_models",
    "draw_heatmap",
    "family_style",
    "family_styles",
    "frontier_points",
    "load_curves",
    "mixer_family",
    "pareto_mask",
    "perplexity_axis",
    "plot_curves",
    "plot_frontier",
    "plot_slices",
    "plot_task_scores",
    "plot_token_weights",
    "resolve_axis",
    "retrieval_mass",
    "run_table",
    "save",
    "score_column",
    "select_slices",
    "slice_matrix",
    "slice_names",
    "setting_scores",
    "state_axis",
    "task_scores",
    "throughput_axis",
    "write_frontier",
]
