"""A small MAD for a CPU: each of the six tasks at a shrunk baseline, for attention, Based and linear
attention (72 runs; docs/results.md has the measured table and times).

    python -m zoology.launch sweeps/mad_small.py
    python -m zoology.plot runs/mad_small --plot scores

The protocol of sweeps/mad.py (configs/mad.yaml: SwiGLU blocks, untied unembedding, next-token
training for the recall tasks, the epoch selected on a validation split, early stopping above 0.999)
at width 64 (SwiGLU 176), at most 8 epochs, batch 32, lr ∈ {3e-3, 1e-2} × weight decay ∈ {0, 0.1};
1,600 training sequences (memorization its 256), 256 validation and 256 test sequences; vocabularies
and lengths shrunk: in-context recall V = 8, L = 32; fuzzy recall V = 9 (4 key and 4 value tokens),
L = 32; noisy recall V = 24 (16 noise ids), L = 32; selective copying V = 8, L = 32, 4 tokens;
compression V = 8, L = 8; memorization V = 64. Every number is in zoology/papers.py (MAD_SMALL_*).

On a busy CPU, one torch thread per run is much faster than two (idle threads spin):
`OMP_NUM_THREADS=1 python -m zoology.launch sweeps/mad_small.py`, or `-p --num-cpus 2` for two runs
at once, one thread each.
"""

from zoology import papers
from zoology.config import TrainConfig

setup = TrainConfig.from_yaml("mad").set(papers.MAD_SMALL_UPDATES)
configs = papers.mad_configs(
    setup,
    list(papers.MAD_SMALL_FAMILIES),
    papers.mad_small_settings(),
    papers.MAD_SMALL_LRS,
    papers.MAD_SMALL_WEIGHT_DECAYS,
)
