"""Every task generator: labels follow from the context, layouts as documented, constraints named,
determinism, and sampling distributions checked against their formulas with chi-square tests."""

from typing import ClassVar, Literal

import pytest
import torch
from pydantic import Field, ValidationError

from zoology.config import DataConfig, TrainConfig, segment_adapter
from zoology.data import IGNORE_INDEX, Segment, load_segment
from zoology.data.ar import ARConfig
from zoology.data.mqar import MQARConfig
from zoology.data.mqar_overwrite import OverwriteMQARConfig
from zoology.data.sampling import distinct_randint, random_tokens_excluding
from zoology.data.task import TaskConfig

V = 128
GENERATORS = {
    "mqar": lambda **kw: MQARConfig(**({"vocab_size": V, "input_seq_len": 64, "num_kv_pairs": 8} | kw)),
    "jrt": lambda **kw: MQARConfig(**({"vocab_size": V, "input_seq_len": 64, "num_kv_pairs": 6, "num_passes": 3} | kw)),
    "ar": lambda **kw: ARConfig(**({"vocab_size": V, "input_seq_len": 40, "num_kv_pairs": 8} | kw)),
    "overwrite": lambda **kw: OverwriteMQARConfig(
        **({"vocab_size": V, "input_seq_len": 64, "num_kv_pairs": 8, "num_overwrites": 4} | kw)
    ),
}
FILLERS = ("random", "random_no_kv", "zero")


def chi_square_p(observed: torch.Tensor, expected: torch.Tensor, min_expected: float = 5.0) -> float:
    """Upper-tail p-value of Pearson's chi-square; cells with small expectation are pooled."""
    observed, expected = observed.double().flatten(), expected.double().flatten()
    small = expected < min_expected
    if small.any():
        observed = torch.cat([observed[~small], observed[small].sum().reshape(1)])
        expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    assert abs(float(observed.sum() - expected.sum())) < 1e-6 * float(expected.sum()), "counts do not match"
    assert observed.numel() >= 2, "too few cells with enough expected counts"
    stat = ((observed - expected) ** 2 / expected).sum()
    df = torch.tensor(float(observed.numel() - 1), dtype=torch.float64)
    return float(torch.special.gammaincc(df / 2, stat / 2))


def decode(config, inputs: torch.Tensor, labels: torch.Tensor) -> dict:
    """What a reader of one example finds: context pairs in order, the latest value of each key,
    and the (position, key, label) of each query."""
    C = config.context_len
    tokens = inputs.tolist()
    pairs = list(zip(tokens[0:C:2], tokens[1:C:2]))
    queries = [(p, tokens[p], labels[p].item()) for p in (labels != IGNORE_INDEX).nonzero().flatten().tolist()]
    return {"pairs": pairs, "latest": dict(pairs), "queries": queries}


def num_queries(config) -> int:
    return 1 if config.task == "ar" else config.num_kv_pairs


@pytest.mark.parametrize("filler", FILLERS)
@pytest.mark.parametrize("name", GENERATORS)
def test_every_label_is_the_latest_value_of_its_key(name, filler):
    config = GENERATORS[name](num_examples=300, filler=filler)
    segment = config.build(seed=11)
    L, N, C, half = config.input_seq_len, config.num_kv_pairs, config.context_len, config.vocab_size // 2
    assert segment.inputs.shape == segment.labels.shape == (300, L)
    assert segment.inputs.dtype == segment.labels.dtype == torch.long
    assert ((segment.inputs >= 0) & (segment.inputs < config.vocab_size)).all()
    for e in range(len(segment)):
        found = decode(config, segment.inputs[e], segment.labels[e])
        pairs = list(dict.fromkeys(found["pairs"]))  # JRT repeats whole pairs; nothing else repeats
        keys, values = [k for k, _ in pairs], [v for _, v in pairs]
        assert all(1 <= k < half for k in keys) and all(half <= v < config.vocab_size for v in values)
        assert len(set(values)) == len(values), "two pairs of one example never share a value"
        assert found["pairs"] == pairs * (config.num_passes if name == "jrt" else 1)
        assert len(found["latest"]) == N
        assert len(found["queries"]) == num_queries(config)
        for position, key, label in found["queries"]:
            assert position >= C
            assert label == found["latest"][key]
        if name == "ar":
            assert found["queries"][0][0] == L - 1
        else:
            assert sorted(k for _, k, _ in found["queries"]) == sorted(found["latest"])
            assert all((p - C) % 2 == 0 for p, _, _ in found["queries"])


