"""ReBased paper, Figure 1: Based against ReBased at long sequences, one length per run (1,600 runs).

    python -m zoology.launch sweeps/rebased_figure1.py --dry-run
    python -m zoology.launch sweeps/rebased_figure1.py -p --runs-per-gpu 4 \\
        --filter='^(based|rebased)-L(512|1024)-d(64|128)-.*-s[01]$'
    python -m zoology.plot runs/rebased_figure1 --metric best \\
        --x-column config.model.d_model --facet state_seq_len --no-labels

Setup (configs/rebased_figure1.yaml): L ∈ {128, 256, 512, 1024, 2048} with N = 16 at L = 128, else
L / 4; 100,000 training and 3,000 test examples of that one (L, N), zero filler, batch 512, 64 epochs,
weight decay 0.1; lr ∈ {5e-4, 1e-3, 3e-3, 1e-2}; seeds 0 … 4 (`seed`: initialisation and batch order;
the data is the same for every seed); d ∈ {64, 128, 256, 512}. Models: Based and ReBased (f = 16,
16 heads) and attention (1 head), each [base_conv (k = 3), mixer]; Mamba (N = 16) alone, as in the
other figures. The grid lives in zoology.papers. The figure's aggregation (best-epoch accuracy, mean
over seeds, best lr, std over seeds as error bars) is an analysis choice: `--metric best` above.

Subsets by name (`--filter=REGEX`, re.search on names like `rebased-L1024-d64-f16-lr0.001-s3`; write `--filter=`
so a regex may start with -):
    --filter='^(based|rebased)-'            Based against ReBased only
    --filter='-L(512|1024)-d(64|128)-'      two lengths, two widths
    --filter='-s[01]$'                      the first two seeds

Differences from the reference:
- Heads: the paper's 12 heads divide none of the widths (heads split d_model here); 16 heads is the
  nearer of 8 and 16 in head width and q/k width (see zoology.papers.REBASED_FIGURE1_HEADS).
- The trainer has no gradient accumulation; the reference's 256×2 at L = 1024 and 128×4 at L = 2048
  become one batch of 512. With one (L, N) per run every example has N query tokens, so the mean loss
  over 512 examples equals the mean of the micro-batch means: the same update, more memory.
- Early stopping above 0.99 validation accuracy is the project default; the notes do not mention it.
"""

from zoology import papers
from zoology.config import TrainConfig
from zoology.data.presets import REBASED_FIGURE1_LENGTHS

setup = TrainConfig.from_yaml("rebased_figure1")

configs = [
    setup.set(
        papers.rebased_figure1_data(L) | model.updates | {"lr": lr, "seed": seed, "name": model.run_name(lr, seed, L)}
    )
    for L in REBASED_FIGURE1_LENGTHS
    for d in papers.D_MODELS
    for model in papers.rebased_figure1_models(d)
    for lr in papers.REBASED_FIGURE1_LRS
    for seed in papers.REBASED_FIGURE1_SEEDS
]
