"""A generated segment: examples of one task at one length, plus its slice description."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

IGNORE_INDEX = -100


@dataclass
class Segment:
    """inputs, labels: (examples, L) LongTensors; labels are IGNORE_INDEX where no loss applies.

    `slice` names what every example of the segment shares (task, input_seq_len, num_kv_pairs, …):
    accuracy is reported per slice.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    slice: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inputs.shape != self.labels.shape or self.inputs.dim() != 2:
            raise ValueError(
                f"inputs {tuple(self.inputs.shape)} and labels {tuple(self.labels.shape)} "
                "must both be (examples, seq_len)"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def name(self) -> str:
        return slice_name(self.slice)

    def with_next_token_labels(self) -> Segment:
        """The same inputs, each position t < L − 1 labelled with inputs[t + 1] (the last with none)."""
        labels = torch.full_like(self.inputs, IGNORE_INDEX)
        labels[:, :-1] = self.inputs[:, 1:]
        return Segment(self.inputs, labels, self.slice)

    def label_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions, targets), both (examples, K) with K the most labels any example has.

        Rows with fewer labels are padded with position 0 and target IGNORE_INDEX, so the trainer
        gathers hidden states at fixed-shape indices and never needs a data-dependent mask.
        """
        labelled = self.labels != IGNORE_INDEX
        k = max(int(labelled.sum(dim=1).max()), 1) if len(self) else 1
        positions = (~labelled).to(torch.int8).argsort(dim=1, stable=True)[:, :k]
        targets = self.labels.gather(1, positions)
        positions = positions.masked_fill(targets == IGNORE_INDEX, 0)
        return positions, targets


_SHORT = {
    "input_seq_len": "L",
    "num_kv_pairs": "N",
    "num_passes": "P",
    "num_overwrites": "W",
    "vocab_size": "V",
    "frac_noise": "noise",
    "num_tokens_to_copy": "n",
}
_DEFAULTS = {"num_passes": 1, "filler": "random", "labels": "task", "split": "all"}
_BARE = ("filler", "labels", "source", "split")


def slice_name(fields: dict[str, Any]) -> str:
    """'mqar-L64-N4'; '-P2' when the context is repeated, '-W8' with 8 overwrites, '-random_no_kv'
    or '-zero' for a non-default filler, '-next_token' for next-token labels; 'V16' for the
    vocabulary, 'noise0.2', 'n16' (tokens to copy); a text's source and split as they are
    ('text-L128-python_docs-held_out'); any other field as '-name=value'."""
    parts = [str(fields.get("task", "segment"))]
    for key, value in fields.items():
        if key == "task" or _DEFAULTS.get(key, object()) == value:
            continue
        if key in _SHORT:
            parts.append(f"{_SHORT[key]}{value}")
        elif key in _BARE:
            parts.append(str(value))
        else:
            parts.append(f"{key}={value}")
    return "-".join(parts)
