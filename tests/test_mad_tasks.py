"""The six MAD task generators: every label checked against a slow, direct reading of its example,
layouts, distributions (chi-square and binomial checks against the definitions), seeds, next-token
labels, the settings grid and impossible configs."""

import hashlib
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from test_tasks import chi_square_p

from zoology.config import TrainConfig, segment_adapter
from zoology.data import IGNORE_INDEX, fuzzy_recall
from zoology.data.__main__ import main as data_main
from zoology.data.fuzzy_recall import ordered_tuples
from zoology.data.presets import MAD_TASKS, mad_demo, mad_setting, mad_settings
from zoology.data.show import render_example


def make(task: str, **fields):
    return segment_adapter.validate_python({"task": task, **fields})


def labelled(labels: torch.Tensor) -> dict[int, int]:
    return {p: labels[p].item() for p in (labels != IGNORE_INDEX).nonzero().flatten().tolist()}


def expected_recall_labels(tokens: list[int], num_kv_tokens: int) -> tuple[dict[int, int], dict[int, int]]:
    """Read pair by pair: ({key position: value} for keys an earlier pair holds, the key -> value map);
    noise pairs (tokens >= num_kv_tokens) are skipped."""
    seen: dict[int, int] = {}
    expected = {}
    for pos in range(0, len(tokens), 2):
        key, value = tokens[pos], tokens[pos + 1]
        if key >= num_kv_tokens:
            assert value >= num_kv_tokens, "a noise pair is two noise tokens"
            continue
        assert key < num_kv_tokens // 2 <= value < num_kv_tokens
        assert seen.setdefault(key, value) == value, "a key keeps its value within an example"
        if pos > 0 and key in {tokens[q] for q in range(0, pos, 2)}:
            expected[pos] = value
    return expected, seen


@pytest.mark.parametrize(
    "config",
    [
        make("in_context_recall", num_examples=300),
        make("in_context_recall", num_examples=300, vocab_size=128, input_seq_len=64),
        make("noisy_recall", num_examples=300),
        make("noisy_recall", num_examples=300, frac_noise=0.8, input_seq_len=16),
    ],
    ids=["icr", "icr-V128", "noisy", "noisy-0.8"],
)
def test_recall_labels_are_the_values_of_repeated_keys(config):
    segment = config.build(seed=4)
    kv = config.vocab_size - getattr(config, "noise_vocab_size", 0)
    L = config.input_seq_len
    for e in range(len(segment)):
        tokens = segment.inputs[e].tolist()
        expected, seen = expected_recall_labels(tokens, kv)
        assert labelled(segment.labels[e]) == expected
        assert L - 2 in expected, "the probe's key was shown before and is always labelled"
        assert seen, "at least one real pair"


def parse_fuzzy(tokens: list[int], config) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    """(key, value, position of the value's first token) for each pair, after the left padding."""
    pad, K = config.vocab_size - 1, config.num_key_tokens
    pos = 0
    while tokens[pos] == pad:
        pos += 1
    assert pad not in tokens[pos:], "padding only on the left"
    pairs = []
    while pos < len(tokens):
        start = pos
        while tokens[pos] < K:
            pos += 1
        value_start = pos
        while pos < len(tokens) and tokens[pos] >= K:
            pos += 1
        pairs.append((tuple(tokens[start:value_start]), tuple(tokens[value_start:pos]), value_start))
    return pairs


@pytest.mark.parametrize(
    "fields",
    [{}, {"key_lengths": (3, 3)}, {"vocab_size": 64, "input_seq_len": 64}, {"vocab_size": 7, "input_seq_len": 12}],
    ids=["train", "test-keys", "V64", "smallest"],
)
def test_fuzzy_recall_labels_every_token_of_a_repeated_keys_value(fields):
    config = make("fuzzy_recall", num_examples=300, **fields)
    segment = config.build(seed=5)
    (kmin, kmax), (vmin, vmax) = config.key_lengths, config.value_lengths
    for e in range(len(segment)):
        pairs = parse_fuzzy(segment.inputs[e].tolist(), config)
        dictionary: dict[tuple, tuple] = {}
        expected = {}
        for i, (key, value, value_start) in enumerate(pairs):
            assert kmin <= len(key) <= kmax and vmin <= len(value) <= vmax
            assert len(set(key)) == len(key) and len(set(value)) == len(value), "k-mers repeat no token"
            assert dictionary.setdefault(key, value) == value, "a key keeps its value"
            if any(k == key for k, _, _ in pairs[:i]):
                expected |= {value_start + j - 1: token for j, token in enumerate(value)}
        assert labelled(segment.labels[e]) == expected
        probe = pairs[-1][0]
        assert sum(k == probe for k, _, _ in pairs) >= 2, "the probe is always inserted before the end"
        assert len(dictionary) <= config.num_key_tokens


