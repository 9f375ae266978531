"""Pydantic configs: a TrainConfig is one run (model + data + optimisation).

Every model forbids unknown fields, and a mixer's kwargs are checked against its constructor when
the config is built, so a typo fails at launch, not hours into a sweep.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from zoology import mixers
from zoology.data.ar import ARConfig
from zoology.data.compression import CompressionConfig
from zoology.data.fuzzy_recall import FuzzyRecallConfig
from zoology.data.in_context_recall import InContextRecallConfig
from zoology.data.memorization import MemorizationConfig
from zoology.data.mqar import MQARConfig
from zoology.data.mqar_overwrite import OverwriteMQARConfig
from zoology.data.noisy_recall import NoisyRecallConfig
from zoology.data.presets import PRESETS_DIR
from zoology.data.segment import slice_name
from zoology.data.selective_copying import SelectiveCopyingConfig
from zoology.data.text import TextConfig
from zoology.errors import UserError
from zoology.utils import content_hash


def _task_of(value: Any) -> str:
    """Segments name their generator in `task`; plain MQAR may leave it out."""
    if isinstance(value, dict):
        return value.get("task", "mqar")
    return getattr(value, "task", "mqar")


SegmentConfig = Annotated[
    Union[
        Annotated[MQARConfig, Tag("mqar")],
        Annotated[ARConfig, Tag("ar")],
        Annotated[OverwriteMQARConfig, Tag("mqar_overwrite")],
        Annotated[TextConfig, Tag("text")],
        Annotated[InContextRecallConfig, Tag("in_context_recall")],
        Annotated[FuzzyRecallConfig, Tag("fuzzy_recall")],
        Annotated[NoisyRecallConfig, Tag("noisy_recall")],
        Annotated[SelectiveCopyingConfig, Tag("selective_copying")],
        Annotated[CompressionConfig, Tag("compression")],
        Annotated[MemorizationConfig, Tag("memorization")],
    ],
    Discriminator(_task_of),
]
"""Any segment generator's config, chosen by its `task` field; the one place segment types are listed."""

segment_adapter: TypeAdapter = TypeAdapter(SegmentConfig)
"""`segment_adapter.validate_python({"task": "ar", ...})` parses one segment config."""


def family_name(mixer_names: Iterable[str]) -> str:
    """A model's family: its mixers' short names joined by '+', e.g. 'base_conv+based' (a dotted
    path counts by its last part: 'my_pkg.mod.MyMixer' -> 'MyMixer')."""
    return "+".join(name.rpartition(".")[2] for name in mixer_names)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MixerConfig(_Strict):
    """A mixer by registry name or dotted import path, with constructor kwargs."""

    name: str
    kwargs: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_kwargs(self) -> MixerConfig:
        mixers.check_kwargs(self.name, self.kwargs)
        return self


class ModelConfig(_Strict):
    """Embedding, n_layers pre-norm residual blocks, final norm, tied LM head (untied with
    tie_embeddings=False).

    Layer i uses mixers[i mod len(mixers)]: [base_conv, based] with 2 layers is the Based hybrid.
    """

    vocab_size: int = Field(8192, ge=2)
    d_model: int = Field(128, ge=1)
    n_layers: int = Field(2, ge=1)
    mixers: list[MixerConfig] = Field(min_length=1)
    mlp_expand: int = Field(0, ge=0, description="0: no MLP between mixers (the MQAR setups)")
    mlp: Literal["gelu", "swiglu"] = Field(
        "gelu",
        description="the MLP of each block, when it has one: gelu (Linear, GELU, Linear, with biases) or "
        "swiglu (W2·(silu(W1·x) ⊙ W3·x), no biases)",
    )
    mlp_width: int | None = Field(
        None, ge=1, description="the MLP's inner width (default mlp_expand · d_model); setting it adds the MLP"
    )
    position_embeddings: bool = Field(False, description="learned absolute positions")
    embed_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm_eps: float = Field(1e-5, gt=0)
    tie_embeddings: bool = Field(
        True, description="unembed with the token embedding; False: a Linear(d_model, vocab_size) of its own, no bias"
    )
    readout: Literal["tokens", "bottleneck"] = Field(
        "tokens",
        description="tokens: logits from each position's hidden state; bottleneck: every position decoded "
        "from the last position's hidden state plus a sinusoidal position (an encoder-decoder: the "
        "compression task)",
    )

    @model_validator(mode="after")
    def _check_mlp(self) -> ModelConfig:
        if self.mlp == "swiglu" and not self.inner_width:
            raise ValueError("mlp='swiglu' needs an inner width: set mlp_width (or mlp_expand > 0)")
        return self

    @model_validator(mode="after")
    def _check_mixer_shapes(self) -> ModelConfig:
        for i, mixer in enumerate(self.mixers):
            for layer in range(i, self.n_layers, len(self.mixers)):
                try:
                    mixers.check_args(mixer.name, self.d_model, layer, mixer.kwargs)
                except ValueError as e:
                    raise ValueError(f"mixers[{i}] ({mixer.name}): {e}") from e
        return self

    @property
    def inner_width(self) -> int:
        """The MLP's inner width; 0: no MLP."""
        return self.mlp_width if self.mlp_width is not None else self.mlp_expand * self.d_model

    @property
    def family(self) -> str:
        return family_name(m.name for m in self.mixers)


