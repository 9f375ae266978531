"""Print examples of a segment as the model sees them, with keys, values, queries and labels marked.

Key–value recall tasks (MQAR, AR, overwrite MQAR):
k12 v40   a key and its value in the context
q12→40    a query: the model reads key 12 here and must predict 40 (the label; loss and accuracy)
.7        filler;  _ is token 0;  !12 is filler that equals one of this example's keys

Other tasks mark each token by its role (`TaskConfig.mark`, explained by the task's `legend`) and
write →label after every labelled position.
"""

from __future__ import annotations

from typing import Any

import torch

from zoology.data.segment import IGNORE_INDEX, Segment
from zoology.data.task import KeyValueRecallConfig

LEGEND = "k12 v40 context key, value · q12→40 query of key 12, label 40 · .7 filler · _ token 0 · !12 filler = a key"


ROLES = ("key", "value", "query", "filler", "zero", "lookalike", "other")
"""What a position of an example is: a context key or value, a query (a labelled position), filler, token 0,
filler equal to one of the example's keys, or (tasks other than key–value recall) an unlabelled token."""


def token_roles(inputs: torch.Tensor, labels: torch.Tensor, context_len: int) -> list[str]:
    """The role (one of ROLES) of each position of one key–value recall example ((L,) inputs and labels):
    labelled positions are queries; in the first `context_len` positions keys (even) and values (odd)."""
    tokens, targets = inputs.tolist(), labels.tolist()
    keys = set(tokens[0:context_len:2])
    roles = []
    for pos, (token, label) in enumerate(zip(tokens, targets)):
        if label != IGNORE_INDEX:
            roles.append("query")
        elif pos < context_len:
            roles.append("key" if pos % 2 == 0 else "value")
        elif token == 0:
            roles.append("zero")
        else:
            roles.append("lookalike" if token in keys else "filler")
    return roles


MARKS = {"key": "k{}", "value": "v{}", "filler": ".{}", "zero": "_", "lookalike": "!{}"}


def token_cells(inputs: torch.Tensor, labels: torch.Tensor, context_len: int) -> list[str]:
    """One marked string per position of one example ((L,) inputs and labels), by its `token_roles`."""
    roles = token_roles(inputs, labels, context_len)
    return [
        f"q{token}→{label}" if role == "query" else MARKS[role].format(token)
        for role, token, label in zip(roles, inputs.tolist(), labels.tolist())
    ]


def example_marks(config: Any, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[list[str], list[str]]:
    """(cells, roles) of one example of a segment of `config`: the key–value marks of `token_cells` and
    `token_roles` for recall tasks; the task's own `token_cells`, with roles 'query' (labelled) and 'other',
    for the rest."""
    if isinstance(config, KeyValueRecallConfig):
        C = config.context_len
        return token_cells(inputs, labels, C), token_roles(inputs, labels, C)
    roles = ["other" if label == IGNORE_INDEX else "query" for label in labels.tolist()]
    return config.token_cells(inputs, labels), roles


def legend(config: Any) -> str:
    """The line explaining how `config`'s tokens are marked."""
    return LEGEND if isinstance(config, KeyValueRecallConfig) else f"{config.task}: {type(config).legend}"


def render_example(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    context_len: int,
    columns: int | None = None,
    max_tokens: int | None = None,
    line_width: int = 120,
    cells: list[str] | None = None,
) -> str:
    """The example as rows of marked tokens, each row prefixed by its first position; `columns`
    tokens per row (default: a multiple of 4 that fits `line_width`). `cells` (default: the
    key–value marks of `token_cells`) are the marked tokens."""
    cells = token_cells(inputs, labels, context_len) if cells is None else cells
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
    """The config with its task, vocabulary (and filler) always shown, other fields when not default."""
    filler = isinstance(config, KeyValueRecallConfig)
    shown = {"input_seq_len": config.input_seq_len}
    shown |= config.model_dump(exclude_defaults=True, exclude={"task", "vocab_size", "filler"})
    fields = "".join(f", {k}={v!r}" for k, v in shown.items())
    return f"{type(config).__name__}(task={config.task!r}, vocab_size={config.vocab_size}{fields}" + (
        f", filler={config.filler!r})" if filler else ")"
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
    head = (
        f"== {title + '  ' if title else ''}{segment.name}  seed {seed}  ({min(num, len(segment))} of {len(segment)})"
    )
    if config.language_modelling:
        return render_text(config, segment, num, max_tokens, head)
    lines = [head, f"   {describe(config)}"]
    for e in range(min(num, len(segment))):
        inputs, labels = segment.inputs[e], segment.labels[e]
        queries = int((labels != IGNORE_INDEX).sum())
        cells, roles = example_marks(config, inputs, labels)
        if not isinstance(config, KeyValueRecallConfig):
            lines.append(f"example {e}: {queries} labelled position{'' if queries == 1 else 's'}")
        else:
            lookalikes = roles.count("lookalike")
            note = f"; {lookalikes} filler token(s) equal a key" if lookalikes else ""
            C = config.context_len
            lines.append(
                f"example {e}: context {C} tokens, {queries} labelled quer{'y' if queries == 1 else 'ies'}{note}"
            )
        lines.append(render_example(inputs, labels, 0, columns, max_tokens, cells=cells))
    return "\n".join(lines)


def render_text(config: Any, segment: Segment, num: int, max_tokens: int | None, head: str) -> str:
    """Text windows as the text they hold (bytes decoded; a tokenizer's ids as numbers), newlines
    shown as ⏎; every position's label is the next token."""
    shown = config.model_dump(exclude_defaults=True, exclude={"task"})
    lines = [head, f"   {type(config).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"]
    for e in range(min(num, len(segment))):
        ids = segment.inputs[e].tolist()[:max_tokens]
        text = bytes(ids).decode("utf-8", errors="replace") if config.tokenizer is None else " ".join(map(str, ids))
        lines.append(f"example {e}: {len(segment.inputs[e])} tokens, each labelled with the token after it")
        lines += [f"       {line}" for line in text.replace("\n", "⏎\n").splitlines()]
    return "\n".join(lines)