def test_selective_copying_labels_the_data_tokens_in_order_after_the_cue():
    config = make("selective_copying", num_examples=300, input_seq_len=64, num_tokens_to_copy=12)
    segment = config.build(seed=6)
    L, n, V = 64, 12, config.vocab_size
    for e in range(len(segment)):
        tokens = segment.inputs[e].tolist()
        data = [t for t in tokens[: L - n - 1] if t != V - 2]
        assert len(data) == n and all(t < V - 2 for t in data)
        assert tokens[L - n - 1] == V - 1 and tokens[L - n :] == [V - 2] * n
        assert labelled(segment.labels[e]) == {L - n + i: t for i, t in enumerate(data)}


def test_compression_targets_the_whole_input():
    config = make("compression", num_examples=200)
    segment = config.build(seed=7)
    assert torch.equal(segment.labels, segment.inputs)
    assert (segment.inputs[:, -1] == 15).all() and (segment.inputs[:, :-1] < 15).all()
    p = chi_square_p(torch.bincount(segment.inputs[:, :-1].flatten(), minlength=15), torch.full((15,), 200 * 31 / 15))
    assert p > 1e-3


def test_memorization_map_is_fixed_by_map_seed_and_shared_across_segments():
    config = make("memorization", num_examples=400)
    K = config.num_keys
    mapping = config.value_map()
    assert K == 127 and mapping.shape == (K,)
    assert sorted(mapping.tolist()) == sorted(set(mapping.tolist())) and ((mapping >= K) & (mapping < 255)).all()
    a, b = config.build(seed=1), config.build(seed=2)
    for segment in (a, b):
        keys = segment.inputs[:, 0::2]
        assert (segment.inputs[:, 1::2] == 255).all() and (keys < K).all()
        assert torch.equal(segment.labels[:, 1::2], mapping[keys])
        assert (segment.labels[:, 0::2] == IGNORE_INDEX).all()
    assert not torch.equal(a.inputs, b.inputs)
    assert not torch.equal(make("memorization", num_examples=1, map_seed=1).value_map(), mapping)
    p = chi_square_p(torch.bincount(a.inputs[:, 0::2].flatten(), minlength=K), torch.full((K,), 400 * 16 / K))
    assert p > 1e-3


def test_recall_keys_values_and_noise_follow_their_distributions():
    n = 4000
    config = make("noisy_recall", num_examples=n, input_seq_len=32, frac_noise=0.3)
    segment = config.build(seed=8)
    pairs = segment.inputs.view(n, 16, 2)[:, :-1]
    noise = pairs[..., 0] >= 16
    slots = noise.numel()
    # P(noise) is 0.3 except in the rows that came out all noise (probability 0.3^15, negligible)
    assert abs(noise.float().mean().item() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / slots)
    noise_tokens = pairs[noise].flatten() - 16
    assert chi_square_p(torch.bincount(noise_tokens, minlength=16), torch.full((16,), noise_tokens.numel() / 16)) > 1e-3
    keys = pairs[..., 0][~noise]
    assert chi_square_p(torch.bincount(keys, minlength=8), torch.full((8,), keys.numel() / 8)) > 1e-3
    # a key's value is uniform over the values, independently per example: the first pair's value
    first = segment.inputs.view(n, 16, 2)[:, :-1][~noise[:, 0]][:, 0, 1] - 8
    assert chi_square_p(torch.bincount(first, minlength=8), torch.full((8,), first.numel() / 8)) > 1e-3