class DataConfig(_Strict):
    """Train and test segments; each segment's seed is derived from `seed`, its split and index.

    `cache_dir` and `test_batch_size` change where data is kept and how evaluation is batched, not
    the results: they do not change the run id."""

    train: list[SegmentConfig] = Field(min_length=1)
    test: list[SegmentConfig] = Field(min_length=1)
    valid: list[SegmentConfig] = Field(
        [],
        description="validation segments, drawn from seeds of their own: when given, early stopping and the "
        "selected epoch (result 'selected', the test numbers of that epoch) follow them instead of the test set",
    )
    batch_size: int = Field(256, ge=1)
    test_batch_size: int = Field(256, ge=1)
    seed: int = Field(0, ge=0)
    shuffle: bool = Field(True, description="reshuffle examples and batch order every epoch")
    cache_dir: str | None = Field(None, description="cache generated segments here")

    LAUNCH_FIELDS: ClassVar[tuple[str, ...]] = ("cache_dir", "test_batch_size")

    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test", "valid")

    @model_validator(mode="after")
    def _check_distinct_slices(self) -> DataConfig:
        for split in ("test", "valid"):
            seen: dict[str, int] = {}
            for i, segment in enumerate(getattr(self, split)):
                name = slice_name(segment.slice_fields())
                if name in seen:
                    raise ValueError(
                        f"{split}[{seen[name]}] and {split}[{i}] are the same slice {name!r} (accuracy is "
                        f"reported per slice): make them differ in a field of the slice, or drop one"
                    )
                seen[name] = i
        return self

    @property
    def max_seq_len(self) -> int:
        return max(s.input_seq_len for s in [*self.train, *self.test, *self.valid])


class LoggerConfig(_Strict):
    """Weights & Biases logging of a run (needs the `wandb` extra). Launch metadata: it never changes
    a run's id. The launcher logs from the driver: config, one history row per epoch, and a summary
    (parameters, state size, final and best accuracy, or the failure reason)."""

    project: str = Field(min_length=1)
    entity: str | None = None
    group: str | None = Field(None, description="default: the sweep name")
    tags: list[str] = []
    mode: Literal["online", "offline", "disabled"] | None = Field(None, description="default: WANDB_MODE or online")
    dir: str | None = Field(None, description="where W&B writes its files; default: WANDB_DIR or the sweep directory")


def add_set_flag(parser: argparse.ArgumentParser, example: str = "model.d_model=64 lr=3e-3") -> None:
    """The `--set KEY=VALUE ...` flag of the commands that load a preset: `args.overrides`, a list for
    `TrainConfig.from_yaml(path, overrides)`."""
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"override fields by dotted path, e.g. {example}",
    )


DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


