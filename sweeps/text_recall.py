"""Recall against perplexity: every model trains on English text and on MQAR at once, so each reports
a validation perplexity (held-out text) and a recall accuracy (MQAR), at two state sizes per family.

    python -m zoology.launch sweeps/text_recall.py
    python -m zoology.plot runs/text_recall --x perplexity     # recall against perplexity per family

Text: the Python documentation that ships with Python (configs/text.yaml), as bytes, in windows of 64;
recall: the default sweep's MQAR (L = 64, 8 pairs, vocabulary 256, which the bytes share). Small
enough for a CPU: d_model 64, two layers, an MLP in each, 10 epochs (the recall presets' own: in 3 epochs no
family had learned MQAR yet, mqar-L64-N8 at 0.006–0.015 for all eight models on a GPU).
"""

from zoology.config import TrainConfig

text = TrainConfig.from_yaml("text").data
mqar = TrainConfig.from_yaml("attention").data
window = {"input_seq_len": 64}
data = {
    "train": [text.train[0].model_copy(update={**window, "num_examples": 4000}), *mqar.train],
    "test": [text.test[0].model_copy(update={**window, "num_examples": 500}), *mqar.test],
    "batch_size": 64,
}
common = {"data": data, "lr": 3e-3, "max_epochs": 10, "early_stopping_threshold": None, "model.mlp_expand": 2}

# preset -> updates that give two state sizes of that family
sizes = {
    "attention": [{"model.d_model": 32}, {"model.d_model": 64}],
    "based": [{"model.mixers.1.kwargs.feature_dim": 4}, {"model.mixers.1.kwargs.feature_dim": 16}],
    "sliding_window": [{"model.mixers.1.kwargs.window_size": 8}, {"model.mixers.1.kwargs.window_size": 24}],
    "mamba": [{"model.mixers.0.kwargs.d_state": 4}, {"model.mixers.0.kwargs.d_state": 16}],
}


def label(preset: str, update: dict) -> str:
    return "-".join([preset, *(f"{key.rpartition('.')[2]}{value}" for key, value in update.items())])


configs = [
    TrainConfig.from_yaml(preset).set(common | update | {"name": label(preset, update)})
    for preset, updates in sizes.items()
    for update in updates
]