def test_fuzzy_lengths_and_probe_offsets_are_uniform():
    config = make("fuzzy_recall", num_examples=2000, input_seq_len=64)
    segment = config.build(seed=9)
    key_lengths, value_lengths, probe_index = Counter(), Counter(), []
    for e in range(len(segment)):
        pairs = parse_fuzzy(segment.inputs[e].tolist(), config)
        first_seen = {}
        for key, value, _ in pairs:
            if key not in first_seen:  # one length per dictionary key, counted once
                first_seen[key] = value
                key_lengths[len(key)] += 1
                value_lengths[len(value)] += 1
        probe = pairs[-1][0]
        earlier = [i for i, (k, _, _) in enumerate(pairs[:-1]) if k == probe]
        probe_index.append((earlier[-1] if len(earlier) == 1 else None, len(pairs) - 2))
    for counts in (key_lengths, value_lengths):
        total = sum(counts.values())
        assert chi_square_p(torch.tensor([counts[i] for i in (1, 2, 3)]), torch.full((3,), total / 3)) > 1e-3
    # when the probe's key occurs once before the end, that is the inserted copy: its index among the
    # m + 1 places is uniform; the probability integral over places (i + 0.5) / (m + 1) is uniform
    u = torch.tensor([(i + 0.5) / (m + 1) for i, m in probe_index if i is not None])
    assert len(u) > 200
    assert chi_square_p(torch.histc(u, bins=4, min=0, max=1), torch.full((4,), len(u) / 4)) > 1e-3
    test_keys = make("fuzzy_recall", num_examples=100, key_lengths=(3, 3)).build(seed=1)
    for e in range(100):
        assert {len(k) for k, _, _ in parse_fuzzy(test_keys.inputs[e].tolist(), config)} == {3}


def test_ordered_tuples_enumerates_every_tuple_of_distinct_tokens_once():
    for length, tokens in ((1, 5), (2, 5), (3, 6)):
        codes = torch.arange(math.perm(tokens, length))
        tuples = [tuple(t) for t in ordered_tuples(codes, length, tokens).tolist()]
        assert len(set(tuples)) == len(tuples) == math.perm(tokens, length)
        assert all(len(set(t)) == length and max(t) < tokens for t in tuples)


def test_key_tokens_by_table_and_by_arithmetic_agree(monkeypatch):
    """Small key vocabularies read their keys from a table of every tuple; large ones compute them."""
    tokens, shortest, longest = 9, 1, 3
    length = torch.randint(shortest, longest + 1, (200, 9), generator=torch.Generator().manual_seed(0))
    codes_of_length = torch.tensor([math.perm(tokens, m) for m in range(longest + 1)])
    code = (torch.rand(200, 9, generator=torch.Generator().manual_seed(1)) * codes_of_length[length]).long()
    by_table = fuzzy_recall._key_tokens(code, length, tokens, shortest, longest)
    monkeypatch.setattr(fuzzy_recall, "_tuple_table", lambda *args: None)
    assert torch.equal(fuzzy_recall._key_tokens(code, length, tokens, shortest, longest), by_table)
    for m in range(shortest, longest + 1):
        assert torch.equal(by_table[length == m][:, :m], ordered_tuples(code[length == m], m, tokens))
        assert (by_table[length == m][:, m:] == 0).all()


def test_selective_copying_scatters_data_over_the_whole_prefix():
    n, L, k = 3000, 40, 6
    segment = make("selective_copying", num_examples=n, input_seq_len=L, num_tokens_to_copy=k).build(seed=10)
    prefix = segment.inputs[:, : L - k - 1]
    is_data = prefix != 14
    expected = torch.full((L - k - 1,), n * k / (L - k - 1))
    assert chi_square_p(is_data.sum(0), expected) > 1e-3
    data = prefix[is_data]
    assert chi_square_p(torch.bincount(data, minlength=14), torch.full((14,), data.numel() / 14)) > 1e-3


@pytest.mark.parametrize("task", MAD_TASKS)
def test_seeds_reproduce_and_no_global_rng(task):
    config = make(task, num_examples=64)
    torch.manual_seed(0)
    a = config.build(seed=1)
    torch.manual_seed(5)
    torch.rand(10)
    b = config.build(seed=1)
    c = config.build(seed=2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)


