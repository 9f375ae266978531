"""Zoology paper, Figure 2: MQAR accuracy against model width, one sequence length per run (256 runs).

    python -m zoology.launch sweeps/zoology_figure2.py --dry-run
    python -m zoology.launch sweeps/zoology_figure2.py -p --runs-per-gpu 4
    python -m zoology.plot runs/zoology_figure2 \\
        --x-column config.model.d_model --facet state_seq_len --no-labels

Setup (configs/zoology_figure2.yaml): (L, N) ∈ {(64, 4), (128, 8), (256, 16), (512, 64)}, 100,000
training and 3,000 test examples of that one (L, N), zero filler, 64 epochs, weight decay 0.1; batch 512
for L ≤ 128, 256 at L = 256, 128 at L = 512; lr ∈ logspace(−4, −2, 4); d ∈ {64, 128, 256, 512}.
Attention: 2 layers of attention (no short conv), 1 head, attention dropout 0.1, learned absolute
positions. The paper's gated convolutions, without positions: Hyena (order 2, implicit filter) and H3
(N = d/4, heads of 2) alone in both layers, and BaseConv as its 4-layer stack of kernels [3, long, 3,
long] ([base_conv (k = 3), base_conv_long] cycled; the long layers use Hyena's implicit filter). Each
run sees one length, and the long filters are defined up to it (max_seq_len = L). RWKV and RetNet, also
in the paper's figure, are not in this suite. The grid lives in zoology.papers;
`state_seq_len` (the test length) tells the panels apart.

Subsets by name (`--filter=REGEX`, re.search on names like `attention-L64-d128-h1-lr0.000464-s0`; write `--filter=`
so a regex may start with -):
    --filter='^attention-'                  the attention panel of the figure
    --filter='-L(64|128)-'                  the two short lengths
    --filter='^(attention|hyena)-L256-d(64|128)-'

Early stopping above 0.99 validation accuracy is the project default; the notes do not mention it.
"""

from zoology import papers
from zoology.config import TrainConfig
from zoology.data.presets import ZOOLOGY_FIGURE2

setup = TrainConfig.from_yaml("zoology_figure2")

configs = [
    setup.set(papers.zoology_figure2_data(L, N) | model.updates | {"lr": lr, "name": model.run_name(lr, seq_len=L)})
    for L, N in ZOOLOGY_FIGURE2
    for d in papers.D_MODELS
    for model in papers.zoology_figure2_models(d, L)
    for lr in papers.ZOOLOGY_FIGURE2_LRS
]