class TrainConfig(_Strict):
    """One training run. `name`, `device`, `precision`, `cuda_graphs`, `logger` and the other
    LAUNCH_FIELDS are launch metadata: they choose how the run is computed or recorded, not what, and
    do not change the run id."""

    model: ModelConfig
    data: DataConfig
    name: str | None = None
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0, description="steps of linear warm-up to lr")
    warmup_start_lr: float | None = Field(
        None, gt=0, description="lr at step 0 of the warm-up (default: lr / warmup_steps, reaching lr at its last step)"
    )
    lr_decay: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="after the warm-up, from lr to min_lr at the last step"
    )
    min_lr: float = Field(0.0, ge=0, description="the floor the decay ends at")
    max_epochs: int = Field(32, ge=1)
    early_stopping_threshold: float | None = Field(
        0.99,
        gt=0,
        le=1,
        description="stop once validation accuracy exceeds this (the test segments' accuracy, or with "
        "data.valid the validation segments' token accuracy)",
    )
    grad_clip: float | None = Field(None, gt=0)
    grad_accum_steps: int = Field(
        1,
        ge=1,
        description="split each batch of data.batch_size examples into this many micro-batches, run one after "
        "another and accumulated into one update, equal to the whole batch's",
    )
    seed: int = Field(0, ge=0)
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', …")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast on CUDA (fp32 sums and states), fp32 elsewhere"
    )
    cuda_graphs: bool = Field(True, description="on CUDA, capture each training step shape as a CUDA graph")
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="compile forward and loss with torch.compile, one graph per batch shape; auto: on CUDA, "
        "for runs of at least 5,000 steps",
    )
    checkpoint_every: float | None = Field(
        120.0, ge=0, description="seconds between end-of-epoch checkpoints (0: every epoch; None: never)"
    )
    logger: LoggerConfig | None = Field(None, description="Weights & Biases logging; off when None")
    keep_best_weights: bool = Field(
        False, description="also keep the best epoch's weights (model_best.safetensors); the final ones are always kept"
    )

    LAUNCH_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "device",
        "precision",
        "cuda_graphs",
        "compile",
        "checkpoint_every",
        "logger",
        "keep_best_weights",
        "grad_accum_steps",
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"{value!r} is not a device: use {DEVICE_CHOICES}")
        return value

    @field_validator("betas")
    @classmethod
    def _check_betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"Adam's betas must each be in [0, 1), e.g. [0.9, 0.999]; got {list(value)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr:g} must be at most lr={self.lr:g}")
        if self.warmup_start_lr is not None and self.warmup_start_lr > self.lr:
            raise ValueError(f"warmup_start_lr={self.warmup_start_lr:g} must be at most lr={self.lr:g}")
        if self.data.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"grad_accum_steps={self.grad_accum_steps} must divide data.batch_size={self.data.batch_size} "
                "(each micro-batch holds batch_size / grad_accum_steps examples)"
            )
        for split in self.data.SPLITS:
            for i, seg in enumerate(getattr(self.data, split)):
                if seg.vocab_size > self.model.vocab_size:
                    raise ValueError(
                        f"data.{split}[{i}].vocab_size={seg.vocab_size} exceeds "
                        f"model.vocab_size={self.model.vocab_size}"
                    )
                for field, needed in seg.model_requirements.items():
                    if getattr(self.model, field) != needed:
                        raise ValueError(
                            f"data.{split}[{i}] ({seg.task}) needs model.{field}={needed!r}, "
                            f"not {getattr(self.model, field)!r}"
                        )
        for i, mixer in enumerate(self.model.mixers):
            limit = mixers.max_seq_len(mixer.name, mixer.kwargs)
            if isinstance(limit, int) and limit < self.data.max_seq_len:
                raise ValueError(
                    f"model.mixers[{i}] ({mixer.name}) takes sequences up to max_seq_len={limit}, but the data "
                    f"has sequences of {self.data.max_seq_len} tokens: set model.mixers.{i}.kwargs.max_seq_len "
                    f">= {self.data.max_seq_len}"
                )
        if self.name is None:
            object.__setattr__(self, "name", f"{self.model.family}-d{self.model.d_model}-lr{self.lr:g}")
        return self

    def resolved_precision(self, device) -> str:
        if self.precision == "auto":
            return "bf16" if device.type == "cuda" else "fp32"
        return self.precision

    @property
    def run_id(self) -> str:
        """Stable hash of what the run computes: fields left at their defaults and launch
        metadata do not count, so adding a field with a backward-compatible default keeps ids."""
        return content_hash(_content(self))

    def set(self, updates: dict[str, Any]) -> TrainConfig:
        """A new, validated config with dotted-path updates: {"model.d_model": 64, "lr": 3e-3}."""
        data = self.model_dump(mode="json")
        if "name" not in updates:
            data["name"] = None
        for path, value in updates.items():
            _set_path(data, path, value)
        return TrainConfig.model_validate(data)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """Load a YAML preset (a path, or a name in configs/) with `key.sub=value` overrides; a mistake
        raises a UserError naming the file and the line or field."""
        file = resolve_preset(path)
        data = read_yaml(file)
        if not isinstance(data, dict):
            raise UserError(f"{file}: must be a mapping of fields (model: ..., data: ...), not {_kind(data)}")
        try:
            return cls.from_yaml_dict(data, overrides)
        except ValidationError as e:
            source = f"{file} with --set {' '.join(overrides)}" if overrides else str(file)
            raise UserError(describe_validation_error(e, source)) from e

    @classmethod
    def from_yaml_dict(cls, data: dict, overrides: list[str] | None = None) -> TrainConfig:
        """Validate a config mapping after applying `key.sub=value` overrides (values parsed as YAML)."""
        for item in overrides or []:
            key, sep, raw = item.partition("=")
            if not sep:
                raise UserError(f"--set {item!r}: an override must look like key.path=value")
            try:
                _set_path(data, key.strip(), parse_yaml(raw, f"--set {item!r}"))
            except UserError:
                raise
            except ValueError as e:
                raise UserError(f"--set {item!r}: {e}") from e
        return cls.model_validate(data)