@pytest.mark.parametrize("name", GENERATORS)
def test_filler_modes(name):
    n = 400
    segments = {f: GENERATORS[name](num_examples=n, filler=f).build(seed=3) for f in FILLERS}
    config = GENERATORS[name](num_examples=n)
    C = config.context_len
    filler_mask = segments["zero"].labels == IGNORE_INDEX
    filler_mask[:, :C] = False
    assert (segments["zero"].inputs[filler_mask] == 0).all()
    own = {}
    for f in ("random", "random_no_kv"):
        seg = segments[f]
        own = seg.inputs[:, :C]
        collides = (seg.inputs[:, :, None] == own[:, None, :]).any(-1) & filler_mask
        if f == "random_no_kv":
            assert not collides.any(), "random_no_kv filler never repeats a key or value of its example"
        else:
            assert collides.any(), "uniform filler over the whole vocabulary does hit the example's tokens"
        assert seg.inputs[filler_mask].unique().numel() > V // 2
    assert segments["random"].slice.get("filler") is None
    assert segments["random_no_kv"].slice["filler"] == "random_no_kv"
    assert segments["random_no_kv"].name.endswith("-random_no_kv")


def test_jrt_layout_repeats_the_whole_context_then_queries():
    config = MQARConfig(vocab_size=V, input_seq_len=48, num_kv_pairs=4, num_passes=2, num_examples=200)
    segment = config.build(seed=0)
    assert config.context_len == 16 and segment.name == "mqar-L48-N4-P2"
    first = segment.inputs[:, :8]
    assert torch.equal(segment.inputs[:, 8:16], first)
    labelled = segment.labels != IGNORE_INDEX
    assert not labelled[:, :16].any() and not labelled[:, 47].any()
    assert (labelled.sum(1) == 4).all()
    assert segment.slice == {"task": "mqar", "input_seq_len": 48, "num_kv_pairs": 4, "num_passes": 2}


def test_overwrite_layout():
    N, M = 8, 3
    config = OverwriteMQARConfig(
        vocab_size=V, input_seq_len=64, num_kv_pairs=N, num_overwrites=M, num_examples=300, filler="zero"
    )
    segment = config.build(seed=5)
    assert config.context_len == 2 * (N + M) and segment.name == "mqar_overwrite-L64-N8-W3-zero"
    for e in range(len(segment)):
        tokens = segment.inputs[e].tolist()
        first = dict(zip(tokens[0 : 2 * N : 2], tokens[1 : 2 * N : 2]))
        again = list(zip(tokens[2 * N : 2 * (N + M) : 2], tokens[2 * N + 1 : 2 * (N + M) : 2]))
        assert len(first) == N
        assert len({k for k, _ in again}) == M and all(k in first for k, _ in again)
        assert all(v not in first.values() for _, v in again), "a new value never reuses any first value"
        queries = {
            tokens[p]: segment.labels[e, p].item() for p in (segment.labels[e] != IGNORE_INDEX).nonzero().flatten()
        }
        overwritten = dict(again)
        assert queries == {k: overwritten.get(k, v) for k, v in first.items()}


def test_ar_layout_without_filler():
    config = ARConfig(vocab_size=V, input_seq_len=17, num_kv_pairs=8, num_examples=50)
    segment = config.build(seed=0)
    labelled = segment.labels != IGNORE_INDEX
    assert labelled[:, 16].all() and labelled.sum() == 50
    assert segment.name == "ar-L17-N8"


