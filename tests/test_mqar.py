"""MQAR generator: the ground truth of every number the suite reports."""

import math

import pytest
import torch
from pydantic import ValidationError

from zoology.data import IGNORE_INDEX
from zoology.data.mqar import MQARConfig


def make(**kw):
    base = dict(vocab_size=128, input_seq_len=64, num_kv_pairs=8, num_examples=500)
    return MQARConfig(**(base | kw))


def context_pairs(seg, N, P=1):
    kv = seg.inputs[:, : 2 * N]
    return kv[:, 0::2], kv[:, 1::2]


def test_value_ranges_and_distinct_keys_values():
    cfg = make()
    seg = cfg.build(seed=0)
    keys, values = context_pairs(seg, cfg.num_kv_pairs)
    half = cfg.vocab_size // 2
    assert ((keys >= 1) & (keys < half)).all()
    assert ((values >= half) & (values < cfg.vocab_size)).all()
    for x in (keys, values):
        assert (x.sort(dim=1).values.diff(dim=1) != 0).all()
    assert ((seg.inputs >= 0) & (seg.inputs < cfg.vocab_size)).all()
    assert seg.inputs.dtype == seg.labels.dtype == torch.long


def test_large_vocab_distinctness_uses_redraws():
    cfg = MQARConfig(input_seq_len=1024, num_kv_pairs=256, num_examples=300)
    seg = cfg.build(seed=3)
    keys, values = context_pairs(seg, 256)
    assert (keys.sort(dim=1).values.diff(dim=1) != 0).all()
    assert (values.sort(dim=1).values.diff(dim=1) != 0).all()


@pytest.mark.parametrize("num_passes", [1, 2, 3])
def test_every_query_labelled_with_its_value(num_passes):
    cfg = make(num_passes=num_passes, num_kv_pairs=6)
    seg = cfg.build(seed=1)
    N, C = cfg.num_kv_pairs, 2 * cfg.num_kv_pairs * num_passes
    keys, values = context_pairs(seg, N)
    labelled = seg.labels != IGNORE_INDEX
    assert (labelled.sum(dim=1) == N).all()
    assert not labelled[:, :C].any()
    for e in range(len(seg)):
        pairs = dict(zip(keys[e].tolist(), values[e].tolist()))
        positions = labelled[e].nonzero().flatten()
        assert ((positions - C) % 2 == 0).all()
        queried = seg.inputs[e, positions].tolist()
        assert sorted(queried) == sorted(pairs)
        assert seg.labels[e, positions].tolist() == [pairs[k] for k in queried]


def test_num_passes_repeats_the_context():
    cfg = make(num_passes=3, num_kv_pairs=5)
    seg = cfg.build(seed=2)
    block = seg.inputs[:, :10]
    assert torch.equal(seg.inputs[:, 10:20], block) and torch.equal(seg.inputs[:, 20:30], block)


def test_filler_modes():
    region = torch.zeros(2000, 64, dtype=torch.bool)
    region[:, 16:] = True
    zero = make(filler="zero", num_examples=2000).build(seed=4)
    assert (zero.inputs[region & (zero.labels == IGNORE_INDEX)] == 0).all()

    rnd = make(filler="random", vocab_size=128, num_examples=2000).build(seed=4)
    filler = rnd.inputs[region & (rnd.labels == IGNORE_INDEX)]
    assert filler.unique().numel() > 100

    safe = make(filler="random_no_kv", num_examples=2000).build(seed=4)
    keys, values = context_pairs(safe, 8)
    own = torch.cat([keys, values], dim=1)
    filler_mask = region & (safe.labels == IGNORE_INDEX)
    collisions = (safe.inputs[:, :, None] == own[:, None, :]).any(-1) & filler_mask
    assert not collisions.any()
    collisions_random = (rnd.inputs[:, :, None] == context_pairs(rnd, 8)[0][:, None, :]).any(-1) & filler_mask
    assert collisions_random.any(), "random filler is uniform over the vocabulary, so it does collide"


def _chi_square_upper(df: int, z: float = 4.5) -> float:
    """Wilson–Hilferty upper quantile of chi-square(df) at normal deviate z."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("power_a", [0.01, 0.5])
def test_query_slot_distribution_matches_power_law(power_a):
    n, L, N = 40000, 64, 4
    seg = MQARConfig(vocab_size=128, input_seq_len=L, num_kv_pairs=N, num_examples=n, power_a=power_a).build(seed=7)
    C, space = 2 * N, (L - 2 * N) // 2
    first_key = seg.inputs[:, 0]
    pos = ((seg.inputs[:, C:] == first_key[:, None]) & (seg.labels[:, C:] != IGNORE_INDEX)).float().argmax(dim=1)
    slot = pos // 2
    i = torch.arange(1, space + 1, dtype=torch.float64)
    p = power_a * i ** (power_a - 1)
    expected = n * p / p.sum()
    observed = torch.bincount(slot, minlength=space).double()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < _chi_square_upper(space - 1), chi2


def test_determinism_and_independent_seeds():
    cfg = make()
    a, b, c = cfg.build(seed=5), cfg.build(seed=5), cfg.build(seed=6)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)


def test_generation_ignores_global_rng():
    cfg = make()
    torch.manual_seed(0)
    a = cfg.build(seed=9)
    torch.manual_seed(123)
    torch.rand(1000)
    b = cfg.build(seed=9)
    assert torch.equal(a.inputs, b.inputs)


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(input_seq_len=63), "input_seq_len=63 must be even"),
        (dict(vocab_size=64, input_seq_len=64), "vocab_size=64 must be greater"),
        (dict(num_kv_pairs=17), "num_kv_pairs=17 too large"),
        (dict(num_kv_pairs=8, num_passes=4), "num_passes=4"),
        (dict(vocab_size=70, input_seq_len=64, num_kv_pairs=14, num_passes=1), None),
    ],
)
def test_constraints_name_the_field(kw, field):
    if field is None:
        make(**kw)
        return
    with pytest.raises(ValidationError, match=field):
        make(**kw)


def test_slice_fields():
    seg = make(num_passes=2, num_kv_pairs=4).build(seed=0)
    assert seg.slice == {"task": "mqar", "input_seq_len": 64, "num_kv_pairs": 4, "num_passes": 2}
    assert seg.name == "mqar-L64-N4-P2"
