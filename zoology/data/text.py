"""Language modelling on plain text: next-token loss at every position of fixed-length windows.

    text (a file, a folder of files, or a corpus that ships with Python) -> tokens t_0 … t_{T−1}
    split: all, or train = t_0 … t_{b−1} and held_out = t_b … t_{T−1}, b = ⌊(1 − held_out_fraction)·T⌋
    window i of the part p: inputs p[iL … iL+L−1], labels p[iL+1 … iL+L]  (every position labelled)

Tokens are the text's UTF-8 bytes (vocab_size 256) unless `tokenizer` names an installed function
text -> token ids by its dotted path; nothing is fetched at run time. The held-out part is the end of
the text, so no window of it overlaps a training window. A folder is read recursively, files in
sorted order (hidden ones skipped), joined by newlines.

`corpus: python_docs` is English prose that every CPython ships: the Python reference and library
documentation topics behind `help()` (`pydoc_data.topics`, about 465,000 characters), under the
Python Software Foundation License Version 2.
"""

from __future__ import annotations

import codecs
import importlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from zoology.data.segment import Segment
from zoology.data.task import TaskConfig

CORPORA = ("python_docs",)


class TextConfig(TaskConfig):
    """One text segment: the windows of `input_seq_len` tokens of one part of a text (all of them, or
    a random `num_examples` of them, kept in text order)."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("input_seq_len",)
    language_modelling: ClassVar[bool] = True
    cacheable: ClassVar[bool] = False

    task: Literal["text"] = "text"
    path: str | None = Field(None, description="a text file, or a folder of them")
    corpus: Literal["python_docs"] | None = Field(None, description="a text that ships with Python, instead of path")
    split: Literal["all", "train", "held_out"] = Field(
        description="all of the text, or its first (train) or last (held_out) part"
    )
    held_out_fraction: float = Field(0.1, gt=0, lt=1, description="the share of tokens in the held-out part")
    encoding: str = Field("utf-8", description="the files' text encoding")
    tokenizer: str | None = Field(
        None, description="dotted path to an installed function text -> token ids; default: UTF-8 bytes"
    )
    vocab_size: int = Field(256, ge=2)
    num_examples: int | None = Field(None, ge=1, description="windows to take, at random; default: every window")

    @model_validator(mode="after")
    def _check_source(self) -> TextConfig:
        if (self.path is None) == (self.corpus is None):
            raise ValueError(f"give exactly one of path (a file or folder) or corpus ({', '.join(CORPORA)})")
        if self.path is not None and not self.path.strip():
            raise ValueError("path is empty: give a text file or a folder of them")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"encoding={self.encoding!r}: not a codec Python knows (e.g. utf-8, latin-1)") from None
        if self.tokenizer is None and self.vocab_size < 256:
            raise ValueError(f"vocab_size={self.vocab_size}: byte tokens need vocab_size >= 256")
        return self

    @property
    def source(self) -> str:
        """The text's short name: the corpus, or the file or folder name."""
        return self.corpus or Path(self.path).name

    def slice_fields(self) -> dict[str, Any]:
        return {**super().slice_fields(), "source": self.source, "split": self.split}

    def read_text(self) -> str:
        """The whole text, decoded; clear errors for a missing, empty or wrongly encoded source."""
        if self.corpus == "python_docs":
            try:
                from pydoc_data.topics import topics
            except ImportError:
                raise ValueError("corpus=python_docs: this Python has no pydoc_data; give a path instead") from None
            return "\n\n".join(topics[name] for name in sorted(topics))
        path = Path(self.path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"path={self.path!r}: no such file or folder")
        if path.is_file():
            files = [path]
        else:
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not files:
                raise ValueError(f"path={self.path!r}: the folder holds no files")
        texts = []
        for file in files:
            data = file.read_bytes()
            try:
                texts.append(data.decode(self.encoding))
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{file}: not {self.encoding} text (byte {e.start} is {data[e.start : e.start + 1]!r}); "
                    "set encoding to the file's encoding, e.g. encoding: latin-1"
                ) from None
        text = "\n".join(texts)
        if not text.strip():
            raise ValueError(f"path={self.path!r}: the text is empty")
        return text

    def tokens(self) -> torch.Tensor:
        """The whole text as a 1-D LongTensor of token ids in [0, vocab_size)."""
        text = self.read_text()
        if self.tokenizer is None:
            return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()
        module, _, name = self.tokenizer.rpartition(".")
        try:
            encode = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ValueError(f"tokenizer={self.tokenizer!r}: cannot import it ({e})") from None
        ids = torch.as_tensor(encode(text), dtype=torch.long).flatten()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"tokenizer={self.tokenizer!r} gave token ids in [{int(ids.min())}, {int(ids.max())}] but "
                f"vocab_size={self.vocab_size}: set vocab_size to the tokenizer's vocabulary"
            )
        return ids

    def build(self, seed: int) -> Segment:
        tokens = self.tokens()
        boundary = int(len(tokens) * (1 - self.held_out_fraction))
        part = {"all": tokens, "train": tokens[:boundary], "held_out": tokens[boundary:]}[self.split]
        L = self.input_seq_len
        n = (len(part) - 1) // L
        if n < 1:
            raise ValueError(
                f"input_seq_len={L} is longer than the text: the {self.split} part of {self.source} has "
                f"{len(part)} tokens and a window needs input_seq_len + 1"
            )
        rows = torch.arange(n)
        if self.num_examples is not None:
            if self.num_examples > n:
                raise ValueError(
                    f"num_examples={self.num_examples} but the {self.split} part of {self.source} has {n} windows "
                    f"of input_seq_len={L}"
                )
            gen = torch.Generator().manual_seed(seed)
            rows = torch.randperm(n, generator=gen)[: self.num_examples].sort().values
        inputs = part[: n * L].view(n, L)[rows]
        labels = part[1 : n * L + 1].view(n, L)[rows]
        return Segment(inputs=inputs, labels=labels, slice=self.slice_fields())