def resolve_preset(path: str | Path) -> Path:
    """`path` if it exists, else the preset of that name in configs/ (a UserError lists them)."""
    p = Path(path)
    if p.exists():
        return p
    for candidate in (PRESETS_DIR / p, PRESETS_DIR / f"{p}.yaml"):
        if candidate.exists():
            return candidate
    available = sorted(x.stem for x in PRESETS_DIR.glob("*.yaml"))
    raise UserError(f"no config file {str(path)!r}, nor a preset of that name in {PRESETS_DIR}: {available}")


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document `text`; a syntax error raises a UserError naming `source` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(p) for p in (getattr(e, "problem", None), getattr(e, "context", None)) if p)
        raise UserError(f"{source}{where}: not valid YAML: {problem or e}") from e


def read_yaml(path: Path) -> Any:
    """The YAML document in the file `path` (UserErrors name the file and line)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from e
    return parse_yaml(text, str(path))


def _kind(data: Any) -> str:
    if data is None:
        return "an empty document"
    return f"a {'list' if isinstance(data, list) else type(data).__name__} ({str(data)[:40]!r})"


_SEGMENT_TYPES: dict[str, type[BaseModel]] = {
    meta.tag: cls
    for cls, *metadata in map(get_args, get_args(get_args(SegmentConfig)[0]))
    for meta in metadata
    if isinstance(meta, Tag)
}
"""Each segment config type by its `task` tag (pydantic puts the tag in an error's location)."""


def describe_validation_error(error: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: `source: prefix<field path>: message`, e.g. `sweeps/x.py:7:
    model.d_model: Input should be greater than or equal to 1 (got 0)`; an unknown field lists the
    allowed ones."""
    lines = []
    for problem in error.errors():
        loc = _location(problem["loc"])
        message = problem["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = problem.get("input")
        if problem["type"] == "extra_forbidden":
            fields = _fields_at(error.title, problem["loc"])
            message = f"unknown field {problem['loc'][-1]!r}" + (f"; allowed: {', '.join(fields)}" if fields else "")
        elif problem["type"] not in ("value_error", "missing", "assertion_error") and not isinstance(
            value, (dict, list, tuple)
        ):
            message += f" (got {str(value)[:60]!r})" if isinstance(value, str) else f" (got {value!r:.60})"
        where = f"{prefix}{loc}"
        lines.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
    return "\n".join(lines)


def _location(loc: tuple) -> str:
    """('data', 'test', 0, 'mqar', 'num_kv_pairs') -> 'data.test[0].num_kv_pairs' (the task tag dropped)."""
    out = ""
    for i, key in enumerate(loc):
        if isinstance(key, int):
            out += f"[{key}]"
        elif key in _SEGMENT_TYPES and (i == 0 or isinstance(loc[i - 1], int)):
            continue
        else:
            out += f".{key}" if out else str(key)
    return out


def _fields_at(title: str, loc: tuple) -> list[str] | None:
    """The fields allowed beside the last element of `loc` in the model named `title`, if known."""
    node: type[BaseModel] | None = {c.__name__: c for c in (TrainConfig, ModelConfig, DataConfig, MixerConfig)}.get(
        title
    )
    for i, key in enumerate(loc[:-1]):
        if isinstance(key, int):
            continue
        if key in _SEGMENT_TYPES and (i == 0 or isinstance(loc[i - 1], int)):
            node = _SEGMENT_TYPES[key]
        elif node is not None and key in node.model_fields:
            node = _model_in(node.model_fields[key].annotation)
        else:
            return None
    return sorted(node.model_fields) if node is not None else None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model inside a field's annotation (list[X], X | None, ...); None if not one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = {m for arg in get_args(annotation) if (m := _model_in(arg)) is not None}
    return found.pop() if len(found) == 1 else None


def _set_path(data: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ValueError(f"{path!r}: {key!r} is not an index of a list of {len(node)}")
            key = int(key)
        elif not isinstance(node, dict):
            raise ValueError(f"{path!r}: {'.'.join(keys[:i])!r} is not a mapping")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]


def _content(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        out = {}
        launch = getattr(obj, "LAUNCH_FIELDS", ())
        for name, field in type(obj).model_fields.items():
            value = getattr(obj, name)
            if name in launch or (name != "task" and not field.is_required() and value == field.default):
                continue
            out[name] = _content(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_content(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _content(v) for k, v in obj.items()}
    return obj