PINNED = [
    ("in_context_recall", {}, 0, "d77239542b040c3c"),
    ("in_context_recall", {}, 3, "4b3d4778a94aee57"),
    ("in_context_recall", {"vocab_size": 64, "input_seq_len": 256}, 0, "c31143d4dae869a2"),
    ("in_context_recall", {"vocab_size": 64, "input_seq_len": 256}, 3, "d0b7ed6e7ded13bd"),
    ("fuzzy_recall", {}, 0, "6a5f2d583f32d1ed"),
    ("fuzzy_recall", {}, 3, "eebbb9a1d412749e"),
    ("fuzzy_recall", {"key_lengths": (3, 3)}, 0, "bc80cc60a2503309"),
    ("fuzzy_recall", {"key_lengths": (3, 3)}, 3, "0c157aadae945540"),
    ("fuzzy_recall", {"vocab_size": 128, "input_seq_len": 256}, 0, "72272f191ec47474"),
    ("fuzzy_recall", {"vocab_size": 128, "input_seq_len": 256}, 3, "0d6f285079b0dfb5"),
    ("noisy_recall", {}, 0, "7c1d91fab6570ea4"),
    ("noisy_recall", {}, 3, "8d74bbe3903bb9de"),
    ("noisy_recall", {"vocab_size": 80, "frac_noise": 0.8}, 0, "aaa9ee11cd57d03f"),
    ("noisy_recall", {"vocab_size": 80, "frac_noise": 0.8}, 3, "b9f69dfc95874c88"),
    ("selective_copying", {}, 0, "f6e15120e753c40a"),
    ("selective_copying", {}, 3, "800e1374da73c4f2"),
    ("selective_copying", {"vocab_size": 64, "input_seq_len": 512, "num_tokens_to_copy": 96}, 0, "4abe7681b9539bd7"),
    ("selective_copying", {"vocab_size": 64, "input_seq_len": 512, "num_tokens_to_copy": 96}, 3, "3a6ca2661a4a3ef6"),
    ("compression", {}, 0, "1216d58847f5f86c"),
    ("compression", {}, 3, "ad2e2d02b7b9c130"),
    ("memorization", {}, 0, "88ae0561b38117e6"),
    ("memorization", {}, 3, "b671461ca743588b"),
    ("memorization", {"vocab_size": 4096}, 0, "646e4e845f9b500c"),
    ("memorization", {"vocab_size": 4096}, 3, "c9cc4cdb9922b629"),
]
"""sha256 (first 16 hex digits) of the inputs then the labels of 1,100 examples (several blocks of
rows) built with `seed`: a faster generator must rebuild the same examples, or bump its
`generator_version` (which keys the data cache) and these digests together."""


@pytest.mark.parametrize(("task", "fields", "seed", "digest"), PINNED)
def test_generators_rebuild_the_pinned_examples(task, fields, seed, digest):
    segment = make(task, num_examples=1100, **fields).build(seed=seed)
    data = segment.inputs.numpy().tobytes() + segment.labels.numpy().tobytes()
    assert hashlib.sha256(data).hexdigest()[:16] == digest


@pytest.mark.parametrize("task", MAD_TASKS)
def test_next_token_labels_label_every_position_with_the_next_input(task):
    config = make(task, num_examples=32, labels="next_token")
    own = make(task, num_examples=32).build(seed=3)
    segment = config.build(seed=3)
    assert torch.equal(segment.inputs, own.inputs)
    assert torch.equal(segment.labels[:, :-1], segment.inputs[:, 1:]) and (segment.labels[:, -1] == IGNORE_INDEX).all()
    assert segment.name == f"{own.name}-next_token"
    if task in ("in_context_recall", "fuzzy_recall", "noisy_recall"):
        task_labelled = own.labels != IGNORE_INDEX
        assert torch.equal(own.labels[task_labelled], segment.labels[task_labelled]), "recall labels are next tokens"


@pytest.mark.parametrize(
    "task, fields, message",
    [
        ("in_context_recall", {"input_seq_len": 127}, "input_seq_len=127 must be even"),
        ("in_context_recall", {"vocab_size": 3}, "vocab_size"),
        ("noisy_recall", {"noise_vocab_size": 31}, "noise_vocab_size=31 leaves 1 of vocab_size=32"),
        ("noisy_recall", {"frac_noise": 1.0}, "frac_noise"),
        ("fuzzy_recall", {"key_lengths": (2, 8)}, r"key_lengths=\(2, 8\) must satisfy 1 <= shortest <= longest <= 7"),
        ("fuzzy_recall", {"value_lengths": (3, 1)}, "value_lengths=.3, 1. must satisfy"),
        ("fuzzy_recall", {"input_seq_len": 11}, r"input_seq_len=11 must be at least 2·\(longest key \+ longest"),
        ("selective_copying", {"num_tokens_to_copy": 128}, r"num_tokens_to_copy=128 too large .* 2·n \+ 1 = 257"),
        ("memorization", {"input_seq_len": 31}, "input_seq_len=31 must be even"),
        ("memorization", {"map_seed": -1}, "map_seed"),
        ("compression", {"labels": "every"}, "labels"),
        ("compression", {"num_kv_pairs": 2}, "num_kv_pairs"),
    ],
)
def test_impossible_configs_name_the_field(task, fields, message):
    with pytest.raises(ValidationError, match=message):
        make(task, num_examples=10, **fields)


