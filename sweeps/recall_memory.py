"""The recall–memory frontier of every mixer family on the Based Figure 2 data (up to 168 runs).

    python -m zoology.launch sweeps/recall_memory.py --dry-run
    python -m zoology.launch sweeps/recall_memory.py -p --runs-per-gpu 4
    python -m zoology.plot runs/recall_memory --unit bytes

The data and schedule of configs/based_figure2.yaml (five training segments up to L = 256, N = 64, seven
test segments up to L = 1024, N = 256, random filler; batch 256, 32 epochs, weight decay 0.1, early stopping
above 0.99, no positions), 2 layers, no MLP, d ∈ {64, 128, 256}, lr ∈ {1e-3, 3.16e-3, 1e-2, 3.16e-2}, for
each family of zoology.papers.RECALL_MEMORY_FAMILIES whose mixer is registered (14 families: 168 runs):
attention (1 head), sliding window (w = 64), Based and ReBased (f = 16), ELU+1 linear attention, GLA,
DeltaNet, Gated DeltaNet and RWKV-7 as [base_conv (k = 3), mixer]; Mamba and Mamba-2 (N = 16), Hyena,
H3 (N = d/4) and LEAP as the mixer alone. The x-axis is each model's state at L = 1024 (the longest test
length), summed over layers.

Subsets by name (`--filter=REGEX`, re.search on names like `gla-d128-lr0.01-s0`):
    --filter='^(delta_net|gated_delta_net|gla|mamba2|rwkv7)-'    the newer families
    --filter='-d128-'                                               one width
    --filter='^(based|mamba)-'                                      the two of the Based paper's figure
"""

from zoology import papers
from zoology.config import TrainConfig

setup = TrainConfig.from_yaml("based_figure2")

configs = [
    setup.set(model.updates | {"lr": lr, "name": model.run_name(lr)})
    for model in papers.recall_memory_models()
    for lr in papers.RECALL_MEMORY_LRS
]
