"""What every task generator's config shares, so that a task is a small module: its `task` name, its
own fields and checks, the fields its slice reports and `generate(seed) -> Segment` (zoology/data/ar.py
is a complete example). A new task is also listed once in `zoology.config.SegmentConfig`.

Every task also takes `labels`: its own labelled positions ("task"), or next-token labels at every
position ("next_token": the label at t is the input at t + 1, the last position has none). A causal
model reading L tokens with next-token labels trains exactly as one reading x[:-1] against x[1:]:
this is how the recall tasks train on every position while their test segments score only the
recalled ones.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from zoology.data.sampling import FILLER_HELP, Filler
from zoology.data.segment import IGNORE_INDEX, Segment


class TaskConfig(BaseModel):
    """One segment of a task: `num_examples` sequences of `input_seq_len` tokens of [0, vocab_size).

    `generator_version` keys the data cache: bump it when the same config and seed generate other data.
    A `language_modelling` task labels every position with the next token and reports perplexity; a
    task that is not `cacheable` reads files its config does not pin, and is built afresh each time.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    generator_version: ClassVar[int]
    language_modelling: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True
    slice_keys: ClassVar[tuple[str, ...]]
    """The fields, after `task`, that name the segment's slice (accuracy is reported per slice)."""

    legend: ClassVar[str] = ""
    """How `python -m zoology.data show` marks the task's tokens (see `mark`)."""
    model_requirements: ClassVar[dict[str, Any]] = {}
    """ModelConfig fields the task needs, checked by TrainConfig (compression: {"readout": "bottleneck"})."""

    task: str
    vocab_size: int = Field(8192, ge=4)
    input_seq_len: int = Field(ge=2)
    num_examples: int = Field(ge=1)
    labels: Literal["task", "next_token"] = Field(
        "task",
        description="task: the task's own labelled positions; next_token: every position but the last, "
        "labelled with the next input token (language-model training on the task's sequences)",
    )

    def slice_fields(self) -> dict[str, Any]:
        """{"task": …, then each of `slice_keys`}: what every example of the segment shares (and
        `labels` when not the task's own)."""
        fields = {"task": self.task, **{name: getattr(self, name) for name in self.slice_keys}}
        return fields if self.labels == "task" else {**fields, "labels": self.labels}

    def build(self, seed: int) -> Segment:
        """The segment: (num_examples, input_seq_len) inputs and labels, every draw from one generator
        seeded with `seed`; the task's labels, or next-token labels (see `labels`)."""
        segment = self.generate(seed)
        return segment if self.labels == "task" else segment.with_next_token_labels()

    def generate(self, seed: int) -> Segment:
        """The task's examples with its own labels (what each task defines)."""
        raise NotImplementedError(f"{type(self).__name__} does not define generate")

    def mark(self, token: int) -> str:
        """A token as `show` prints it, marked with its role (e.g. 'k3' for a key)."""
        return str(token)

    def token_cells(self, inputs: torch.Tensor, labels: torch.Tensor) -> list[str]:
        """One printed cell per position of one example ((L,) inputs and labels): the marked token,
        followed by '→label' where the position is labelled."""
        return [
            self.mark(token) + ("" if label == IGNORE_INDEX else f"→{label}")
            for token, label in zip(inputs.tolist(), labels.tolist())
        ]


class KeyValueRecallConfig(TaskConfig):
    """Recall of `num_kv_pairs` key–value pairs in the Zoology vocabulary split (keys of [1, V/2), values
    of [V/2, V)), filler elsewhere; V > L. With `even_length`, L must be even (queries at even offsets).
    A filler other than the default 'random' is part of the slice."""

    even_length: ClassVar[bool] = False

    num_kv_pairs: int = Field(ge=1)
    filler: Filler = Field("random", description=FILLER_HELP)

    @model_validator(mode="after")
    def _check_length_and_vocabulary(self) -> KeyValueRecallConfig:
        L, V = self.input_seq_len, self.vocab_size
        if self.even_length and L % 2:
            raise ValueError(f"input_seq_len={L} must be even")
        if V <= L:
            raise ValueError(f"vocab_size={V} must be greater than input_seq_len={L}")
        return self

    def slice_fields(self) -> dict[str, Any]:
        fields = super().slice_fields()
        return fields if self.filler == "random" else {**fields, "filler": self.filler}