def test_compression_needs_the_bottleneck_readout():
    setting = mad_setting("compression", train_examples=16, test_examples=16, valid_examples=16)
    data = {"train": [setting.train], "test": [setting.test]}
    with pytest.raises(ValidationError, match=r"data.train\[0\] \(compression\) needs model.readout='bottleneck'"):
        TrainConfig(model={"vocab_size": 16, "mixers": ["attention"]}, data=data)
    TrainConfig(model={"vocab_size": 16, "mixers": ["attention"], "readout": "bottleneck"}, data=data)


def test_the_settings_grid_is_the_protocol():
    settings = mad_settings()
    assert Counter(s.task for s in settings) == {
        "in_context_recall": 11,
        "fuzzy_recall": 11,
        "noisy_recall": 14,
        "selective_copying": 13,
        "compression": 11,
        "memorization": 6,
    }
    by_name = {(s.task, s.label): s for s in settings}
    assert len(by_name) == 66
    icr = by_name["in_context_recall", "base"]
    assert (icr.train.vocab_size, icr.train.input_seq_len, icr.train.num_examples) == (16, 128, 12_800)
    assert icr.train.labels == "next_token" and icr.test.labels == icr.valid.labels == "task"
    assert (icr.test.num_examples, icr.valid.num_examples) == (1280, 1280)
    assert by_name["in_context_recall", "train800"].train.num_examples == 800
    noisy = by_name["noisy_recall", "noise0.8"].train
    assert (noisy.vocab_size, noisy.noise_vocab_size, noisy.frac_noise) == (32, 16, 0.8)
    assert by_name["noisy_recall", "V144"].test.vocab_size == 144
    fuzzy = by_name["fuzzy_recall", "L1024"]
    assert fuzzy.train.key_lengths == (1, 3) and fuzzy.test.key_lengths == fuzzy.valid.key_lengths == (3, 3)
    copy = by_name["selective_copying", "n96"].train
    assert (copy.vocab_size, copy.input_seq_len, copy.num_tokens_to_copy, copy.labels) == (16, 256, 96, "task")
    assert (by_name["compression", "L256"].train.input_seq_len, by_name["compression", "base"].train.vocab_size) == (
        256,
        16,
    )
    for label in ("base", "V8192"):
        memo = by_name["memorization", label]
        assert memo.train.num_examples == 256 and memo.train.input_seq_len == 32
        assert memo.train.value_map().equal(memo.test.value_map())


def test_show_prints_every_task_with_its_legend(capsys):
    assert data_main(["show", "mad-baselines", "-n", "1", "--max-tokens", "40"]) == 0
    out = capsys.readouterr().out
    for task in MAD_TASKS:
        assert f"== [{MAD_TASKS.index(task)}]  {task}-" in out
        assert f"{task}: " in out.split("==")[0], "each task's legend is printed first"
    assert "Z→15" in out, "compression (L = 32) ends with its token, labelled"
    assert "I→" in out and "… 216 more tokens" in out  # selective copying: 40 of 256 tokens shown


def test_readme_examples_are_what_the_generators_print():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## The MAD synthetic suite") :]
    section = section[: section.index("\n## ", 1)]
    section = re.sub(r"```bash\n.*?\n```\n", "", section, flags=re.S)  # the commands are not examples
    blocks = re.findall(r"```\n(.*?)\n```", section, flags=re.S)
    printed = []
    for config in mad_demo():
        segment = config.build(seed=0)
        cells = config.token_cells(segment.inputs[0], segment.labels[0])
        printed.append(render_example(segment.inputs[0], segment.labels[0], 0, columns=16, cells=cells))
    assert blocks == printed, "regenerate the README examples: python -m zoology.data show mad-demo -n 1 --columns 16"
