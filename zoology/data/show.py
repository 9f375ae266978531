"""Print examples of a segment as the model sees them, with keys, values, queries and labels marked.

k12 v40   a key and its value in the context
q12→40    a query: the model reads key 12 here and must predict 40 (the label; loss and accuracy)
.7        filler;  _ is token 0;  !12 is filler that equals one of this example's keys
"""

from __future__ import annotations

from typing import Any

import torch

from zoology.data.segment import IGNORE_INDEX, Segment

LEGEND = "k12 v40 context key, value · q12→40 query of key 12, label 40 · .7 filler · _ token 0 · !12 filler = a key"


def token_cells(inputs: torch.Tensor, labels: torch.Tensor, context_len: int) -> list[str]:
    """One marked string per position of one example ((L,) inputs and labels)."""
    tokens, targets = inputs.tolist(), labels.tolist()
    keys = set(tokens[0:context_len:2])
    cells = []
    for pos, (token, label) in enumerate(zip(tokens, targets)):
        if label != IGNORE_INDEX:
            cells.append(f"q{token}→{label}")
        elif pos < context_len:
            cells.append(f"{'kv'[pos % 2]}{token}")
        elif token == 0:
            cells.append("_")
        elif token in keys:
            cells.append(f"!{token}")
        else:
            cells.append(f".{token}")
    return cells


def render_example(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    context_len: int,
    columns: int | None = None,
    max_tokens: int | None = None,
    line_width: int = 120,
) -> str:
    """The example as rows of marked tokens, each row prefixed by its first position; `columns`
    tokens per row (default: a multiple of 4 that fits `line_width`)."""
    cells = token_cells(inputs, labels, context_len)
    shown = cells if max_tokens is None else cells[:max_tokens]
    width = max(len(c) for c in cells) + 1
    if columns is None:
        columns = max(4, (line_width - 7) // width // 4 * 4)
    rows = [
        f"{start:>6} " + "".join(c.ljust(width) for c in shown[start : start + columns]).rstrip()
        for start in range(0, len(shown), columns)
    ]
    if len(shown) < len(cells):
        rows.append(f"{'':>6} … {len(cells) - len(shown)} more tokens")
    return "\n".join(rows)


def describe(config: Any) -> str:
    """The config with its task, vocabulary and filler always shown, other fields when not default."""
    shown = config.model_dump(exclude_defaults=True, exclude={"task", "vocab_size", "filler"})
    fields = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return (
        f"{type(config).__name__}(task={config.task!r}, vocab_size={config.vocab_size}, {fields}, "
        f"filler={config.filler!r})"
    )


def render_segment(
    config: Any,
    segment: Segment,
    seed: int,
    num: int = 3,
    columns: int | None = None,
    max_tokens: int | None = None,
    title: str | None = None,
) -> str:
    """A header naming the segment, its config and seed, then the first `num` examples."""
    C = config.context_len
    head = (
        f"== {title + '  ' if title else ''}{segment.name}  seed {seed}  ({min(num, len(segment))} of {len(segment)})"
    )
    lines = [head, f"   {describe(config)}"]
    for e in range(min(num, len(segment))):
        inputs, labels = segment.inputs[e], segment.labels[e]
        queries = int((labels != IGNORE_INDEX).sum())
        lookalikes = sum(c.startswith("!") for c in token_cells(inputs, labels, C))
        note = f"; {lookalikes} filler token(s) equal a key" if lookalikes else ""
        lines.append(f"example {e}: context {C} tokens, {queries} labelled quer{'y' if queries == 1 else 'ies'}{note}")
        lines.append(render_example(inputs, labels, C, columns, max_tokens))
    return "\n".join(lines)