@pytest.mark.parametrize("name", GENERATORS)
def test_determinism_independent_seeds_and_no_global_rng(name):
    config = GENERATORS[name](num_examples=200, filler="random_no_kv")
    torch.manual_seed(0)
    a = config.build(seed=1)
    torch.manual_seed(99)
    torch.rand(100)
    b = config.build(seed=1)
    c = config.build(seed=2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)
    assert (a.inputs != c.inputs).float().mean() > 0.5


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("ar", {"vocab_size": 40}, "vocab_size=40 must be greater than input_seq_len=40"),
        ("ar", {"num_kv_pairs": 20}, r"num_kv_pairs=20 too large for input_seq_len=40: need 2·N \+ 1 = 41"),
        ("ar", {"input_seq_len": 2}, "input_seq_len"),
        ("ar", {"num_kv_pairs": 0}, "num_kv_pairs"),
        ("ar", {"filler": "noise"}, "filler"),
        ("ar", {"power_a": 0.1}, "power_a"),
        ("overwrite", {"input_seq_len": 63}, "input_seq_len=63 must be even"),
        ("overwrite", {"vocab_size": 64}, "vocab_size=64 must be greater than input_seq_len=64"),
        ("overwrite", {"num_overwrites": 9}, "num_overwrites=9 must be at most num_kv_pairs=8"),
        ("overwrite", {"num_overwrites": 0}, "num_overwrites"),
        ("overwrite", {"num_kv_pairs": 15}, r"num_kv_pairs=15 with num_overwrites=4 too large .* = 68 <="),
        ("overwrite", {"num_passes": 2}, "num_passes"),
        ("jrt", {"num_passes": 5}, r"num_kv_pairs=6 too large for input_seq_len=64 with num_passes=5"),
        ("jrt", {"num_passes": 0}, "num_passes"),
    ],
)
def test_impossible_configs_name_the_field(name, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        GENERATORS[name](num_examples=10, **kwargs)


@pytest.mark.parametrize("name", GENERATORS)
def test_configs_are_frozen_and_parse_through_the_segment_union(name):
    config = GENERATORS[name](num_examples=10)
    with pytest.raises(ValidationError):
        config.num_examples = 11
    assert segment_adapter.validate_python(config.model_dump()) == config
    assert segment_adapter.validate_python(config.model_dump(mode="json")).build(0).name == config.build(0).name
    with pytest.raises(ValidationError, match="'mqar', 'ar', 'mqar_overwrite'"):
        segment_adapter.validate_python({**config.model_dump(), "task": "copying"})


def test_data_config_mixes_tasks_and_checks_vocab_against_the_model():
    mixed = {
        "train": [{"vocab_size": V, "input_seq_len": 64, "num_kv_pairs": 8, "num_examples": 10}],
        "test": [
            GENERATORS["ar"](num_examples=10).model_dump(),
            GENERATORS["overwrite"](num_examples=10).model_dump(),
            GENERATORS["jrt"](num_examples=10).model_dump(),
        ],
    }
    data = DataConfig.model_validate(mixed)
    assert [type(s) for s in data.test] == [ARConfig, OverwriteMQARConfig, MQARConfig]
    with pytest.raises(ValidationError, match=r"data.train\[0\].vocab_size=128 exceeds model.vocab_size=64"):
        TrainConfig.model_validate({"model": {"vocab_size": 64, "mixers": ["attention"]}, "data": mixed})
    with pytest.raises(ValidationError, match="num_overwrites=9 must be at most"):
        DataConfig.model_validate({**mixed, "test": [{**mixed["test"][1], "num_overwrites": 9}]})


class CopyingConfig(TaskConfig):
    """A task written on the shared base: its name, one field, its slice and generate."""

    generator_version: ClassVar[int] = 1
    slice_keys: ClassVar[tuple[str, ...]] = ("input_seq_len", "num_tokens")

    task: Literal["copying"] = "copying"
    num_tokens: int = Field(ge=1)

    def generate(self, seed: int) -> Segment:
        gen = torch.Generator().manual_seed(seed)
        n, L, k = self.num_examples, self.input_seq_len, self.num_tokens
        inputs = torch.zeros(n, L, dtype=torch.long)
        inputs[:, :k] = torch.randint(1, self.vocab_size, (n, k), generator=gen)
        labels = torch.full((n, L), IGNORE_INDEX, dtype=torch.long)
        labels[:, L - k :] = inputs[:, :k]
        return Segment(inputs, labels, self.slice_fields())


def test_a_task_on_the_base_gets_shared_fields_checks_slices_and_caching(tmp_path):
    fields = {"input_seq_len": 16, "num_tokens": 4, "num_examples": 8}
    config = CopyingConfig(**fields)
    assert config.vocab_size == 8192
    assert config.slice_fields() == {"task": "copying", "input_seq_len": 16, "num_tokens": 4}
    for bad in ({"num_examples": 0}, {"vocab_size": 3}, {"input_seq_len": 1}, {"lenght": 3}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            CopyingConfig(**{**fields, **bad})
    with pytest.raises(ValidationError):
        config.num_tokens = 5
    built = load_segment(config, seed=3, cache_dir=tmp_path)
    cached = load_segment(config, seed=3, cache_dir=tmp_path)
    (cache_file,) = tmp_path.iterdir()
    assert built.name == "copying-L16-num_tokens=4" and cache_file.name.startswith(f"{built.name}-")
    assert torch.equal(cached.inputs, built.inputs) and torch.equal(cached.labels, built.labels)
    assert torch.equal(built.labels[:, -4:], built.inputs[:, :4])


# Distributions


def test_distinct_randint_is_uniform_over_ordered_tuples():
    for n, k, span in ((60_000, 2, 40), (40_000, 2, 12)):  # the sparse and the dense path
        x = distinct_randint(n, k, 3, 3 + span, torch.Generator().manual_seed(0)) - 3
        assert (x[:, 0] != x[:, 1]).all() and ((x >= 0) & (x < span)).all()
        cells = torch.bincount(x[:, 0] * span + x[:, 1], minlength=span * span).reshape(span, span)
        off_diagonal = ~torch.eye(span, dtype=torch.bool)
        expected = torch.full((span * (span - 1),), n / (span * (span - 1)))
        assert chi_square_p(cells[off_diagonal], expected) > 1e-4


def test_distinct_randint_many_repeats_are_redrawn():
    n, span = 4000, 4095
    x = distinct_randint(n, 256, 1, 1 + span, torch.Generator().manual_seed(1)) - 1
    assert (x.sort(dim=1).values.diff(dim=1) != 0).all()
    for column in (0, 255):
        bins = torch.bincount(x[:, column] // 64, minlength=64)
        width = torch.full((64,), 64.0)
        width[-1] = span - 63 * 64
        assert chi_square_p(bins, n * width / span) > 1e-4


def power_law(space: int, a: float) -> torch.Tensor:
    i = torch.arange(1, space + 1, dtype=torch.float64)
    p = a * i ** (a - 1)
    return p / p.sum()


def query_slots(config, segment, pair_index: int) -> torch.Tensor:
    """Slot (0-based) of the query of the key at `pair_index` of the context."""
    C = config.context_len
    key = segment.inputs[:, 2 * pair_index]
    region = (segment.inputs[:, C:] == key[:, None]) & (segment.labels[:, C:] != IGNORE_INDEX)
    return region.float().argmax(dim=1) // 2


@pytest.mark.parametrize("name", ["mqar", "jrt", "overwrite"])
def test_first_and_second_query_slots_follow_successive_power_law_draws(name):
    a, n = 0.3, 30_000
    config = GENERATORS[name](num_examples=n, power_a=a, filler="zero")
    segment = config.build(seed=21)
    space = (config.input_seq_len - config.context_len) // 2
    p = power_law(space, a)
    first = torch.bincount(query_slots(config, segment, 0), minlength=space)
    assert chi_square_p(first, n * p) > 1e-4
    second_given_first = p[None, :] / (1 - p[:, None])
    second_given_first.fill_diagonal_(0)
    p_second = (p[:, None] * second_given_first).sum(0)
    second = torch.bincount(query_slots(config, segment, 1), minlength=space)
    assert chi_square_p(second, n * p_second) > 1e-4
    assert chi_square_p(second, n * p) < 1e-4, "the second key's slot is not a fresh power-law draw"


def test_ar_query_is_uniform_over_context_pairs():
    n, N = 40_000, 8
    config = ARConfig(vocab_size=V, input_seq_len=24, num_kv_pairs=N, num_examples=n)
    segment = config.build(seed=2)
    keys = segment.inputs[:, 0 : 2 * N : 2]
    index = (keys == segment.inputs[:, -1:]).float().argmax(dim=1)
    assert chi_square_p(torch.bincount(index, minlength=N), torch.full((N,), n / N)) > 1e-4
    tokens = torch.bincount(segment.inputs[:, -1] - 1, minlength=V // 2 - 1)
    assert chi_square_p(tokens, torch.full((V // 2 - 1,), n / (V // 2 - 1))) > 1e-4


def test_keys_and_values_are_uniform_over_their_ranges():
    n, N, half = 20_000, 8, V // 2
    for config in (GENERATORS["mqar"](num_examples=n), GENERATORS["overwrite"](num_examples=n)):
        segment = config.build(seed=8)
        keys, values = segment.inputs[:, 0 : 2 * N : 2], segment.inputs[:, 1 : 2 * N : 2]
        assert (
            chi_square_p(torch.bincount(keys[:, 0] - 1, minlength=half - 1), torch.full((half - 1,), n / (half - 1)))
            > 1e-4
        )
        assert chi_square_p(torch.bincount(values[:, 3] - half, minlength=half), torch.full((half,), n / half)) > 1e-4


def test_overwritten_keys_are_a_uniform_subset_in_random_order():
    n, N, M = 30_000, 8, 3
    config = OverwriteMQARConfig(
        vocab_size=V, input_seq_len=64, num_kv_pairs=N, num_overwrites=M, num_examples=n, filler="zero"
    )
    segment = config.build(seed=4)
    keys = segment.inputs[:, 0 : 2 * N : 2]
    again = segment.inputs[:, 2 * N : 2 * (N + M) : 2]
    index = (again[:, :, None] == keys[:, None, :]).float().argmax(dim=2)  # (n, M) pair index overwritten
    for slot in range(M):
        assert chi_square_p(torch.bincount(index[:, slot], minlength=N), torch.full((N,), n / N)) > 1e-4
    subsets = torch.zeros(n, N, dtype=torch.long).scatter_(1, index, 1)
    codes = (subsets * (2 ** torch.arange(N))).sum(1)
    observed = torch.bincount(codes, minlength=2**N)[
        subsets.new_tensor([c for c in range(2**N) if bin(c).count("1") == M])
    ]
    assert chi_square_p(observed, torch.full((observed.numel(),), n / observed.numel())) > 1e-4


def test_random_no_kv_filler_is_uniform_over_the_allowed_tokens():
    n, vocab, m = 20_000, 48, 10
    gen = torch.Generator().manual_seed(6)
    excluded = distinct_randint(n, m, 0, vocab, gen)
    x = random_tokens_excluding((n, 16), vocab, excluded, gen)
    banned = torch.zeros(n, vocab, dtype=torch.bool).scatter_(1, excluded, True)
    assert not banned.gather(1, x).any()
    expected = (~banned).double().sum(0) * 16 / (vocab - m)
    assert chi_square_p(torch.bincount(x.flatten(), minlength=vocab), expected) > 1e-4
