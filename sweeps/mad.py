"""The MAD synthetic suite (Poli et al. 2024): six tasks × their one-factor variations (66 settings) ×
3 learning rates × 2 weight decays, for every registered mixer family (396 runs per family).

    python -m zoology.launch sweeps/mad.py --dry-run
    python -m zoology.launch sweeps/mad.py -p --runs-per-gpu 4
    python -m zoology.plot runs/mad --plot scores          # the families × tasks score table

The tasks (zoology/data/: in_context_recall, fuzzy_recall, noisy_recall, selective_copying,
compression, memorization) are generated from seeds, no download. The settings live in
zoology.data.presets (MAD_VARIATIONS: baseline, then each factor varied alone; 12,800 training, 1,280
validation and 1,280 test sequences), the lr and weight-decay grid in zoology.papers, the model and
training protocol in configs/mad.yaml: width 128, [mixer, SwiGLU 352, mixer, SwiGLU 352], untied
unembedding, AdamW, cosine to 1e-6 over 200 epochs, batch 128, bf16 on CUDA. Recall tasks train on
next-token labels at every position and are tested at the recalled positions. Each run reports the
test accuracy of the epoch with the best validation token accuracy (`selected`), early stopping
above 0.999 of it; `zoology.analysis.task_scores` takes the best over the grid per setting and the
mean over a task's settings.

Departures from the reference: the checkpoint is chosen on a validation split of its own (the
reference chose it by test perplexity and stopped early on test accuracy); every segment has its own
seeded generator; fuzzy recall always inserts its probe and selective copying scatters over the whole
prefix; our attention has no rotary embedding, so each family is its zoology/configs preset (the
short-convolution hybrid [base_conv, mixer] where the preset has one; Mamba and LEAP alone).

Subsets by name (`--filter=REGEX`, re.search on names like `based-in_context_recall-base-lr0.0005-wd0.1`):
    --filter='^(attention|based)-[a-z_]+-base-'      the baselines of every task, attention and Based (72 runs)
    --filter='^mamba-'                                one family (396 runs)
    --filter='-selective_copying-'                    one task
    --filter='-(V|L)[0-9]+-'                          the vocabulary and length variations
"""

from zoology import mixers, papers
from zoology.config import TrainConfig

FAMILIES = mixers.names()
"""Edit to sweep other families (registry names or dotted paths to a mixer class)."""

setup = TrainConfig.from_yaml("mad")
configs = papers.mad_configs(setup, FAMILIES)
