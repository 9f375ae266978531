"""Based paper, Figure 2: MQAR recall against recurrent state size (120 runs).

    python -m zoology.launch sweeps/based_figure2.py --dry-run
    python -m zoology.launch sweeps/based_figure2.py -p --runs-per-gpu 4
    python -m zoology.plot runs/based_figure2 --unit bytes

Every model trains on the same data (configs/based_figure2.yaml: five training segments up to L = 256,
N = 64, seven test segments up to L = 1024, N = 256, random filler; batch 256, 32 epochs, weight decay
0.1, early stopping above 0.99 validation accuracy, no positions) at each of 4 learning rates:
Based d ∈ {48, 64, 128} × f ∈ {8, 16, 24} (1 head), attention d ∈ {64, 128} × {1, 2} heads,
sliding window d = 128, w ∈ {8 … 1024}, all [base_conv (k = 3), mixer]; Mamba d ∈ {64, 128, 256} ×
N ∈ {8, 16, 24} alone. The grid lives in zoology.papers.

Subsets by name (`--filter=REGEX`, re.search on names like `based-d64-f16-lr0.001-s0`; write `--filter=`
so a regex may start with -):
    --filter='^based-'                      the 36 Based runs
    --filter='^(based|attention)-'          Based and attention
    --filter='^sliding_window-d128-w(8|16|32)-'
    --filter='^mamba-d(64|128)-'
    --filter='-lr0\\.001-'                   one learning rate

Differences from the reference, none of which changes what a run computes: the test batch is 256
(the reference evaluated in batches of 32; evaluation is per example), and the notes' "1–2 heads"
for attention is read as both head counts at both widths (4 attention models, where the figure
shows two points).
"""

from zoology import papers
from zoology.config import TrainConfig

setup = TrainConfig.from_yaml("based_figure2")

configs = [
    setup.set(model.updates | {"lr": lr, "name": model.run_name(lr)})
    for model in papers.based_figure2_models()
    for lr in papers.BASED_FIGURE2_LRS
]
